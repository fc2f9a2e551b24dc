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
from services.workflows import SavedWorkflow
from storage.errors import ValidationFailed

router = APIRouter(tags=["workflows"])


def record(workflow: SavedWorkflow) -> dict[str, Any]:
    return {
        "id": workflow.id,
        "title": workflow.title,
        "definition": workflow.definition,
        "created_at": iso(workflow.created_at),
        "updated_at": iso(workflow.updated_at),
    }


@contextmanager
def _in_definition() -> Iterator[None]:
    """Refusals of the definition name their field within the body's `definition`."""
    try:
        yield
    except ValidationFailed as exc:
        raise ValidationFailed(
            f"definition.{exc.field}" if exc.field else "definition", exc.message
        ) from None


@router.post("/workflows", status_code=201, summary="Save a workflow")
async def create(body: WorkflowCreate, services: ServicesDep) -> dict[str, Any]:
    with _in_definition():
        saved = await workflows.save_workflow(services, body.definition, body.title)
    return record(saved)


@router.get("/workflows", summary="Saved workflows, newest first")
async def list_workflows(services: ServicesDep) -> dict[str, Any]:
    return {"items": [record(w) for w in await workflows.list_workflows(services)]}


@router.get("/workflows/{workflow_id}", summary="A saved workflow")
async def get(workflow_id: str, services: ServicesDep) -> dict[str, Any]:
    return record(await workflows.get_workflow(services, workflow_id))


@router.put("/workflows/{workflow_id}", summary="Replace a saved workflow")
async def replace(workflow_id: str, body: WorkflowCreate, services: ServicesDep) -> dict[str, Any]:
    with _in_definition():
        saved = await workflows.replace_workflow(services, workflow_id, body.definition, body.title)
    return record(saved)


@router.delete("/workflows/{workflow_id}", status_code=204, summary="Delete a saved workflow")
async def remove(workflow_id: str, services: ServicesDep) -> Response:
    await workflows.archive_workflow(services, workflow_id)
    return Response(status_code=204)
