"""PostgreSQL outages under real runs: a private cluster this module owns (restarted at will) and
a TCP proxy in front of it (cut and refused at will). Workers must wait the outage out — never
exit, never drop a card or a final status —, `/api/v1/health` must name the database while it
is down, and a worker that dies anyway must be replaced.

Outages are a few seconds long; leases 3 s, heartbeats 0.5 s, so a lease does run out during an
outage and the worker must still keep its runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text

from examples.site_server import SiteServer
from runner.context import CardWriter
from runner.templating import resolve_inputs
from runner.workflow import parse_workflow
from services.backends import Services, open_services
from services.runs import RunOptions, queue_run
from services.settings import ServiceSettings, Settings
from services.workers import Worker, WorkerOptions
from storage.db import Database
from storage.models import Artifact, Run, TimelineCard
from storage.retry import is_transient
from storage.runs import create_run
from storage.settings import StorageSettings
from storage.status import CardKind, RunSource
from storage.timeline import list_cards
from tests.api.conftest import (
    Proc,
    glassbox_command,
    running_service,
    spawn_glassbox,
    stepwise_workflow,
    visit_workflow,
    wait_until,
)
from tests.faults import pg
from tests.faults.proxy import TcpProxy

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(pg.available() is not None, reason=f"{pg.available()}"),
]

LEASE_S = 3.0
WORKER_ENV = {
    "GLASSBOX_LEASE_S": str(LEASE_S),
    "GLASSBOX_HEARTBEAT_S": "0.5",
    "GLASSBOX_POLL_S": "0.5",
}
TERMINAL = {"completed", "failed", "terminated", "canceled", "timed_out", "interrupted"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[pg.PrivateCluster]:
    with pg.PrivateCluster() as created:
        yield created


@pytest.fixture
def proxy(cluster: pg.PrivateCluster) -> Iterator[TcpProxy]:
    with TcpProxy(cluster.port) as started:
        yield started


def through(proxy: TcpProxy) -> str:
    return f"postgresql://postgres@127.0.0.1:{proxy.port}/{pg.DATABASE}"


def open_on(url: str, data_dir: Path, **service: Any) -> Services:
    """The backends a Glassbox process opens on `url` (migrated on open)."""
    return open_services(
        Settings.load(
            storage=StorageSettings(data_dir=data_dir, database_url=url),
            service=ServiceSettings(**service),
        )
    )


async def enqueue(services: Services, definition: dict[str, Any]) -> str:
    workflow = parse_workflow(definition)
    inputs = resolve_inputs(workflow, {}, allowed_schemes=services.runner.url_schemes)
    run = await queue_run(services, workflow, inputs, RunOptions(source=RunSource.api))
    return run.id


@dataclass
class Seen:
    status: str
    cards: list[tuple[int, str]]  # (seq, kind)
    artifacts: dict[str, int]  # kind -> count
    missing: list[str] | None
    failure_reason: str | None


async def seen(services: Services, run_id: str) -> Seen:
    async with services.db.session() as session:
        run = await session.get(Run, run_id, populate_existing=True)
        assert run is not None
        cards = await session.execute(
            select(TimelineCard.seq, TimelineCard.kind)
            .where(TimelineCard.run_id == run_id)
            .order_by(TimelineCard.seq)
        )
        kinds = await session.execute(
            select(Artifact.kind, func.count())
            .where(Artifact.run_id == run_id)
            .group_by(Artifact.kind)
        )
        return Seen(
            status=run.status,
            cards=[(seq, kind) for seq, kind in cards.all()],
            artifacts={kind: n for kind, n in kinds.all()},
            missing=run.record_missing,
            failure_reason=run.failure_reason,
        )


async def until(check: Any, *, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await check()
        except Exception as error:  # the test's own reads go to the database directly
            if not is_transient(error):
                raise
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def terminal(services: Services, run_id: str, timeout: float = 60) -> Seen:
    async def ended() -> Seen | None:
        now = await seen(services, run_id)
        return now if now.status in TERMINAL else None

    found: Seen = await until(ended, timeout=timeout, what=f"{run_id} to end")
    return found


@contextlib.asynccontextmanager
async def in_process_worker(services: Services, concurrency: int) -> AsyncIterator[Worker]:
    options = WorkerOptions(concurrency=concurrency, lease_s=LEASE_S, heartbeat_s=0.5, poll_s=0.5)
    worker = Worker(services, options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 60)
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)  # raises what killed it, if anything did


# --- (a) an idle `glassbox worker` survives a restart --------------------------------------------


def test_an_idle_worker_process_survives_a_postgresql_restart_and_then_runs(
    tmp_path: Path, cluster: pg.PrivateCluster, site: SiteServer
) -> None:
    """A 3 s restart of PostgreSQL under an idle `glassbox worker`: it stays up (today it exited
    with status 1), logs the outage once and its end, and then claims and completes a run."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env.update(WORKER_ENV)
    env.update({"GLASSBOX_DATA_DIR": str(data_dir), "GLASSBOX_DATABASE_URL": cluster.url})
    services = open_on(cluster.url, data_dir)  # migrates
    worker = spawn_glassbox(
        "worker", ["worker"], env=env, cwd=tmp_path, log=tmp_path / "worker.log"
    )
    try:
        wait_until(lambda: "concurrency" in worker.tail(), timeout=30, what="the worker")
        time.sleep(2)  # Chromium up, idle in its claim loop
        cluster.restart(down_s=3)
        time.sleep(1)
        assert worker.alive(), f"the worker exited:\n{worker.tail()}"

        async def queue_and_wait() -> Seen:
            run_id = await enqueue(services, visit_workflow(site))
            return await terminal(services, run_id, timeout=60)

        outcome = asyncio.run(queue_and_wait())
        assert outcome.status == "completed", (outcome, worker.tail())
        assert outcome.missing is None
        log = worker.tail()
        assert log.count("database unavailable") == 1, log  # once per outage, not per attempt
        assert "database is back after" in log, log
        assert worker.alive()
    finally:
        stop_proc(worker)
        asyncio.run(services.close())


