"""One handler per block type: `action` (deterministic steps), `extract` (fields, or the model
with an instruction) and `goal` (the LLM agent). Each block is framed by block cards and a
group in the trace."""

from __future__ import annotations

import asyncio
import json
import time

from runner import codegen
from runner.actions import StepCall, perform
from runner.agent import extract_with_model, run_goal
from runner.cache import fingerprint
from runner.chaining import run_workflow_block
from runner.context import RunContext
from runner.errors import RunEnded, StepFailed
from runner.extract import extract_fields, schema_errors
from runner.replay import entry_for, replay_block
from runner.steps import target_of
from runner.workflow import ActionBlock, Block, ExtractBlock, GoalBlock, RunWorkflowBlock
from storage.status import CardKind


async def run_blocks(ctx: RunContext) -> None:
    for index, block in enumerate(ctx.workflow.blocks):
        await run_block(ctx, index, block)
    if ctx.workflow.extraction_schema is not None:
        problem = schema_errors(ctx.extracted, ctx.workflow.extraction_schema)
        if problem:
            raise StepFailed(f"extracted information does not match extraction_schema: {problem}")


async def run_block(ctx: RunContext, index: int, block: Block) -> None:
    started = time.monotonic()
    card = {"label": block.label, "type": block.type, "index": index}
    await ctx.emit(
        CardKind.block,
        block_label=block.label,
        status="running",
        data={**card, "event": "started"},
    )
    await ctx.recorder.group(f"{block.label} ({block.type})")
    error: str | None = None
    status = "completed"
    extracted, summary = dict(ctx.extracted), ctx.summary
    ctx.actions.begin(block.label, block.type, fingerprint(block), len(ctx.code_body))
    how = "live"
    try:
        entry = entry_for(ctx, block)
        if entry is not None:
            how = await replay_block(ctx, block, entry)
        elif isinstance(block, ActionBlock):
            await run_action_block(ctx, index, block)
        elif isinstance(block, ExtractBlock):
            await run_extract_block(ctx, block)
        elif isinstance(block, GoalBlock):
            await run_goal(ctx, block)
        elif isinstance(block, RunWorkflowBlock):
            await run_workflow_block(ctx, index, block)
        ctx.actions.end(
            ctx.code_body,
            {k: v for k, v in ctx.extracted.items() if k not in extracted or extracted[k] != v},
            ctx.summary if ctx.summary != summary else None,
        )
        ctx.actions.statuses[block.label] = how
        if "blocks" in ctx.replay:
            ctx.replay["blocks"][block.label] = how
        await ctx.save_counters()  # for whoever watches the run
    except StepFailed as exc:
        error, status = exc.reason, "failed"
        raise
    except RunEnded as exc:
        error, status = exc.reason, exc.status.value
        raise
    except asyncio.CancelledError:
        stopped, error = ctx.why_stopped()
        status = stopped.value
        raise
    finally:
        ctx.actions.abandon()
        await asyncio.shield(ctx.recorder.group_end())
        await asyncio.shield(
            ctx.emit(
                CardKind.block,
                block_label=block.label,
                status=status,
                duration_ms=int((time.monotonic() - started) * 1000),
                data={**card, "event": "finished", "error": error, "replay": how},
            )
        )


async def run_action_block(ctx: RunContext, index: int, block: ActionBlock) -> None:
    ctx.code_body.append(f"# block {block.label!r}")
    for number, step in enumerate(block.steps, start=1):
        args = ctx.inputs.render_model(
            step.args, f"blocks[{index}].steps[{number - 1}].{step.verb}"
        )
        if step.verb == "goto":
            await ctx.narrate(f"Opening {getattr(args, 'url', '')}", block.label)
        ctx.step_count += 1
        try:
            await perform(ctx, StepCall(block.label, number, step.verb, args, raw=step.args))
        except StepFailed as exc:
            reason = f'block "{block.label}", step {number} {step.verb}'
            target = target_of(args)
            if target:
                reason += f" {ctx.masker.mask_text(target)}"
            raise StepFailed(f"{reason}: {exc.reason}") from None


async def run_extract_block(ctx: RunContext, block: ExtractBlock) -> None:
    if not block.fields:
        await extract_with_model(ctx, block)
        return
    ctx.step_count += 1
    action = await ctx.begin_action(block.label, "extract", 1)
    assert ctx.page is not None
    data = await extract_fields(ctx.page, block, ctx.settings.step_timeout_ms)
    if block.schema_ is not None:
        problem = schema_errors(data, block.schema_)
        if problem:
            raise StepFailed(
                f'block "{block.label}": extracted data does not match schema: {problem}'
            )
    ctx.extracted.update(data)
    lines = codegen.extract_code(block)
    ctx.code_body.extend(lines)
    await ctx.action_card(
        action,
        target=", ".join(f.selector for f in block.fields.values()),
        value=json.dumps(data, ensure_ascii=False)[:2000],
        result="ok",
        code=lines,
        url=ctx.page.url,
        extra={"extracted": data},
    )
