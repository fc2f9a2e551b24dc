"""The run queue: claiming queued runs, leases and heartbeats, finding runs whose worker vanished.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`; SQLite (one writer at a time) claims with a
compare-and-set on the status. Either way a run is claimed by exactly one worker.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.errors import InvalidTransition
from storage.models import Run, utcnow
from storage.runs import get_run, transition
from storage.status import RunStatus


async def claim_next(
    *, session: AsyncSession, worker_id: str, lease_s: float, now: datetime | None = None
) -> Run | None:
    """Claims the oldest queued run that is due (`not_before` passed) and whose
    `concurrency_key` no running run holds, for `worker_id`, and marks it running. Commit to
    keep. On PostgreSQL a claim of a keyed run holds a transaction lock on the key while it
    checks, so two workers never start two runs of one key; SQLite's single writer serializes."""
    now = now or utcnow()
    postgres = session.bind.dialect.name == "postgresql" if session.bind else False
    holder = aliased(Run)
    busy = exists().where(
        holder.status == RunStatus.running.value,
        holder.concurrency_key == Run.concurrency_key,
    )
    passed: list[str] = []
    for _ in range(5):
        query = (
            select(Run.id, Run.concurrency_key, Run.queued_at)
            .where(
                Run.status == RunStatus.queued.value,
                or_(Run.not_before.is_(None), Run.not_before <= now),
                or_(Run.concurrency_key.is_(None), ~busy),
            )
            .order_by(Run.queued_at, Run.id)
            .limit(1)
        )
        if passed:
            query = query.where(Run.id.not_in(passed))
        if postgres:
            query = query.with_for_update(skip_locked=True, of=Run)
        found = (await session.execute(query)).first()
        if found is None:
            return None
        run_id, key, queued_at = found
        if key is not None and postgres:
            await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
            # Under the key's lock: a run of the key started while we looked, or an older run
            # of the key (skipped above because another worker holds its row) goes first.
            ahead = await session.scalar(
                select(func.count())
                .select_from(Run)
                .where(
                    Run.concurrency_key == key,
                    or_(
                        Run.status == RunStatus.running.value,
                        and_(
                            Run.status == RunStatus.queued.value,
                            or_(Run.not_before.is_(None), Run.not_before <= now),
                            tuple_(Run.queued_at, Run.id) < tuple_(queued_at, run_id),
                        ),
                    ),
                )
            )
            if ahead:
                passed.append(run_id)
                continue
        # The key is checked again by the write itself: on SQLite the select above ran before
        # this transaction took the write lock, and a run of the key may have started since.
        claimed = await session.execute(
            update(Run)
            .where(
                Run.id == run_id,
                Run.status == RunStatus.queued.value,
                or_(Run.concurrency_key.is_(None), ~busy),
            )
            .values(
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_s),
                heartbeat_at=now,
                attempt=Run.attempt + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 1) != 1:
            continue  # another worker took it (or a run of its key) since the select
        run = await transition(session=session, run_id=run_id, to=RunStatus.running, at=now)
        await session.refresh(run)
        return run
    return None


async def heartbeat(
    *, session: AsyncSession, worker_id: str, run_ids: list[str], lease_s: float
) -> dict[str, bool]:
    """Renews the leases this worker holds. Returns, per run, whether a cancel was requested.
    A run missing from the answer is no longer this worker's (it ended or was taken away)."""
    if not run_ids:
        return {}
    now = utcnow()
    await session.execute(
        update(Run)
        .where(
            Run.id.in_(run_ids),
            Run.worker_id == worker_id,
            Run.status == RunStatus.running.value,
        )
        .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    rows = await session.execute(
        select(Run.id, Run.cancel_requested_at).where(
            Run.id.in_(run_ids),
            Run.worker_id == worker_id,
            Run.status == RunStatus.running.value,
        )
    )
    return {run_id: cancel_at is not None for run_id, cancel_at in rows.all()}


async def expired_runs(*, session: AsyncSession, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    rows = await session.execute(
        select(Run.id).where(
            Run.status == RunStatus.running.value,
            Run.lease_expires_at.is_not(None),
            Run.lease_expires_at < now,
        )
    )
    return list(rows.scalars())


async def cancel_requested(*, session: AsyncSession, run_ids: list[str]) -> list[str]:
    """Those of `run_ids` a user asked to cancel."""
    if not run_ids:
        return []
    rows = await session.execute(
        select(Run.id).where(Run.id.in_(run_ids), Run.cancel_requested_at.is_not(None))
    )
    return list(rows.scalars())


async def flag_cancel(*, session: AsyncSession, run_id: str) -> Run:
    """Flags a running run for its worker to cancel (a run that has not started is canceled
    with a transition instead). Raises InvalidTransition if the run is not running."""
    flagged = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.running.value)
        .values(cancel_requested_at=func.coalesce(Run.cancel_requested_at, utcnow()))
        .execution_options(synchronize_session=False)
    )
    run = await get_run(session=session, run_id=run_id)
    await session.refresh(run)
    if getattr(flagged, "rowcount", 0) == 1:
        return run
    raise InvalidTransition(run_id, run.status, RunStatus.canceled.value)


async def queue_activity(
    *, session: AsyncSession, within_s: float, now: datetime | None = None
) -> tuple[int, datetime | None]:
    """Signs of workers, for a process that runs none: how many runs have waited in the queue
    longer than `within_s`, and the newest heartbeat of a running run."""
    now = now or utcnow()
    waiting = await session.scalar(
        select(func.count())
        .select_from(Run)
        .where(
            Run.status == RunStatus.queued.value,
            Run.queued_at < now - timedelta(seconds=within_s),
            or_(Run.not_before.is_(None), Run.not_before < now - timedelta(seconds=within_s)),
        )
    )
    newest = await session.scalar(
        select(func.max(Run.heartbeat_at)).where(Run.status == RunStatus.running.value)
    )
    return int(waiting or 0), newest


async def runs_holding(*, session: AsyncSession, key: str, besides: str) -> list[Run]:
    """The queued and running runs of a concurrency key, oldest first. Call it after writing
    the new run in the same transaction: on PostgreSQL it takes the key's transaction lock (so
    concurrent callers see each other's runs); on SQLite that write already holds the lock."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
    rows = await session.scalars(
        select(Run)
        .where(
            Run.concurrency_key == key,
            Run.id != besides,
            Run.status.in_([RunStatus.queued.value, RunStatus.running.value]),
        )
        .order_by(Run.queued_at, Run.id)
    )
    return list(rows)
