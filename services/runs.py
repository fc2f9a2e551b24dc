"""Runs: queue, rerun, duplicate, cancel, archive, mark read, delete, list, execute in this
process. Every status change the service layer makes goes through `set_status`."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from runner.cache import cache_key_of
from runner.context import CardListener, RunnerEnv
from runner.executor import RunExecution
from runner.resources import runner_env, sealed_inputs
from runner.secrets import MASK, SealedInputs
from runner.secrets import SECRET_HEADERS as SECRET_HEADERS  # for the API's masking
from runner.templating import Inputs, TemplateLimits, resolve_inputs
from runner.worker import run_to_end
from runner.workflow import Workflow, parse_workflow, workflow_to_json
from services.backends import Services
from services.uploads import check_file_inputs, copy_inputs
from services.webhooks import check_target
from storage import runs as stored
from storage.artifacts import list_artifacts
from storage.errors import InvalidTransition, NotFound, RunNotFinished, StateGone, ValidationFailed
from storage.models import Artifact, Run, utcnow
from storage.notify import CANCEL, QUEUE, publish_status
from storage.queue import flag_cancel, runs_holding
from storage.status import TERMINAL_STATUSES, ArtifactKind, RunSource, RunStatus
from storage.workflows import get_workflow

__all__ = [
    "CardListener",
    "RunOptions",
    "RunPage",
    "cancel_run",
    "continue_run",
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
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] | None = None
    replay: dict[str, Any] | None = None  # a rerun from a block, a continuation (runner.replay)

    REQUESTED: ClassVar[tuple[str, ...]] = (
        "title",
        "timeout_s",
        "webhook_url",
        "proxy",
        "extra_http_headers",
        "run_with",
        "tags",
        "metadata",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", check_tags(self.tags))
        check_metadata(self.metadata)

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
            tags=tuple(run.tags or ()),
            metadata=run.run_metadata or None,
        )


TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/=-]{0,63}")
MAX_TAGS = 20
MAX_METADATA_BYTES = 8192
MAX_METADATA_DEPTH = 5


def check_tags(tags: Any, field: str = "tags") -> tuple[str, ...]:
    """Tags as given, deduplicated in order; refusals name the tag."""
    if tags is None:
        return ()
    if isinstance(tags, str) or not isinstance(tags, list | tuple):
        raise ValidationFailed(field, "a list of tags")
    if len(tags) > MAX_TAGS:
        raise ValidationFailed(field, f"at most {MAX_TAGS} tags")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            raise ValidationFailed(
                f"{field}[{i}]",
                "a tag is 1 to 64 letters, digits and _ . : / = - (starting with a letter or "
                "digit)",
            )
    return tuple(dict.fromkeys(tags))


def check_metadata(metadata: Any, field: str = "metadata") -> None:
    """A small JSON object: at most MAX_METADATA_BYTES serialized, MAX_METADATA_DEPTH deep."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise ValidationFailed(field, "a JSON object")

    def depth(value: Any) -> int:
        if isinstance(value, dict):
            return 1 + max((depth(v) for v in value.values()), default=0)
        if isinstance(value, list):
            return 1 + max((depth(v) for v in value), default=0)
        return 0

    if depth(metadata) > MAX_METADATA_DEPTH:
        raise ValidationFailed(field, f"at most {MAX_METADATA_DEPTH} levels deep")
    try:
        size = len(json.dumps(metadata, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError):
        raise ValidationFailed(field, "plain JSON values only") from None
    if size > MAX_METADATA_BYTES:
        raise ValidationFailed(field, f"at most {MAX_METADATA_BYTES} bytes as JSON")


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
        upload_dir=services.runner.upload_dir,
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
    """Stores the run as queued. Secret values — parameters, secret headers, the proxy's
    password — travel sealed, for a worker in any process, and are dropped when the run ends;
    the run row keeps them masked. `wake_workers=False` for a run this process executes itself
    (`run_now`): `inputs` then carries the options in clear. `within` runs in the transaction
    that stores the run (a schedule's compare-and-set): if it raises, there is no run."""
    headers, proxy, secrets = SealedInputs.split_options(options.extra_http_headers, options.proxy)
    secrets.parameters = {
        name: str(inputs.values[name])
        for name in inputs.secret_names
        if inputs.values.get(name) is not None
    }
    inputs.extra_http_headers, inputs.proxy = options.extra_http_headers, options.proxy
    uploads = await check_file_inputs(services, workflow, inputs)
    key = await asyncio.to_thread(concurrency_key_of, workflow, inputs)  # a template
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
            proxy=proxy,
            extra_http_headers=headers,
            run_with=options.run_with,
            sealed_secrets=services.sealer.seal(secrets.to_json()),
            tags=list(options.tags),
            metadata=options.metadata,
        )
        run.replay = options.replay
        if within is not None:  # first: a run that loses its race copies nothing
            await within(session, run)
        superseded: list[str] = []
        if key is not None:
            run.concurrency_key = key
            others = await runs_holding(session=session, key=key, besides=run.id)
            if others and workflow.concurrency_policy == "skip":
                # Recorded, not queued: whoever started it sees why in its record.
                return await set_status(
                    services,
                    session=session,
                    run_id=run.id,
                    to=RunStatus.canceled,
                    reason=f"skipped: run {others[0].id} holds concurrency key {key!r}",
                )
            if others and workflow.concurrency_policy == "cancel_previous":
                superseded = await _supersede(session, others, run.id, key)
        await copy_inputs(services, session, run.id, uploads)
        run = await set_status(services, session=session, run_id=run.id, to=RunStatus.queued)
    for other in superseded:
        await publish_status(services.notifier, other, RunStatus.canceled)
        await services.notifier.publish(CANCEL, other)
    if wake_workers:
        await services.notifier.publish(QUEUE, run.id)
    return run


