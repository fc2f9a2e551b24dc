"""The run queue (storage.queue): claims, leases, heartbeats and expiry, on SQLite and PostgreSQL.

SQLite is the embedded default (`glassbox serve`, or `glassbox worker` processes sharing one data
directory), so every lease rule is checked on a real SQLite file, not only on the PostgreSQL of the
scale-out tests. Times are passed in explicitly where storage.queue takes them (`now=`), so a lease
of seconds expires without the test sleeping through it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from storage.db import Database
from storage.models import Run, utcnow
from storage.queue import claim_next, expired_runs, flag_cancel, heartbeat
from storage.status import RunStatus
from tests.storage.test_runs import fetch, history, move, new_run

S = RunStatus
LEASE_S = 3.0


async def queued_runs(db: Database, count: int) -> list[str]:
    """`count` queued runs, oldest first."""
    run_ids = []
    for n in range(count):
        run_id = await new_run(db, title=f"queued {n}")
        await move(db, run_id, S.queued)
        run_ids.append(run_id)
    return run_ids


async def claim(
    db: Database, worker_id: str, *, lease_s: float = LEASE_S, now: datetime | None = None
) -> Run | None:
    """One claim in its own transaction, as a worker makes it."""
    async with db.session() as session:
        run = await claim_next(session=session, worker_id=worker_id, lease_s=lease_s, now=now)
        await session.commit()
        return run


async def beat(
    db: Database, worker_id: str, run_ids: list[str], *, lease_s: float = LEASE_S
) -> dict[str, bool]:
    async with db.session() as session:
        flags = await heartbeat(
            session=session, worker_id=worker_id, run_ids=run_ids, lease_s=lease_s
        )
        await session.commit()
        return flags


async def expired(db: Database, *, now: datetime | None = None) -> list[str]:
    async with db.session() as session:
        return await expired_runs(session=session, now=now)


# --- claims -----------------------------------------------------------------------------------


async def test_a_claim_gives_the_oldest_queued_run_to_one_worker_with_its_lease(
    db: Database,
) -> None:
    first, second = await queued_runs(db, 2)
    waiting = await new_run(db, title="created, never queued")
    now = utcnow()

    claimed = await claim(db, "worker-a", now=now)

    assert claimed is not None and claimed.id == first
    run = await fetch(db, first)
    assert run.status == "running"
    assert run.worker_id == "worker-a"
    assert run.attempt == 1
    assert run.heartbeat_at == now and run.started_at == now
    assert run.lease_expires_at == now + timedelta(seconds=LEASE_S)
    assert [e.to_status for e in await history(db, first)] == ["created", "queued", "running"]
    # The next worker gets the next run; then there is nothing left (a created run waits).
    other = await claim(db, "worker-b")
    assert other is not None and other.id == second
    assert (await fetch(db, second)).worker_id == "worker-b"
    assert await claim(db, "worker-c") is None
    assert (await fetch(db, waiting)).status == "created"
    assert (await fetch(db, first)).worker_id == "worker-a"


async def test_many_workers_claiming_at_once_take_every_run_exactly_once(db: Database) -> None:
    """Four workers, each with its own engine (its own connections: on SQLite, its own handle
    on the database file), claim as fast as they can from one queue."""
    run_ids = await queued_runs(db, 12)
    workers = [Database(db.url) for _ in range(4)]
    start = asyncio.Barrier(len(workers))

    async def claim_all(n: int, worker_db: Database) -> list[str]:
        taken = []
        await start.wait()
        while (run := await claim(worker_db, f"worker-{n}")) is not None:
            taken.append(run.id)
        return taken

    try:
        taken = await asyncio.wait_for(
            asyncio.gather(*(claim_all(n, w) for n, w in enumerate(workers))), timeout=60
        )
    finally:
        for worker_db in workers:
            await worker_db.dispose()

    claimed = [run_id for per_worker in taken for run_id in per_worker]
    assert sorted(claimed) == sorted(run_ids), "a run was claimed twice or not at all"
    for n, per_worker in enumerate(taken):
        for run_id in per_worker:
            run = await fetch(db, run_id)
            assert (run.status, run.worker_id, run.attempt) == ("running", f"worker-{n}", 1)
            statuses = [e.to_status for e in await history(db, run_id)]
            assert statuses == ["created", "queued", "running"], (run_id, statuses)


# --- heartbeats -------------------------------------------------------------------------------


async def test_a_heartbeat_extends_the_lease_of_the_worker_that_holds_it(db: Database) -> None:
    [run_id] = await queued_runs(db, 1)
    claimed_at = utcnow() - timedelta(seconds=2)  # claimed a while ago, with a short lease
    await claim(db, "worker-a", lease_s=LEASE_S, now=claimed_at)

    before = utcnow()
    assert await beat(db, "worker-a", [run_id], lease_s=30) == {run_id: False}
    after = utcnow()

    run = await fetch(db, run_id)
    assert run.heartbeat_at is not None and before <= run.heartbeat_at <= after
    assert run.lease_expires_at is not None
    assert before + timedelta(seconds=30) <= run.lease_expires_at <= after + timedelta(seconds=30)
    assert (run.status, run.worker_id, run.attempt) == ("running", "worker-a", 1)


async def test_a_heartbeat_of_another_worker_neither_extends_nor_keeps_the_lease(
    db: Database,
) -> None:
    [run_id] = await queued_runs(db, 1)
    now = utcnow()
    await claim(db, "worker-a", now=now)

    # Not the holder: the run is missing from the answer (for that worker: no longer mine).
    assert await beat(db, "worker-b", [run_id], lease_s=60) == {}
    run = await fetch(db, run_id)
    assert run.lease_expires_at == now + timedelta(seconds=LEASE_S)
    assert (run.heartbeat_at, run.worker_id) == (now, "worker-a")


async def test_a_heartbeat_answers_the_cancel_requested_for_a_run(db: Database) -> None:
    mine, other = await queued_runs(db, 2)
    await claim(db, "worker-a")
    await claim(db, "worker-a")
    async with db.session() as session:
        await flag_cancel(session=session, run_id=mine)
        await session.commit()

    assert await beat(db, "worker-a", [mine, other]) == {mine: True, other: False}
    assert (await fetch(db, mine)).status == "running"  # the worker ends it, keeping its record


async def test_a_run_that_ended_or_was_taken_away_is_missing_from_the_heartbeat(
    db: Database,
) -> None:
    ended, reaped, alive = await queued_runs(db, 3)
    for _ in range(3):
        await claim(db, "worker-a")
    await move(db, ended, S.completed)
    await move(db, reaped, S.interrupted, reason="worker-a vanished")  # what a reaper does

    assert await beat(db, "worker-a", [ended, reaped, alive]) == {alive: False}
    for run_id, status in ((ended, "completed"), (reaped, "interrupted")):
        run = await fetch(db, run_id)
        assert run.status == status and run.lease_expires_at is None


# --- expiry -----------------------------------------------------------------------------------


async def test_a_lease_without_heartbeat_expires_and_a_heartbeat_in_time_keeps_it(
    db: Database,
) -> None:
    silent, beating = await queued_runs(db, 2)
    claimed_at = utcnow()
    await claim(db, "worker-a", now=claimed_at)
    await claim(db, "worker-b", now=claimed_at)
    lease = timedelta(seconds=LEASE_S)

    # Within the lease nothing is expired, even without a heartbeat.
    assert await expired(db, now=claimed_at + lease / 2) == []
    assert await expired(db, now=claimed_at + lease) == []
    # worker-b renews; worker-a is silent.
    assert await beat(db, "worker-b", [beating]) == {beating: False}
    past_first_lease = claimed_at + lease + timedelta(milliseconds=1)
    assert await expired(db, now=past_first_lease) == [silent]
    # And by the clock, without `now`: once the renewed lease has run out too.
    renewed = (await fetch(db, beating)).lease_expires_at
    assert renewed is not None and renewed > claimed_at + lease
    assert sorted(await expired(db, now=renewed + timedelta(milliseconds=1))) == sorted(
        [silent, beating]
    )


async def test_a_short_lease_runs_out_on_the_clock(db: Database) -> None:
    """The same without a `now`: a real one-second lease, a real wait."""
    [run_id] = await queued_runs(db, 1)
    await claim(db, "worker-a", lease_s=1.0)
    assert await expired(db) == []
    await asyncio.sleep(1.2)
    assert await expired(db) == [run_id]
    assert await beat(db, "worker-a", [run_id], lease_s=1.0) == {run_id: False}
    assert await expired(db) == []  # a late heartbeat still renews while nobody reaped it


async def test_only_running_runs_can_expire(db: Database) -> None:
    completed, interrupted, queued = await queued_runs(db, 3)
    long_ago = utcnow() - timedelta(minutes=5)
    for _ in range(2):
        await claim(db, "worker-a", lease_s=1.0, now=long_ago)
    await move(db, completed, S.completed)
    await move(db, interrupted, S.interrupted, reason="vanished")

    assert (await fetch(db, queued)).status == "queued"
    assert await expired(db, now=utcnow() + timedelta(hours=1)) == []


# --- follow-ups not yet due, one run per concurrency key -----------------------------------------


async def keyed_runs(db: Database, count: int, key: str | None, **columns: object) -> list[str]:
    run_ids = []
    for n in range(count):
        run_id = await new_run(db, title=f"keyed {n}")
        async with db.session() as session:
            run = await session.get(Run, run_id)
            assert run is not None
            run.concurrency_key = key
            for name, value in columns.items():
                setattr(run, name, value)
            await session.commit()
        await move(db, run_id, S.queued)
        run_ids.append(run_id)
    return run_ids


async def test_a_run_is_not_claimed_before_it_is_due(db: Database) -> None:
    now = utcnow()
    (later,) = await keyed_runs(db, 1, None, not_before=now + timedelta(seconds=30))
    assert await claim(db, "worker-a", now=now) is None
    assert await claim(db, "worker-a", now=now + timedelta(seconds=29)) is None
    claimed = await claim(db, "worker-a", now=now + timedelta(seconds=30))
    assert claimed is not None and claimed.id == later


async def test_workers_racing_start_one_run_of_a_key_at_a_time(db: Database) -> None:
    """Four workers, each with its own engine, claim at once from a queue of six runs of one key
    and two of another: one run per key starts; the next only once it has ended."""
    acme = await keyed_runs(db, 6, "acme")
    globex = await keyed_runs(db, 2, "globex")
    workers = [Database(db.url) for _ in range(4)]
    try:
        for ended in range(len(acme)):
            start = asyncio.Barrier(len(workers))

            async def race(n: int, worker_db: Database, start: asyncio.Barrier) -> str | None:
                await start.wait()
                run = await claim(worker_db, f"worker-{n}")
                return run.id if run is not None else None

            taken = await asyncio.gather(*(race(n, w, start) for n, w in enumerate(workers)))
            running = [r for r in taken if r in acme]
            assert running == [acme[ended]], taken  # the oldest of the key, once
            await move(db, acme[ended], S.completed)
            if ended == 0:  # the other key did not wait for acme
                assert [r for r in taken if r in globex] == [globex[0]]
        assert await claim(db, "worker-x") is None  # globex[1] waits for globex[0]
    finally:
        for worker in workers:
            await worker.dispose()
