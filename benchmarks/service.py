"""Service benchmarks: queue latency, cancel latency, run-list latency with 100,000 runs, and
completed runs per minute at worker concurrency 1, 2 and 4.

    .venv/bin/python benchmarks/service.py                      # SQLite (the embedded default)
    .venv/bin/python benchmarks/service.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Everything runs against real `glassbox serve` (and `glassbox worker`) subprocesses on loopback,
each phase on a fresh database: SQLite in a temporary data directory by default; with
`--database-url postgresql://...` a fresh database `glassbox_bench_<random>` is created on that
server (the URL's database is only used to create and drop it) and dropped afterwards.
Artifacts go to a local directory in the temporary data directory either way. The demo site
(`examples.site_server`) runs in this process.

Phases (`--phases`, default all):

* queue -- an idle worker (a random 0.5-1.5 s after the previous run ended), then POST
  /api/v1/runs of a one-step workflow (goto). Measured: the POST's response time, and the time
  from sending the POST to the worker's claim, twice: from the run record (`started_at`, the
  server's clock, minus the moment the POST was sent; also `started_at - created_at`) and as
  seen by a client (the first `status` Server-Sent Event that is no longer `queued`, on
  `/runs/{id}/events` opened right after the POST returned). Two topologies: `embedded`
  (`glassbox serve --workers 1`: the API and the worker in one process) and `separate`
  (`glassbox serve --workers 0` plus a `glassbox worker` process).
* cancel -- a run waiting on `wait_for` (timeout_ms 60000), and a run whose navigation is in
  flight (a page that answers after a minute); POST /runs/{id}/cancel, then GET the
  run every 20 ms until it shows `canceled`. Measured: POST response time, the worker's reaction
  (the "Run canceled" narration card's time minus the POST), and the time until the record
  shows `canceled` (the record is final only after the partial recording is stored). Both
  topologies.
* list -- GET /api/v1/runs latency (`glassbox serve --workers 0`) with 1,000 runs in the
  database, then with 100,000 (bulk-inserted with SQLAlchemy core: statuses, sources, titles
  and `created_at` spread over 90 days like a busy installation; PostgreSQL gets the VACUUM
  ANALYZE autovacuum would run): the first page (limit 50), a deep page via a cursor half-way
  down, a common status (`failed`, 12 %), a rare one (`running`, 0.5 %), a `q=` search that matches
  about 1 run in 8 and one that matches nothing. Median and p95 of `--repeats` requests after
  2 warm-ups, and the ratio to the 1,000-run baseline.
* throughput -- `--throughput-runs` runs of examples/shop.yaml (against the demo site) queued at
  once to `glassbox serve --workers 1` with GLASSBOX_CONCURRENCY=1, 2, 4, after one warm-up
  run. Completed runs per minute = runs / (last finished_at - first queued_at), the ratio to
  concurrency 1, and how busy the machine's CPUs were meanwhile (/proc/stat, every process:
  near 100 % means the runs were waiting for CPU, not for each other), with the same figure
  over the 2 s before the runs were queued (the worker idle: what everything else used).
  `--throughput-rounds N` repeats the levels N times (c1 c2 c4 c1 c2 c4 ...) and adds medians.

The load average is printed at the start and the end of every phase; on this 2-core machine
anything else running (a test suite, another browser) changes the numbers a lot, so re-run
when the 1-minute load went above the core count. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import yaml
from psycopg import sql
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # examples/ is not an installed package

from examples.site_server import SiteServer  # noqa: E402
from storage.db import sync_url  # noqa: E402
from storage.ids import _ALPHABET  # noqa: E402
from storage.models import Run  # noqa: E402

# Settings this script sets for each process it starts; the others (runner settings such as
# GLASSBOX_TRACE) pass through from the environment.
OWN_SETTINGS = (
    "GLASSBOX_DATA_DIR",
    "GLASSBOX_DATABASE_URL",
    "GLASSBOX_STORAGE_URL",
    "GLASSBOX_HOST",
    "GLASSBOX_PORT",
    "GLASSBOX_WORKERS",
    "GLASSBOX_CONCURRENCY",
    "GLASSBOX_SECRET_KEY",
)
TERMINAL = {"completed", "failed", "terminated", "canceled", "timed_out", "interrupted"}
SHOP = ROOT / "examples" / "shop.yaml"
PHASES = ("queue", "cancel", "list", "throughput")
TOPOLOGIES = ("embedded", "separate")


# --- small helpers ---------------------------------------------------------------------------


def load() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def cores() -> int:
    return os.cpu_count() or 1


def load_note(what: str) -> str:
    one, five, fifteen = load()
    busy = "  ** busier than the core count: numbers are noisy **" if one > cores() else ""
    return f"[load {what}: {one:.2f} {five:.2f} {fifteen:.2f} on {cores()} cores]{busy}"


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (Linux)."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return (0.0, 0.0)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields) - idle, sum(fields))


def cpu_busy(since: tuple[float, float]) -> float:
    """Percent of the machine's CPU time that was busy since `since` (every process)."""
    busy, total = cpu_times()
    return 100.0 * (busy - since[0]) / (total - since[1]) if total > since[1] else float("nan")


