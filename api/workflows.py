"""/api/v1/workflows: saved workflows with their parameter defaults."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import select

from api.deps import ServicesDep, SessionDep
from api.records import iso
from api.schemas import WorkflowCreate
from runner.workflow import parse_workflow, workflow_to_json
from storage.errors import NotFound, ValidationFailed
from storage.ids import new_id
from storage.models import Workflow, utcnow

router = APIRouter(tags=["workflows"])


def record(workflow: Workflow) -> dict[str, Any]:
    return {
        "id": workflow.id,
        "title": workflow.title,
        "definition": workflow.definition,
        "created_at": iso(workflow.created_at),
        "updated_at": iso(workflow.updated_at),
    }


def _checked(body: WorkflowCreate, schemes: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    try:
        workflow = parse_workflow(body.definition)
        _check_static_urls(workflow, schemes)
    except ValidationFailed as exc:
        raise ValidationFailed(
            f"definition.{exc.field}" if exc.field else "definition", exc.message
        ) from None
    for name, parameter in workflow.parameters.items():
        if parameter.secret and parameter.default is not None:
            raise ValidationFailed(
                f"definition.parameters.{name}.default",
                "a saved workflow cannot keep a secret's value; give it with each run",
            )
    # Stored as normalized JSON; secret defaults are masked, never stored in clear.
    return body.title or workflow.title, workflow_to_json(workflow)


def _check_static_urls(workflow: Any, schemes: tuple[str, ...]) -> None:
    """URLs without templates are checked now; the others when a run renders them."""
    from urllib.parse import urlsplit

    def check(url: str | None, field: str) -> None:
        if url and "{{" not in url and urlsplit(url).scheme.lower() not in schemes:
            raise ValidationFailed(field, f"URL scheme {urlsplit(url).scheme!r} is not allowed")

    check(workflow.url, "url")
    for i, block in enumerate(workflow.blocks):
        for j, step in enumerate(getattr(block, "steps", [])):
            if step.verb == "goto":
                check(step.args.url, f"blocks[{i}].steps[{j}].goto.url")


async def _get(session: Any, workflow_id: str) -> Workflow:
    workflow = await session.get(Workflow, workflow_id)
    if workflow is None or workflow.archived:
        raise NotFound("workflow", workflow_id)
    return workflow


@router.post("/workflows", status_code=201, summary="Save a workflow")
async def create(
    body: WorkflowCreate, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    title, definition = _checked(body, services.runner.url_schemes)
    workflow = Workflow(id=new_id("wf"), title=title, definition=definition)
    session.add(workflow)
    await session.commit()
    return record(workflow)


@router.get("/workflows", summary="Saved workflows, newest first")
async def list_workflows(session: SessionDep) -> dict[str, Any]:
    rows = await session.execute(
        select(Workflow).where(Workflow.archived.is_(False)).order_by(Workflow.created_at.desc())
    )
    return {"items": [record(w) for w in rows.scalars()]}


@router.get("/workflows/{workflow_id}", summary="A saved workflow")
async def get(workflow_id: str, session: SessionDep) -> dict[str, Any]:
    return record(await _get(session, workflow_id))


@router.put("/workflows/{workflow_id}", summary="Replace a saved workflow")
async def replace(
    workflow_id: str, body: WorkflowCreate, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    workflow = await _get(session, workflow_id)
    workflow.title, workflow.definition = _checked(body, services.runner.url_schemes)
    workflow.updated_at = utcnow()
    await session.commit()
    return record(workflow)


@router.delete("/workflows/{workflow_id}", status_code=204, summary="Delete a saved workflow")
async def remove(workflow_id: str, session: SessionDep) -> Response:
    workflow = await _get(session, workflow_id)
    # Runs keep their own copy of the definition; the saved workflow is only hidden.
    workflow.archived = True
    await session.commit()
    return Response(status_code=204)
