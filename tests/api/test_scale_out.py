"""Scale-out, end to end: `glassbox serve --workers 0` API processes and `glassbox worker`
processes apart, on PostgreSQL (the queue and the record, LISTEN/NOTIFY between processes) with
artifacts on a real S3 server (SeaweedFS). Every process is a real subprocess in its own process
group; a worker "vanishes" by SIGKILL of its whole group (Chromium included).

One fresh database, one S3 server and two API processes serve the whole module. Workers are
started by the tests that need them; a test that needs one idle worker reuses the one an earlier
test left if its configuration matches (the survivor of the SIGKILL test serves the live, cancel
and frozen-worker tests; the survivor of the retry test the prompt-start and busy-worker tests),
so the module starts five workers in all. Every test also runs alone.

Timing settings: leases of 3 s renewed every 0.5 s; the workers' fallback poll is 2 s (15 s for
the retry, prompt-start and busy-worker tests, so that anything much quicker came by
LISTEN/NOTIFY). Time limits in the assertions are what a user would call broken, or fractions of
a poll interval, so a busy machine does not fail them; the latencies themselves are printed here
and measured by benchmarks/service.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg.rows import dict_row
from websockets.asyncio.client import connect as ws_connect

from api.live import POLL_S as API_POLL_S
from examples.site_server import SiteServer
from storage import migrate
from tests.api import conftest
from tests.api.conftest import stepwise_workflow
from tests.ports import free_port
from tests.s3server import SeaweedS3
from tests.storage.conftest import postgres_database, require_postgres

pytestmark = pytest.mark.postgres

BUCKET = "glassbox-scale-out"
LEASE_S = 3.0
HEARTBEAT_S = 0.5
POLL_S = 2.0  # the workers' fallback poll (15 s for LONG_POLL workers, below)
CANCEL_WITHIN_S = 10.0  # a cancel that takes longer is broken; the figure is the benchmark's
CONCURRENCY = 2
TERMINAL = {"completed", "failed", "terminated", "canceled", "timed_out", "interrupted"}


def glassbox_command() -> str:
    beside = Path(sys.executable).with_name("glassbox")
    found = str(beside) if beside.is_file() else shutil.which("glassbox")
    assert found, "the `glassbox` console script is not installed"
    return found


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}


def ts(value: str | None) -> float:
    assert value, "missing timestamp"
    return datetime.fromisoformat(value).timestamp()


def wait_until(
    check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# --- processes ------------------------------------------------------------------------------------


@dataclass
class Proc(conftest.Proc):
    config: tuple[int, float, int] = (0, 0.0, 0)  # a worker's concurrency, poll_s, retries
    warm: bool = False  # has completed a run: Chromium up, claim loop idle


@dataclass
class Cluster:
    root: Path
    database_url: str
    s3: SeaweedS3
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    apis: list[str] = field(default_factory=list)
    steady: Proc | None = None
    _count: int = 0

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        self._count += 1
        name = f"{self._count:02d}-{name}"
        log = self.root / f"{name}.log"
        data_dir = self.root / f"{name}-data"  # nothing shared on disk: each its own "machine"
        env = {**self.env, "GLASSBOX_DATA_DIR": str(data_dir), **(extra_env or {})}
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [glassbox_command(), *args],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_api(self) -> tuple[str, Proc]:
        port = free_port()
        proc = self.spawn(
            "api", ["serve", "--workers", "0", "--host", "127.0.0.1", "--port", str(port)]
        )
        return f"http://127.0.0.1:{port}", proc

    def wait_api(self, base: str, proc: Proc, timeout: float = 90) -> None:
        def healthy() -> bool:
            assert proc.alive(), f"{proc.name} exited:\n{proc.tail()}"
            try:
                answer = httpx.get(f"{base}/api/v1/health", timeout=2)
            except httpx.TransportError:
                return False
            return answer.status_code == 200 and answer.json()["workers"] == 0

        wait_until(healthy, timeout=timeout, what=f"{proc.name} to answer", interval=0.2)

    def start_worker(
        self, name: str, *, concurrency: int = CONCURRENCY, poll_s: float = POLL_S, retry: int = 0
    ) -> Proc:
        env = {"GLASSBOX_RETRY_INTERRUPTED": str(retry), "GLASSBOX_POLL_S": str(poll_s)}
        proc = self.spawn(name, ["worker", "--concurrency", str(concurrency)], env)
        proc.config = (concurrency, poll_s, retry)
        return proc

    def workers(self) -> list[Proc]:
        return [p for p in self.procs if "worker" in p.name and p.alive()]

    def kill_workers(self) -> None:
        for proc in self.workers():
            proc.kill()
        self.steady = None

    def steady_worker(
        self, *, concurrency: int = CONCURRENCY, poll_s: float = POLL_S, retry: int = 0
    ) -> Proc:
        """The only worker, with this configuration: the one left by an earlier test if it
        matches (a worker start costs seconds of CPU), else a new one."""
        config = (concurrency, poll_s, retry)
        steady = self.steady
        if steady is None or not steady.alive() or steady.config != config:
            self.kill_workers()
            steady = self.start_worker(
                "worker-steady", concurrency=concurrency, poll_s=poll_s, retry=retry
            )
        self.steady = steady
        return steady

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()

    def logs(self, since: dict[str, int] | None = None) -> str:
        parts = []
        for proc in self.procs:
            start = (since or {}).get(proc.name, 0)
            parts.append(f"----- {proc.name} (pid {proc.pid}) -----\n{proc.tail(start)}")
        return "\n".join(parts)

    def offsets(self) -> dict[str, int]:
        return {p.name: p.log.stat().st_size for p in self.procs if p.log.exists()}

    # --- the database, read directly -------------------------------------------------------

    def runs(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            rows = conn.execute(
                "SELECT id, status, worker_id, attempt, source, parent_run_id, failure_reason,"
                " (SELECT count(*) FROM timeline_cards c WHERE c.run_id = runs.id) AS cards"
                " FROM runs WHERE id = ANY(%s)",
                (run_ids,),
            ).fetchall()
        return {row["id"]: row for row in rows}

    def running_entries(self, run_ids: list[str]) -> dict[str, int]:
        """How often each run entered `running`, from the status history."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT run_id, count(*) FROM run_status_history"
                " WHERE run_id = ANY(%s) AND to_status = 'running' GROUP BY run_id",
                (run_ids,),
            ).fetchall()
        counts = dict.fromkeys(run_ids, 0)
        counts.update({run_id: count for run_id, count in rows})
        return counts

    def history(self, run_id: str) -> list[str]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT to_status FROM run_status_history WHERE run_id = %s ORDER BY id",
                (run_id,),
            ).fetchall()
        return [row[0] for row in rows]

    def children(self, run_id: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            return conn.execute(
                "SELECT id, status, source, worker_id, attempt FROM runs"
                " WHERE parent_run_id = %s ORDER BY created_at",
                (run_id,),
            ).fetchall()

    def children_of_any(self, run_ids: list[str]) -> list[str]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT id FROM runs WHERE parent_run_id = ANY(%s)", (run_ids,)
            ).fetchall()
        return [row[0] for row in rows]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3().start(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster_module(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    require_postgres()  # skip (or fail under CI) before starting anything
    s3: SeaweedS3 = request.getfixturevalue("s3")
    root = tmp_path_factory.mktemp("scale-out")
    with postgres_database() as url:
        migrate.upgrade(url)  # `glassbox db upgrade`, once, before any process starts
        env = {
            **clean_environ(),
            "GLASSBOX_DATABASE_URL": url,
            "GLASSBOX_STORAGE_URL": f"s3://{BUCKET}",
            "GLASSBOX_S3_ENDPOINT": s3.endpoint,
            "GLASSBOX_S3_ACCESS_KEY": s3.access_key,
            "GLASSBOX_S3_SECRET_KEY": s3.secret_key,
            "GLASSBOX_S3_REGION": s3.region,
            "GLASSBOX_S3_SECURE": "false",
            "GLASSBOX_SECRET_KEY": Fernet.generate_key().decode(),
            "GLASSBOX_LEASE_S": str(LEASE_S),
            "GLASSBOX_HEARTBEAT_S": str(HEARTBEAT_S),
            "GLASSBOX_POLL_S": str(POLL_S),
            "PYTHONUNBUFFERED": "1",
        }
        cluster = Cluster(root=root, database_url=url, s3=s3, env=env)
        try:
            started = [cluster.start_api(), cluster.start_api()]
            for base, proc in started:
                cluster.wait_api(base, proc)
            cluster.apis = [base for base, _ in started]
            yield cluster
        finally:
            cluster.stop()  # before the database is dropped


@pytest.fixture
def cluster(cluster_module: Cluster) -> Iterator[Cluster]:
    """The module's cluster; the processes' output of this test is printed at teardown, which
    pytest shows with a failure."""
    offsets = cluster_module.offsets()
    yield cluster_module
    print(cluster_module.logs(offsets))


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


# --- workflows and the API ------------------------------------------------------------------------


def search_flow(
    site: SiteServer, *, slow_ms: int = 1500, title: str = "scale-out"
) -> dict[str, Any]:
    """Search the demo shop, then a page that answers after `slow_ms`: about 2-4 s in all.
    The query is a secret parameter (queue with `SEARCH`): it travels sealed with the shared
    GLASSBOX_SECRET_KEY, and the search finds nothing unless the worker unsealed it."""
    return {
        "title": title,
        "url": site.url,
        "timeout_s": 90,
        "parameters": {"query": {"type": "string", "secret": True}},
        "blocks": [
            {
                "label": "search",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}shop/search.html"},
                    {"fill": {"selector": "#q", "value": "{{ query }}"}},
                    {"click": {"role": "button", "name": "Search"}},
                    {"wait_for": {"selector": ".result", "state": "visible", "timeout_ms": 10000}},
                    {"goto": f"{{{{ url }}}}slow?ms={slow_ms}"},
                ],
            }
        ],
    }