def ts(value: str | None) -> float:
    if not value:
        raise ValueError("missing timestamp")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def ms(seconds: float) -> float:
    return seconds * 1000.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); the maximum for small samples and q=95."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


@dataclass
class Stat:
    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def p95(self) -> float:
        return percentile(self.values, 95) if self.values else float("nan")

    def cells(self) -> str:
        if not self.values:
            return f"{'n/a':>9} {'n/a':>9} {'n/a':>9} {'n/a':>9}"
        return f"{self.median:9.1f} {self.p95:9.1f} {min(self.values):9.1f} {max(self.values):9.1f}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def glassbox_command() -> str:
    beside = Path(sys.executable).with_name("glassbox")
    found = str(beside) if beside.is_file() else shutil.which("glassbox")
    if not found:
        raise SystemExit("the `glassbox` console script is not installed (make setup)")
    return found


def base_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in OWN_SETTINGS}


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


# --- databases -------------------------------------------------------------------------------


@dataclass
class Backend:
    """Where each phase's fresh database lives."""

    admin_url: str | None  # None: SQLite in the data directory

    @property
    def name(self) -> str:
        return "sqlite" if self.admin_url is None else "postgresql"

    @contextlib.contextmanager
    def fresh(self, data_dir: Path) -> Iterator[str]:
        """A new, empty database; its plain URL (as users write it)."""
        if self.admin_url is None:
            yield f"sqlite:///{(data_dir / 'glassbox.db').resolve()}"
            return
        name = "glassbox_bench_" + secrets.token_hex(5)
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urlsplit(self.admin_url)._replace(path=f"/{name}").geturl()
        finally:
            self._admin(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def _admin(self, statement: sql.Composed) -> None:
        assert self.admin_url is not None
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def describe(self) -> str:
        if self.admin_url is None:
            return "SQLite (a fresh file per phase in a temporary data directory)"
        with psycopg.connect(self.admin_url, connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        version = row[0] if row else "?"
        where = urlsplit(self.admin_url)._replace(path="/<fresh db per phase>").geturl()
        return f"PostgreSQL {version} at {where}"


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM (the process stops its workers and keeps what their runs recorded), then
        SIGKILL of its process group (Chromium included) if it does not end in time."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


@dataclass
class Deployment:
    """One database, one API process, and its workers (in-process or separate)."""

    label: str
    data_dir: Path
    database_url: str
    api_workers: int
    concurrency: int = 1
    separate_workers: int = 0
    procs: list[Proc] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = base_environ()
        env.update(
            {
                "GLASSBOX_DATA_DIR": str(self.data_dir),
                "GLASSBOX_DATABASE_URL": self.database_url,
                "GLASSBOX_CONCURRENCY": str(self.concurrency),
            }
        )
        return env

    def _spawn(self, name: str, args: list[str]) -> Proc:
        log = self.data_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [glassbox_command(), *args],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Chromium goes with it
                cwd=self.data_dir,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start(self) -> Deployment:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        serve = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        api = self._spawn("api", [*serve, "--workers", str(self.api_workers)])

        def healthy() -> bool:
            if not api.alive():
                raise RuntimeError(f"glassbox serve exited:\n{api.tail()}")
            try:
                return httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=90, what="glassbox serve", every=0.2)
        for i in range(self.separate_workers):
            self._spawn(f"worker{i}", ["worker", "--concurrency", str(self.concurrency)])
        return self

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def __enter__(self) -> Deployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def deployed(
    backend: Backend,
    work: Path,
    label: str,
    *,
    topology: str = "embedded",
    api_workers: int | None = None,
    concurrency: int = 1,
) -> Iterator[Deployment]:
    """A fresh database and a deployment on it, in `work / label`. `topology`: the worker in
    the API process (embedded) or a `glassbox worker` beside an API-only process (separate);
    `api_workers=0` for an API alone."""
    embedded = topology == "embedded"
    with (
        backend.fresh(work / label) as url,
        Deployment(
            label,
            work / label,
            url,
            api_workers=(1 if embedded else 0) if api_workers is None else api_workers,
            concurrency=concurrency,
            separate_workers=0 if embedded else 1,
        ) as deployment,
    ):
        yield deployment


class Api:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.client = httpx.Client(base_url=f"{deployment.url}/api/v1", timeout=60)

    def close(self) -> None:
        self.client.close()

    def create(self, workflow: dict[str, Any], **extra: Any) -> dict[str, Any]:
        response = self.client.post("/runs", json={"workflow": workflow, **extra})
        if response.status_code != 201:
            raise RuntimeError(f"POST /runs: {response.status_code} {response.text[:500]}")
        record: dict[str, Any] = response.json()
        return record

    def get(self, run_id: str) -> dict[str, Any]:
        response = self.client.get(f"/runs/{run_id}")
        response.raise_for_status()
        record: dict[str, Any] = response.json()
        return record

    def timeline(self, run_id: str) -> list[dict[str, Any]]:
        response = self.client.get(f"/runs/{run_id}/timeline")
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def wait_terminal(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            self.deployment.check_alive()
            record = self.get(run_id)
            return record if record["status"] in TERMINAL else None

        result: dict[str, Any] = wait_until(ended, timeout=timeout, what=f"run {run_id} to end")
        return result

    def first_status_event(self, run_id: str, *, skip: set[str]) -> tuple[float, str]:
        """perf_counter() at the first `status` event whose status is not in `skip`."""
        with self.client.stream("GET", f"/runs/{run_id}/events", timeout=60) as response:
            response.raise_for_status()
            event, data = "", ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif line == "" and event:
                    if event == "status":
                        status = json.loads(data)["status"]
                        if status not in skip:
                            return time.perf_counter(), status
                    if event == "end":
                        break
                    event, data = "", ""
        raise RuntimeError(f"the event stream of {run_id} ended without a status change")


# --- workflows -------------------------------------------------------------------------------


def goto_workflow(site: SiteServer) -> dict[str, Any]:
    return {
        "title": "Queue latency: one goto",
        "url": f"{site.url}shop/",
        "blocks": [{"label": "open", "type": "action", "steps": [{"goto": "{{ url }}"}]}],
    }


def navigating_workflow(site: SiteServer) -> dict[str, Any]:
    return {
        "title": "Cancel latency: a navigation that answers after a minute",
        "url": f"{site.url}shop/",
        "timeout_s": 300,
        "blocks": [
            {
                "label": "navigate",
                "type": "action",
                "steps": [{"goto": "{{ url }}"}, {"goto": "{{ url }}../slow?ms=60000"}],
            }
        ],
    }


def waiting_workflow(site: SiteServer) -> dict[str, Any]:
    return {
        "title": "Cancel latency: waits for what never comes",
        "url": f"{site.url}shop/",
        "timeout_s": 300,
        "blocks": [
            {
                "label": "wait",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}"},
                    {"wait_for": {"selector": "#never-appears", "timeout_ms": 60000}},
                ],
            }
        ],
    }


