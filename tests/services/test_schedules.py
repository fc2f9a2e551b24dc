"""Schedules fire on time, once per fire time however many processes race for it (two service
stacks with their own connections on the same database, SQLite and PostgreSQL), catch up after
downtime by their policy, and refuse bad input naming the field."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from examples.site_server import SiteServer
from services import schedules
from services.backends import Services, open_services
from services.schedules import Scheduler, ScheduleSpec
from services.settings import Settings
from services.workflows import save_workflow
from storage.errors import ValidationFailed
from storage.models import Run, Schedule, utcnow
from storage.settings import StorageSettings
from tests.api.conftest import spawn_glassbox
from tests.storage.conftest import BACKENDS, postgres_database

WORKFLOW: dict[str, Any] = {
    "title": "Scheduled visit",
    "url": "http://127.0.0.1:9/",
    "parameters": {
        "query": {"type": "string", "default": "lamp"},
        "count": {"type": "integer", "default": 1},
        "token": {"type": "string", "secret": True, "required": False},
    },
    "blocks": [{"label": "visit", "type": "action", "steps": [{"goto": "{{ url }}"}]}],
}


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'glassbox.db'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
async def two(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Services, Services]]:
    """Two service stacks on one database, as two processes would have."""
    stacks = [
        open_services(
            Settings.load(
                storage=StorageSettings(data_dir=tmp_path / "data", database_url=database_url)
            )
        )
        for _ in range(2)
    ]
    yield stacks[0], stacks[1]
    for stack in stacks:
        await stack.close()


async def runs_of(services: Services, schedule_id: str) -> list[Run]:
    async with services.db.session() as session:
        rows = await session.execute(
            select(Run).where(Run.schedule_id == schedule_id).order_by(Run.created_at)
        )
        return list(rows.scalars())


async def set_next(services: Services, schedule_id: str, when: datetime) -> None:
    async with services.db.session() as session:
        await session.execute(
            update(Schedule).where(Schedule.id == schedule_id).values(next_fire_at=when)
        )
        await session.commit()


async def test_each_fire_time_makes_one_run_however_many_processes_race(
    two: tuple[Services, Services],
) -> None:
    a, b = two
    saved = await save_workflow(a, WORKFLOW)
    schedule = await schedules.create_schedule(
        a, saved.id, ScheduleSpec(interval_s=60, parameters={"query": "desk"}, title="Nightly")
    )
    assert schedule.next_fire_at is not None
    made: list[str] = []
    for round_ in range(5):
        due = utcnow() - timedelta(seconds=1)
        await set_next(a, schedule.id, due)
        # Both "processes" fire at once, several times over.
        results = await asyncio.gather(*[schedules.fire_due(s) for s in (a, b, a, b)])
        fired = [run_id for result in results for run_id in result]
        assert len(fired) == 1, f"round {round_}: {fired}"
        made += fired
    runs = await runs_of(a, schedule.id)
    assert [r.id for r in runs] == made
    assert {r.source for r in runs} == {"schedule"}
    assert {r.status for r in runs} == {"queued"}
    assert {r.title for r in runs} == {"Nightly"}
    assert runs[0].parameters["query"] == "desk" and runs[0].workflow_id == saved.id
    stored = await schedules.get_schedule(a, schedule.id)
    assert stored.last_run_id == made[-1]
    assert stored.next_fire_at is not None and stored.next_fire_at > utcnow()


async def test_a_scheduler_fires_an_interval_schedule_on_time(
    two: tuple[Services, Services],
) -> None:
    a, b = two
    saved = await save_workflow(a, WORKFLOW)
    schedule = await schedules.create_schedule(a, saved.id, ScheduleSpec(interval_s=1))
    stop = asyncio.Event()
    loops = [asyncio.create_task(Scheduler(s, poll_s=0.1).run_forever(stop)) for s in (a, b)]
    await asyncio.sleep(3.5)
    stop.set()
    await asyncio.gather(*loops)
    runs = await runs_of(a, schedule.id)
    assert 2 <= len(runs) <= 4, [r.created_at for r in runs]
    first = schedule.next_fire_at
    assert first is not None
    lags = [
        (run.created_at - (first + timedelta(seconds=i))).total_seconds()
        for i, run in enumerate(runs)
    ]
    # Each run is made at its own fire time (a poll interval and a commit later), none twice.
    assert all(-0.05 <= lag < 1.0 for lag in lags), lags


async def test_missed_fire_times_are_skipped_or_run_once_by_policy(
    two: tuple[Services, Services],
) -> None:
    a, _ = two
    saved = await save_workflow(a, WORKFLOW)
    skip = await schedules.create_schedule(a, saved.id, ScheduleSpec(interval_s=60))
    once = await schedules.create_schedule(
        a, saved.id, ScheduleSpec(interval_s=60, catch_up="run_once")
    )
    ten_minutes_ago = utcnow() - timedelta(minutes=10, seconds=5)
    for schedule in (skip, once):
        await set_next(a, schedule.id, ten_minutes_ago)
    await schedules.fire_due(a)
    assert await runs_of(a, skip.id) == []
    assert len(await runs_of(a, once.id)) == 1
    for schedule in (skip, once):
        stored = await schedules.get_schedule(a, schedule.id)
        assert stored.next_fire_at is not None and stored.next_fire_at > utcnow()
    assert (await schedules.get_schedule(a, skip.id)).skipped == 11
    assert (await schedules.get_schedule(a, once.id)).skipped == 10
    await schedules.fire_due(a)  # nothing more is due
    assert len(await runs_of(a, once.id)) == 1


async def test_a_fire_time_a_few_seconds_late_runs_once_and_is_not_skipped(
    two: tuple[Services, Services],
) -> None:
    """A busy process fires late, it was not down: a 1 s schedule 5 s behind makes one run
    (the fire times that went by meanwhile are folded into it), even with catch_up: skip."""
    a, _ = two
    saved = await save_workflow(a, WORKFLOW)
    late = await schedules.create_schedule(a, saved.id, ScheduleSpec(interval_s=1))
    await set_next(a, late.id, utcnow() - timedelta(seconds=5))
    await schedules.fire_due(a)
    assert len(await runs_of(a, late.id)) == 1
    stored = await schedules.get_schedule(a, late.id)
    assert stored.next_fire_at is not None and stored.next_fire_at > utcnow() - timedelta(seconds=1)
    assert 4 <= stored.skipped <= 6, stored.skipped


async def test_cron_in_a_time_zone_disable_and_enable(two: tuple[Services, Services]) -> None:
    a, _ = two
    saved = await save_workflow(a, WORKFLOW)
    schedule = await schedules.create_schedule(
        a, saved.id, ScheduleSpec(cron="30 9 * * *", timezone="Europe/Paris")
    )
    assert schedule.next_fire_at is not None
    local = schedule.next_fire_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (9, 30)
    assert schedule.next_fire_at.tzinfo is not None
    off = await schedules.update_schedule(a, schedule.id, ScheduleSpec(enabled=False))
    assert off.next_fire_at is None and not off.enabled
    await set_next(a, schedule.id, utcnow() - timedelta(seconds=1))
    assert await schedules.fire_due(a) == []  # disabled: never fires
    on = await schedules.update_schedule(a, schedule.id, ScheduleSpec(enabled=True))
    assert on.enabled and on.next_fire_at is not None and on.next_fire_at > utcnow()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (ScheduleSpec(cron="every day"), "cron"),
        (ScheduleSpec(cron="61 * * * *"), "cron"),
        (ScheduleSpec(cron="* * * * * *"), "cron"),
        (ScheduleSpec(cron="0 9 * * *", timezone="Mars/Olympus"), "timezone"),
        (ScheduleSpec(interval_s=0), "interval_s"),
        (ScheduleSpec(interval_s=60, cron="* * * * *"), "interval_s"),
        (ScheduleSpec(at=datetime(2001, 1, 1, tzinfo=UTC)), "at"),
        (ScheduleSpec(), "cron"),
        (ScheduleSpec(interval_s=60, catch_up="always"), "catch_up"),
        (ScheduleSpec(interval_s=60, parameters={"count": "many"}), "parameters.count"),
        (ScheduleSpec(interval_s=60, parameters={"nope": 1}), "parameters.nope"),
        (ScheduleSpec(interval_s=60, parameters={"token": "s3cr3t"}), "parameters.token"),
    ],
)
async def test_bad_schedules_are_refused_naming_the_field(
    services: Services, spec: ScheduleSpec, field: str
) -> None:
    saved = await save_workflow(services, WORKFLOW)
    with pytest.raises(ValidationFailed) as refused:
        await schedules.create_schedule(services, saved.id, spec)
    assert refused.value.field == field, refused.value
    assert await schedules.list_schedules(services) == []


def test_a_glassbox_worker_process_fires_schedules_too(tmp_path: Path, site: SiteServer) -> None:
    """Not only `serve`: a `glassbox worker` fires due schedules, and runs what it fired."""
    data_dir = tmp_path / "data"

    async def schedule() -> tuple[Services, str]:
        services = open_services(Settings.load(storage=StorageSettings(data_dir=data_dir)))
        definition = {
            "title": "Fired by a worker",
            "url": site.url,
            "blocks": [{"label": "v", "type": "action", "steps": [{"goto": "{{ url }}"}]}],
        }
        saved = await save_workflow(services, definition)
        made = await schedules.create_schedule(services, saved.id, ScheduleSpec(interval_s=1))
        return services, made.id

    services, schedule_id = asyncio.run(schedule())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env.update({"GLASSBOX_DATA_DIR": str(data_dir), "GLASSBOX_POLL_S": "0.2"})
    worker = spawn_glassbox("worker", ["worker"], env=env, cwd=tmp_path, log=tmp_path / "w.log")
    try:

        async def completed() -> list[Run]:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = [r for r in await runs_of(services, schedule_id) if r.status == "completed"]
                if done:
                    return done
                await asyncio.sleep(0.5)
            raise AssertionError(f"no scheduled run completed:\n{worker.tail()}")

        runs = asyncio.run(completed())
        assert runs[0].source == "schedule" and runs[0].schedule_id == schedule_id
    finally:
        worker.kill()
        asyncio.run(services.close())
