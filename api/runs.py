"""/api/v1/runs: create, list, inspect, cancel, rerun, duplicate, archive, delete."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import delete, func, or_, select, tuple_

from api.deps import NotifierDep, ServicesDep, SessionDep, SettingsDep
from api.errors import field_error
from api.records import artifact_record, card_record, public_record
from api.schemas import RunCreate, RunDuplicate
from runner.session import inputs_of, queue_run
from runner.templating import resolve_inputs
from runner.worker import publish_run_event
from runner.workflow import parse_workflow
from storage.artifacts import list_artifacts
from storage.errors import InvalidTransition, NotFound, ValidationFailed
from storage.models import Run, Workflow, utcnow
from storage.notify import CANCEL, QUEUE
from storage.queue import request_cancel
from storage.runs import get_run
from storage.status import TERMINAL_STATUSES, ArtifactKind, RunSource, RunStatus
from storage.timeline import list_cards

router = APIRouter(tags=["runs"])


def _check_url(value: str | None, field: str) -> None:
    if value is None:
        return
    if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise ValidationFailed(field, "must be an http(s) URL")


async def _workflow_definition(session: Any, body: RunCreate) -> tuple[dict[str, Any], str | None]:
    if (body.workflow is None) == (body.workflow_id is None):
        raise ValidationFailed("workflow", "give exactly one of workflow or workflow_id")
    if body.workflow is not None:
        return body.workflow, None
    saved = await session.get(Workflow, body.workflow_id)
    if saved is None or saved.archived:
        raise ValidationFailed("workflow_id", f"no saved workflow {body.workflow_id!r}")
    return saved.definition, saved.id


def _prefixed(exc: ValidationFailed, prefix: str) -> ValidationFailed:
    field = (
        f"{prefix}.{exc.field}"
        if exc.field and not exc.field.startswith("parameters")
        else exc.field
    )
    return ValidationFailed(field or prefix, exc.message)


@router.post("/runs", status_code=201, summary="Queue a run")
async def create_run_endpoint(
    body: RunCreate,
    services: ServicesDep,
    notifier: NotifierDep,
    session: SessionDep,
) -> dict[str, Any]:
    definition, workflow_id = await _workflow_definition(session, body)
    try:
        workflow = parse_workflow(definition)
        inputs = resolve_inputs(
            workflow, body.parameters, allowed_schemes=services.runner.url_schemes
        )
    except ValidationFailed as exc:
        raise _prefixed(exc, "workflow") from None
    _check_url(body.webhook_url, "webhook_url")
    run = await queue_run(
        services,
        workflow,
        inputs,
        source=RunSource.api,
        title=body.title,
        timeout_s=body.timeout_s,
        workflow_id=workflow_id,
        webhook_url=body.webhook_url,
        proxy=body.proxy,
        extra_http_headers=body.extra_http_headers,
        run_with=body.run_with,
    )
    await notifier.publish(QUEUE, run.id)
    await publish_run_event(notifier, run.id, "status", status=run.status)
    return public_record(run, [])


def _encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, run_id = base64.urlsafe_b64decode(padded).decode().split("|", 1)
        when = datetime.fromisoformat(created)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed(
            "cursor", "not a cursor from a previous page", location="query"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)), run_id


@router.get("/runs", summary="List runs, newest first")
async def list_runs(
    session: SessionDep,
    status: str | None = Query(default=None, description="One status or several, comma-separated"),
    workflow_id: str | None = None,
    source: str | None = None,
    q: str | None = Query(default=None, description="Text in the title or the run id"),
    archived: bool = False,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = None,
) -> dict[str, Any]:
    filters: list[Any] = [Run.archived == archived]
    if workflow_id:
        filters.append(Run.workflow_id == workflow_id)
    if source:
        if source not in RunSource.__members__:
            raise ValidationFailed("source", f"unknown source {source!r}", location="query")
        filters.append(Run.source == source)
    if q:
        pattern = f"%{q.lower()}%"
        filters.append(or_(func.lower(Run.title).like(pattern), Run.id == q))
    status_filter: list[Any] = []
    if status:
        wanted = [s.strip() for s in status.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in RunStatus.__members__]
        if unknown:
            raise ValidationFailed("status", f"unknown status {unknown[0]!r}", location="query")
        status_filter.append(Run.status.in_(wanted))
    query = select(Run).where(*filters, *status_filter)
    if cursor:
        created, run_id = _decode_cursor(cursor)
        # A row-value comparison: both PostgreSQL and SQLite turn it into one range of the
        # (archived, created_at, id) index; the equivalent OR is a filter over the index.
        query = query.where(tuple_(Run.created_at, Run.id) < tuple_(created, run_id))
    rows = list(
        (
            await session.execute(
                query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)
            )
        ).scalars()
    )
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    counts_rows = await session.execute(
        select(Run.status, func.count()).where(*filters).group_by(Run.status)
    )
    counts = {s.value: 0 for s in RunStatus}
    counts.update({name: count for name, count in counts_rows.all()})
    return {
        "items": [public_record(r, []) for r in rows[:limit]],
        "next_cursor": next_cursor,
        "counts": counts,
    }


@router.get("/runs/{run_id}", summary="A run's record")
async def get_run_endpoint(run_id: str, session: SessionDep) -> dict[str, Any]:
    run = await get_run(session=session, run_id=run_id)
    return public_record(run, await list_artifacts(session=session, run_id=run_id))


@router.get("/runs/{run_id}/timeline", summary="A run's cards, in order")
async def timeline(run_id: str, session: SessionDep, after_seq: int = 0) -> dict[str, Any]:
    await get_run(session=session, run_id=run_id)
    cards = await list_cards(session=session, run_id=run_id, after_seq=after_seq)
    return {"items": [card_record(c) for c in cards]}


@router.get("/runs/{run_id}/artifacts", summary="A run's artifacts")
async def artifacts(run_id: str, session: SessionDep) -> dict[str, Any]:
    await get_run(session=session, run_id=run_id)
    return {
        "items": [artifact_record(a) for a in await list_artifacts(session=session, run_id=run_id)]
    }


@router.post("/runs/{run_id}/cancel", summary="Cancel a queued or running run")
async def cancel(run_id: str, session: SessionDep, notifier: NotifierDep) -> dict[str, Any]:
    run = await request_cancel(session=session, run_id=run_id)
    await session.commit()
    if run.status == RunStatus.canceled.value:
        await publish_run_event(notifier, run_id, "status", status=run.status)
    else:
        await notifier.publish(CANCEL, run_id)
    return public_record(run, await list_artifacts(session=session, run_id=run_id))


async def _requeue(
    services: Any,
    notifier: Any,
    run: Run,
    *,
    source: RunSource,
    changes: dict[str, Any] | None = None,
    title: str | None = None,
) -> Run:
    workflow, inputs = inputs_of(services, run)
    if changes:
        values = dict(inputs.values)
        if "url" in changes:
            values["url"] = changes["url"]
        values.update(changes)
        inputs = resolve_inputs(workflow, values, allowed_schemes=services.runner.url_schemes)
    else:
        values = dict(inputs.values)
        if inputs.url:
            values["url"] = inputs.url
        inputs = resolve_inputs(workflow, values, allowed_schemes=services.runner.url_schemes)
    new = await queue_run(
        services,
        workflow,
        inputs,
        source=source,
        title=title or run.title,
        timeout_s=run.timeout_s,
        workflow_id=run.workflow_id,
        parent_run_id=run.id,
        webhook_url=run.webhook_url,
        proxy=run.proxy,
        extra_http_headers=run.extra_http_headers,
        run_with=run.run_with,
    )
    await notifier.publish(QUEUE, new.id)
    return new


@router.post("/runs/{run_id}/rerun", status_code=201, summary="Run again with the same inputs")
async def rerun(
    run_id: str, session: SessionDep, services: ServicesDep, notifier: NotifierDep
) -> dict[str, Any]:
    run = await get_run(session=session, run_id=run_id)
    new = await _requeue(services, notifier, run, source=RunSource.rerun)
    return public_record(new, [])


@router.post(
    "/runs/{run_id}/duplicate", status_code=201, summary="Run again with edited parameters"
)
async def duplicate(
    run_id: str,
    body: RunDuplicate,
    session: SessionDep,
    services: ServicesDep,
    notifier: NotifierDep,
) -> dict[str, Any]:
    run = await get_run(session=session, run_id=run_id)
    new = await _requeue(
        services, notifier, run, source=RunSource.api, changes=body.parameters, title=body.title
    )
    return public_record(new, [])


async def _set_flag(session: Any, run_id: str, **values: Any) -> dict[str, Any]:
    run = await get_run(session=session, run_id=run_id)
    for key, value in values.items():
        setattr(run, key, value)
    await session.commit()
    return public_record(run, await list_artifacts(session=session, run_id=run_id))


@router.post("/runs/{run_id}/archive", summary="Hide a run from the default list")
async def archive(run_id: str, session: SessionDep) -> dict[str, Any]:
    return await _set_flag(session, run_id, archived=True)


@router.post("/runs/{run_id}/unarchive", summary="Show an archived run again")
async def unarchive(run_id: str, session: SessionDep) -> dict[str, Any]:
    return await _set_flag(session, run_id, archived=False)


@router.post("/runs/{run_id}/read", summary="Mark a run read")
async def mark_read(run_id: str, session: SessionDep) -> dict[str, Any]:
    return await _set_flag(session, run_id, read_at=utcnow())


@router.post("/runs/{run_id}/unread", summary="Mark a run unread")
async def mark_unread(run_id: str, session: SessionDep) -> dict[str, Any]:
    return await _set_flag(session, run_id, read_at=None)


@router.delete("/runs/{run_id}", status_code=204, summary="Delete a finished run and its artifacts")
async def delete_run(run_id: str, session: SessionDep, services: ServicesDep) -> Response:
    run = await get_run(session=session, run_id=run_id)
    if RunStatus(run.status) not in TERMINAL_STATUSES:
        raise InvalidTransition(run_id, run.status, "deleted (cancel it first)")
    await asyncio.to_thread(services.store.delete_prefix, f"runs/{run_id}/")
    from storage.models import Artifact, LiveFrame, RunStatusChange, TimelineCard, WebhookDelivery

    for table in (Artifact, TimelineCard, RunStatusChange, WebhookDelivery, LiveFrame):
        await session.execute(delete(table).where(table.run_id == run_id))
    await session.execute(delete(Run).where(Run.id == run_id))
    await session.commit()
    return Response(status_code=204)


@router.get(
    "/runs/{run_id}/code",
    summary="The generated Python script",
    response_class=PlainTextResponse,
)
async def code(run_id: str, session: SessionDep, services: ServicesDep) -> PlainTextResponse:
    await get_run(session=session, run_id=run_id)
    found = [
        a
        for a in await list_artifacts(session=session, run_id=run_id)
        if a.kind == ArtifactKind.code
    ]
    if not found:
        raise NotFound("code of run", run_id)
    data = await asyncio.to_thread(lambda: b"".join(services.store.open(found[-1].key)))
    return PlainTextResponse(data.decode(), media_type="text/x-python")


@router.get("/runs/{run_id}/reproduce", summary="curl, Python and PowerShell that recreate the run")
async def reproduce(
    run_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    from api.reproduce import snippets

    run = await get_run(session=session, run_id=run_id)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return snippets(run, base)


def problem(field: str, message: str) -> JSONResponse:
    return field_error(field, message)


__all__ = ["router"]
_ = json
