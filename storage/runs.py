"""Run queries. Every status change goes through `transition`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import InvalidTransition, NotFound
from storage.ids import new_id
from storage.models import (
    Artifact,
    LiveFrame,
    Run,
    RunStatusChange,
    RunTag,
    TimelineCard,
    WebhookDelivery,
    utcnow,
)
from storage.status import TERMINAL_STATUSES, RunSource, RunStatus, can_transition


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
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
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
        tags=list(tags or []),
        run_metadata=dict(metadata or {}),
        created_at=now,
    )
    session.add(run)
    session.add_all(RunTag(run_id=run.id, tag=tag) for tag in dict.fromkeys(tags or []))
    session.add(RunStatusChange(run_id=run.id, from_status=None, to_status=run.status, at=now))
    await session.flush()
    return run


async def copy_run(
    *, session: AsyncSession, run: Run, source: RunSource, sealed_secrets: str | None
) -> Run:
    """A new run of `run`'s definition with its parameters and options (tags and metadata
    included), `parent_run_id` pointing at it: a retry or a follow-up. Not queued yet."""
    return await create_run(
        session=session,
        title=run.title,
        definition=run.definition,
        parameters=run.parameters,
        source=source,
        timeout_s=run.timeout_s,
        workflow_id=run.workflow_id,
        parent_run_id=run.id,
        webhook_url=run.webhook_url,
        proxy=run.proxy,
        extra_http_headers=run.extra_http_headers,
        run_with=run.run_with,
        sealed_secrets=sealed_secrets,
        tags=list(run.tags or []),
        metadata=run.run_metadata,
    )


async def drop_expired_states(*, session: AsyncSession, ended_before: datetime) -> int:
    """Forgets the sealed browser states of runs that ended before `ended_before` (the
    continuation window is over) and of runs that never started; returns how many."""
    result = await session.execute(
        update(Run)
        .where(
            Run.sealed_state.is_not(None),
            Run.status.in_([s.value for s in TERMINAL_STATUSES]),
            or_(Run.finished_at.is_(None), Run.finished_at < ended_before),
        )
        .values(sealed_state=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


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
    elif to in TERMINAL_STATUSES:
        run.finished_at = now
        run.lease_expires_at = None
        # Nothing may open the run's secrets any more: a rerun is given them again.
        run.sealed_secrets = None
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


@dataclass(frozen=True, kw_only=True)
class RunFilter:
    """Which runs a list or a count covers; `None` leaves a criterion out. `text` matches within
    the title (any case) or is the run id."""

    workflow_id: str | None = None
    source: str | None = None
    text: str | None = None
    archived: bool | None = False
    tag: str | None = None
    schedule_id: str | None = None
    trigger_id: str | None = None
    parent_run_id: str | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        filters: list[ColumnElement[bool]] = []
        if self.archived is not None:
            filters.append(Run.archived == self.archived)
        if self.workflow_id:
            filters.append(Run.workflow_id == self.workflow_id)
        if self.source:
            filters.append(Run.source == self.source)
        if self.schedule_id:
            filters.append(Run.schedule_id == self.schedule_id)
        if self.trigger_id:
            filters.append(Run.trigger_id == self.trigger_id)
        if self.parent_run_id:
            filters.append(Run.parent_run_id == self.parent_run_id)
        if self.tag:
            filters.append(Run.id.in_(select(RunTag.run_id).where(RunTag.tag == self.tag)))
        if self.text:
            text = self.text
            filters.append(or_(func.lower(Run.title).like(f"%{text.lower()}%"), Run.id == text))
        return filters


async def list_runs(
    *,
    session: AsyncSession,
    limit: int,
    statuses: Sequence[str] | None = None,
    where: RunFilter = RunFilter(),
    before: tuple[datetime, str] | None = None,
) -> list[Run]:
    """Runs newest first (by `created_at`, then id), at most `limit`; `before` is the
    (created_at, id) of the last run of the previous page."""
    query = select(Run).where(*where.clauses())
    if statuses is not None:
        query = query.where(Run.status.in_(list(statuses)))
    if before is not None:
        # A row-value comparison: both PostgreSQL and SQLite turn it into one range of the
        # (archived, created_at, id) index; the equivalent OR is a filter over the index.
        query = query.where(tuple_(Run.created_at, Run.id) < tuple_(*before))
    rows = await session.execute(query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit))
    return list(rows.scalars())


async def count_by_status(
    *,
    session: AsyncSession,
    where: RunFilter = RunFilter(archived=None),
) -> dict[str, int]:
    """Runs per status (statuses without runs are left out), filtered as `list_runs` does."""
    rows = await session.execute(
        select(Run.status, func.count()).where(*where.clauses()).group_by(Run.status)
    )
    return {status: count for status, count in rows.all()}


async def set_archived(*, session: AsyncSession, run_id: str, archived: bool) -> Run:
    run = await get_run(session=session, run_id=run_id)
    run.archived = archived
    await session.flush()
    return run


async def set_read(*, session: AsyncSession, run_id: str, read: bool) -> Run:
    run = await get_run(session=session, run_id=run_id)
    run.read_at = utcnow() if read else None
    await session.flush()
    return run


async def delete_run(*, session: AsyncSession, run_id: str) -> None:
    """Deletes the run's row and every row that belongs to it (its objects are the caller's).
    Commit to keep."""
    for table in (Artifact, TimelineCard, RunStatusChange, WebhookDelivery, LiveFrame, RunTag):
        await session.execute(delete(table).where(table.run_id == run_id))
    await session.execute(delete(Run).where(Run.id == run_id))


async def follow_ups(*, session: AsyncSession, run_id: str, limit: int = 1000) -> list[Run]:
    """The follow-up chain after `run_id`, in order: its follow-up, that one's, and so on."""
    chain: list[Run] = []
    current = run_id
    while len(chain) < limit:
        found = await session.scalar(
            select(Run)
            .where(Run.parent_run_id == current, Run.source == RunSource.follow_up.value)
            .order_by(Run.created_at)
            .limit(1)
        )
        if found is None:
            break
        chain.append(found)
        current = found.id
    return chain