def shop_workflow(site: SiteServer) -> dict[str, Any]:
    definition: dict[str, Any] = yaml.safe_load(SHOP.read_text())
    definition["url"] = f"{site.url}shop/"
    return definition


# --- phase: queue latency ----------------------------------------------------------------------


@dataclass
class QueueResult:
    topology: str
    post_ms: Stat
    claim_ms: Stat  # started_at - POST sent
    record_ms: Stat  # started_at - created_at
    sse_ms: Stat  # first non-queued status event - POST sent
    sse_statuses: dict[str, int]


def bench_queue(
    args: argparse.Namespace, backend: Backend, site: SiteServer, work: Path
) -> list[QueueResult]:
    results = []
    for topology in args.topologies:
        print(f"\n## queue latency, {topology} worker  {load_note('before')}", flush=True)
        with deployed(backend, work, f"queue-{topology}", topology=topology) as deployment:
            api = Api(deployment)
            try:
                workflow = goto_workflow(site)
                for _ in range(2):  # warm-up: Chromium up, code paths loaded
                    api.wait_terminal(api.create(workflow)["id"])
                post, claim, record, sse = [], [], [], []
                statuses: dict[str, int] = {}
                pauses = random.Random(1)
                for i in range(args.runs):
                    # The worker is idle, waiting for work. A random pause, so the POST does not
                    # fall at the same point of a polling worker's cycle every time.
                    time.sleep(pauses.uniform(args.idle, args.idle + 1.0))
                    sent_wall, sent = time.time(), time.perf_counter()
                    run = api.create(workflow)
                    post.append(ms(time.perf_counter() - sent))
                    seen, status = api.first_status_event(run["id"], skip={"created", "queued"})
                    sse.append(ms(seen - sent))
                    statuses[status] = statuses.get(status, 0) + 1
                    done = api.wait_terminal(run["id"])
                    if done["status"] != "completed":
                        raise RuntimeError(f"run {i} ended {done['status']}: {done}")
                    claim.append(ms(ts(done["started_at"]) - sent_wall))
                    record.append(ms(ts(done["started_at"]) - ts(done["created_at"])))
                results.append(
                    QueueResult(
                        topology, Stat(post), Stat(claim), Stat(record), Stat(sse), statuses
                    )
                )
            finally:
                api.close()
        print(load_note("after"), flush=True)
    return results


