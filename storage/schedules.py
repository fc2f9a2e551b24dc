"""Schedule queries. Firing is a compare-and-set on `next_fire_at`: of any number of processes
that see the same due schedule, one advances it (and queues the run in that transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import NotFound
from storage.ids import new_id
from storage.models import Schedule, utcnow


async def create_schedule(*, session: AsyncSession, workflow_id: str, **fields: Any) -> Schedule:
    schedule = Schedule(id=new_id("sch"), workflow_id=workflow_id, skipped=0, **fields)
    session.add(schedule)
    await session.flush()
    return schedule


async def get_schedule(*, session: AsyncSession, schedule_id: str) -> Schedule:
    schedule = await session.get(Schedule, schedule_id)
    if schedule is None:
        raise NotFound("schedule", schedule_id)
    return schedule


async def list_schedules(
    *, session: AsyncSession, workflow_id: str | None = None
) -> list[Schedule]:
    query = select(Schedule).order_by(Schedule.created_at)
    if workflow_id is not None:
        query = query.where(Schedule.workflow_id == workflow_id)
    return list((await session.execute(query)).scalars())


async def update_schedule(*, session: AsyncSession, schedule_id: str, **fields: Any) -> Schedule:
    schedule = await get_schedule(session=session, schedule_id=schedule_id)
    for name, value in fields.items():
        setattr(schedule, name, value)
    schedule.updated_at = utcnow()
    await session.flush()
    return schedule


async def delete_schedule(*, session: AsyncSession, schedule_id: str) -> None:
    await session.delete(await get_schedule(session=session, schedule_id=schedule_id))
    await session.flush()


async def due_schedules(*, session: AsyncSession, now: datetime) -> list[Schedule]:
    rows = await session.execute(
        select(Schedule)
        .where(Schedule.enabled.is_(True), Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at)
    )
    return list(rows.scalars())


async def advance(
    *,
    session: AsyncSession,
    schedule_id: str,
    expected: datetime,
    next_fire_at: datetime | None,
    fired_at: datetime | None,
    run_id: str | None,
    skipped: int = 0,
    error: str | None = None,
) -> bool:
    """Moves the schedule from the fire time `expected` to `next_fire_at`; False if another
    process did first (or it was changed meanwhile). Not committed."""
    values: dict[str, Any] = {"next_fire_at": next_fire_at, "skipped": Schedule.skipped + skipped}
    if fired_at is not None:
        values.update(last_fire_at=fired_at, last_run_id=run_id, last_error=error)
    changed = await session.execute(
        update(Schedule)
        .where(
            Schedule.id == schedule_id,
            Schedule.enabled.is_(True),
            Schedule.next_fire_at == expected,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return getattr(changed, "rowcount", 0) == 1


async def disable_for_workflow(*, session: AsyncSession, workflow_id: str) -> None:
    """A deleted workflow's schedules stop (they are kept, disabled, for the record)."""
    await session.execute(
        update(Schedule)
        .where(Schedule.workflow_id == workflow_id)
        .values(enabled=False, next_fire_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