def concurrency_key_of(workflow: Workflow, inputs: Inputs) -> str | None:
    """The workflow's `concurrency_key` rendered over the run's parameters (None when the
    workflow has none or it renders empty)."""
    if workflow.concurrency_key is None:
        return None
    key = inputs.render(workflow.concurrency_key, "concurrency_key").strip()
    if len(key) > MAX_CONCURRENCY_KEY:
        raise ValidationFailed(
            "concurrency_key", f"renders to {len(key)} characters (at most {MAX_CONCURRENCY_KEY})"
        )
    return key or None


MAX_CONCURRENCY_KEY = 200


async def _supersede(session: AsyncSession, others: list[Run], run_id: str, key: str) -> list[str]:
    """`cancel_previous`: the queued runs of the key end canceled, the running ones are
    flagged for their worker to cancel. Returns the runs whose worker must hear it."""
    reason = f"canceled: superseded by run {run_id} (concurrency key {key!r})"
    flagged: list[str] = []
    for other in others:
        try:
            await stored.transition(
                session=session,
                run_id=other.id,
                to=RunStatus.canceled,
                reason=reason,
                expect=set(WAITING),
            )
        except InvalidTransition:
            try:
                await flag_cancel(session=session, run_id=other.id)
            except InvalidTransition:
                continue  # it ended meanwhile
            other.failure_reason = other.failure_reason or reason
        flagged.append(other.id)
    return flagged


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
        await asyncio.to_thread(concurrency_key_of, parsed, inputs)
        if options.workflow_id is not None:
            await asyncio.to_thread(cache_key_of, parsed, inputs)
    except ValidationFailed as exc:
        raise _within(exc, "workflow") from None
    if options.webhook_url is not None:
        check_target(
            options.webhook_url, deny_private=services.settings.webhooks.webhook_deny_private
        )
    return await queue_run(services, parsed, inputs, options)


def _within(exc: ValidationFailed, prefix: str) -> ValidationFailed:
    field = (
        f"{prefix}.{exc.field}"
        if exc.field and not exc.field.startswith("parameters")
        else exc.field
    )
    return ValidationFailed(field or prefix, exc.message)


async def rerun(
    services: Services,
    run_id: str,
    *,
    parameters: dict[str, Any] | None = None,
    extra_http_headers: dict[str, str] | None = None,
    proxy_password: str | None = None,
    from_block: str | None = None,
) -> Run:
    """A new run with the same workflow, inputs and options, `parent_run_id` set. Secret
    values are not kept once a run has ended: a rerun of a finished run with secrets must be
    given them again (`parameters`, the secret `extra_http_headers`, `proxy_password`), else
    ValidationFailed names the first missing one and lists them all. With `from_block` (a
    block's label) the blocks before it replay the run's own recorded actions."""
    return await _again(
        services,
        run_id,
        source=RunSource.rerun,
        given=parameters or {},
        headers=extra_http_headers or {},
        proxy_password=proxy_password,
        from_block=from_block,
    )


async def duplicate_run(
    services: Services,
    run_id: str,
    *,
    parameters: dict[str, Any],
    title: str | None = None,
    extra_http_headers: dict[str, str] | None = None,
    proxy_password: str | None = None,
) -> Run:
    """A new run like `run_id` with some parameters changed (the others kept); secrets as
    for `rerun`."""
    return await _again(
        services,
        run_id,
        source=RunSource.api,
        changes=parameters,
        title=title,
        headers=extra_http_headers or {},
        proxy_password=proxy_password,
    )


