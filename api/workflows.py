"""/api/v1/workflows: saved workflows with their parameter defaults."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Response

from api.deps import ServicesDep
from api.records import iso
from api.schemas import WorkflowCreate
from services import workflows
from services.backends import Services
from services.workflows import SavedWorkflow
from storage.errors import ValidationFailed
from storage.models import Run

router = APIRouter(tags=["workflows"])


def record(workflow: SavedWorkflow, last_run: Run | None = None) -> dict[str, Any]:
    definition = workflow.definition or {}
    return {
        "id": workflow.id,
        "title": workflow.title,
        "description": definition.get("description"),
        "parameters": definition.get("parameters") or {},
        "definition": definition,
        "source": workflows.definition_source(definition),
        "created_at": iso(workflow.created_at),
        "updated_at": iso(workflow.updated_at),
        "last_run": None
        if last_run is None
        else {
            "id": last_run.id,
            "status": last_run.status,
            "created_at": iso(last_run.created_at),
            "finished_at": iso(last_run.finished_at),
        },
    }


@contextmanager
def _in_definition(source: str | None) -> Iterator[None]:
    """Refusals of the definition name their field within the body's `definition`; for a
    workflow sent as `source` text, also the line the field is on."""
    try:
        yield
    except ValidationFailed as exc:
        line = None
        if source is not None:
            try:
                line = workflows.source_line(source, exc.field)
            except RecursionError:  # a document nested beyond reason: no line, still a 422
                line = None
        raise ValidationFailed(
            f"definition.{exc.field}" if exc.field else "definition", exc.message, line=line
        ) from None


def _definition(body: WorkflowCreate) -> dict[str, Any]:
    if (body.definition is None) == (body.source is None):
        raise ValidationFailed(
            "definition", "give the workflow as `definition` (an object) or `source` (text)"
        )
    if body.source is not None:
        return workflows.definition_from_source(body.source)
    assert body.definition is not None
    return body.definition


async def _with_last_run(services: Services, saved: SavedWorkflow) -> dict[str, Any]:
    latest = await workflows.latest_runs(services, [saved.id])
    return record(saved, latest.get(saved.id))


@router.post("/workflows", status_code=201, summary="Save a workflow")
async def create(body: WorkflowCreate, services: ServicesDep) -> dict[str, Any]:
    definition = _definition(body)
    with _in_definition(body.source):
        saved = await workflows.save_workflow(services, definition, body.title)
    return record(saved)


@router.get("/workflows", summary="Saved workflows, newest first, with their last run")
async def list_workflows(services: ServicesDep) -> dict[str, Any]:
    saved = await workflows.list_workflows(services)
    latest = await workflows.latest_runs(services, [w.id for w in saved])
    return {"items": [record(w, latest.get(w.id)) for w in saved]}


@router.get("/workflows/{workflow_id}", summary="A saved workflow, with its last run")
async def get(workflow_id: str, services: ServicesDep) -> dict[str, Any]:
    return await _with_last_run(services, await workflows.get_workflow(services, workflow_id))


@router.put("/workflows/{workflow_id}", summary="Replace a saved workflow")
async def replace(workflow_id: str, body: WorkflowCreate, services: ServicesDep) -> dict[str, Any]:
    definition = _definition(body)
    with _in_definition(body.source):
        saved = await workflows.replace_workflow(services, workflow_id, definition, body.title)
    return await _with_last_run(services, saved)


@router.delete("/workflows/{workflow_id}", status_code=204, summary="Delete a saved workflow")
async def remove(workflow_id: str, services: ServicesDep) -> Response:
    await workflows.archive_workflow(services, workflow_id)
    return Response(status_code=204)
