"""Runs: queue, rerun, duplicate, cancel, archive, mark read, delete, list, execute in this
process. Every status change the service layer makes goes through `set_status`."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from runner.context import CardListener, RunnerEnv
from runner.executor import RunExecution
from runner.resources import inputs_of, runner_env
from runner.secrets import SECRET_HEADERS as SECRET_HEADERS  # for the API's masking
from runner.templating import Inputs, TemplateLimits, resolve_inputs
from runner.worker import run_to_end
from runner.workflow import Workflow, parse_workflow, workflow_to_json
from services.backends import Services
from storage import runs as stored
from storage.artifacts import list_artifacts
from storage.errors import InvalidTransition, NotFound, ValidationFailed
from storage.models import Artifact, Run
from storage.notify import CANCEL, QUEUE, publish_status
from storage.queue import flag_cancel
from storage.status import TERMINAL_STATUSES, ArtifactKind, RunSource, RunStatus
from storage.workflows import get_workflow

__all__ = [
    "CardListener",
    "RunOptions",
    "RunPage",
    "cancel_run",
    "delete_run",
    "duplicate_run",
    "generated_code",
    "inputs_for",
    "list_runs",
    "queue_new_run",
    "queue_run",
    "rerun",
    "run_now",
    "runner_env",
    "set_archived",
    "set_read",
    "set_status",
]

WAITING = frozenset({RunStatus.created, RunStatus.queued})


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a run is queued, beside its workflow and inputs: where it comes from, and the
    options a run request may set (`REQUESTED`). Unset title and timeout are the workflow's."""

    source: RunSource
    workflow_id: str | None = None
    parent_run_id: str | None = None
    title: str | None = None
    timeout_s: int | None = None
    webhook_url: str | None = None
    proxy: dict[str, Any] | None = None
    extra_http_headers: dict[str, Any] | None = None
    run_with: str = "agent"

    REQUESTED: ClassVar[tuple[str, ...]] = (
        "title",
        "timeout_s",
        "webhook_url",
        "proxy",
        "extra_http_headers",
        "run_with",
    )

    @classmethod
    def of(cls, run: Run) -> RunOptions:
        """The options `run` was queued with."""
        return cls(
            source=RunSource(run.source),
            workflow_id=run.workflow_id,
            parent_run_id=run.parent_run_id,
            title=run.title,
            timeout_s=run.timeout_s,
            webhook_url=run.webhook_url,
            proxy=run.proxy,
            extra_http_headers=run.extra_http_headers,
            run_with=run.run_with,
        )


@dataclass(frozen=True)
class RunPage:
    items: list[Run]
    next_cursor: str | None
    counts: dict[str, int]
    """Every status, 0 included, over the filters other than the status."""


# --- status --------------------------------------------------------------------------------


async def set_status(
    services: Services,
    *,
    session: AsyncSession,
    run_id: str,
    to: RunStatus,
    reason: str | None = None,
    expect: frozenset[RunStatus] | None = None,
) -> Run:
    """Moves the run to `to` (checked by `storage.runs.transition`), commits the session with
    whatever else it holds, then announces the change to live views in any process."""
    run = await stored.transition(
        session=session,
        run_id=run_id,
        to=to,
        reason=reason,
        expect=set(expect) if expect is not None else None,
    )
    await session.commit()
    await publish_status(services.notifier, run_id, run.status)
    return run


# --- queueing ------------------------------------------------------------------------------


def inputs_for(services: Services, workflow: Workflow, parameters: dict[str, Any]) -> Inputs:
    """The run's parameters typed, defaulted and checked, its templates rendered once."""
    return resolve_inputs(
        workflow,
        parameters,
        allowed_schemes=services.runner.url_schemes,
        limits=TemplateLimits.of(services.runner),
    )


