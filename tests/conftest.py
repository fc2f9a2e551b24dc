from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from examples.site_server import SiteServer
from runner.browser import launch
from runner.settings import RunnerSettings
from runner.templating import resolve_inputs
from runner.workflow import parse_workflow
from services.backends import Services, open_services
from services.runs import CardListener, RunOptions, queue_run, run_now, runner_env
from services.settings import LLMSettings, Settings
from storage.artifacts import list_artifacts
from storage.models import Artifact, Run, TimelineCard
from storage.runs import get_run, status_history
from storage.settings import StorageSettings
from storage.status import RunSource, RunStatus
from storage.timeline import list_cards

pytest_plugins = [
    "tests.skip_banner",  # skipped PostgreSQL/S3 tests announced loudly
    "tests.tool_counts",  # product and tool tests counted apart
]


@pytest.fixture(scope="session")
def site() -> Iterator[SiteServer]:
    server = SiteServer().start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """Chromium as Glassbox launches it (a Playwright-managed one if installed, else Debian's),
    for tests that drive pages themselves."""
    async with async_playwright() as pw:
        launched = await launch(pw, RunnerSettings())
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "data"
    monkeypatch.setenv("GLASSBOX_DATA_DIR", str(directory))
    for name in ("GLASSBOX_DATABASE_URL", "GLASSBOX_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    return directory


@pytest.fixture
async def services(data_dir: Path) -> AsyncIterator[Services]:
    opened = open_services(Settings.load(storage=StorageSettings(data_dir=data_dir)))
    yield opened
    await opened.close()


def reload_llm_settings(services: Services) -> None:
    """The services' LLM section read again from GLASSBOX_LLM_*, which the test has just set:
    a process loads it once at its start, but a test's scripted LLM server (and so its URL)
    starts after the services were opened."""
    services.settings = replace(services.settings, llm=LLMSettings())


@dataclass
class Outcome:
    status: RunStatus
    run: Run
    cards: list[TimelineCard]
    artifacts: list[Artifact]
    history: list[str]
    services: Services

    def artifact(self, kind: str) -> Artifact:
        found = [a for a in self.artifacts if a.kind == kind]
        assert found, f"no {kind} artifact; have {[a.kind for a in self.artifacts]}"
        return found[0]

    def read(self, artifact: Artifact) -> bytes:
        return b"".join(self.services.store.open(artifact.key))

    def actions(self) -> list[TimelineCard]:
        return [c for c in self.cards if c.kind == "action"]


async def execute(
    services: Services,
    definition: dict[str, Any],
    params: dict[str, Any] | None = None,
    *,
    listeners: list[CardListener] | None = None,
) -> Outcome:
    """Runs a workflow in this process to its end. `listeners` see each card once stored (a
    test that cancels the task running this does so at a card, as the worker cancels a run)."""
    workflow = parse_workflow(definition)
    inputs = resolve_inputs(
        workflow,
        params or {},
        allowed_schemes=services.runner.url_schemes,
        upload_dir=services.runner.upload_dir,
    )
    run = await queue_run(services, workflow, inputs, RunOptions(source=RunSource.api))
    async with runner_env(services, listeners) as env:
        status = await run_now(services, env, run, workflow, inputs)
    async with services.db.session() as session:
        row = await get_run(session=session, run_id=run.id)
        cards = await list_cards(session=session, run_id=run.id)
        artifacts = await list_artifacts(session=session, run_id=run.id)
        history = [h.to_status for h in await status_history(session=session, run_id=run.id)]
    return Outcome(status, row, cards, artifacts, history, services)


@pytest.fixture
def run_workflow(services: Services) -> Any:
    async def _run(definition: dict[str, Any], params: dict[str, Any] | None = None) -> Outcome:
        return await execute(services, definition, params)

    return _run
