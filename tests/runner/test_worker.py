"""The worker's reaper (runner.worker.Worker.reap) on the embedded default: a real SQLite file.

A run whose worker vanished (its lease ran out without a heartbeat) ends `interrupted`, naming the
worker, and is queued again as a new run as often as `retry_interrupted` says. Nothing here needs
a browser: the vanished workers are worker ids that claimed a run and then said nothing. The
processes themselves (SIGKILL, SIGSTOP) are in tests/api/test_leases_sqlite.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from runner.worker import Worker, WorkerOptions
from services.backends import Services
from storage.models import Run, utcnow
from storage.notify import QUEUE, RUN
from storage.status import RunSource, RunStatus
from tests.storage.test_queue import claim, queued_runs
from tests.storage.test_runs import fetch, history, move, new_run

LEASE_S = 1.0


def worker(services: Services, *, retries: int = 0) -> Worker:
    options = WorkerOptions(lease_s=LEASE_S, retry_interrupted=retries)
    return Worker(services, options, worker_id="reaper")


async def claim_and_vanish(services: Services, worker_id: str) -> str:
    """`worker_id` claims the oldest queued run and is never heard of again: its lease ran out
    a moment ago."""
    claimed = await claim(
        services.db, worker_id, lease_s=LEASE_S, now=utcnow() - timedelta(seconds=LEASE_S + 1)
    )
    assert claimed is not None
    return claimed.id


async def children(services: Services, run_id: str) -> list[Run]:
    async with services.db.session() as session:
        rows = await session.execute(
            select(Run).where(Run.parent_run_id == run_id).order_by(Run.created_at)
        )
        return list(rows.scalars())


async def test_a_run_whose_lease_ran_out_is_ended_interrupted_naming_its_worker(
    services: Services,
) -> None:
    db = services.db
    vanished_run, alive_run = await queued_runs(db, 2)
    await claim_and_vanish(services, "host:4242:gone")
    await claim(db, "host:4343:alive", lease_s=30)  # a live worker's run, lease running
    reaper = worker(services)
    events = reaper.notifier.subscribe(RUN)

    assert await reaper.reap() == [vanished_run]

    run = await fetch(db, vanished_run)
    assert run.status == "interrupted"
    reason = run.failure_reason or ""
    assert "worker host:4242:gone vanished" in reason and "no heartbeat since" in reason, reason
    assert f"lease of {LEASE_S:g} s expired" in reason, reason
    assert run.finished_at is not None and run.lease_expires_at is None
    assert run.attempt == 1 and run.worker_id == "host:4242:gone"
    assert [e.to_status for e in await history(db, vanished_run)] == [
        "created",
        "queued",
        "running",
        "interrupted",
    ]
    assert json.loads(await events.get(1) or "{}") == {
        "run_id": vanished_run,
        "type": "status",
        "status": "interrupted",
    }
    assert await children(services, vanished_run) == []  # no retry unless configured
    # The live worker's run is left alone, and an ended run is never reaped again.
    alive = await fetch(db, alive_run)
    assert (alive.status, alive.worker_id) == ("running", "host:4343:alive")
    assert await reaper.reap() == []
    assert (await fetch(db, vanished_run)).failure_reason == run.failure_reason


@pytest.mark.parametrize("retries", [1, 2])
async def test_an_interrupted_run_is_queued_again_as_often_as_configured(
    services: Services, retries: int
) -> None:
    """Each retry is a new run (source `rerun`, the interrupted run as its parent) with the same
    inputs; when the retry's worker vanishes too, the chain stops after `retries` retries."""
    db = services.db
    [original] = await queued_runs(db, 1)
    reaper = worker(services, retries=retries)
    queue = reaper.notifier.subscribe(QUEUE)

    chain = [original]
    for n in range(retries + 1):
        assert await claim_and_vanish(services, f"host:{n}:gone") == chain[-1]
        assert await reaper.reap() == [chain[-1]]
        assert (await fetch(db, chain[-1])).status == "interrupted"
        retried = await children(services, chain[-1])
        if n == retries:
            assert retried == [], f"retry {n + 1} of {retries} was queued"
            assert await queue.get(0.05) is None
            break
        [retry] = retried
        assert await queue.get(1) == retry.id  # idle workers hear of it at once
        parent = await fetch(db, chain[-1])
        assert retry.status == "queued" and retry.source == RunSource.rerun.value
        assert (retry.title, retry.definition, retry.parameters, retry.timeout_s) == (
            parent.title,
            parent.definition,
            parent.parameters,
            parent.timeout_s,
        )
        assert retry.attempt == 0 and retry.worker_id is None
        chain.append(retry.id)

    assert len(chain) == retries + 1
    for run_id in chain:  # each run was claimed once and ended once
        statuses = [e.to_status for e in await history(db, run_id)]
        assert statuses == ["created", "queued", "running", "interrupted"], (run_id, statuses)
        assert (await fetch(db, run_id)).attempt == 1
    async with db.session() as session:
        statuses = list(await session.scalars(select(Run.status)))
    assert statuses == [RunStatus.interrupted.value] * (retries + 1)


async def test_a_user_s_rerun_whose_worker_vanished_is_retried_too(services: Services) -> None:
    """Retries are counted along the chain of interrupted runs: a rerun a user asked for (also
    source `rerun`) of a run that completed is not a retry, and gets its own."""
    db = services.db
    [first] = await queued_runs(db, 1)
    await claim(db, "host:1:done")
    await move(db, first, RunStatus.completed)
    rerun = await new_run(db, source=RunSource.rerun, parent_run_id=first)  # POST …/rerun
    await move(db, rerun, RunStatus.queued)
    reaper = worker(services, retries=1)

    await claim_and_vanish(services, "host:2:gone")
    assert await reaper.reap() == [rerun]

    [retry] = await children(services, rerun)
    assert (retry.status, retry.source) == ("queued", "rerun")


async def test_no_run_is_reaped_within_a_lease_of_a_database_outage(services: Services) -> None:
    """Leases run out during an outage because no heartbeat gets through, though every worker
    is alive: the reaper gives them one lease after the database is back to renew them. A blip
    too short to expire a live lease (SQLite's `database is locked`) does not hold it back."""
    [run_id] = await queued_runs(services.db, 1)
    await claim_and_vanish(services, "host:5:quiet-during-the-outage")
    reaper = worker(services)  # lease 1 s, heartbeats every 5 s: any outage may expire leases
    outage = services.db.outage
    outage.failed(OperationalError("SELECT 1", {}, ConnectionRefusedError()), "a heartbeat")
    await asyncio.sleep(0.1)
    assert await reaper.reap() == []  # down: nothing can be told
    outage.succeeded()
    assert await reaper.reap() == []  # back a moment ago
    assert (await fetch(services.db, run_id)).status == "running"

    await asyncio.sleep(LEASE_S + 0.2)  # a lease later, no heartbeat came: it did vanish
    assert await reaper.reap() == [run_id]
    assert (await fetch(services.db, run_id)).status == "interrupted"

    [blipped] = await queued_runs(services.db, 1)
    await claim_and_vanish(services, "host:6:gone")
    brief = WorkerOptions(lease_s=LEASE_S, heartbeat_s=0.2)  # (1 - 0.2) / 2: blips under 0.4 s
    reaper = Worker(services, brief, worker_id="reaper")
    outage.failed(OperationalError("UPDATE", {}, Exception("database is locked")), "reaping")
    outage.succeeded()
    assert await reaper.reap() == [blipped]