def test_a_worker_started_while_postgresql_is_down_waits_for_it(
    tmp_path: Path, cluster: pg.PrivateCluster, site: SiteServer
) -> None:
    """`glassbox worker` started with the database down (no migrations, no LISTEN possible)
    waits for it, saying so once, and then runs what is queued — it does not exit."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env.update(WORKER_ENV)
    env.update({"GLASSBOX_DATA_DIR": str(data_dir), "GLASSBOX_DATABASE_URL": cluster.url})
    services = open_on(cluster.url, data_dir)  # migrated, then the database goes
    cluster.stop()
    worker = spawn_glassbox(
        "worker", ["worker"], env=env, cwd=tmp_path, log=tmp_path / "worker.log"
    )
    try:
        wait_until(
            lambda: "database unavailable at start" in worker.tail(),
            timeout=30,
            what="the worker to wait for the database",
        )
        time.sleep(3)
        assert worker.alive(), f"the worker exited:\n{worker.tail()}"
        cluster.start()
        wait_until(lambda: "concurrency" in worker.tail(), timeout=60, what="the worker to start")

        async def queue_and_wait() -> Seen:
            run_id = await enqueue(services, visit_workflow(site))
            return await terminal(services, run_id, timeout=60)

        outcome = asyncio.run(queue_and_wait())
        assert outcome.status == "completed", (outcome, worker.tail())
        log = worker.tail()
        assert log.count("database unavailable at start") == 1, log
        assert "database is back after" in log, log
    finally:
        if not cluster.running():
            cluster.start()
        stop_proc(worker)
        asyncio.run(services.close())


def stop_proc(proc: Proc) -> None:
    if proc.alive():
        proc.popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(Exception):
            proc.popen.wait(timeout=20)
    proc.kill()


# --- (b) runs in flight lose nothing -------------------------------------------------------------


async def test_runs_in_flight_during_an_outage_complete_with_every_card_and_artifact(
    tmp_path: Path, cluster: pg.PrivateCluster, proxy: TcpProxy, site: SiteServer
) -> None:
    """Two runs of 8 steps on a worker of concurrency 2 whose database connections are cut and
    refused for 3.5 s mid-run (longer than the 3 s lease): both end `completed` with the same
    cards and artifacts as the same workflow run without an outage, and a complete record."""
    flow = stepwise_workflow(site, steps=6, step_ms=400)
    services = open_on(through(proxy), tmp_path / "data")
    direct = open_on(cluster.url, tmp_path / "data")
    try:
        async with in_process_worker(services, concurrency=2):
            baseline = await terminal(direct, await enqueue(direct, flow))
            assert baseline.status == "completed", baseline

            runs = [await enqueue(direct, flow) for _ in range(2)]

            async def mid_run() -> bool:
                states = [await seen(direct, run_id) for run_id in runs]
                return all(s.status == "running" and len(s.cards) >= 4 for s in states)

            await until(mid_run, timeout=30, what="both runs mid-run")
            proxy.refuse()
            await asyncio.sleep(LEASE_S + 0.5)
            proxy.restore()
            outcomes = [await terminal(direct, run_id) for run_id in runs]
    finally:
        await services.close()
        await direct.close()

    for outcome in outcomes:
        assert outcome.status == "completed", outcome
        assert outcome.missing is None, outcome.missing  # record.complete
        assert [kind for _, kind in outcome.cards] == [kind for _, kind in baseline.cards]
        assert [seq for seq, _ in outcome.cards] == list(range(1, len(outcome.cards) + 1))
        assert outcome.artifacts == baseline.artifacts
    assert services.db.outage.outages >= 1  # the outage was seen, and waited out


# --- (c, d) `glassbox serve`: health, and a worker that dies is replaced -------------------------


@pytest.fixture(scope="module")
def serve_proxy(cluster: pg.PrivateCluster) -> Iterator[TcpProxy]:
    with TcpProxy(cluster.port) as started:
        yield started


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, serve_proxy: TcpProxy) -> Iterator[Any]:
    with running_service(
        tmp_path_factory.mktemp("serve"),
        backend="postgresql",
        database_url=through(serve_proxy),
        extra_env=WORKER_ENV,
    ) as service:
        yield service


def health(service: Any) -> httpx.Response:
    return httpx.get(f"{service.api}/health", timeout=10)


def test_health_names_the_database_while_it_is_down(serve: Any, serve_proxy: TcpProxy) -> None:
    answer = health(serve)
    assert answer.status_code == 200, answer.text
    before = answer.json()
    assert before["status"] == "ok" and before["workers"] == 1 and before["down"] == []

    since = serve.log_size()
    serve_proxy.refuse()
    try:
        answer = health(serve)
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["status"] == "unavailable"
        assert [item.split(":")[0] for item in body["down"]] == ["database"], body
        assert "refused" in body["down"][0] or "closed" in body["down"][0], body
        # The live-event listener retries with backoff: one traceback, then a line per attempt.
        wait_until(
            lambda: "LISTEN reconnect 2 failed" in serve.output(since),
            timeout=10,
            what="the listener's second failed reconnect in the log",
        )
    finally:
        serve_proxy.restore()
    answer = wait_until(
        lambda: (r := health(serve)).status_code == 200 and r,
        timeout=15,
        what="health 200 again",
    )
    assert answer.json()["down"] == []
    assert serve.alive()
    wait_until(
        lambda: "LISTEN connection back after" in serve.output(since),
        timeout=15,
        what="the listener back",
    )
    told = serve.log.read_bytes()[since:].decode(errors="replace")
    assert told.count("LISTEN connection lost") == 1, told[-8000:]


def chromium_pids(ancestor: int) -> list[int]:
    """Chromium's main processes (the browser, not its renderers) started by `ancestor`:
    Playwright starts it in a session of its own, so it is found by parentage."""
    parents: dict[int, int] = {}
    commands: dict[int, list[bytes]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == ancestor:
                return True
        return False

    return [
        pid
        for pid, args in commands.items()
        if b"chrom" in args[0] and not any(a.startswith(b"--type=") for a in args) and descends(pid)
    ]


def run_visit(serve: Any, site: SiteServer) -> dict[str, Any]:
    with httpx.Client(base_url=serve.api, timeout=30) as client:
        created = client.post("/runs", json={"workflow": visit_workflow(site)})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]

        def ended() -> dict[str, Any] | None:
            record: dict[str, Any] = client.get(f"/runs/{run_id}").json()
            return record if record["status"] in TERMINAL else None

        record: dict[str, Any] = wait_until(ended, timeout=60, what=f"{run_id} to end")
        return record


def test_an_in_process_worker_that_dies_is_replaced(serve: Any, site: SiteServer) -> None:
    """The in-process worker's Chromium is SIGKILLed: the worker dies, `serve` says so in its
    log, starts another, and the next run completes on it."""
    assert run_visit(serve, site)["status"] == "completed"  # the worker is up, browser and all
    restarts = health(serve).json()["worker_restarts"]
    since = serve.log_size()
    for pid in chromium_pids(serve.process.pid):
        os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: "starting another" in serve.output(since), timeout=20, what="the worker to die"
    )
    assert "Chromium exited" in serve.output(since)
    wait_until(
        lambda: health(serve).status_code == 200 and chromium_pids(serve.process.pid),
        timeout=30,
        what="a new worker",
    )
    assert health(serve).json()["worker_restarts"] == restarts + 1
    record = run_visit(serve, site)
    assert record["status"] == "completed", record
    assert serve.alive()


# --- the pieces underneath: retries, and the card writer --------------------------------------


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "storage.retry" and r.levelno >= logging.WARNING
    ]


async def test_a_retried_operation_waits_out_an_outage_logged_once_and_is_bounded(
    cluster: pg.PrivateCluster, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(through(proxy))
    try:
        await db.ping()
        proxy.refuse()
        asyncio.get_running_loop().call_later(1.5, proxy.restore)
        began = time.monotonic()
        await db.retrying(db.ping, doing="pinging")
        assert 1.4 < time.monotonic() - began < 8
        lines = outage_lines(caplog)
        assert len(lines) == 2, lines  # one when it went, one when it came back
        assert lines[0].startswith("database unavailable (OperationalError: connection failed")
        assert "while pinging" in lines[0]
        assert lines[1].startswith("database is back after")
        assert not db.outage.down

        proxy.refuse()  # longer than the deadline: the last error is raised
        began = time.monotonic()
        with pytest.raises(sa_exc.OperationalError):
            await db.retrying(db.ping, doing="pinging", deadline=time.monotonic() + 1)
        assert time.monotonic() - began < 3
        assert db.outage.down
        proxy.restore()

        async def bad_statement() -> None:  # not an outage: raised at once, not retried
            async with db.session() as session:
                await session.execute(text("SELECT * FROM no_such_table"))

        began = time.monotonic()
        with pytest.raises(sa_exc.ProgrammingError):
            await db.retrying(bad_statement, doing="reading")
        assert time.monotonic() - began < 2
    finally:
        await db.dispose()


async def test_cards_wait_for_the_database_in_order_or_are_named_in_the_record(
    tmp_path: Path, cluster: pg.PrivateCluster, proxy: TcpProxy
) -> None:
    """Cards emitted while the database is down are stored, in order, once it is back; cards
    that cannot be stored before the writer's deadline are counted for `record.missing`."""
    services = open_on(through(proxy), tmp_path / "data")
    try:
        async with services.db.session() as session:
            runs = [
                await create_run(
                    session=session,
                    title=f"cards {n}",
                    definition={"title": "t", "blocks": []},
                    parameters={},
                    source=RunSource.api,
                    timeout_s=60,
                )
                for n in range(2)
            ]
            await session.commit()
        env = SimpleNamespace(db=services.db, listeners=[], stop_writes_by=None)

        def card(text: str) -> dict[str, Any]:
            return {"kind": CardKind.thought, "video_ms": 0, "data": {"text": text}}

        patient = CardWriter(env, runs[0].id, lambda: time.monotonic() + 30)  # type: ignore[arg-type]
        patient.add(card("before"))
        await patient.flush()
        proxy.refuse()
        for n in range(3):
            patient.add(card(f"during {n}"))
            await asyncio.sleep(0.3)
        asyncio.get_running_loop().call_later(1.5, proxy.restore)
        await patient.flush()
        assert patient.missing() == []

        hasty = CardWriter(env, runs[1].id, lambda: time.monotonic() + 1)  # type: ignore[arg-type]
        proxy.refuse()
        hasty.add(card("lost 1"))
        hasty.add(card("lost 2"))
        await hasty.flush()
        [line] = hasty.missing()
        assert line.startswith("timeline: 2 cards not stored: database unavailable: "), line
        proxy.restore()

        async with services.db.session() as session:
            stored = [
                (c.seq, c.data["text"])
                for c in await list_cards(session=session, run_id=runs[0].id)
            ]
            assert await list_cards(session=session, run_id=runs[1].id) == []
        assert stored == [(1, "before"), (2, "during 0"), (3, "during 1"), (4, "during 2")]
    finally:
        await services.close()