def quick_flow(site: SiteServer) -> dict[str, Any]:
    return {
        "title": "quick",
        "url": site.url,
        "timeout_s": 60,
        "blocks": [
            {
                "label": "open",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}shop/index.html"},
                    {"assert_text": {"text": "Lumen Lamps"}},
                ],
            }
        ],
    }


def endless_flow(site: SiteServer) -> dict[str, Any]:
    """Waits 60 s for text that never shows: only a cancel ends it early."""
    return {
        "title": "endless",
        "url": site.url,
        "timeout_s": 120,
        "blocks": [
            {
                "label": "wait",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}shop/index.html"},
                    {"wait_for": {"text": "This text never appears", "timeout_ms": 60000}},
                ],
            }
        ],
    }


SEARCH = {"query": "nimbus"}  # the parameters of search_flow: finds one lamp


def queue(
    client: httpx.Client,
    base: str,
    definition: dict[str, Any],
    parameters: dict[str, Any] | None = None,
) -> str:
    body = {"workflow": definition, "parameters": parameters or {}}
    answer = client.post(f"{base}/api/v1/runs", json=body)
    assert answer.status_code == 201, answer.text
    record = answer.json()
    assert record["status"] == "queued"
    assert all(record["parameters"][name] == "********" for name in parameters or {})
    run_id: str = record["id"]
    return run_id


