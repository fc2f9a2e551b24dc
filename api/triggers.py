"""Trigger URLs of saved workflows: managed under /api/v1 with an API key (`router`), called at
`POST /api/v1/hooks/{trigger_id}` with the trigger's own token instead (`hooks`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.deps import ServicesDep
from api.records import API_PREFIX, iso, public_record
from api.schemas import Tags
from services import triggers
from services.triggers import CreatedTrigger
from storage.models import Trigger

router = APIRouter(tags=["triggers"])
hooks = APIRouter(prefix=API_PREFIX, tags=["triggers"])


class TriggerCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "from the CRM",
                    "parameters": {"query": "{{ payload.search.term }}"},
                    "signed": False,
                }
            ]
        },
    )

    name: str | None = Field(default=None, max_length=200)
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="A template per parameter over the call's JSON body (`payload`).",
    )
    signed: StrictBool = Field(
        default=False,
        description="Calls must be signed (X-Glassbox-Signature); the secret is shown once.",
    )
    tags: Tags = Field(default_factory=list, description="Tags of the runs it starts.")
    metadata: dict[str, Any] | None = Field(
        default=None, description="Metadata of the runs it starts."
    )


def hook_url(trigger_id: str) -> str:
    return f"{API_PREFIX}/hooks/{trigger_id}"


def record(trigger: Trigger) -> dict[str, Any]:
    return {
        "id": trigger.id,
        "workflow_id": trigger.workflow_id,
        "name": trigger.name,
        "url": hook_url(trigger.id),
        "token_prefix": trigger.token_prefix,
        "parameters": trigger.parameters or {},
        "signed": trigger.sealed_hmac_secret is not None,
        "enabled": trigger.enabled,
        "fire_count": trigger.fire_count,
        "last_fired_at": iso(trigger.last_fired_at),
        "last_run_id": trigger.last_run_id,
        "tags": list(trigger.tags or []),
        "metadata": trigger.run_metadata or {},
        "created_at": iso(trigger.created_at),
    }


def created(made: CreatedTrigger) -> dict[str, Any]:
    answer = record(made.trigger)
    answer["token"] = made.token  # shown once: only its hash is kept
    if made.hmac_secret is not None:
        answer["hmac_secret"] = made.hmac_secret
    return answer


@router.post(
    "/workflows/{workflow_id}/triggers",
    status_code=201,
    summary="A trigger URL for this workflow (its token is shown once)",
)
async def create(workflow_id: str, body: TriggerCreate, services: ServicesDep) -> dict[str, Any]:
    made = await triggers.create_trigger(
        services,
        workflow_id,
        name=body.name,
        parameters=body.parameters,
        signed=body.signed,
        tags=body.tags,
        metadata=body.metadata,
    )
    return created(made)


@router.get("/workflows/{workflow_id}/triggers", summary="This workflow's triggers")
async def list_for_workflow(workflow_id: str, services: ServicesDep) -> dict[str, Any]:
    return {"items": [record(t) for t in await triggers.list_triggers(services, workflow_id)]}


@router.get("/triggers", summary="Every trigger")
async def list_all(services: ServicesDep) -> dict[str, Any]:
    return {"items": [record(t) for t in await triggers.list_triggers(services)]}


@router.get("/triggers/{trigger_id}", summary="A trigger (never its token)")
async def get(trigger_id: str, services: ServicesDep) -> dict[str, Any]:
    return record(await triggers.get_trigger(services, trigger_id))


@router.delete("/triggers/{trigger_id}", status_code=204, summary="Delete a trigger")
async def remove(trigger_id: str, services: ServicesDep) -> Response:
    await triggers.delete_trigger(services, trigger_id)
    return Response(status_code=204)


@hooks.post(
    "/hooks/{trigger_id}",
    status_code=201,
    summary="Start a run of the trigger's workflow (authenticated by X-Glassbox-Token)",
)
async def call(
    trigger_id: str,
    request: Request,
    services: ServicesDep,
    x_glassbox_token: str | None = Header(default=None, max_length=200),
) -> dict[str, Any]:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    run = await triggers.fire(
        services, trigger_id, token=x_glassbox_token, headers=headers, body=body
    )
    return public_record(run, [])
