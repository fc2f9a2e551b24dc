"""Trigger queries: trigger URLs of saved workflows, found by id and checked by token hash."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import NotFound
from storage.ids import new_id
from storage.models import Trigger, utcnow


async def create_trigger(*, session: AsyncSession, workflow_id: str, **fields: Any) -> Trigger:
    trigger = Trigger(id=new_id("trg"), workflow_id=workflow_id, fire_count=0, **fields)
    session.add(trigger)
    await session.flush()
    return trigger


async def get_trigger(*, session: AsyncSession, trigger_id: str) -> Trigger:
    trigger = await session.get(Trigger, trigger_id)
    if trigger is None:
        raise NotFound("trigger", trigger_id)
    return trigger


async def list_triggers(*, session: AsyncSession, workflow_id: str | None = None) -> list[Trigger]:
    query = select(Trigger).order_by(Trigger.created_at)
    if workflow_id is not None:
        query = query.where(Trigger.workflow_id == workflow_id)
    return list((await session.execute(query)).scalars())


async def delete_trigger(*, session: AsyncSession, trigger_id: str) -> None:
    await session.delete(await get_trigger(session=session, trigger_id=trigger_id))
    await session.flush()


async def record_fire(*, session: AsyncSession, trigger_id: str, run_id: str) -> None:
    await session.execute(
        update(Trigger)
        .where(Trigger.id == trigger_id)
        .values(fire_count=Trigger.fire_count + 1, last_fired_at=utcnow(), last_run_id=run_id)
        .execution_options(synchronize_session=False)
    )


async def disable_for_workflow(*, session: AsyncSession, workflow_id: str) -> None:
    await session.execute(
        update(Trigger)
        .where(Trigger.workflow_id == workflow_id)
        .values(enabled=False)
        .execution_options(synchronize_session=False)
    )