def print_queue(results: list[QueueResult]) -> None:
    print("\nqueue latency (ms)                         median       p95       min       max")
    for r in results:
        n = len(r.post_ms.values)
        print(f"  {r.topology:9} POST /runs answered         {r.post_ms.cells()}   n={n}")
        print(f"  {r.topology:9} POST sent -> started_at     {r.claim_ms.cells()}")
        print(f"  {r.topology:9} created_at -> started_at    {r.record_ms.cells()}")
        print(
            f"  {r.topology:9} POST sent -> SSE 'running'  {r.sse_ms.cells()}"
            f"   first status seen: {r.sse_statuses}"
        )


# --- phase: cancel latency ---------------------------------------------------------------------


def reached_goto(api: Api, run_id: str) -> bool:
    """The run's goto is done: it is now in its long wait_for."""
    return any(c["kind"] == "action" and c.get("verb") == "goto" for c in api.timeline(run_id))


def reached_slow_goto(api: Api, run_id: str) -> bool:
    """The run is opening the page that answers after a minute."""
    return any(
        c["kind"] == "thought" and "slow?ms=" in str(c.get("text", ""))
        for c in api.timeline(run_id)
    )


CANCEL_CASES: dict[str, tuple[Callable[[SiteServer], dict[str, Any]], Callable[..., bool]]] = {
    "wait_for": (waiting_workflow, reached_goto),
    "navigation": (navigating_workflow, reached_slow_goto),
}


@dataclass
class CancelResult:
    topology: str
    case: str  # what the run was doing: waiting in a wait_for, or navigating
    post_ms: Stat
    reaction_ms: Stat  # "Run canceled" narration card - POST sent
    finished_ms: Stat  # finished_at - POST sent, runs that ended `canceled`
    seen_ms: Stat  # GET shows `canceled` (20 ms polling) - POST sent
    other_ms: Stat  # POST sent -> GET shows another terminal status
    endings: dict[str, int]
    with_video: int  # ended runs whose partial recording (video) was kept


def cancel_one(
    api: Api, workflow: dict[str, Any], reached: Callable[..., bool], wait_s: float
) -> dict[str, Any]:
    run_id = api.create(workflow)["id"]
    wait_until(
        functools.partial(reached, api, run_id),
        timeout=60,
        what="the run to reach its long wait",
    )
    time.sleep(0.3)  # well inside the minute-long wait
    sent_wall, sent = time.time(), time.perf_counter()
    response = api.client.post(f"/runs/{run_id}/cancel")
    post = ms(time.perf_counter() - sent)
    response.raise_for_status()
    while True:
        record = api.get(run_id)
        if record["status"] in TERMINAL:
            seen = ms(time.perf_counter() - sent)
            break
        if time.perf_counter() - sent > wait_s:
            seen, record["status"] = ms(time.perf_counter() - sent), "still running"
            break
        time.sleep(0.02)
    narration = [
        c
        for c in api.timeline(run_id)
        if c["kind"] == "thought" and str(c.get("text", "")).startswith("Run canceled")
    ]
    return {
        "run_id": run_id,
        "status": record["status"],
        "post_ms": post,
        "seen_ms": seen,
        "finished_ms": (
            ms(ts(record["finished_at"]) - sent_wall) if record.get("finished_at") else None
        ),
        "reaction_ms": ms(ts(narration[0]["created_at"]) - sent_wall) if narration else None,
        "video": any(a["kind"] == "video" for a in record.get("artifacts", [])),
        "failure_reason": record.get("failure_reason"),
    }


def bench_cancel(
    args: argparse.Namespace, backend: Backend, site: SiteServer, work: Path
) -> list[CancelResult]:
    results = []
    for topology in args.topologies:
        for case in CANCEL_CASES:
            results.append(cancel_case(args, backend, site, work, topology, case))
    return results