# --- (e) a worker stopped during an outage ------------------------------------------------------


def test_a_worker_stopped_while_the_database_is_down_exits_soon_and_loses_nothing(
    tmp_path: Path, cluster: pg.PrivateCluster, site: SiteServer
) -> None:
    """SIGTERM to `glassbox worker` mid-run while PostgreSQL is unreachable: it waits a few
    seconds for its run's writes (not the run's time limit, minutes), exits, and keeps the run's
    recording in its spool; once the database is back, the next worker ends the run
    `interrupted` and stores what it recorded."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env.update(WORKER_ENV)
    # A database of its own: the module's `serve` (and its worker) must not take the run.
    with psycopg.connect(cluster.admin_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS stopping WITH (FORCE)")
        admin.execute("CREATE DATABASE stopping")
    direct = cluster.url.rsplit("/", 1)[0] + "/stopping"
    services = open_on(direct, data_dir)  # migrates
    with TcpProxy(cluster.port) as proxy:
        proxied = f"postgresql://postgres@127.0.0.1:{proxy.port}/stopping"
        env.update({"GLASSBOX_DATA_DIR": str(data_dir), "GLASSBOX_DATABASE_URL": proxied})
        worker = spawn_glassbox(
            "worker", ["worker"], env=env, cwd=tmp_path, log=tmp_path / "worker.log"
        )
        try:

            async def started() -> str:
                run_id = await enqueue(services, stepwise_workflow(site, steps=20, step_ms=800))

                async def acting() -> bool:
                    now = await seen(services, run_id)
                    return now.status == "running" and len(now.cards) >= 4

                await until(acting, timeout=60, what="the run to act")
                return run_id

            run_id = asyncio.run(started())
            proxy.refuse()
            time.sleep(1)
            asked = time.monotonic()
            worker.popen.send_signal(signal.SIGTERM)
            worker.popen.wait(timeout=60)
            took = time.monotonic() - asked
            assert took < 30, f"the worker took {took:.0f} s to stop:\n{worker.tail()}"
            assert (data_dir / "spool" / run_id).is_dir(), worker.tail()
        finally:
            proxy.restore()
            stop_proc(worker)

    async def recovered() -> Seen:
        await asyncio.sleep(LEASE_S)  # the stopped worker's lease runs out
        salvage = await asyncio.create_subprocess_exec(
            *glassbox_command(),
            "worker",
            "--salvage",
            env={**env, "GLASSBOX_DATABASE_URL": direct},
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        said, _ = await asyncio.wait_for(salvage.communicate(), 90)
        assert salvage.returncode == 0, said.decode()
        async with services.db.session() as session:
            names = (
                await session.execute(
                    select(Artifact.kind, Artifact.name).where(Artifact.run_id == run_id)
                )
            ).all()
        assert len(names) == len(set(names)), sorted(names)  # nothing stored twice
        return await seen(services, run_id)

    try:
        outcome = asyncio.run(recovered())
    finally:
        asyncio.run(services.close())
    assert outcome.status == "interrupted", outcome
    assert outcome.artifacts.get("video") == 1, outcome
    assert {"console", "har"} <= set(outcome.artifacts), outcome
    assert not (data_dir / "spool" / run_id).exists()
