"""The service layer's status changes: each is committed, then announced — on the API's path and
on the CLI's (a run executed in this process), locally and through PostgreSQL NOTIFY."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from examples.site_server import SiteServer
from services.backends import Services, open_services
from services.runs import (
    RunOptions,
    cancel_run,
    inputs_for,
    queue_run,
    run_now,
    runner_env,
    set_status,
)
from services.settings import Settings
from services.workflows import parse_workflow
from storage.db import Database
from storage.notify import CANCEL, QUEUE, RUN, LocalNotifier, notifier_for
from storage.runs import get_run
from storage.settings import StorageSettings
from storage.status import RunSource, RunStatus
from tests.storage.conftest import postgres_database


class CommittedCheck(LocalNotifier):
    """Records, for each status event, the status a fresh session reads at that moment."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.statuses: list[tuple[str, str]] = []
        self.channels: list[str] = []

    async def publish(self, channel: str, payload: str) -> None:
        self.channels.append(channel)
        if channel == RUN and json.loads(payload)["type"] == "status":
            event = json.loads(payload)
            async with self.db.session() as session:
                stored = await get_run(session=session, run_id=event["run_id"])
            self.statuses.append((event["status"], stored.status))
        await super().publish(channel, payload)


@pytest.fixture
def announced(services: Services) -> CommittedCheck:
    services.notifier = CommittedCheck(services.db)
    return services.notifier


def visit(site: SiteServer) -> dict[str, Any]:
    return {
        "title": "Visit the shop",
        "url": site.url,
        "timeout_s": 60,
        "blocks": [{"label": "visit", "type": "action", "steps": [{"goto": "{{ url }}"}]}],
    }


async def test_a_run_executed_here_announces_each_status_once_committed(
    services: Services, announced: CommittedCheck, site: SiteServer
) -> None:
    workflow = parse_workflow(visit(site))
    inputs = inputs_for(services, workflow, {})
    run = await queue_run(
        services, workflow, inputs, RunOptions(source=RunSource.cli), wake_workers=False
    )
    async with runner_env(services) as env:
        status = await run_now(services, env, run, workflow, inputs)
    assert status is RunStatus.completed
    assert announced.statuses == [(s, s) for s in ("queued", "running", "completed")]
    assert QUEUE not in announced.channels  # this process runs it: no worker is woken


async def test_queueing_for_workers_wakes_them(
    services: Services, announced: CommittedCheck, site: SiteServer
) -> None:
    workflow = parse_workflow(visit(site))
    await queue_run(
        services, workflow, inputs_for(services, workflow, {}), RunOptions(source=RunSource.api)
    )
    assert announced.channels == [RUN, QUEUE]
    assert announced.statuses == [("queued", "queued")]


async def test_cancel_ends_a_waiting_run_and_flags_a_running_one(
    services: Services, announced: CommittedCheck, site: SiteServer
) -> None:
    workflow = parse_workflow(visit(site))
    inputs = inputs_for(services, workflow, {})
    waiting = await queue_run(services, workflow, inputs, RunOptions(source=RunSource.api))
    canceled = await cancel_run(services, waiting.id)
    assert canceled.status == "canceled" and canceled.failure_reason == "canceled by a user"
    assert announced.statuses[-1] == ("canceled", "canceled")

    running = await queue_run(services, workflow, inputs, RunOptions(source=RunSource.api))
    async with services.db.session() as session:
        await set_status(services, session=session, run_id=running.id, to=RunStatus.running)
    before = len(announced.statuses)
    flagged = await cancel_run(services, running.id)
    # Its worker stops it and ends it canceled; until then it is running, flagged.
    assert flagged.status == "running" and flagged.cancel_requested_at is not None
    assert len(announced.statuses) == before and announced.channels[-1] == CANCEL


@pytest.mark.postgres
async def test_another_process_hears_status_changes_through_postgresql(
    tmp_path: Path, site: SiteServer
) -> None:
    """What a `glassbox serve` on the same database sees of a `glassbox run`."""
    with postgres_database() as url:
        services = open_services(
            Settings.load(storage=StorageSettings(data_dir=tmp_path / "data", database_url=url))
        )
        listener = notifier_for(url)
        await listener.start()
        heard = listener.subscribe(RUN)
        woken = listener.subscribe(QUEUE)
        try:
            workflow = parse_workflow(visit(site))
            run = await queue_run(
                services,
                workflow,
                inputs_for(services, workflow, {}),
                RunOptions(source=RunSource.cli),
                wake_workers=False,
            )
            await cancel_run(services, run.id)
            events = [json.loads(await heard.get(10) or "null") for _ in range(2)]
            assert [(e["run_id"], e["type"], e["status"]) for e in events] == [
                (run.id, "status", "queued"),
                (run.id, "status", "canceled"),
            ]
            assert woken.queue.empty()
        finally:
            heard.close()
            woken.close()
            await listener.close()
            await services.close()
