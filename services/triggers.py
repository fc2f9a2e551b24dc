"""Trigger URLs: `POST /api/v1/hooks/{trigger_id}` with the trigger's token in
`X-Glassbox-Token` starts a run of its saved workflow (`source: webhook`, `trigger_id`). The JSON
body is `payload` in the trigger's per-parameter templates (`query: "{{ payload.search.term }}"`).
The token is shown once and stored hashed. A trigger may also require the caller's signature,
the scheme Glassbox signs its own webhooks with: `X-Glassbox-Timestamp` and
`X-Glassbox-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`.

An upload trigger (`kind: upload`) takes files instead: each file of a multipart call starts one
run (`source: upload`) with the file as its workflow's `type: file` parameter `file_parameter`
(the run's `input` artifact). Every file is checked (size, the parameter's `accept` and
`max_bytes`, the other parameters' templates over `file` and `payload`) before any is stored,
so a refusal starts nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from runner.templating import check_template, render_template
from runner.uploads import matches_accept
from runner.workflow import Workflow, parse_workflow
from services.backends import Services
from services.runs import RunOptions, check_metadata, check_tags, inputs_for, queue_run
from services.uploads import UploadTooLarge, safe_name, store_upload
from services.webhooks import sign
from storage import triggers as stored
from storage.errors import NotFound, TriggerRefused, ValidationFailed
from storage.models import Run, Trigger
from storage.status import RunSource
from storage.workflows import get_workflow

TOKEN_PREFIX = "gbt_"
SIGNATURE_TOLERANCE_S = 300
"""A signed call's timestamp may be this far from now (replays of older calls are refused)."""
MAX_TEMPLATE_CHARS = 2000
MAX_FILES = 20
"""Files one call to an upload trigger may carry (one run each)."""
TriggerKind = Literal["webhook", "upload"]
_PLACEHOLDER_UPLOAD = "upl_" + "0" * 26
"""Stands for a file not stored yet, while the other parameters are checked."""


@dataclass(frozen=True)
class CreatedTrigger:
    trigger: Trigger
    token: str  # shown once
    hmac_secret: str | None  # shown once, when the trigger asks for signed calls


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def create_trigger(
    services: Services,
    workflow_id: str,
    *,
    name: str | None,
    parameters: dict[str, Any],
    signed: bool,
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    kind: TriggerKind = "webhook",
    file_parameter: str | None = None,
) -> CreatedTrigger:
    checked_tags = list(check_tags(tags))
    check_metadata(metadata)
    if kind == "upload" and signed:
        raise ValidationFailed(
            "signed", "an upload trigger is authenticated by its token only (no signature)"
        )
    if kind != "upload" and file_parameter is not None:
        raise ValidationFailed("file_parameter", "only an upload trigger takes files")
    async with services.db.session() as session:
        try:
            saved = await get_workflow(session=session, workflow_id=workflow_id)
        except NotFound:
            raise ValidationFailed("workflow_id", f"no saved workflow {workflow_id!r}") from None
        workflow = parse_workflow(saved.definition)
        if kind == "upload":
            file_parameter = _file_parameter(workflow, file_parameter)
        for parameter, template in parameters.items():
            where = f"parameters.{parameter}"
            if parameter not in workflow.parameters and parameter != "url":
                raise ValidationFailed(where, "unknown parameter")
            if parameter == file_parameter:
                raise ValidationFailed(where, "this parameter takes the uploaded file")
            if not isinstance(template, str):
                raise ValidationFailed(where, "a template (text), e.g. {{ payload.query }}")
            if len(template) > MAX_TEMPLATE_CHARS:
                raise ValidationFailed(where, f"at most {MAX_TEMPLATE_CHARS} characters")
            check_template(template, where)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        hmac_secret = secrets.token_urlsafe(32) if signed else None
        trigger = await stored.create_trigger(
            session=session,
            workflow_id=workflow_id,
            name=name,
            token_hash=_hash(token),
            token_prefix=token[:10],
            parameters=parameters,
            sealed_hmac_secret=services.sealer.seal({"hmac": hmac_secret}) if hmac_secret else None,
            enabled=True,
            tags=checked_tags,
            run_metadata=metadata or {},
            kind=kind,
            file_parameter=file_parameter,
        )
        await session.commit()
    return CreatedTrigger(trigger=trigger, token=token, hmac_secret=hmac_secret)


