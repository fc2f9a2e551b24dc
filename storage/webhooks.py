"""Webhook delivery queries: the schedule kept on the run row, and the attempts made.

A run's webhook is in one of these states (`runs.webhook_state`):

- NULL: nothing scheduled (no `webhook_url`, or the run has not finished yet);
- `pending`: the next automatic attempt is due at `runs.webhook_next_at` (`transition` sets
  this, due at once, when a run with a `webhook_url` reaches a terminal status);
- `delivered`: an attempt (automatic or manual) got a 2xx answer;
- `failed`: every automatic attempt (`runs.webhook_attempts` of them) failed.

Due deliveries are claimed like queued runs: PostgreSQL selects them `FOR UPDATE SKIP LOCKED`,
SQLite (one writer at a time) relies on a compare-and-set. A claim pushes `webhook_next_at`
forward by a claim timeout, so no other process makes the same attempt while it is in flight,
and a process that dies mid-attempt only delays the delivery until the claim expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.ids import new_id
from storage.models import Run, WebhookDelivery, utcnow
from storage.status import TERMINAL_STATUSES


class WebhookState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


def _is_postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


def _changed(result: object) -> bool:
    return int(getattr(result, "rowcount", 1)) == 1


async def schedule_delivery(*, session: AsyncSession, run_id: str, at: datetime) -> bool:
    """Makes the run's first webhook attempt due at `at`. Only a finished run with a
    `webhook_url` and nothing scheduled yet is touched, so calling it again never sends the
    record twice (`storage.runs.transition` already schedules it when a run with a
    `webhook_url` finishes). True if it scheduled. Commit to keep."""
    result = await session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.status.in_([s.value for s in TERMINAL_STATUSES]),
            Run.webhook_url.is_not(None),
            Run.webhook_state.is_(None),
        )
        .values(webhook_state=WebhookState.pending.value, webhook_next_at=at, webhook_attempts=0)
        .execution_options(synchronize_session=False)
    )
    return _changed(result)


async def due_deliveries(
    *, session: AsyncSession, now: datetime, limit: int, claim_s: float = 60.0
) -> list[str]:
    """Claims up to `limit` pending deliveries due at `now` (oldest first) and returns their run
    ids. Each claim moves `webhook_next_at` to `now + claim_s`; the attempt's outcome then sets
    the real next time. Commit right away so other processes see the claims."""
    if limit <= 0:
        return []
    due: ColumnElement[bool] = and_(
        Run.webhook_state == WebhookState.pending.value, Run.webhook_next_at <= now
    )
    query = select(Run.id).where(due).order_by(Run.webhook_next_at, Run.id).limit(limit)
    if _is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    claimed = []
    until = now + timedelta(seconds=claim_s)
    for run_id in (await session.scalars(query)).all():
        # Compare-and-set: on SQLite another process may have claimed it since the select.
        result = await session.execute(
            update(Run)
            .where(Run.id == run_id, due)
            .values(webhook_next_at=until)
            .execution_options(synchronize_session=False)
        )
        if _changed(result):
            claimed.append(run_id)
    return claimed


async def next_due_at(*, session: AsyncSession) -> datetime | None:
    """When the earliest pending delivery is due (None: nothing pending)."""
    earliest: datetime | None = await session.scalar(
        select(func.min(Run.webhook_next_at)).where(Run.webhook_state == WebhookState.pending.value)
    )
    return earliest


async def next_attempt_number(*, session: AsyncSession, run_id: str) -> int:
    """The number of the run's next delivery row: attempts are numbered 1, 2, … per run, manual
    ones included."""
    highest = await session.scalar(
        select(func.max(WebhookDelivery.attempt)).where(WebhookDelivery.run_id == run_id)
    )
    return int(highest or 0) + 1


async def record_attempt(
    *,
    session: AsyncSession,
    run_id: str,
    url: str,
    attempt: int,
    status_code: int | None,
    error: str | None,
    duration_ms: int | None,
    manual: bool,
    at: datetime | None = None,
    delivery_id: str | None = None,
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        id=delivery_id or new_id("whd"),
        run_id=run_id,
        url=url,
        attempt=attempt,
        at=at or utcnow(),
        status_code=status_code,
        error=error,
        duration_ms=duration_ms,
        manual=manual,
    )
    session.add(delivery)
    await session.flush()
    return delivery


async def list_deliveries(*, session: AsyncSession, run_id: str) -> list[WebhookDelivery]:
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.run_id == run_id)
        .order_by(WebhookDelivery.attempt, WebhookDelivery.at, WebhookDelivery.id)
    )
    return list(rows)


async def mark(
    *,
    session: AsyncSession,
    run_id: str,
    state: WebhookState,
    next_at: datetime | None = None,
    attempts: int | None = None,
    expect_attempts: int | None = None,
) -> bool:
    """Sets the run's webhook state: `delivered` or `failed` (nothing more scheduled), or
    `pending` with the next automatic attempt due at `next_at`. With `expect_attempts`, only if
    the run is still pending with that many automatic attempts made. True if the row changed."""
    query = update(Run).where(Run.id == run_id)
    if expect_attempts is not None:
        # An automatic attempt's outcome only counts if the schedule is still the one it was
        # made for: still pending (a manual delivery may have succeeded meanwhile) and with the
        # same number of attempts (no other process made this attempt too).
        query = query.where(
            Run.webhook_state == WebhookState.pending.value,
            Run.webhook_attempts == expect_attempts,
        )
    values: dict[str, object] = {"webhook_state": state.value, "webhook_next_at": next_at}
    if attempts is not None:
        values["webhook_attempts"] = attempts
    result = await session.execute(
        query.values(**values).execution_options(synchronize_session=False)
    )
    return _changed(result)