def record(client: httpx.Client, base: str, run_id: str) -> dict[str, Any]:
    answer = client.get(f"{base}/api/v1/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def wait_terminal(
    client: httpx.Client, base: str, run_id: str, timeout: float = 60
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = record(client, base, run_id)
        return found if found["status"] in TERMINAL else None

    result: dict[str, Any] = wait_until(done, timeout=timeout, what=f"{run_id} to end")
    return result


def warm_up(cluster: Cluster, client: httpx.Client, site: SiteServer, **config: Any) -> Proc:
    """The only worker, up and idle: it has completed a run (Chromium launched)."""
    worker = cluster.steady_worker(**config)
    if not worker.warm:
        run_id = queue(client, cluster.apis[0], quick_flow(site))
        done = wait_terminal(client, cluster.apis[0], run_id, timeout=90)
        assert done["status"] == "completed", done["failure_reason"]
        worker.warm = True
    return worker


# --- a worker vanishes mid-run --------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.timeout(240)
def test_sigkill_of_a_worker_mid_run_loses_nothing_and_runs_nothing_twice(
    cluster: Cluster, client: httpx.Client, site: SiteServer
) -> None:
    cluster.kill_workers()
    worker_a = cluster.start_worker("worker-a")
    worker_b = cluster.start_worker("worker-b")
    api = cluster.apis[0]
    run_ids = [
        queue(client, api, search_flow(site, title=f"scale-out {i}"), SEARCH) for i in range(12)
    ]

    def a_is_mid_run() -> bool:
        assert worker_a.alive() and worker_b.alive(), "a worker exited on its own"
        rows = cluster.runs(run_ids).values()
        return any(
            worker_a.owns(r["worker_id"]) and r["status"] == "running" and r["cards"] > 0
            for r in rows
        )

    wait_until(a_is_mid_run, timeout=90, what="worker A to be in the middle of a run")
    worker_a.kill()
    killed_at = time.time()
    at_kill = cluster.runs(run_ids)
    on_a = {i for i, r in at_kill.items() if worker_a.owns(r["worker_id"])}
    running_on_a = {i for i in on_a if at_kill[i]["status"] == "running"}
    queued_at_kill = {i for i, r in at_kill.items() if r["status"] == "queued"}
    assert running_on_a, "worker A had no run when it was killed"
    assert queued_at_kill, "every run had started before the kill; nothing left to take over"

    def all_ended() -> bool:
        assert worker_b.alive(), "worker B exited"
        return all(r["status"] in TERMINAL for r in cluster.runs(run_ids).values())

    wait_until(all_ended, timeout=150, what="every run to end", interval=0.25)
    ended_after = time.time() - killed_at
    final = cluster.runs(run_ids)
    statuses = {i: r["status"] for i, r in final.items()}
    assert set(statuses.values()) <= {"completed", "interrupted"}, statuses

    interrupted = {i for i, s in statuses.items() if s == "interrupted"}
    completed = {i for i, s in statuses.items() if s == "completed"}
    # Exactly the runs A was executing were interrupted, each with the reason.
    assert interrupted == running_on_a, (interrupted, running_on_a)
    for run_id in interrupted:
        reason = final[run_id]["failure_reason"] or ""
        assert worker_a.owns(final[run_id]["worker_id"])
        assert "vanished" in reason and "lease" in reason, reason
        # What it recorded before the worker died stays, over the API.
        timeline = client.get(f"{api}/api/v1/runs/{run_id}/timeline").json()["items"]
        assert len(timeline) >= at_kill[run_id]["cards"], f"{run_id} lost cards"
        assert cluster.history(run_id) == ["created", "queued", "running", "interrupted"]
    # Worker B completed the rest, including the runs still queued when A died.
    assert completed == set(run_ids) - running_on_a
    assert queued_at_kill <= completed
    for run_id in completed - on_a:
        assert worker_b.owns(final[run_id]["worker_id"]), final[run_id]
    # None ran twice: one claim each, one `running` in each history, no retries.
    assert {i: r["attempt"] for i, r in final.items()} == dict.fromkeys(run_ids, 1)
    assert cluster.running_entries(run_ids) == dict.fromkeys(run_ids, 1)
    assert cluster.children_of_any(run_ids) == []

    # The completed runs' artifacts are on S3 and readable through the API (presigned URLs).
    for run_id in sorted(completed):
        artifacts = {a["kind"]: a for a in record(client, api, run_id)["artifacts"]}
        assert {"video", "trace", "code", "screenshot"} <= set(artifacts), sorted(artifacts)
        code = artifacts["code"]
        answer = client.get(f"{api}{code['url']}", follow_redirects=False)
        assert answer.status_code == 307, answer.text
        location = answer.headers["location"]
        assert urlsplit(location).netloc == cluster.s3.endpoint, location
        body = client.get(location).content
        assert hashlib.sha256(body).hexdigest() == code["sha256"]
        assert run_id in body.decode()
    sample = {a["kind"]: a for a in record(client, api, min(completed))["artifacts"]}["video"]
    video = client.get(f"{api}{sample['url']}", follow_redirects=True)
    assert video.status_code == 200
    assert video.content[4:8] == b"ftyp" and len(video.content) == sample["size"]

    print(
        f"SIGKILL: {len(interrupted)} interrupted, {len(completed)} completed; "
        f"all ended {ended_after:.1f} s after the kill"
    )
    # The survivor, warm and idle, serves the next tests.
    worker_b.warm = True
    cluster.steady = worker_b


# --- live events and frames across processes ------------------------------------------------------


@dataclass
class Watched:
    opened_at: float = 0.0
    statuses: list[str] = field(default_factory=list)
    cards: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    frames: list[tuple[bytes, float]] = field(default_factory=list)
    close_reason: str | None = None
    ws_close_code: int | None = None


async def watch_events(base: str, run_id: str, seen: Watched) -> None:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http,
        http.stream("GET", f"{base}/api/v1/runs/{run_id}/events") as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        seen.opened_at = time.time()
        event, data = "", ""
        async for line in answer.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data = line.partition(":")[2].strip()
            elif line == "" and event:
                received = time.time()
                payload = json.loads(data)
                if event == "status":
                    seen.statuses.append(payload["status"])
                elif event == "card":
                    seen.cards.append((payload, received))
                elif event == "end":
                    return
                event, data = "", ""


async def watch_frames(base: str, run_id: str, seen: Watched) -> None:
    url = base.replace("http://", "ws://", 1) + f"/api/v1/runs/{run_id}/live"
    async with ws_connect(url, max_size=None, open_timeout=10) as ws:
        async for message in ws:
            assert isinstance(message, bytes), message
            seen.frames.append((message, time.time()))
        seen.ws_close_code = ws.close_code
        seen.close_reason = ws.close_reason


@pytest.mark.s3
@pytest.mark.timeout(240)
async def test_live_events_and_frames_reach_any_api_process(
    cluster: Cluster, client: httpx.Client, site: SiteServer
) -> None:
    warm_up(cluster, client, site)
    latencies: list[float] = []
    for api in cluster.apis:  # the API that queued the run, then the other one
        run_id = queue(
            client, cluster.apis[0], search_flow(site, slow_ms=2000, title="live"), SEARCH
        )
        seen = Watched()
        async with asyncio.timeout(60):
            await asyncio.gather(watch_events(api, run_id, seen), watch_frames(api, run_id, seen))
        final = record(client, api, run_id)
        assert final["status"] == "completed", final["failure_reason"]

        # Status changes, in order, ending completed.
        assert "running" in seen.statuses and seen.statuses[-1] == "completed", seen.statuses
        assert seen.statuses.index("running") < seen.statuses.index("completed")
        # Every card, once, in order.
        timeline = client.get(f"{api}/api/v1/runs/{run_id}/timeline").json()["items"]
        assert [c["id"] for c, _ in seen.cards] == [c["id"] for c in timeline]
        assert {"thought", "block", "action"} <= {c["kind"] for c in timeline}
        # Cards created after the stream opened arrive promptly (notifications, not polling).
        live = [
            (recv - ts(c["created_at"]))
            for c, recv in seen.cards
            if ts(c["created_at"]) > seen.opened_at
        ]
        assert len(live) >= 5, f"only {len(live)} cards were created after the stream opened"
        # Polling alone (every API_POLL_S) would make the typical card wait half a poll on top
        # of its write; notified, it waits for the write only (median 0.05-0.1 s quiet, 0.26 s
        # seen at load 20 on 2 cores). Every card comes, if late.
        lags = sorted(round(lag, 3) for lag in live)
        assert statistics.median(live) < API_POLL_S / 2, f"cards arrived late on {api}: {lags} s"
        assert max(live) < 10, f"a card took over 10 s to reach {api}: {lags} s"
        latencies += live
        # JPEG frames while it ran, then a clean close naming the final status.
        assert seen.frames, f"no live frames on {api}"
        assert all(frame.startswith(b"\xff\xd8\xff") for frame, _ in seen.frames)
        finished = ts(final["finished_at"])
        assert any(at < finished for _, at in seen.frames), "frames only came after the end"
        assert (seen.ws_close_code, seen.close_reason) == (1000, "completed")
        print(
            f"live via {api}: {len(seen.cards)} cards ({len(live)} live, lag median "
            f"{statistics.median(live):.3f} s, max {max(live):.3f} s), {len(seen.frames)} frames"
        )
    print(
        f"card delivery: median {statistics.median(latencies):.3f} s, "
        f"max {max(latencies):.3f} s over {len(latencies)} cards"
    )


# --- cancel across processes ----------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.timeout(240)
def test_cancel_on_an_api_process_stops_the_run_in_a_worker_process(
    cluster: Cluster, client: httpx.Client, site: SiteServer
) -> None:
    warm_up(cluster, client, site)
    run_id = queue(client, cluster.apis[0], endless_flow(site))

    def waiting() -> bool:
        row = cluster.runs([run_id])[run_id]
        return bool(row["status"] == "running" and row["cards"] >= 3)

    wait_until(waiting, timeout=60, what="the run to be waiting in its browser")
    time.sleep(0.5)
    asked_at = time.time()
    answer = client.post(f"{cluster.apis[1]}/api/v1/runs/{run_id}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["cancel_requested"] is True

    def ended() -> dict[str, Any] | None:
        found = record(client, cluster.apis[1], run_id)
        return found if found["status"] in TERMINAL else None

    final = wait_until(ended, timeout=30, what="the cancel", interval=0.05)
    latency = time.time() - asked_at
    timeline = client.get(f"{cluster.apis[1]}/api/v1/runs/{run_id}/timeline").json()["items"]
    reacted = [
        ts(c["created_at"]) - asked_at
        for c in timeline
        if c["kind"] == "thought" and "canceled" in str(c.get("text"))
    ]
    history = cluster.history(run_id)
    print(
        f"cancel: worker reacted after {reacted[0] if reacted else float('nan'):.3f} s, "
        f"run {final['status']} after {latency:.3f} s; history {history}"
    )
    # What a user would see as broken: a run that goes on after its Cancel. How fast it stops
    # (the contract says within 1 s) is benchmarks/service.py's cancel figure, not a test's.
    assert reacted and reacted[0] < CANCEL_WITHIN_S, "the worker did not stop the run"
    assert history == ["created", "queued", "running", "canceled"], (
        f"canceled, then {history[-1]}: {final['failure_reason']!r}"
    )
    assert final["failure_reason"] == "canceled by a user"
    # ~1.5 s on a quiet machine: ending the recording (screencast, trace, video, uploads to S3)
    # comes before the status, and takes longer on a busy machine.
    assert latency < CANCEL_WITHIN_S, f"the cancel took {latency:.2f} s"
    assert {a["kind"] for a in final["artifacts"]} >= {"video", "trace"}  # partial record kept


# --- a frozen worker comes back -------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.timeout(240)
def test_a_frozen_worker_does_not_go_on_with_a_run_taken_from_it(
    cluster: Cluster, client: httpx.Client, site: SiteServer
) -> None:
    """A worker stalled past its lease (SIGSTOP: a long GC pause, a frozen VM, a network
    partition) has its run ended `interrupted` by another worker. When it comes back it must
    stop executing that run, or the run executes twice at once (with retries: the original on
    the stale worker beside its retry)."""
    frozen = warm_up(cluster, client, site)
    run_id = queue(client, cluster.apis[0], stepwise_workflow(site))

    def started() -> bool:
        row = cluster.runs([run_id])[run_id]
        return bool(row["status"] == "running" and row["cards"] >= 3)

    wait_until(started, timeout=60, what="the run to be under way", interval=0.05)
    os.killpg(frozen.pid, signal.SIGSTOP)
    try:
        cluster.steady = None
        reaper = cluster.start_worker("worker-reaper")
        interrupted = wait_terminal(client, cluster.apis[0], run_id, timeout=60)
        assert interrupted["status"] == "interrupted", interrupted
        assert "vanished" in interrupted["failure_reason"]
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
    resumed_at = time.time()
    wait_until(
        lambda: f"lost the lease of {run_id}" in frozen.tail(),
        timeout=30,
        what="the worker that woke up to see that its run was taken away",
    )
    time.sleep(2)  # each slow step takes 0.6 s: a worker that went on would show it
    assert frozen.alive() and reaper.alive()
    timeline = client.get(f"{cluster.apis[0]}/api/v1/runs/{run_id}/timeline").json()["items"]
    # It may finish the step it was in when it froze, and no more (eight were left).
    late = [c for c in timeline if c["kind"] == "action" and ts(c["created_at"]) > resumed_at]
    frozen.kill()
    cluster.steady = reaper
    assert record(client, cluster.apis[0], run_id)["status"] == "interrupted"
    assert cluster.history(run_id) == ["created", "queued", "running", "interrupted"]
    assert len(late) <= 1, (
        f"the worker went on executing {run_id} after it was interrupted: {len(late)} more "
        f"actions: {[(c.get('verb'), c.get('target')) for c in late]}"
    )


# --- retrying interrupted runs --------------------------------------------------------------------

# A worker whose fallback poll is 15 s: what happens sooner came by a notification. It also
# retries interrupted runs once.
LONG_POLL: dict[str, Any] = {"concurrency": 1, "poll_s": 15.0, "retry": 1}


@pytest.mark.s3
@pytest.mark.timeout(240)
def test_an_interrupted_run_is_retried_on_the_surviving_worker(
    cluster: Cluster, client: httpx.Client, site: SiteServer
) -> None:
    cluster.kill_workers()
    pair = [
        cluster.start_worker("worker-retry-a", **LONG_POLL),
        cluster.start_worker("worker-retry-b", **LONG_POLL),
    ]
    api = cluster.apis[0]
    run_id = queue(client, api, search_flow(site, slow_ms=3000, title="retried"), SEARCH)

    def mid_run() -> dict[str, Any] | None:
        row = cluster.runs([run_id])[run_id]
        return row if row["status"] == "running" and row["cards"] > 0 else None

    row = wait_until(mid_run, timeout=90, what="the run to be mid-run")
    (victim,) = [w for w in pair if w.owns(row["worker_id"])]
    (survivor,) = [w for w in pair if w is not victim]
    victim.kill()

    original = wait_terminal(client, api, run_id, timeout=30)
    assert original["status"] == "interrupted", original
    assert "vanished" in original["failure_reason"], original["failure_reason"]
    children = wait_until(
        lambda: cluster.children(run_id), timeout=10, what="the retry to be queued"
    )
    assert len(children) == 1, children
    retry_id = children[0]["id"]
    retry = wait_terminal(client, api, retry_id, timeout=60)
    assert retry["status"] == "completed", retry["failure_reason"]
    assert retry["parent_run_id"] == run_id
    assert retry["source"] == "rerun"
    assert retry["attempt"] == 1
    assert retry["title"] == original["title"]
    assert survivor.owns(cluster.runs([retry_id])[retry_id]["worker_id"])
    assert cluster.running_entries([run_id, retry_id]) == {run_id: 1, retry_id: 1}
    assert cluster.children(retry_id) == []  # one retry, as configured
    assert survivor.alive()
    survivor.warm = True
    cluster.steady = survivor


# --- prompt start ---------------------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.timeout(240)
def test_an_idle_worker_starts_a_queued_run_at_once(
    cluster: Cluster, client: httpx.Client, site: SiteServer
) -> None:
    """A run queued on one API process reaches an idle worker by notification: well before its
    15 s poll would find it (without the notification each run would wait about 15 s)."""
    warm_up(cluster, client, site, **LONG_POLL)
    waits = []
    for _ in range(4):
        run_id = queue(client, cluster.apis[1], quick_flow(site))
        done = wait_terminal(client, cluster.apis[0], run_id)
        assert done["status"] == "completed", done["failure_reason"]
        waits.append(ts(done["started_at"]) - ts(done["queued_at"]))
    poll_s = LONG_POLL["poll_s"]
    print(f"queued -> started: {[round(w, 3) for w in waits]} s (poll fallback {poll_s:g} s)")
    assert max(waits) < poll_s / 3, waits


# --- a busy worker takes the next run as soon as a slot frees -------------------------------------


@pytest.mark.s3
@pytest.mark.timeout(240)
def test_a_run_queued_behind_a_busy_worker_starts_when_its_slot_frees(
    cluster: Cluster, client: httpx.Client, site: SiteServer
) -> None:
    """Two runs at once on a worker of concurrency 1 (poll fallback 15 s): the second must
    start when the first ends, not at the worker's next poll."""
    warm_up(cluster, client, site, **LONG_POLL)
    run_ids = [
        queue(client, cluster.apis[0], search_flow(site, slow_ms=500), SEARCH) for _ in range(2)
    ]
    done = [wait_terminal(client, cluster.apis[0], run_id, timeout=90) for run_id in run_ids]
    assert [d["status"] for d in done] == ["completed"] * 2, [d["failure_reason"] for d in done]
    first, second = sorted(done, key=lambda d: ts(d["started_at"]))
    gap = ts(second["started_at"]) - ts(first["finished_at"])
    print(f"slot freed -> next run started: {gap:.3f} s")
    assert gap >= 0, (first, second)
    # Without the wake-up it would wait for the worker's next poll, about 15 s after the second
    # run was queued.
    assert gap < LONG_POLL["poll_s"] / 3, (
        f"the second run waited {gap:.1f} s after the worker became free: it only claims "
        f"again on a queue notification or at its {LONG_POLL['poll_s']:g} s poll"
    )


# --- processes starting together on an empty database ---------------------------------------------


@pytest.mark.timeout(120)
def test_processes_starting_together_on_an_empty_database_all_migrate_it(
    tmp_path: Path,
) -> None:
    """`glassbox serve` and `glassbox worker` started at the same moment on a new database
    (`docker compose up`) each apply the migrations at start-up (`open_services` calls
    `storage.migrate.upgrade`, as `glassbox db upgrade` does): all of them must come up. Three
    processes run just that start-up step here, to keep the test light."""
    script = "import sys; from storage import migrate; migrate.upgrade(sys.argv[1])"
    with postgres_database() as url:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, url],
                cwd=Path(__file__).resolve().parents[2],
                env={**clean_environ(), "GLASSBOX_DATA_DIR": str(tmp_path)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=90)[0].decode(errors="replace") for p in procs]
        codes = [p.returncode for p in procs]
        assert codes == [0, 0, 0], "\n".join(o[-1200:] for o in outputs if o)