def _file_parameter(workflow: Workflow, given: str | None) -> str:
    """The `type: file` parameter an upload trigger's files go to: the one given, or the
    workflow's only one."""
    names = sorted(workflow.file_names)
    if given is not None:
        if given not in names:
            raise ValidationFailed(
                "file_parameter",
                f"{given!r} is not a `type: file` parameter of the workflow"
                + (f" (it has: {', '.join(names)})" if names else ""),
            )
        return given
    if not names:
        raise ValidationFailed(
            "kind", "an upload trigger needs a workflow with a `type: file` parameter"
        )
    if len(names) > 1:
        raise ValidationFailed(
            "file_parameter", f"which file parameter takes the upload: one of {', '.join(names)}"
        )
    return names[0]


async def list_triggers(services: Services, workflow_id: str | None = None) -> list[Trigger]:
    async with services.db.session() as session:
        if workflow_id is not None:
            await get_workflow(session=session, workflow_id=workflow_id)
        return await stored.list_triggers(session=session, workflow_id=workflow_id)


async def get_trigger(services: Services, trigger_id: str) -> Trigger:
    async with services.db.session() as session:
        return await stored.get_trigger(session=session, trigger_id=trigger_id)


async def delete_trigger(services: Services, trigger_id: str) -> None:
    async with services.db.session() as session:
        await stored.delete_trigger(session=session, trigger_id=trigger_id)
        await session.commit()


def _check_signature(secret: str, headers: dict[str, str], body: bytes) -> None:
    timestamp = headers.get("x-glassbox-timestamp", "")
    signature = headers.get("x-glassbox-signature", "")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise TriggerRefused("this trigger needs a signed call (X-Glassbox-Timestamp)")
    if abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE_S:
        raise TriggerRefused("the call's X-Glassbox-Timestamp is too old or in the future")
    expected = sign(secret.encode("utf-8"), int(timestamp), body)
    if not hmac.compare_digest(expected, signature):
        raise TriggerRefused("the call's X-Glassbox-Signature does not match")


async def authorized(services: Services, trigger_id: str, token: str | None) -> Trigger:
    """The trigger a call presenting `token` may fire; TriggerRefused otherwise (the same
    answer whether or not the trigger exists)."""
    async with services.db.session() as session:
        try:
            trigger = await stored.get_trigger(session=session, trigger_id=trigger_id)
        except NotFound:
            trigger = None
    presented = _hash(token or "")
    if trigger is None or not hmac.compare_digest(presented, trigger.token_hash):
        raise TriggerRefused()
    if not trigger.enabled:
        raise TriggerRefused("this trigger is disabled")
    return trigger


async def _workflow_of(services: Services, trigger: Trigger) -> Workflow:
    async with services.db.session() as session:
        try:
            saved = await get_workflow(session=session, workflow_id=trigger.workflow_id)
        except NotFound:
            raise TriggerRefused("this trigger's workflow was deleted") from None
    return parse_workflow(saved.definition)


async def _render(trigger: Trigger, scope: dict[str, Any]) -> dict[str, Any]:
    templates: dict[str, Any] = trigger.parameters or {}
    return await asyncio.to_thread(
        lambda: {
            name: render_template(template, scope, f"parameters.{name}")
            for name, template in templates.items()
        }
    )


def _marker(trigger: Trigger) -> Callable[[AsyncSession, Run], Awaitable[None]]:
    async def mark(session: AsyncSession, run: Run) -> None:
        run.trigger_id = trigger.id
        await stored.record_fire(session=session, trigger_id=trigger.id, run_id=run.id)

    return mark


def _options(trigger: Trigger, source: RunSource) -> RunOptions:
    return RunOptions(
        source=source,
        workflow_id=trigger.workflow_id,
        tags=tuple(trigger.tags or ()),
        metadata=trigger.run_metadata or None,
    )


