"""The step engine: every browser action of a run — a workflow step or an agent's tool call —
goes through `perform`, which acts (runner.steps) and keeps the record of it: the action card
with its video offset and the screenshot of its effect, and its lines of generated code."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from runner.context import RunContext
from runner.errors import step_failure
from runner.steps import Located, Outcome, StepEnv, run_step, target_of
from runner.workflow import StepArgs


@dataclass
class StepCall:
    """One action to perform: `args` rendered; `raw` with the templates, for the code;
    `located` when the element was found otherwise than by a target (the agent's [N])."""

    block: str
    number: int
    verb: str
    args: StepArgs
    raw: StepArgs | None = None
    located: Located | None = None
    tool: str | None = None  # the agent's tool call this action carries out


async def perform(ctx: RunContext, call: StepCall) -> Outcome:
    """Performs one action and records it. Raises `StepFailed` (the card says failed) with the
    reason alone; the caller says where it happened. An action cut short by the run's time
    limit or a cancel keeps its card too (status `timed_out` / `canceled`)."""
    action = await ctx.begin_action(call.block, call.verb, call.number)
    assert ctx.page is not None
    env = StepEnv(
        page=ctx.page,
        recorder=ctx.recorder,
        code=ctx.code,
        mask=ctx.masker.mask_text,
        step_timeout_ms=ctx.settings.step_timeout_ms,
        navigation_timeout_ms=ctx.settings.navigation_timeout_ms,
        upload_dir=ctx.settings.upload_dir,
    )
    try:
        outcome = await run_step(call.verb, call.args, call.raw, env, call.located)
    except Exception as error:
        exc = step_failure(error)  # a full disk or storage outage is named, at its step
        target = target_of(call.args, call.located)
        await ctx.action_card(
            action,
            target=ctx.masker.mask_text(target) if target else None,
            result="failed",
            error=exc.reason,
            url=action.url,
            extra={"tool": call.tool} if call.tool else None,
        )
        raise exc from error if exc is not error else None
    except asyncio.CancelledError:
        stopped, why = ctx.why_stopped()
        target = target_of(call.args, call.located)
        await asyncio.shield(
            ctx.action_card(
                action,
                target=ctx.masker.mask_text(target) if target else None,
                result=stopped.value,
                error=why,
                url=action.url,
                status=stopped.value,
                extra={"tool": call.tool} if call.tool else None,
            )
        )
        raise
    lines = list(outcome.code)
    ctx.add_code(lines)
    await ctx.settle_tabs()
    await ctx.action_card(
        action,
        target=outcome.target,
        value=outcome.value,
        result=outcome.result,
        code=lines,
        box_of=outcome.box_of,
        extra={**outcome.extra, **({"tool": call.tool} if call.tool else {})},
        url=ctx.url or action.url,
    )
    return outcome
