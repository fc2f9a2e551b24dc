"""Trigger URLs: `POST /api/v1/hooks/{trigger_id}` with the trigger's token in
`X-Glassbox-Token` starts a run of its saved workflow (`source: webhook`, `trigger_id`). The JSON
body is `payload` in the trigger's per-parameter templates (`query: "{{ payload.search.term }}"`).
The token is shown once and stored hashed. A trigger may also require the caller's signature,
the scheme Glassbox signs its own webhooks with: `X-Glassbox-Timestamp` and
`X-Glassbox-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runner.templating import check_template, render_template
from runner.workflow import parse_workflow
from services.backends import Services
from services.runs import RunOptions, check_metadata, check_tags, inputs_for, queue_run
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
) -> CreatedTrigger:
    checked_tags = list(check_tags(tags))
    check_metadata(metadata)
    async with services.db.session() as session:
        try:
            saved = await get_workflow(session=session, workflow_id=workflow_id)
        except NotFound:
            raise ValidationFailed("workflow_id", f"no saved workflow {workflow_id!r}") from None
        workflow = parse_workflow(saved.definition)
        for parameter, template in parameters.items():
            where = f"parameters.{parameter}"
            if parameter not in workflow.parameters and parameter != "url":
                raise ValidationFailed(where, "unknown parameter")
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
        )
        await session.commit()
    return CreatedTrigger(trigger=trigger, token=token, hmac_secret=hmac_secret)


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


async def fire(
    services: Services, trigger_id: str, *, token: str | None, headers: dict[str, str], body: bytes
) -> Run:
    """Starts a run for a call to the trigger's URL; TriggerRefused without the right token
    (or signature), ValidationFailed naming the parameter the payload does not fit."""
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
    if trigger.sealed_hmac_secret:
        _check_signature(services.sealer.open(trigger.sealed_hmac_secret)["hmac"], headers, body)
    try:
        payload = json.loads(body) if body.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValidationFailed("payload", "the body must be JSON") from None
    scope = {"payload": payload}
    templates: dict[str, Any] = trigger.parameters or {}
    parameters = await asyncio.to_thread(
        lambda: {
            name: render_template(template, scope, f"parameters.{name}")
            for name, template in templates.items()
        }
    )
    async with services.db.session() as session:
        try:
            saved = await get_workflow(session=session, workflow_id=trigger.workflow_id)
        except NotFound:
            raise TriggerRefused("this trigger's workflow was deleted") from None
    workflow = parse_workflow(saved.definition)
    inputs = inputs_for(services, workflow, parameters)

    async def mark(session: AsyncSession, run: Run) -> None:
        run.trigger_id = trigger.id
        await stored.record_fire(session=session, trigger_id=trigger.id, run_id=run.id)

    options = RunOptions(
        source=RunSource.webhook,
        workflow_id=trigger.workflow_id,
        tags=tuple(trigger.tags or ()),
        metadata=trigger.run_metadata or None,
    )
    return await queue_run(services, workflow, inputs, options, within=mark)