async def queue_run(
    services: Services,
    workflow: Workflow,
    inputs: Inputs,
    options: RunOptions,
    *,
    wake_workers: bool = True,
    within: Callable[[AsyncSession, Run], Awaitable[None]] | None = None,
) -> Run:
    """Stores the run as queued. Secret values travel sealed, for a worker in any process.
    `wake_workers=False` for a run this process executes itself (`run_now`). `within` runs in
    the transaction that stores the run (a schedule's compare-and-set): if it raises, no run."""
    secrets = {
        name: str(inputs.values[name])
        for name in inputs.secret_names
        if inputs.values.get(name) is not None
    }
    async with services.db.session() as session:
        run = await stored.create_run(
            session=session,
            title=options.title or workflow.title,
            definition={**workflow_to_json(workflow), "url": inputs.url},
            parameters=inputs.masked,
            source=options.source,
            timeout_s=options.timeout_s or workflow.timeout_s,
            workflow_id=options.workflow_id,
            parent_run_id=options.parent_run_id,
            webhook_url=options.webhook_url,
            proxy=options.proxy,
            extra_http_headers=options.extra_http_headers,
            run_with=options.run_with,
            sealed_secrets=services.sealer.seal(secrets),
        )
        if within is not None:
            await within(session, run)
        run = await set_status(services, session=session, run_id=run.id, to=RunStatus.queued)
    if wake_workers:
        await services.notifier.publish(QUEUE, run.id)
    return run


async def queue_new_run(
    services: Services,
    *,
    workflow: dict[str, Any] | None,
    parameters: dict[str, Any],
    options: RunOptions,
) -> Run:
    """Queues a run of an inline workflow, or of the saved one `options.workflow_id` names.
    Refusals name the field of a run request (`workflow…`, `workflow_id`, `parameters…`,
    `webhook_url`)."""
    if (workflow is None) == (options.workflow_id is None):
        raise ValidationFailed("workflow", "give exactly one of workflow or workflow_id")
    definition = workflow
    if options.workflow_id is not None:
        try:
            async with services.db.session() as session:
                saved = await get_workflow(session=session, workflow_id=options.workflow_id)
        except NotFound:
            raise ValidationFailed(
                "workflow_id", f"no saved workflow {options.workflow_id!r}"
            ) from None
        definition = saved.definition
    assert definition is not None
    try:
        # Off the event loop: templates render within a budget, but a budget of seconds.
        parsed = await asyncio.to_thread(parse_workflow, definition)
        inputs = await asyncio.to_thread(inputs_for, services, parsed, parameters)
    except ValidationFailed as exc:
        raise _within(exc, "workflow") from None
    _check_url(options.webhook_url, "webhook_url")
    return await queue_run(services, parsed, inputs, options)


def _within(exc: ValidationFailed, prefix: str) -> ValidationFailed:
    field = (
        f"{prefix}.{exc.field}"
        if exc.field and not exc.field.startswith("parameters")
        else exc.field
    )
    return ValidationFailed(field or prefix, exc.message)


def _check_url(value: str | None, field: str) -> None:
    if value is None:
        return
    if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise ValidationFailed(field, "must be an http(s) URL")


async def rerun(services: Services, run_id: str) -> Run:
    """A new run with the same workflow, inputs and options, `parent_run_id` set."""
    return await _again(services, run_id, source=RunSource.rerun)


async def duplicate_run(
    services: Services, run_id: str, *, parameters: dict[str, Any], title: str | None = None
) -> Run:
    """A new run like `run_id` with some parameters changed (the others kept)."""
    return await _again(services, run_id, source=RunSource.api, changes=parameters, title=title)


async def _again(
    services: Services,
    run_id: str,
    *,
    source: RunSource,
    changes: dict[str, Any] | None = None,
    title: str | None = None,
) -> Run:
    async with services.db.session() as session:
        run = await stored.get_run(session=session, run_id=run_id)
    workflow, inputs = await asyncio.to_thread(inputs_of, services, run)
    values = dict(inputs.values)
    if changes:
        values.update(changes)
    elif inputs.url:
        values["url"] = inputs.url
    inputs = await asyncio.to_thread(inputs_for, services, workflow, values)
    options = replace(
        RunOptions.of(run), source=source, parent_run_id=run.id, title=title or run.title
    )
    return await queue_run(services, workflow, inputs, options)