async def _again(
    services: Services,
    run_id: str,
    *,
    source: RunSource,
    changes: dict[str, Any] | None = None,
    given: dict[str, Any] | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    proxy_password: str | None = None,
    from_block: str | None = None,
) -> Run:
    async with services.db.session() as session:
        run = await stored.get_run(session=session, run_id=run_id)
    workflow = await asyncio.to_thread(parse_workflow, run.definition)
    replay = None
    if from_block is not None:
        labels = [block.label for block in workflow.blocks]
        if from_block not in labels:
            raise ValidationFailed(
                "from_block", f"not a block of this run (its blocks: {', '.join(labels)})"
            )
        replay = {"from_run_id": run.id, "from_block": from_block}
    sealed = sealed_inputs(services, run)
    values = {k: v for k, v in (run.parameters or {}).items() if k not in workflow.secret_names}
    values.update(sealed.parameters)
    values.update(given or {})
    if run.definition.get("url"):
        values.setdefault("url", run.definition["url"])
    values.update(changes or {})
    extra_http_headers, proxy = sealed.restore_options(run.extra_http_headers, run.proxy)
    unknown = sorted(set(headers or {}) - set(extra_http_headers or {}))
    if unknown:
        raise ValidationFailed(
            f"extra_http_headers.{unknown[0]}", "not a header of this run (give only its secrets)"
        )
    if extra_http_headers is not None:
        extra_http_headers = {**extra_http_headers, **(headers or {})}
    if proxy is not None and proxy_password is not None:
        proxy = {**proxy, "password": proxy_password}
    _require_secrets(workflow, run, values, extra_http_headers, proxy)
    inputs = await asyncio.to_thread(inputs_for, services, workflow, values)
    options = replace(
        RunOptions.of(run),
        source=source,
        parent_run_id=run.id,
        title=title or run.title,
        extra_http_headers=extra_http_headers,
        proxy=proxy,
        replay=replay,
    )
    return await queue_run(services, workflow, inputs, options)


async def continue_run(
    services: Services,
    run_id: str,
    *,
    workflow: dict[str, Any] | None = None,
    blocks: list[Any] | None = None,
    goal: str | None = None,
    parameters: dict[str, Any] | None = None,
    title: str | None = None,
) -> Run:
    """A new run that starts where `run_id` ended: in its browser state (cookies, local
    storage) on its final page, running `workflow`, or `blocks`, or a `goal`. The state is
    handed over sealed; the parent keeps it until GLASSBOX_CONTINUE_TTL_S after its end."""
    given = [
        name
        for name, v in (("workflow", workflow), ("blocks", blocks), ("goal", goal))
        if v is not None
    ]
    if len(given) != 1:
        raise ValidationFailed("workflow", "give exactly one of workflow, blocks or goal")
    async with services.db.session() as session:
        run = await stored.get_run(session=session, run_id=run_id)
    if RunStatus(run.status) not in TERMINAL_STATUSES:
        raise RunNotFinished(run.id, run.status)
    ttl = services.runner.continue_ttl_s
    if not run.sealed_state:
        raise StateGone(run.id, "it kept none (no page was open, or it was dropped)")
    if run.finished_at is not None and (utcnow() - run.finished_at).total_seconds() > ttl:
        raise StateGone(run.id, f"it is kept {ttl} s after a run ends (GLASSBOX_CONTINUE_TTL_S)")
    if workflow is not None:
        definition: dict[str, Any] = dict(workflow)
        prefix = "workflow"
    else:
        definition = {"title": title or f"Continue: {run.title}"}
        if run.definition.get("url"):
            definition["url"] = run.definition["url"]
        definition.update({"blocks": blocks} if blocks else {"goal": goal})
        prefix = ""
    try:
        parsed = await asyncio.to_thread(parse_workflow, definition)
        inputs = await asyncio.to_thread(inputs_for, services, parsed, parameters or {})
    except ValidationFailed as exc:
        raise (_within(exc, prefix) if prefix else exc) from None
    options = RunOptions(
        source=RunSource.api,
        parent_run_id=run.id,
        title=title,
        replay={"continue_from": run.id},
    )
    state = run.sealed_state

    async def hand_over(session: AsyncSession, new: Run) -> None:
        new.sealed_state = state

    return await queue_run(services, parsed, inputs, options, within=hand_over)


def _require_secrets(
    workflow: Workflow,
    run: Run,
    values: dict[str, Any],
    headers: dict[str, Any] | None,
    proxy: dict[str, Any] | None,
) -> None:
    """Refuses to start again without the secrets the run had: they are not kept once a
    run has ended (a masked stored default is no value either)."""
    missing = [
        f"parameters.{name}"
        for name in sorted(workflow.secret_names)
        if (run.parameters or {}).get(name) is not None and values.get(name) in (None, MASK)
    ]
    missing += [f"extra_http_headers.{k}" for k, v in (headers or {}).items() if v == MASK]
    if (proxy or {}).get("password") == MASK:
        missing.append("proxy_password")
    if missing:
        raise ValidationFailed(
            missing[0],
            "secret values are not kept after a run ends; give them again: " + ", ".join(missing),
        )


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
    where: stored.RunFilter | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> RunPage:
    """Newest first, `limit` at a time; `status` one status or several, comma-separated;
    `where` the other filters; `cursor` the previous page's `next_cursor`."""
    where = where or stored.RunFilter()
    if where.source and where.source not in RunSource.__members__:
        raise ValidationFailed("source", f"unknown source {where.source!r}", location="query")
    statuses: list[str] | None = None
    if status:
        statuses = [s.strip() for s in status.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in RunStatus.__members__]
        if unknown:
            raise ValidationFailed("status", f"unknown status {unknown[0]!r}", location="query")
    before = _decode_cursor(cursor) if cursor else None
    async with services.db.session() as session:
        rows = await stored.list_runs(
            session=session, limit=limit + 1, statuses=statuses, where=where, before=before
        )
        found = await stored.count_by_status(session=session, where=where)
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