async def fire(
    services: Services, trigger: Trigger, *, headers: dict[str, str], body: bytes
) -> Run:
    """Starts a run for a call to a webhook trigger's URL (`trigger` from `authorized`);
    TriggerRefused without the right signature, ValidationFailed naming the parameter the
    payload does not fit."""
    if trigger.kind == "upload":
        raise ValidationFailed(
            "file", "an upload trigger takes files: multipart/form-data, in parts named `file`"
        )
    if trigger.sealed_hmac_secret:
        _check_signature(services.sealer.open(trigger.sealed_hmac_secret)["hmac"], headers, body)
    try:
        payload = json.loads(body) if body.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValidationFailed("payload", "the body must be JSON") from None
    parameters = await _render(trigger, {"payload": payload})
    workflow = await _workflow_of(services, trigger)
    inputs = inputs_for(services, workflow, parameters)
    options = _options(trigger, RunSource.webhook)
    return await queue_run(services, workflow, inputs, options, within=_marker(trigger))


@dataclass(frozen=True)
class PostedFile:
    """One file of a call to an upload trigger, not stored yet."""

    name: str | None
    content_type: str | None
    size: int
    read: Callable[[int], bytes]


async def fire_upload(
    services: Services, trigger: Trigger, files: list[PostedFile], fields: dict[str, str]
) -> list[Run]:
    """One run per file for a call to an upload trigger (`trigger` from `authorized`), each
    with its file as the trigger's file parameter; `fields` (the form's text parts) are
    `payload` in the parameters' templates, beside `file` (name, content_type, size). Every
    file is checked before any is stored: ValidationFailed names `file` (`file[i]` among
    several) or the parameter; UploadTooLarge for a file over the upload limit."""
    if trigger.kind != "upload" or trigger.file_parameter is None:
        raise ValidationFailed("payload", "this trigger takes a JSON body, not files")
    if not files:
        raise ValidationFailed("file", "required: one or more file parts named `file`")
    if len(files) > MAX_FILES:
        raise ValidationFailed("file", f"at most {MAX_FILES} files in one call")
    workflow = await _workflow_of(services, trigger)
    name = trigger.file_parameter
    spec = workflow.parameters.get(name)
    if spec is None or spec.type != "file":
        raise ValidationFailed("file_parameter", f"the workflow has no file parameter {name!r}")
    limit = services.settings.service.max_upload_bytes
    planned: list[dict[str, Any]] = []
    for i, posted in enumerate(files):
        where = "file" if len(files) == 1 else f"file[{i}]"
        filename = safe_name(posted.name)
        kind = (posted.content_type or "").strip() or "application/octet-stream"
        if posted.size > limit:
            raise UploadTooLarge(limit)
        if spec.max_bytes is not None and posted.size > spec.max_bytes:
            raise ValidationFailed(
                where, f"{filename!r} has {posted.size} bytes; {name} takes {spec.max_bytes}"
            )
        if spec.accept and not matches_accept(spec.accept, filename, kind):
            raise ValidationFailed(
                where,
                f"{filename!r} ({kind}) is not one of the accepted types: "
                + ", ".join(spec.accept),
            )
        scope = {
            "payload": fields,
            "file": {"name": filename, "content_type": kind, "size": posted.size},
        }
        parameters = await _render(trigger, scope)
        inputs_for(services, workflow, {**parameters, name: _PLACEHOLDER_UPLOAD})  # refusals
        planned.append(parameters)
    stored_ids = []
    for posted in files:
        upload = await store_upload(
            services, name=posted.name, content_type=posted.content_type, read=posted.read
        )
        stored_ids.append(upload.id)
    runs = []
    for parameters, upload_id in zip(planned, stored_ids, strict=True):
        inputs = inputs_for(services, workflow, {**parameters, name: upload_id})
        options = _options(trigger, RunSource.upload)
        runs.append(await queue_run(services, workflow, inputs, options, within=_marker(trigger)))
    return runs