# --- executing here ------------------------------------------------------------------------


async def run_now(
    services: Services, env: RunnerEnv, run: Run, workflow: Workflow, inputs: Inputs
) -> RunStatus:
    """Executes a queued run in this process, in `env` (from `runner_env`), to its end."""
    async with services.db.session() as session:
        running = await set_status(services, session=session, run_id=run.id, to=RunStatus.running)
    return await run_to_end(RunExecution(env, running, workflow, inputs), services.notifier)


# --- changing a run ------------------------------------------------------------------------


async def cancel_run(services: Services, run_id: str) -> Run:
    """A run that has not started ends `canceled` at once; a running one is flagged, and its
    worker stops it (keeping what it recorded). InvalidTransition once it has ended."""
    async with services.db.session() as session:
        try:
            # Only from a waiting status: a worker may claim the run at this very moment.
            return await set_status(
                services,
                session=session,
                run_id=run_id,
                to=RunStatus.canceled,
                reason="canceled by a user",
                expect=WAITING,
            )
        except InvalidTransition:
            pass
        run = await flag_cancel(session=session, run_id=run_id)
        await session.commit()
    await services.notifier.publish(CANCEL, run_id)
    return run


async def set_archived(services: Services, run_id: str, archived: bool) -> Run:
    async with services.db.session() as session:
        run = await stored.set_archived(session=session, run_id=run_id, archived=archived)
        await session.commit()
    return run


async def set_read(services: Services, run_id: str, read: bool) -> Run:
    async with services.db.session() as session:
        run = await stored.set_read(session=session, run_id=run_id, read=read)
        await session.commit()
    return run


async def delete_run(services: Services, run_id: str) -> None:
    """Deletes a finished run, its rows and its artifacts' objects."""
    async with services.db.session() as session:
        run = await stored.get_run(session=session, run_id=run_id)
        if RunStatus(run.status) not in TERMINAL_STATUSES:
            raise InvalidTransition(run_id, run.status, "deleted (cancel it first)")
        await asyncio.to_thread(services.store.delete_prefix, f"runs/{run_id}/")
        await stored.delete_run(session=session, run_id=run_id)
        await session.commit()


# --- reading -------------------------------------------------------------------------------


async def list_runs(
    services: Services,
    *,
    status: str | None = None,
    workflow_id: str | None = None,
    source: str | None = None,
    q: str | None = None,
    archived: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> RunPage:
    """Newest first, `limit` at a time; `status` one status or several, comma-separated;
    `q` text in the title or a run id; `cursor` the previous page's `next_cursor`."""
    if source and source not in RunSource.__members__:
        raise ValidationFailed("source", f"unknown source {source!r}", location="query")
    statuses: list[str] | None = None
    if status:
        statuses = [s.strip() for s in status.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in RunStatus.__members__]
        if unknown:
            raise ValidationFailed("status", f"unknown status {unknown[0]!r}", location="query")
    before = _decode_cursor(cursor) if cursor else None
    async with services.db.session() as session:
        rows = await stored.list_runs(
            session=session,
            limit=limit + 1,
            statuses=statuses,
            workflow_id=workflow_id,
            source=source,
            text=q,
            archived=archived,
            before=before,
        )
        found = await stored.count_by_status(
            session=session, workflow_id=workflow_id, source=source, text=q, archived=archived
        )
    counts = {s.value: 0 for s in RunStatus}
    counts.update(found)
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return RunPage(rows[:limit], next_cursor, counts)


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


async def generated_code(services: Services, run_id: str) -> str:
    """The Python script generated for the run (its newest `code` artifact)."""
    async with services.db.session() as session:
        await stored.get_run(session=session, run_id=run_id)
        found: list[Artifact] = [
            a
            for a in await list_artifacts(session=session, run_id=run_id)
            if a.kind == ArtifactKind.code
        ]
    if not found:
        raise NotFound("code of run", run_id)
    data = await asyncio.to_thread(lambda: b"".join(services.store.open(found[-1].key)))
    return data.decode()
