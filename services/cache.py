"""The action cache of saved workflows: its versions (list, show, pin, unpin, take out). The
runner records and replays them (runner.replay); this is what entry points manage."""

from __future__ import annotations

from dataclasses import dataclass

from services.backends import Services
from storage import action_cache as stored
from storage.models import ActionRecord
from storage.workflows import get_workflow

__all__ = ["CacheVersion", "drop_version", "get_version", "list_versions", "set_pinned"]


@dataclass(frozen=True)
class CacheVersion:
    row: ActionRecord
    current: bool  # the version a replay of its key uses now


async def _current_ids(services: Services, workflow_id: str, keys: set[str]) -> set[str]:
    found: set[str] = set()
    async with services.db.session() as session:
        for key in keys:
            row = await stored.current_version(
                session=session, workflow_id=workflow_id, cache_key=key
            )
            if row is not None:
                found.add(row.id)
    return found


async def list_versions(
    services: Services, workflow_id: str, cache_key: str | None = None
) -> list[CacheVersion]:
    """The workflow's cache versions, newest first; NotFound for no such workflow."""
    async with services.db.session() as session:
        await get_workflow(session=session, workflow_id=workflow_id)
        rows = await stored.list_versions(
            session=session, workflow_id=workflow_id, cache_key=cache_key
        )
    current = await _current_ids(services, workflow_id, {r.cache_key for r in rows if r.cache_key})
    return [CacheVersion(row, row.id in current) for row in rows]


async def get_version(services: Services, workflow_id: str, version_id: str) -> CacheVersion:
    async with services.db.session() as session:
        await get_workflow(session=session, workflow_id=workflow_id)
        row = await stored.get_version(
            session=session, workflow_id=workflow_id, version_id=version_id
        )
    current = await _current_ids(services, workflow_id, {row.cache_key or ""})
    return CacheVersion(row, row.id in current)


async def set_pinned(
    services: Services, workflow_id: str, version_id: str, pinned: bool
) -> CacheVersion:
    """A pinned version is the one replays of its key use, whatever newer versions come."""
    async with services.db.session() as session:
        await get_workflow(session=session, workflow_id=workflow_id)
        await stored.set_pinned(
            session=session, workflow_id=workflow_id, version_id=version_id, pinned=pinned
        )
        await session.commit()
    return await get_version(services, workflow_id, version_id)


async def drop_version(services: Services, workflow_id: str, version_id: str) -> None:
    async with services.db.session() as session:
        await get_workflow(session=session, workflow_id=workflow_id)
        await stored.drop_version(session=session, workflow_id=workflow_id, version_id=version_id)
        await session.commit()
