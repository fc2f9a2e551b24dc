"""Creating a run from a workflow and running it in this process (the CLI's path; workers
claim runs the same way)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import async_playwright

from runner.browser import launch
from runner.executor import CardListener, RunnerEnv, execute_run
from runner.settings import RunnerSettings
from runner.templating import Inputs
from runner.workflow import Workflow, workflow_to_json
from storage import migrate
from storage.db import Database
from storage.errors import ConfigurationError
from storage.models import Run
from storage.objects import ObjectStore, open_store
from storage.runs import create_run, transition
from storage.settings import StorageSettings
from storage.status import RunSource, RunStatus


@dataclass
class Services:
    storage: StorageSettings
    runner: RunnerSettings
    db: Database
    store: ObjectStore

    @property
    def spool_dir(self) -> Path:
        return self.storage.data_dir / "spool"


def open_services(
    storage: StorageSettings | None = None, runner: RunnerSettings | None = None
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
        storage=storage, runner=runner, db=Database(storage.resolved_database_url), store=store
    )


async def queue_run(
    services: Services,
    workflow: Workflow,
    inputs: Inputs,
    *,
    source: RunSource,
    title: str | None = None,
    timeout_s: int | None = None,
) -> Run:
    async with services.db.session() as session:
        run = await create_run(
            session=session,
            title=title or workflow.title,
            definition=workflow_to_json(workflow),
            parameters=inputs.masked,
            source=source,
            timeout_s=timeout_s or workflow.timeout_s,
        )
        await transition(session=session, run_id=run.id, to=RunStatus.queued)
        await session.commit()
    return run


@asynccontextmanager
async def runner_env(
    services: Services, listeners: list[CardListener] | None = None
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
            )
        finally:
            await browser.close()


async def run_now(env: RunnerEnv, run: Run, workflow: Workflow, inputs: Inputs) -> RunStatus:
    return await execute_run(env, run.id, workflow, inputs)
