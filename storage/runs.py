"""Run queries. Every status change goes through `transition`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import InvalidTransition, NotFound
from storage.ids import new_id
from storage.models import Run, RunStatusChange, utcnow
from storage.status import RunSource, RunStatus, can_transition


async def create_run(
    *,
    session: AsyncSession,
    title: str,
    definition: dict[str, Any],
    parameters: dict[str, Any],
    source: RunSource,
    timeout_s: int,
    workflow_id: str | None = None,
    parent_run_id: str | None = None,
    webhook_url: str | None = None,
    proxy: dict[str, Any] | None = None,
    extra_http_headers: dict[str, Any] | None = None,
    run_with: str = "agent",
    sealed_secrets: str | None = None,
) -> Run:
    now = utcnow()
    run = Run(
        id=new_id("run"),
        title=title,
        status=RunStatus.created.value,
        source=source.value,
        workflow_id=workflow_id,
        parent_run_id=parent_run_id,
        definition=definition,
        parameters=parameters,
        sealed_secrets=sealed_secrets,
        timeout_s=timeout_s,
        webhook_url=webhook_url,
        proxy=proxy,
        extra_http_headers=extra_http_headers,
        run_with=run_with,
        metrics={"prompt_tokens": 0, "completion_tokens": 0, "llm_calls": 0, "cost_usd": 0.0},
        created_at=now,
    )
    session.add(run)
    session.add(RunStatusChange(run_id=run.id, from_status=None, to_status=run.status, at=now))
    await session.flush()
    return run


async def get_run(*, session: AsyncSession, run_id: str, lock: bool = False) -> Run:
    query = select(Run).where(Run.id == run_id)
    if lock:
        query = query.with_for_update()
    run = (await session.execute(query)).scalar_one_or_none()
    if run is None:
        raise NotFound("run", run_id)
    return run


async def transition(
    *,
    session: AsyncSession,
    run_id: str,
    to: RunStatus,
    reason: str | None = None,
    at: datetime | None = None,
    expect: set[RunStatus] | None = None,
) -> Run:
    """Locks the run, checks the move against the state machine, records it in the history."""
    run = await get_run(session=session, run_id=run_id, lock=True)
    # Another session may have changed the row since it was loaded into this one.
    await session.refresh(run)
    current = RunStatus(run.status)
    if not can_transition(current, to) or (expect is not None and current not in expect):
        raise InvalidTransition(run_id, current.value, to.value)
    now = at or utcnow()
    # Compare-and-set: SQLite has no row locks, so the status written must still be the one read.
    changed = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == current.value)
        .values(status=to.value)
        .execution_options(synchronize_session=False)
    )
    if getattr(changed, "rowcount", 1) != 1:
        await session.refresh(run)
        raise InvalidTransition(run_id, run.status, to.value)
    run.status = to.value
    if to is RunStatus.queued:
        run.queued_at = now
    elif to is RunStatus.running:
        run.started_at = now
    elif to in (
        RunStatus.completed,
        RunStatus.failed,
        RunStatus.terminated,
        RunStatus.canceled,
        RunStatus.timed_out,
        RunStatus.interrupted,
    ):
        run.finished_at = now
        run.lease_expires_at = None
        if run.webhook_url:  # delivered by the webhook dispatcher of any API process
            run.webhook_state = "pending"
            run.webhook_next_at = now
        if to is not RunStatus.completed and reason and not run.failure_reason:
            run.failure_reason = reason
    session.add(
        RunStatusChange(
            run_id=run_id, from_status=current.value, to_status=to.value, at=now, reason=reason
        )
    )
    await session.flush()
    return run


async def status_history(*, session: AsyncSession, run_id: str) -> list[RunStatusChange]:
    rows = await session.execute(
        select(RunStatusChange).where(RunStatusChange.run_id == run_id).order_by(RunStatusChange.id)
    )
    return list(rows.scalars())


async def count_by_status(*, session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Run.status, func.count()).group_by(Run.status))
    return {status: count for status, count in rows.all()}
