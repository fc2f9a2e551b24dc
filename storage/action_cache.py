"""The action cache: each run's resolved actions (`ActionRecord`), and the versions of a saved
workflow's cache among them (rows with `cached` set, per cache key). The version a replay uses
is the pinned one of its key, else the newest."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import NotFound
from storage.ids import new_id
from storage.models import ActionRecord


async def save_record(
    *,
    session: AsyncSession,
    run_id: str,
    blocks: dict[str, Any],
    workflow_id: str | None = None,
    cache_key: str | None = None,
    cached: bool = False,
    note: str | None = None,
) -> ActionRecord:
    """Stores a run's actions (once: a second save of the same run replaces the first)."""
    found = await session.scalar(select(ActionRecord).where(ActionRecord.run_id == run_id))
    if found is None:
        found = ActionRecord(id=new_id("acv"), run_id=run_id, pinned=False)
        session.add(found)
    found.workflow_id, found.cache_key, found.cached = workflow_id, cache_key, cached
    found.blocks, found.note = blocks, note
    await session.flush()
    return found


async def record_of_run(*, session: AsyncSession, run_id: str) -> ActionRecord | None:
    return await session.scalar(select(ActionRecord).where(ActionRecord.run_id == run_id))


async def current_version(
    *, session: AsyncSession, workflow_id: str, cache_key: str
) -> ActionRecord | None:
    """The version a replay of this key uses: the pinned one, else the newest."""
    rows = await session.scalars(
        select(ActionRecord)
        .where(
            ActionRecord.workflow_id == workflow_id,
            ActionRecord.cache_key == cache_key,
            ActionRecord.cached.is_(True),
        )
        .order_by(
            ActionRecord.pinned.desc(), ActionRecord.created_at.desc(), ActionRecord.id.desc()
        )
        .limit(1)
    )
    return rows.first()


async def list_versions(
    *, session: AsyncSession, workflow_id: str, cache_key: str | None = None, limit: int = 200
) -> list[ActionRecord]:
    """The workflow's cache versions, newest first (of one key if given)."""
    query = select(ActionRecord).where(
        ActionRecord.workflow_id == workflow_id, ActionRecord.cached.is_(True)
    )
    if cache_key is not None:
        query = query.where(ActionRecord.cache_key == cache_key)
    rows = await session.scalars(
        query.order_by(ActionRecord.created_at.desc(), ActionRecord.id.desc()).limit(limit)
    )
    return list(rows)


async def get_version(*, session: AsyncSession, workflow_id: str, version_id: str) -> ActionRecord:
    found = await session.get(ActionRecord, version_id)
    if found is None or not found.cached or found.workflow_id != workflow_id:
        raise NotFound("cache version", version_id)
    return found


async def set_pinned(
    *, session: AsyncSession, workflow_id: str, version_id: str, pinned: bool
) -> ActionRecord:
    """Pins a version (the others of its key lose their pin) or unpins it."""
    found = await get_version(session=session, workflow_id=workflow_id, version_id=version_id)
    if pinned:
        await session.execute(
            update(ActionRecord)
            .where(
                ActionRecord.workflow_id == workflow_id,
                ActionRecord.cache_key == found.cache_key,
                ActionRecord.id != found.id,
            )
            .values(pinned=False)
        )
    found.pinned = pinned
    await session.flush()
    return found


async def prune_versions(
    *, session: AsyncSession, workflow_id: str, cache_key: str, keep: int
) -> None:
    """Keeps the newest `keep` versions of a key (and a pinned one) in the cache; older ones
    become their runs' own records only."""
    rows = await session.scalars(
        select(ActionRecord)
        .where(
            ActionRecord.workflow_id == workflow_id,
            ActionRecord.cache_key == cache_key,
            ActionRecord.cached.is_(True),
            ActionRecord.pinned.is_(False),
        )
        .order_by(ActionRecord.created_at.desc(), ActionRecord.id.desc())
        .offset(keep)
    )
    for row in rows:
        row.cached = False
    await session.flush()


async def drop_version(*, session: AsyncSession, workflow_id: str, version_id: str) -> None:
    """Takes a version out of the cache. The run keeps its own actions (a rerun from one of
    its blocks still replays them)."""
    found = await get_version(session=session, workflow_id=workflow_id, version_id=version_id)
    found.cached, found.pinned = False, False
    await session.flush()