def cancel_case(
    args: argparse.Namespace,
    backend: Backend,
    site: SiteServer,
    work: Path,
    topology: str,
    case: str,
) -> CancelResult:
    make_workflow, reached = CANCEL_CASES[case]
    print(
        f"\n## cancel latency, {topology} worker, during {case}  {load_note('before')}", flush=True
    )
    with deployed(backend, work, f"cancel-{topology}-{case}", topology=topology) as deployment:
        api = Api(deployment)
        try:
            api.wait_terminal(api.create(goto_workflow(site))["id"])  # warm-up
            workflow = make_workflow(site)
            samples = []
            for i in range(args.cancels):
                sample = cancel_one(api, workflow, reached, args.cancel_wait)
                samples.append(sample)
                if sample["status"] != "canceled":
                    print(
                        f"  cancel {i + 1}: {sample['run_id']} ended {sample['status']} "
                        f"after {sample['seen_ms'] / 1000:.1f} s: {sample['failure_reason']}",
                        flush=True,
                    )
                deployment.check_alive()
        finally:
            api.close()
    canceled = [s for s in samples if s["status"] == "canceled"]
    endings: dict[str, int] = {}
    for sample in samples:
        endings[sample["status"]] = endings.get(sample["status"], 0) + 1
    print(load_note("after"), flush=True)
    return CancelResult(
        topology,
        case,
        Stat([s["post_ms"] for s in samples]),
        Stat([s["reaction_ms"] for s in samples if s["reaction_ms"] is not None]),
        Stat([s["finished_ms"] for s in canceled]),
        Stat([s["seen_ms"] for s in canceled]),
        Stat([s["seen_ms"] for s in samples if s["status"] != "canceled"]),
        endings,
        sum(1 for s in samples if s["video"]),
    )


def print_cancel(results: list[CancelResult]) -> None:
    print(f"\n{'cancel latency (ms)':56} median       p95       min       max")
    for r in results:
        n = len(r.post_ms.values)
        who = f"{r.topology:9} {r.case:10}"
        print(f"  {who} POST /cancel answered           {r.post_ms.cells()}   n={n}")
        print(f"  {who} POST -> worker reacts (card)    {r.reaction_ms.cells()}")
        print(f"  {who} POST -> finished_at (canceled)  {r.finished_ms.cells()}")
        print(f"  {who} POST -> GET shows canceled      {r.seen_ms.cells()}")
        if r.other_ms.values:
            print(f"  {who} POST -> GET shows another end   {r.other_ms.cells()}")
        print(f"  {who} endings: {r.endings}; partial video kept in {r.with_video}/{n}")


# --- phase: run-list latency -------------------------------------------------------------------

TITLES = (
    "Find the cheapest {item}",
    "Compare {item} prices",
    "Check stock of the {item}",
    "Log in and download the {month} invoices",
    "Export orders for {month}",
    "Fill the contact form for {customer}",
    "Track the parcel of {customer}",
    "Update the address of {customer}",
    "Scrape the {item} reviews",
    "Renew the subscription of {customer}",
    "Book a demo for {customer}",
    "Check the {month} statement",
    "Monitor the {item} product page",
    "Collect quotes for {item}s",
    "Search the catalogue for {item}",
    "Nightly smoke test of the checkout",
)
ITEMS = ("lamp", "chair", "desk", "sofa", "shelf", "rug", "mirror", "clock")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")
CUSTOMERS = ("Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries")
STATUSES = (  # (status, weight): a busy installation, mostly finished runs
    ("completed", 78.0),
    ("failed", 12.0),
    ("canceled", 4.0),
    ("timed_out", 2.0),
    ("terminated", 1.5),
    ("interrupted", 1.0),
    ("running", 0.5),
    ("queued", 1.0),
)
SOURCES = (("api", 60.0), ("schedule", 20.0), ("manual", 10.0), ("rerun", 5.0), ("cli", 5.0))
SPREAD = timedelta(days=90)


