"""/api/v1/runs: create, list, inspect, cancel, rerun, duplicate, archive, delete."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from api.artifacts import HOSTILE_CONTENT_HEADERS
from api.deps import ServicesDep, SessionDep, SettingsDep
from api.records import artifact_record, card_record, public_record
from api.reproduce import snippets
from api.schemas import RunContinue, RunCreate, RunDuplicate, RunRerun
from services import runs
from services.activity import run_activity
from storage.artifacts import list_artifacts
from storage.models import Run
from storage.runs import RunFilter, follow_ups, get_run
from storage.status import RunSource, RunStatus
from storage.timeline import MAX_SEQ, list_cards

router = APIRouter(tags=["runs"])

_ONE_STATUS = "|".join(s.value for s in RunStatus)
_STATUSES = rf"^\s*(?:(?:{_ONE_STATUS})\s*)?(?:,\s*(?:(?:{_ONE_STATUS})\s*)?)*$"
_SOURCE = rf"^(?:{'|'.join(s.value for s in RunSource)})?$"
"""What `services.runs.list_runs` accepts, told in the schema (empty items are no filter)."""


async def _record(session: Any, run: Run) -> dict[str, Any]:
    return public_record(run, await list_artifacts(session=session, run_id=run.id))


@router.post("/runs", status_code=201, summary="Queue a run")
async def create_run_endpoint(body: RunCreate, services: ServicesDep) -> dict[str, Any]:
    run = await runs.queue_new_run(
        services, workflow=body.workflow, parameters=body.parameters, options=body.options()
    )
    return public_record(run, [])


@router.get("/runs", summary="List runs, newest first")
async def list_runs(
    services: ServicesDep,
    status: str = Query(
        default="",
        max_length=200,
        description="One status or several, comma-separated",
        json_schema_extra={"pattern": _STATUSES},
    ),
    workflow_id: str | None = Query(default=None, max_length=200),
    source: str = Query(default="", max_length=200, json_schema_extra={"pattern": _SOURCE}),
    q: str | None = Query(
        default=None, max_length=500, description="Text in the title or the run id"
    ),
    tag: str | None = Query(default=None, max_length=64, description="Runs with this tag"),
    schedule_id: str | None = Query(default=None, max_length=200),
    trigger_id: str | None = Query(default=None, max_length=200),
    parent_run_id: str | None = Query(
        default=None, max_length=200, description="Runs started by this run (children, follow-up)"
    ),
    archived: bool = False,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=500),
) -> dict[str, Any]:
    where = RunFilter(
        workflow_id=workflow_id,
        source=source or None,
        text=q,
        archived=archived,
        tag=tag,
        schedule_id=schedule_id,
        trigger_id=trigger_id,
        parent_run_id=parent_run_id,
    )
    page = await runs.list_runs(
        services, status=status or None, where=where, limit=limit, cursor=cursor
    )
    return {
        "items": [public_record(r, []) for r in page.items],
        "next_cursor": page.next_cursor,
        "counts": page.counts,
    }


@router.get(
    "/runs/{run_id}/activity",
    summary="The run's network requests and console lines, on the video's clock",
)
async def activity(run_id: str, services: ServicesDep) -> dict[str, Any]:
    found = await run_activity(services, run_id)
    return {
        "requests": found.requests,
        "console": found.console,
        "truncated": found.truncated,
        "missing": found.missing,
    }


@router.get("/runs/{run_id}", summary="A run's record")
async def get_run_endpoint(run_id: str, session: SessionDep) -> dict[str, Any]:
    return await _record(session, await get_run(session=session, run_id=run_id))


@router.get("/runs/{run_id}/follow-ups", summary="The follow-up chain after a run, in order")
async def follow_ups_endpoint(run_id: str, session: SessionDep) -> dict[str, Any]:
    await get_run(session=session, run_id=run_id)
    chain = await follow_ups(session=session, run_id=run_id)
    return {"items": [public_record(r, []) for r in chain]}


@router.get("/runs/{run_id}/timeline", summary="A run's cards, in order")
async def timeline(
    run_id: str, session: SessionDep, after_seq: int = Query(default=0, ge=0, le=MAX_SEQ)
) -> dict[str, Any]:
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
async def cancel(run_id: str, services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    return await _record(session, await runs.cancel_run(services, run_id))


@router.post("/runs/{run_id}/rerun", status_code=201, summary="Run again with the same inputs")
async def rerun(run_id: str, services: ServicesDep, body: RunRerun | None = None) -> dict[str, Any]:
    given = body or RunRerun()
    new = await runs.rerun(
        services,
        run_id,
        parameters=given.parameters,
        extra_http_headers=given.extra_http_headers,
        proxy_password=given.proxy_password,
        from_block=given.from_block,
    )
    return public_record(new, [])


@router.post(
    "/runs/{run_id}/continue",
    status_code=201,
    summary="A new run starting where this one ended: its cookies, local storage and page",
)
async def continue_run(run_id: str, body: RunContinue, services: ServicesDep) -> dict[str, Any]:
    new = await runs.continue_run(
        services,
        run_id,
        workflow=body.workflow,
        blocks=body.blocks,
        goal=body.goal,
        parameters=body.parameters,
        title=body.title,
    )
    return public_record(new, [])


@router.post(
    "/runs/{run_id}/duplicate", status_code=201, summary="Run again with edited parameters"
)
async def duplicate(run_id: str, body: RunDuplicate, services: ServicesDep) -> dict[str, Any]:
    new = await runs.duplicate_run(
        services,
        run_id,
        parameters=body.parameters,
        title=body.title,
        extra_http_headers=body.extra_http_headers,
        proxy_password=body.proxy_password,
    )
    return public_record(new, [])


@router.post("/runs/{run_id}/archive", summary="Hide a run from the default list")
async def archive(run_id: str, services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    return await _record(session, await runs.set_archived(services, run_id, True))


@router.post("/runs/{run_id}/unarchive", summary="Show an archived run again")
async def unarchive(run_id: str, services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    return await _record(session, await runs.set_archived(services, run_id, False))


@router.post("/runs/{run_id}/read", summary="Mark a run read")
async def mark_read(run_id: str, services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    return await _record(session, await runs.set_read(services, run_id, True))


@router.post("/runs/{run_id}/unread", summary="Mark a run unread")
async def mark_unread(run_id: str, services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    return await _record(session, await runs.set_read(services, run_id, False))


@router.delete("/runs/{run_id}", status_code=204, summary="Delete a finished run and its artifacts")
async def delete_run(run_id: str, services: ServicesDep) -> Response:
    await runs.delete_run(services, run_id)
    return Response(status_code=204)


@router.get(
    "/runs/{run_id}/code",
    summary="The generated Python script",
    response_class=PlainTextResponse,
)
async def code(
    run_id: str,
    services: ServicesDep,
    format: Literal["python", "html"] = Query(
        default="python",
        description="`python`: the script; `html`: the script highlighted (Pygments), an HTML "
        "fragment the Web UI shows",
    ),
) -> PlainTextResponse:
    script = await runs.generated_code(services, run_id)
    if format == "html":
        return PlainTextResponse(
            highlight(script, PythonLexer(), _CODE_HTML),
            media_type="text/html",
            headers=HOSTILE_CONTENT_HEADERS,
        )
    return PlainTextResponse(
        script,
        media_type="text/x-python",
        headers=HOSTILE_CONTENT_HEADERS,  # stored bytes, with strings from the visited pages
    )


# Pygments escapes the source; the classes are styled in ui/static/app.css (`.hl`).
_CODE_HTML = HtmlFormatter(cssclass="hl", linenos="inline", wrapcode=True)


@router.get("/runs/{run_id}/reproduce", summary="curl, Python and PowerShell that recreate the run")
async def reproduce(
    run_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    run = await get_run(session=session, run_id=run_id)
    base = (settings.service.public_url or str(request.base_url)).rstrip("/")
    return snippets(run, base)
