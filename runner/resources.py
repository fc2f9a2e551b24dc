"""What the runner needs from the process that hosts it — a database, an object store, the
sealer of secret inputs, settings, a notifier — and what it makes of them: the browser
environment runs execute in, and a stored run's workflow and inputs.

The host (the service layer's `Services`) satisfies `RunnerResources`; the runner never imports
the service layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

from playwright.async_api import async_playwright

from runner.browser import launch
from runner.context import CardListener, FrameListener, RunnerEnv
from runner.llm import LLMSettings
from runner.secrets import SealedInputs
from runner.settings import RunnerSettings
from runner.templating import Inputs, TemplateLimits, resolve_inputs
from runner.workflow import Workflow, parse_workflow
from storage.db import Database
from storage.models import Run
from storage.notify import Notifier
from storage.objects import ObjectStore
from storage.sealing import Sealer


class RunnerResources(Protocol):
    @property
    def db(self) -> Database: ...

    @property
    def store(self) -> ObjectStore: ...

    @property
    def sealer(self) -> Sealer: ...

    @property
    def runner(self) -> RunnerSettings: ...

    @property
    def llm(self) -> LLMSettings: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def spool_dir(self) -> Path: ...


def sealed_inputs(resources: RunnerResources, run: Run) -> SealedInputs:
    """The run's sealed secrets, opened (empty once the run has ended: they are dropped)."""
    return SealedInputs.from_json(resources.sealer.open(run.sealed_secrets))


def inputs_of(resources: RunnerResources, run: Run) -> tuple[Workflow, Inputs]:
    """The workflow and inputs of a stored run, secrets unsealed (for a worker), the run's
    browser options with their secret headers and proxy password back in clear."""
    workflow = parse_workflow(run.definition)
    secrets = sealed_inputs(resources, run)
    values = {k: v for k, v in (run.parameters or {}).items() if k not in workflow.secret_names}
    values.update(secrets.parameters)
    if run.definition.get("url"):
        values.setdefault("url", run.definition["url"])
    inputs = resolve_inputs(
        workflow,
        values,
        allowed_schemes=resources.runner.url_schemes,
        upload_dir=resources.runner.upload_dir,
        limits=TemplateLimits.of(resources.runner),
    )
    inputs.extra_http_headers, inputs.proxy = secrets.restore_options(
        run.extra_http_headers, run.proxy
    )
    return workflow, inputs


@asynccontextmanager
async def runner_env(
    resources: RunnerResources,
    listeners: list[CardListener] | None = None,
    *,
    frame_listener: FrameListener | None = None,
) -> AsyncIterator[RunnerEnv]:
    """A browser and what every run executed in it is given; the browser closes on exit."""
    async with async_playwright() as playwright:
        browser = await launch(playwright, resources.runner)
        try:
            yield RunnerEnv(
                db=resources.db,
                store=resources.store,
                settings=resources.runner,
                llm=resources.llm,
                spool_dir=resources.spool_dir,
                browser=browser,
                listeners=listeners or [],
                frame_listener=frame_listener,
                sealer=resources.sealer,
            )
        finally:
            await browser.close()