def ulid_at(prefix: str, when: datetime, rng: random.Random) -> str:
    """storage.ids.new_id for a given moment: time-ordered like the ids Glassbox makes."""
    value = (int(when.timestamp() * 1000) << 80) | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def fake_runs(count: int, seed: int, definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    statuses, status_weights = [s for s, _ in STATUSES], [w for _, w in STATUSES]
    sources, source_weights = [s for s, _ in SOURCES], [w for _, w in SOURCES]
    metrics = {"prompt_tokens": 0, "completion_tokens": 0, "llm_calls": 0, "cost_usd": 0.0}
    for _ in range(count):
        created = now - SPREAD * rng.random()
        status = rng.choices(statuses, status_weights)[0]
        title = rng.choice(TITLES).format(
            item=rng.choice(ITEMS), month=rng.choice(MONTHS), customer=rng.choice(CUSTOMERS)
        )
        started = created + timedelta(seconds=rng.uniform(0.05, 5))
        finished = started + timedelta(seconds=rng.uniform(3, 90))
        ended = status not in ("queued", "running")
        yield {
            "id": ulid_at("run", created, rng),
            "title": title,
            "status": status,
            "source": rng.choices(sources, source_weights)[0],
            "workflow_id": None,
            "parent_run_id": None,
            "definition": definition,
            "parameters": {"query": rng.choice(ITEMS)},
            "sealed_secrets": None,
            "timeout_s": 120,
            "webhook_url": None,
            "proxy": None,
            "extra_http_headers": None,
            "run_with": "agent",
            "summary": "Ran 2 blocks, 9 actions" if status == "completed" else None,
            "extracted_information": (
                {"cheapest": "Desk lamp", "prices": [19.5, 24.0, 31.25]}
                if status == "completed"
                else None
            ),
            "failure_reason": (
                'block "search", step 6 wait_for .result: no element matched within 5000 ms'
                if status == "failed"
                else None
            ),
            "step_count": 2,
            "action_count": 9,
            "metrics": metrics,
            "created_at": created,
            "queued_at": created,
            "started_at": started if status != "queued" else None,
            "finished_at": finished if ended else None,
            "worker_id": "bench:1:w" if status == "running" else None,
            "lease_expires_at": None,
            "heartbeat_at": None,
            "attempt": 0 if status == "queued" else 1,
            "cancel_requested_at": None,
            "archived": rng.random() < 0.02,
            "read_at": created if rng.random() < 0.7 else None,
            "webhook_state": None,
            "webhook_next_at": None,
            "webhook_attempts": 0,
        }


def insert_runs(engine: Engine, count: int, seed: int, definition: dict[str, Any]) -> float:
    """Bulk-inserts `count` runs; returns the seconds it took."""
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    statement = insert(Run)
    with engine.begin() as conn:
        for row in fake_runs(count, seed, definition):
            batch.append(row)
            if len(batch) == 5000:
                conn.execute(statement, batch)
                batch = []
        if batch:
            conn.execute(statement, batch)
    return time.perf_counter() - started


def cursor_at(engine: Engine, offset: int) -> str:
    """The cursor the API hands out for the page that starts after row `offset` (newest
    first, archived runs left out), as api/runs.py encodes it."""
    with engine.connect() as conn:
        row = conn.execute(
            select(Run.created_at, Run.id)
            .where(Run.archived.is_(False))
            .order_by(Run.created_at.desc(), Run.id.desc())
            .offset(offset)
            .limit(1)
        ).one()
    raw = f"{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@dataclass
class ListResult:
    rows: int
    insert_s: float
    queries: dict[str, Stat]
    items: dict[str, int]


def list_queries(engine: Engine, rows: int) -> dict[str, str]:
    return {
        "first page (limit 50)": "/runs?limit=50",
        "deep page (cursor at 1/2)": f"/runs?limit=50&cursor={cursor_at(engine, rows // 2)}",
        "status=failed": "/runs?status=failed&limit=50",
        "status=running (rare)": "/runs?status=running&limit=50",
        "q=lamp (1 in 8)": "/runs?q=lamp&limit=50",
        "q=no-such-run (no match)": "/runs?q=no-such-run&limit=50",
    }


def measure_list(api: Api, path: str, repeats: int) -> tuple[Stat, int]:
    times = []
    items = 0
    for i in range(repeats + 2):
        started = time.perf_counter()
        response = api.client.get(path)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        items = len(response.json()["items"])
        if i >= 2:
            times.append(ms(elapsed))
    return Stat(times), items


def bench_list(
    args: argparse.Namespace, backend: Backend, site: SiteServer, work: Path
) -> list[ListResult]:
    print(f"\n## run-list latency  {load_note('before')}", flush=True)
    results = []
    definition = {
        **json.loads(json.dumps(shop_workflow(site))),
        "url": "https://shop.example.com/",
    }
    with deployed(backend, work, "list", api_workers=0) as deployment:
        engine = create_engine(sync_url(deployment.database_url))
        api = Api(deployment)
        try:
            inserted = 0
            for target in (args.baseline_rows, args.rows):
                seconds = insert_runs(engine, target - inserted, seed=target, definition=definition)
                inserted = target
                if backend.admin_url is not None:
                    # What autovacuum does within a minute of so many inserts (PostgreSQL >= 13
                    # vacuums insert-only tables too): statistics and the visibility map, which
                    # lets the per-status counts use an index-only scan.
                    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                        conn.execute(text("VACUUM ANALYZE runs"))
                with engine.connect() as conn:
                    total = conn.execute(select(func.count()).select_from(Run)).scalar_one()
                print(f"  {total} runs in the database (inserted in {seconds:.1f} s)", flush=True)
                queries: dict[str, Stat] = {}
                items: dict[str, int] = {}
                for label, path in list_queries(engine, total).items():
                    queries[label], items[label] = measure_list(api, path, args.repeats)
                results.append(ListResult(total, seconds, queries, items))
        finally:
            api.close()
            engine.dispose()
    print(load_note("after"), flush=True)
    return results


def print_list(results: list[ListResult]) -> None:
    if not results:
        return
    base = results[0]
    for r in results:
        title = f"GET /runs, {r.rows} runs (ms)"
        print(
            f"\n{title:<31}{'median':>9} {'p95':>9} {'min':>9} {'max':>9}  items  x{base.rows} runs"
        )
        for label, stat in r.queries.items():
            ratio = stat.median / base.queries[label].median
            print(f"  {label:28} {stat.cells()}  {r.items[label]:5}  {ratio:6.2f}")


# --- phase: throughput -------------------------------------------------------------------------


@dataclass
class ThroughputResult:
    round: int
    concurrency: int
    runs: int
    completed: int
    elapsed_s: float
    per_minute: float
    run_s: Stat  # started_at -> finished_at
    wait_s: Stat  # queued_at -> started_at
    cpu_busy: float  # % of the machine's CPU busy meanwhile (all processes, not only ours)
    cpu_before: float  # the same over 2 s just before, the worker idle: everyone else's share


def bench_throughput(
    args: argparse.Namespace, backend: Backend, site: SiteServer, work: Path
) -> list[ThroughputResult]:
    results = []
    workflow = shop_workflow(site)
    levels = [(n, c) for n in range(1, args.throughput_rounds + 1) for c in args.concurrency]
    for round_number, concurrency in levels:
        label = f"throughput-r{round_number}-c{concurrency}"
        print(
            f"\n## throughput, round {round_number}, concurrency {concurrency}  "
            f"{load_note('before')}",
            flush=True,
        )
        with deployed(backend, work, label, concurrency=concurrency) as deployment:
            api = Api(deployment)
            try:
                warm = api.wait_terminal(api.create(workflow)["id"])
                if warm["status"] != "completed":
                    raise RuntimeError(f"the warm-up run ended {warm['status']}: {warm}")
                idle_start = cpu_times()
                time.sleep(2)
                before = cpu_busy(idle_start)
                cpu_start = cpu_times()
                ids = [api.create(workflow)["id"] for _ in range(args.throughput_runs)]
                records = [api.wait_terminal(run_id, timeout=600) for run_id in ids]
                busy = cpu_busy(cpu_start)
            finally:
                api.close()
        completed = [r for r in records if r["status"] == "completed"]
        first = min(ts(r["queued_at"]) for r in records)
        last = max(ts(r["finished_at"]) for r in records)
        elapsed = last - first
        result = ThroughputResult(
            round_number,
            concurrency,
            len(records),
            len(completed),
            elapsed,
            len(completed) / elapsed * 60,
            Stat([ts(r["finished_at"]) - ts(r["started_at"]) for r in records]),
            Stat([ts(r["started_at"]) - ts(r["queued_at"]) for r in records]),
            busy,
            before,
        )
        results.append(result)
        print(
            f"  {len(completed)}/{len(records)} completed in {elapsed:.1f} s: "
            f"{result.per_minute:.1f} runs/min  {load_note('after')}",
            flush=True,
        )
        if len(completed) != len(records):
            for r in records:
                if r["status"] != "completed":
                    print(f"    {r['id']} {r['status']}: {r['failure_reason']}")
    return results


def print_throughput(results: list[ThroughputResult]) -> None:
    if not results:
        return
    rate = {
        c: statistics.median(r.per_minute for r in results if r.concurrency == c)
        for c in dict.fromkeys(r.concurrency for r in results)
    }
    base = next(iter(rate.values()))
    print(
        "\nthroughput (examples/shop.yaml)  runs  completed  elapsed s  runs/min  ratio"
        "  run s (median)  wait s (median)  CPU busy (before)"
    )
    for r in results:
        print(
            f"  round {r.round} concurrency {r.concurrency:<2}       {r.runs:4}  {r.completed:9}"
            f"  {r.elapsed_s:9.1f}  {r.per_minute:8.1f}  {r.per_minute / base:5.2f}"
            f"  {r.run_s.median:14.1f}  {r.wait_s.median:15.1f}  {r.cpu_busy:7.0f}%"
            f" ({r.cpu_before:3.0f}%)"
        )
    if len(results) > len(rate):
        for concurrency, per_minute in rate.items():
            print(
                f"  median concurrency {concurrency:<2}                                    "
                f"{per_minute:8.1f}  {per_minute / base:5.2f}"
            )


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to create the fresh databases on, e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres (default: SQLite)",
    )
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    parser.add_argument(
        "--topologies", default=",".join(TOPOLOGIES), help="worker placement for queue/cancel"
    )
    parser.add_argument("--runs", type=int, default=20, help="queue-latency runs per topology")
    parser.add_argument(
        "--idle", type=float, default=0.5, help="pause before each queued run: IDLE..IDLE+1 s"
    )
    parser.add_argument("--cancels", type=int, default=10, help="cancels per topology")
    parser.add_argument(
        "--cancel-wait", type=float, default=60, help="seconds to wait for a canceled run to end"
    )
    parser.add_argument("--rows", type=int, default=100_000, help="runs in the list database")
    parser.add_argument("--baseline-rows", type=int, default=1_000, help="the baseline first")
    parser.add_argument("--repeats", type=int, default=20, help="timed requests per list query")
    parser.add_argument(
        "--throughput-runs", type=int, default=12, help="runs per concurrency level"
    )
    parser.add_argument("--concurrency", default="1,2,4", help="worker concurrency levels")
    parser.add_argument(
        "--throughput-rounds", type=int, default=1, help="rounds over the concurrency levels"
    )
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    args.topologies = [t.strip() for t in args.topologies.split(",") if t.strip()]
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    for phase in args.phases:
        if phase not in PHASES:
            parser.error(f"unknown phase {phase!r} (known: {', '.join(PHASES)})")
    for topology in args.topologies:
        if topology not in TOPOLOGIES:
            parser.error(f"unknown topology {topology!r} (known: {', '.join(TOPOLOGIES)})")
    if args.database_url and not args.database_url.startswith(("postgresql://", "postgres://")):
        parser.error("--database-url must be a postgresql:// URL (SQLite is the default)")
    if args.rows <= args.baseline_rows:
        parser.error("--rows must be larger than --baseline-rows")
    return args


