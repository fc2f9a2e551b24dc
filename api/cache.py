"""/api/v1/workflows/{id}/cache: the versions of a saved workflow's action cache — list, show,
pin, unpin, delete (see docs/workflows.md, "Replay")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response

from api.deps import ServicesDep
from api.records import iso
from services import cache
from services.cache import CacheVersion

router = APIRouter(tags=["workflows"])


def _action(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "verb": entry.get("verb"),
        "locators": entry.get("locators") or [],
        "args": entry.get("args") or {},
        "url": entry.get("url"),
        "code": entry.get("code"),
    }


def version_record(found: CacheVersion, *, full: bool = False) -> dict[str, Any]:
    row = found.row
    blocks = row.blocks or {}
    record: dict[str, Any] = {
        "id": row.id,
        "workflow_id": row.workflow_id,
        "cache_key": row.cache_key,
        "run_id": row.run_id,
        "created_at": iso(row.created_at),
        "pinned": row.pinned,
        "current": found.current,
        "note": row.note,
        "blocks": {
            label: {
                "type": block.get("type"),
                "actions": len(block.get("actions") or []),
            }
            for label, block in blocks.items()
        },
    }
    if full:
        record["blocks"] = {
            label: {
                "type": block.get("type"),
                "actions": [_action(a) for a in block.get("actions") or []],
                "extracted": block.get("extracted") or {},
                "fields": block.get("fields"),
            }
            for label, block in blocks.items()
        }
    return record


@router.get("/workflows/{workflow_id}/cache", summary="The versions of a workflow's action cache")
async def list_versions(
    workflow_id: str,
    services: ServicesDep,
    cache_key: str | None = Query(default=None, max_length=200, description="Of this key only"),
) -> dict[str, Any]:
    found = await cache.list_versions(services, workflow_id, cache_key)
    return {"items": [version_record(v) for v in found]}


@router.get(
    "/workflows/{workflow_id}/cache/{version_id}",
    summary="One version of the action cache, with its actions",
)
async def get_version(workflow_id: str, version_id: str, services: ServicesDep) -> dict[str, Any]:
    return version_record(await cache.get_version(services, workflow_id, version_id), full=True)


@router.post(
    "/workflows/{workflow_id}/cache/{version_id}/pin",
    summary="Replay this version of its key (whatever newer versions come)",
)
async def pin(workflow_id: str, version_id: str, services: ServicesDep) -> dict[str, Any]:
    found = await cache.set_pinned(services, workflow_id, version_id, True)
    return version_record(found, full=True)


@router.post(
    "/workflows/{workflow_id}/cache/{version_id}/unpin",
    summary="Replay the newest version of the key again",
)
async def unpin(workflow_id: str, version_id: str, services: ServicesDep) -> dict[str, Any]:
    found = await cache.set_pinned(services, workflow_id, version_id, False)
    return version_record(found, full=True)


@router.delete(
    "/workflows/{workflow_id}/cache/{version_id}",
    status_code=204,
    summary="Take a version out of the action cache",
)
async def delete_version(workflow_id: str, version_id: str, services: ServicesDep) -> Response:
    await cache.drop_version(services, workflow_id, version_id)
    return Response(status_code=204)
