"""Creating a run from a workflow and running it in this process (the CLI's path; workers
claim runs the same way)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from runner.browser import launch
from runner.executor import CardListener, FrameListener, RunnerEnv, execute_run
from runner.settings import RunnerSettings
from runner.templating import Inputs, resolve_inputs
from runner.workflow import Workflow, parse_workflow, workflow_to_json
from storage import migrate
from storage.db import Database
from storage.errors import ConfigurationError
from storage.models import Run
from storage.objects import ObjectStore, open_store
from storage.runs import create_run, transition
from storage.sealing import Sealer, load_key
from storage.settings import StorageSettings
from storage.status import RunSource, RunStatus


@dataclass
class Services:
    storage: StorageSettings
    runner: RunnerSettings
    db: Database
    store: ObjectStore
    sealer: Sealer

    @property
    def spool_dir(self) -> Path:
        return self.storage.data_dir / "spool"


def open_services(
    storage: StorageSettings | None = None,
    runner: RunnerSettings | None = None,
    *,
    secret_key: str | None = None,
) -> Services:
    storage = storage or StorageSettings()
    runner = runner or RunnerSettings()
    if runner.auto_migrate:
        migrate.upgrade(storage.resolved_database_url)
    try:
        store = open_store(storage)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return Services(
        storage=storage,
        runner=runner,
        db=Database(storage.resolved_database_url),
        store=store,
        sealer=Sealer(load_key(secret_key, storage.data_dir)),
    )


async def queue_run(
    services: Services,
    workflow: Workflow,
    inputs: Inputs,
    *,
    source: RunSource,
    title: str | None = None,
    timeout_s: int | None = None,
    workflow_id: str | None = None,
    parent_run_id: str | None = None,
    webhook_url: str | None = None,
    proxy: dict[str, Any] | None = None,
    extra_http_headers: dict[str, Any] | None = None,
    run_with: str = "agent",
) -> Run:
    """Stores the run as queued. Secret values travel sealed, for a worker in any process."""
    secrets = {
        name: str(inputs.values[name])
        for name in inputs.secret_names
        if inputs.values.get(name) is not None
    }
    async with services.db.session() as session:
        run = await create_run(
            session=session,
            title=title or workflow.title,
            definition={**workflow_to_json(workflow), "url": inputs.url},
            parameters=inputs.masked,
            source=source,
            timeout_s=timeout_s or workflow.timeout_s,
            workflow_id=workflow_id,
            parent_run_id=parent_run_id,
            webhook_url=webhook_url,
            proxy=proxy,
            extra_http_headers=extra_http_headers,
            run_with=run_with,
            sealed_secrets=services.sealer.seal(secrets),
        )
        await transition(session=session, run_id=run.id, to=RunStatus.queued)
        await session.commit()
    return run


def inputs_of(services: Services, run: Run) -> tuple[Workflow, Inputs]:
    """The workflow and inputs of a stored run, secrets unsealed (for a worker)."""
    workflow = parse_workflow(run.definition)
    secrets = services.sealer.open(run.sealed_secrets)
    values = {k: v for k, v in (run.parameters or {}).items() if k not in workflow.secret_names}
    values.update(secrets)
    if run.definition.get("url"):
        values.setdefault("url", run.definition["url"])
    inputs = resolve_inputs(workflow, values, allowed_schemes=services.runner.url_schemes)
    return workflow, inputs


@asynccontextmanager
async def runner_env(
    services: Services,
    listeners: list[CardListener] | None = None,
    *,
    frame_listener: FrameListener | None = None,
) -> AsyncIterator[RunnerEnv]:
    async with async_playwright() as playwright:
        browser = await launch(playwright, services.runner)
        try:
            yield RunnerEnv(
                db=services.db,
                store=services.store,
                settings=services.runner,
                spool_dir=services.spool_dir,
                browser=browser,
                listeners=listeners or [],
                frame_listener=frame_listener,
            )
        finally:
            await browser.close()


async def run_now(env: RunnerEnv, run: Run, workflow: Workflow, inputs: Inputs) -> RunStatus:
    return await execute_run(env, run.id, workflow, inputs)