def header(args: argparse.Namespace, backend: Backend) -> None:
    print("# Glassbox service benchmark")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"machine: {platform.node()} {platform.machine()}, {cores()} cores, {platform.system()}")
    print(f"python {platform.python_version()}; database: {backend.describe()}")
    import api

    code = Path(api.__file__ or ".").resolve().parent.parent
    revision = subprocess.run(
        ["git", "-C", str(code), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"code: {code} ({'git ' + revision if revision else 'not a git checkout'})")
    uptime = shutil.which("uptime")
    if uptime:
        out = subprocess.run([uptime], capture_output=True, text=True, check=False).stdout
        print(f"uptime: {out.strip()}")
    passed = sorted(k for k in os.environ if k.startswith("GLASSBOX_") and k not in OWN_SETTINGS)
    if passed:
        print("settings from the environment: " + ", ".join(f"{k}={os.environ[k]}" for k in passed))
    print(f"phases: {', '.join(args.phases)}; topologies: {', '.join(args.topologies)}")


def _terminated(signum: int, _frame: object) -> None:
    # SIGTERM like Ctrl-C: unwind, so every server is stopped and every database dropped.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    backend = Backend(args.database_url)
    header(args, backend)
    work = Path(tempfile.mkdtemp(prefix="glassbox-service-bench-"))
    site = SiteServer().start()
    figures: dict[str, Any] = {"database": backend.name, "load_start": load()}
    phases: list[tuple[str, Callable[..., list[Any]], Callable[[list[Any]], None]]] = [
        ("queue", bench_queue, print_queue),
        ("cancel", bench_cancel, print_cancel),
        ("list", bench_list, print_list),
        ("throughput", bench_throughput, print_throughput),
    ]
    results: dict[str, list[Any]] = {}
    try:
        for name, bench, show in phases:
            if name in args.phases:
                results[name] = bench(args, backend, site, work)
                show(results[name])  # at once: a run cut short keeps what it measured
    finally:
        site.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    figures["load_end"] = load()
    print(f"\n# results ({backend.name})")
    for name, _, show in phases:
        if name in results:
            show(results[name])
    print(f"\n{load_note('at the end')}")
    if args.json:
        figures.update({name: [_plain(r) for r in found] for name, found in results.items()})
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"wrote {args.json}")


def _plain(value: Any) -> Any:
    if isinstance(value, Stat):
        return {"median": value.median, "p95": value.p95, "values": value.values}
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


if __name__ == "__main__":
    main()
