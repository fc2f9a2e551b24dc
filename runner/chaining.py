"""The `run_workflow` block: a run starts another saved workflow (a child run, `source:
agent`, `parent_run_id` the parent) and, with `wait`, waits for it to end and takes its
extracted information (`runs.<label>` in later templates, `<label>` in the parent's
extracted information).

A parent waiting for its child holds no worker slot (`RunnerEnv.waiting`): with one worker
of concurrency 1 the child still runs, beside its waiting parent. The wait is bounded by the
parent's time limit; a parent that is canceled or times out cancels its child."""

from __future__ import annotations

import asyncio
from typing import Any

from runner.context import RunContext
from runner.errors import StepFailed
from runner.templating import Inputs, render_template, resolve_inputs
from runner.workflow import RunWorkflowBlock, Workflow, parse_workflow, workflow_to_json
from storage.errors import InvalidTransition, NotFound, ValidationFailed
from storage.models import Run, utcnow
from storage.runs import create_run, get_run, transition
from storage.status import TERMINAL_STATUSES, CardKind, RunSource, RunStatus
from storage.workflows import get_workflow

POLL_S = 0.25


async def run_workflow_block(ctx: RunContext, index: int, block: RunWorkflowBlock) -> None:
    where = f'block "{block.label}"'
    workflow, inputs = await _child_inputs(ctx, index, block, where)
    child = await _queue_child(ctx, block, workflow, inputs)
    await ctx.emit(
        CardKind.thought,
        block_label=block.label,
        data={
            "text": f"Started run {child.id} of workflow {block.workflow_id}",
            "child_run_id": child.id,
            "workflow_id": block.workflow_id,
            "wait": block.wait,
        },
    )
    if not block.wait:
        ctx.inputs.runs[block.label] = {"id": child.id, "status": child.status}
        return
    ended = await _wait_for(ctx, child.id)
    result = {
        "id": ended.id,
        "status": ended.status,
        "extracted": ended.extracted_information,
        "summary": ended.summary,
    }
    ctx.inputs.runs[block.label] = result
    await ctx.emit(
        CardKind.thought,
        block_label=block.label,
        data={"text": f"Run {ended.id} ended {ended.status}", "child_run_id": ended.id},
    )
    if ended.status != RunStatus.completed.value:
        raise StepFailed(
            f"{where}: run {ended.id} ended {ended.status}"
            + (f": {ended.failure_reason}" if ended.failure_reason else "")
        )
    ctx.extracted[block.label] = ended.extracted_information


async def _child_inputs(
    ctx: RunContext, index: int, block: RunWorkflowBlock, where: str
) -> tuple[Workflow, Inputs]:
    try:
        async with ctx.env.db.session() as session:
            saved = await get_workflow(session=session, workflow_id=block.workflow_id)
            definition = saved.definition
    except NotFound:
        raise StepFailed(f"{where}: no saved workflow {block.workflow_id!r}") from None
    scope = {**ctx.inputs.scope, "extracted": dict(ctx.extracted)}

    def prepare() -> tuple[Workflow, Inputs]:
        workflow = parse_workflow(definition)
        if workflow.secret_names:
            raise ValidationFailed(
                "workflow_id",
                "a child run cannot take secret parameters (its workflow has "
                + ", ".join(sorted(workflow.secret_names))
                + ")",
            )
        values: dict[str, Any] = {}
        for name, value in block.parameters.items():
            field = f"blocks[{index}].parameters.{name}"
            values[name] = (
                render_template(value, scope, field, ctx.inputs.limits)
                if isinstance(value, str)
                else value
            )
        inputs = resolve_inputs(
            workflow,
            values,
            allowed_schemes=ctx.inputs.allowed_schemes,
            upload_dir=ctx.inputs.upload_dir,
            limits=ctx.inputs.limits,
        )
        return workflow, inputs

    try:
        return await asyncio.to_thread(prepare)
    except ValidationFailed as exc:
        raise StepFailed(f"{where}: {exc.field}: {exc.message}") from None


async def _queue_child(
    ctx: RunContext, block: RunWorkflowBlock, workflow: Workflow, inputs: Inputs
) -> Run:
    async with ctx.env.db.session() as session:
        child = await create_run(
            session=session,
            title=workflow.title,
            definition={**workflow_to_json(workflow), "url": inputs.url},
            parameters=inputs.masked,
            source=RunSource.agent,
            timeout_s=workflow.timeout_s,
            workflow_id=block.workflow_id,
            parent_run_id=ctx.run.id,
            tags=list(ctx.run.tags or []),
        )
        if workflow.concurrency_key is not None:
            key = inputs.render(workflow.concurrency_key, "concurrency_key").strip()[:200]
            # The parent holds its own key while it waits: a child of that key would never run.
            if key != ctx.run.concurrency_key:
                child.concurrency_key = key or None
        child = await transition(session=session, run_id=child.id, to=RunStatus.queued)
        await session.commit()
    return child


async def _wait_for(ctx: RunContext, child_id: str) -> Run:
    """Polls the child until it ends; lends the parent's worker slot meanwhile. Canceled (the
    parent canceled or out of time): the child is canceled too."""
    ctx.env.waiting.add(ctx.run.id)
    try:
        while True:
            async with ctx.env.db.session() as session:
                child = await get_run(session=session, run_id=child_id)
            if RunStatus(child.status) in TERMINAL_STATUSES:
                return child
            await asyncio.sleep(POLL_S)
    except asyncio.CancelledError:
        await asyncio.shield(_cancel_child(ctx, child_id))
        raise
    finally:
        ctx.env.waiting.discard(ctx.run.id)


async def _cancel_child(ctx: RunContext, child_id: str) -> None:
    _, why = ctx.why_stopped()
    reason = f"parent run {ctx.run.id} stopped: {why}"
    async with ctx.env.db.session() as session:
        try:
            await transition(
                session=session,
                run_id=child_id,
                to=RunStatus.canceled,
                reason=reason,
                expect={RunStatus.created, RunStatus.queued},
            )
        except InvalidTransition:
            child = await get_run(session=session, run_id=child_id, lock=True)
            if child.status == RunStatus.running.value and child.cancel_requested_at is None:
                child.cancel_requested_at = utcnow()
                child.failure_reason = child.failure_reason or reason
        await session.commit()
