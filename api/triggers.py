"""Trigger URLs of saved workflows: managed under /api/v1 with an API key (`router`), called at
`POST /api/v1/hooks/{trigger_id}` with the trigger's own token instead (`hooks`): a JSON body for
a webhook trigger (one run), a multipart form of files for an upload trigger (one run per
file). The token is checked before the body is read."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.datastructures import UploadFile

from api.deps import ServicesDep
from api.records import API_PREFIX, iso, public_record
from api.schemas import Tags
from api.uploads import FORM_OVERHEAD, BodyTooLarge, limited, too_large
from services import triggers
from services.triggers import MAX_FILES, CreatedTrigger, PostedFile
from services.uploads import UploadTooLarge
from storage.errors import ValidationFailed
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
    kind: Literal["webhook", "upload"] = Field(
        default="webhook",
        description="`webhook`: a call's JSON body starts one run; `upload`: each file of a "
        "multipart call starts one run (`source: upload`).",
    )
    file_parameter: str | None = Field(
        default=None,
        max_length=100,
        description="An upload trigger's `type: file` parameter that takes each file "
        "(default: the workflow's only one).",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="A template per parameter over the call's JSON body (`payload`); for an "
        "upload trigger, over the form's text fields (`payload`) and the file "
        "(`file.name`, `file.content_type`, `file.size`).",
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
        "kind": trigger.kind,
        "file_parameter": trigger.file_parameter,
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
        kind=body.kind,
        file_parameter=body.file_parameter,
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
    description="A webhook trigger takes a JSON body (its `payload`) and answers the run's "
    "record. An upload trigger takes a multipart form of one or more parts named `file` and "
    'answers `{"items": [run…]}`: one run per file (`source: upload`).',
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "maxItems": MAX_FILES,
                            }
                        },
                    }
                },
            }
        }
    },
)
async def call(
    trigger_id: str,
    request: Request,
    services: ServicesDep,
    x_glassbox_token: str | None = Header(default=None, max_length=200),
) -> Any:
    trigger = await triggers.authorized(services, trigger_id, x_glassbox_token)
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    if trigger.kind == "upload":
        if not multipart:
            raise ValidationFailed(
                "file", "an upload trigger takes files: multipart/form-data, in parts named `file`"
            )
        return await _call_upload(request, services, trigger)
    if multipart:  # not read: the request guard's body limit is for JSON only
        raise ValidationFailed("payload", "the body must be JSON")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    run = await triggers.fire(services, trigger, headers=headers, body=body)
    return public_record(run, [])


async def _call_upload(request: Request, services: ServicesDep, trigger: Trigger) -> Any:
    """The files of a call to an upload trigger: one run each, or a refusal that starts none."""
    limit = services.settings.service.max_upload_bytes
    total = MAX_FILES * (limit + FORM_OVERHEAD)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > total:
        return too_large(limit)
    try:
        form = await limited(request, total).form(max_files=MAX_FILES, max_fields=20)
    except BodyTooLarge:
        return too_large(limit)
    except Exception as exc:  # a malformed form, or too many parts: starlette's own errors
        raise ValidationFailed("file", f"not a valid multipart form: {exc}") from None
    try:
        files: list[PostedFile] = []
        fields: dict[str, str] = {}
        for key, part in form.multi_items():
            if isinstance(part, UploadFile):
                if key != "file":
                    raise ValidationFailed(key[:64], "files go in parts named `file`")
                part.file.seek(0, 2)
                size = part.file.tell()
                part.file.seek(0)
                files.append(PostedFile(part.filename, part.content_type, size, part.file.read))
            else:
                fields[key] = part
        try:
            runs = await triggers.fire_upload(services, trigger, files, fields)
        except UploadTooLarge:
            return too_large(limit)
    finally:
        await form.close()
    return JSONResponse(status_code=201, content={"items": [public_record(r, []) for r in runs]})
