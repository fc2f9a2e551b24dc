"""The real service over real HTTP, for the API tests.

`glassbox serve` runs as a subprocess, as a user starts it: its own data directory, a free
loopback port, one in-process worker, SQLite by default or a fresh PostgreSQL database
(`GLASSBOX_DATABASE_URL=postgresql://…`). Services are started once per test module and
shared by its tests (a start costs seconds: migrations and a Chromium launch).

Tests ask for `service` (SQLite), or parametrize it over both backends with
`@pytest.mark.parametrize("service", BACKENDS, indirect=True)`; `base_url` is the service's
root URL and `client` an httpx client on `{base_url}/api/v1`. The server's output of a test is
printed at its teardown, so pytest shows it with a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from examples.site_server import SiteServer
from tests.ports import free_port
from tests.storage.conftest import postgres_database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
TERMINAL = frozenset({"completed", "failed", "terminated", "canceled", "timed_out", "interrupted"})
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LOGIN_PASSWORD = "hunter2-secret"  # the demo site's password (examples/site_server.py)
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_CHARS = 8000


# --- the service process -------------------------------------------------------------------------


def glassbox_command() -> list[str]:
    """The `glassbox` console script of this environment."""
    beside = Path(sys.executable).with_name("glassbox")
    found = str(beside) if beside.is_file() else shutil.which("glassbox")
    if found:
        return [found]
    return [sys.executable, "-c", "from api.cli import main; main()"]


@dataclass
class Service:
    """One `glassbox serve` process."""

    backend: str
    base_url: str
    data_dir: Path
    database_url: str
    log: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v1"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def output(self, since: int = 0) -> str:
        if not self.log.exists():
            return ""
        return self.log.read_bytes()[since:].decode(errors="replace")[-LOG_TAIL_CHARS:]

    def artifact_dir(self, run_id: str) -> Path:
        return self.data_dir / "artifacts" / "runs" / run_id


@dataclass
class Proc:
    """A `glassbox` process started by a test, in its own process group, output in `log`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def owns(self, worker_id: str | None) -> bool:
        """Worker ids are `host:pid:suffix`; the console script is the process we started."""
        return worker_id is not None and f":{self.pid}:" in worker_id

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: the process and its Chromium, no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_TIMEOUT_S)

    def tail(self, since: int = 0) -> str:
        if not self.log.exists():
            return ""
        data = self.log.read_bytes()[since:]
        return data.decode(errors="replace")[-LOG_TAIL_CHARS:]


def spawn_glassbox(
    name: str, args: list[str], *, env: dict[str, str], cwd: Path, log: Path
) -> Proc:
    """`glassbox ARGS...` with exactly `env`, in a new session (killed as a group)."""
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [*glassbox_command(), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(name, popen, log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down, the worker closes its browser), then SIGKILL the group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # Chromium and anything else left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def running_service(
    root: Path,
    *,
    backend: str = "sqlite",
    database_url: str | None = None,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Service]:
    """`glassbox serve` with GLASSBOX_DATA_DIR under `root`, until /api/v1/health answers."""
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / "data"
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env.update(
        {
            "GLASSBOX_DATA_DIR": str(data_dir),
            "GLASSBOX_HOST": "127.0.0.1",
            "GLASSBOX_WORKERS": str(workers),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if database_url:
        env["GLASSBOX_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    problem = ""
    for _attempt in range(3):  # a free port may be taken between the probe and the bind
        port = free_port()
        env["GLASSBOX_PORT"] = str(port)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*glassbox_command(), "serve"],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = Service(
            backend=backend,
            base_url=f"http://127.0.0.1:{port}",
            data_dir=data_dir,
            database_url=database_url or f"sqlite:///{data_dir / 'glassbox.db'}",
            log=log,
            process=process,
            env=env,
        )
        try:
            problem = _wait_healthy(service, workers)
            if not problem:
                yield service
                return
        finally:
            _stop(process)
        if "address already in use" not in service.output().lower():
            break
    pytest.fail(f"`glassbox serve` did not start: {problem}\n{service.output()}", pytrace=False)


def _wait_healthy(service: Service, workers: int) -> str:
    """'' once the service answers its health check with its workers, else what went wrong."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            if not service.alive():
                return f"it exited with status {service.process.returncode}"
            try:
                answer = http.get(f"{service.api}/health")
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if answer.status_code == 200 and answer.json().get("workers") == workers:
                return ""
            time.sleep(0.1)
    return f"no healthy answer within {START_TIMEOUT_S:g} s"


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("serve-sqlite")) as service:
        yield service


@pytest.fixture(scope="module")
def postgresql_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with (
        postgres_database() as url,
        running_service(
            tmp_path_factory.mktemp("serve-postgresql"), backend="postgresql", database_url=url
        ) as service,
    ):
        yield service


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    """The module's service, on SQLite and on PostgreSQL: the whole API suite runs on both
    (a test may narrow it with an indirect parametrization).
    Its output during the test is printed at teardown (shown by pytest on failure)."""
    backend = getattr(request, "param", "sqlite")
    found: Service = request.getfixturevalue(f"{backend}_service")
    since = found.log_size()
    yield found
    output = found.output(since)
    if output.strip():
        print(f"----- glassbox serve ({found.backend}) output -----\n{output}")
    if not found.alive():
        pytest.fail(f"glassbox serve exited:\n{found.output()}")


@pytest.fixture
def base_url(service: Service) -> str:
    return service.base_url


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.api, timeout=30) as http:
        yield http


# --- workflows on the demo site ------------------------------------------------------------------


def shop_workflow(site: SiteServer, *, title: str = "Find the cheapest lamp") -> dict[str, Any]:
    """examples/shop.yaml on the test's demo site: search, download a CSV, extract (~3 s)."""
    definition: dict[str, Any] = yaml.safe_load(
        (FIXTURES.parent.parent / "examples" / "shop.yaml").read_text()
    )
    definition["url"] = f"{site.url}shop/"
    definition["title"] = title
    return definition


def visit_workflow(site: SiteServer, *, title: str = "Visit the shop") -> dict[str, Any]:
    """The cheapest run there is: one goto (~1 s)."""
    return {
        "title": title,
        "url": site.url,
        "timeout_s": 60,
        "blocks": [{"label": "visit", "type": "action", "steps": [{"goto": "{{ url }}"}]}],
    }


def waiting_workflow(
    site: SiteServer, *, timeout_ms: int = 60_000, title: str = "Wait for nothing"
) -> dict[str, Any]:
    """Opens a page, then waits `timeout_ms` for a text that never appears (and fails)."""
    return {
        "title": title,
        "url": site.url,
        "timeout_s": 120,
        "blocks": [
            {
                "label": "wait",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}"},
                    {"wait_for": {"text": "zq-never-on-any-page-qz", "timeout_ms": timeout_ms}},
                ],
            }
        ],
    }


def stepwise_workflow(
    site: SiteServer, *, steps: int = 8, step_ms: int = 600, title: str = "stepwise"
) -> dict[str, Any]:
    """A few quick steps, then `steps` slow ones (pages that answer after `step_ms`), each its
    own action card: a run whose progress shows card by card."""
    slow_steps: list[dict[str, Any]] = [
        {"goto": f"{{{{ url }}}}slow?ms={step_ms}"} for _ in range(steps)
    ]
    return {
        "title": title,
        "url": site.url,
        "timeout_s": 120,
        "blocks": [
            {
                "label": "steps",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}shop/search.html"},
                    {"fill": {"selector": "#q", "value": "lamp"}},
                    *slow_steps,
                ],
            }
        ],
    }


def login_workflow(site: SiteServer) -> dict[str, Any]:
    """tests/fixtures/login.yaml (a secret `password` parameter) on the test's demo site."""
    definition: dict[str, Any] = yaml.safe_load((FIXTURES / "login.yaml").read_text())
    definition["url"] = site.url
    return definition


# --- talking to the API --------------------------------------------------------------------------


def create_key(service: Service, name: str = "test") -> str:
    """`glassbox apikey create NAME` on the service's database, as an operator runs it: the key.
    Requests need it once the service's cached key count expires (`api.auth.KEY_COUNT_TTL_S`)."""
    done = subprocess.run(
        [*glassbox_command(), "apikey", "create", name],
        env=service.env,
        cwd=service.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # The key is printed alone on the line after "Created API key …".
    return done.stdout.splitlines()[1].strip()


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


def create_run(client: httpx.Client, workflow: dict[str, Any], **body: Any) -> dict[str, Any]:
    answer = client.post("/runs", json={"workflow": workflow, **body})
    assert answer.status_code == 201, answer.text
    record: dict[str, Any] = answer.json()
    return record


def get_record(client: httpx.Client, run_id: str) -> dict[str, Any]:
    answer = client.get(f"/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    record: dict[str, Any] = answer.json()
    return record


def wait_status(
    client: httpx.Client,
    run_id: str,
    statuses: frozenset[str] | set[str] = TERMINAL,
    *,
    timeout: float = 60,
    interval: float = 0.1,
) -> dict[str, Any]:
    """The run's record once its status is one of `statuses`."""
    last: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal last
        last = get_record(client, run_id)
        return last["status"] in statuses

    try:
        wait_until(
            reached, timeout=timeout, what=f"{run_id} to be {sorted(statuses)}", interval=interval
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; it is {last.get('status')!r} ({last.get('failure_reason')})"
        ) from None
    return last


def timeline(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/runs/{run_id}/timeline")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def error_fields(answer: httpx.Response) -> list[str]:
    """The fields a 422 names: `field`, else the `loc` joined like `a.b[0].c`."""
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    names = []
    for error in detail:
        if error.get("field"):
            names.append(str(error["field"]))
            continue
        parts = [str(p) for p in error.get("loc", []) if p not in ("body", "query", "path")]
        names.append(".".join(parts).replace(".[", "["))
    return names


@dataclass
class SseEvent:
    event: str
    data: dict[str, Any]
    id: str | None = None
    at: float = 0.0  # time.monotonic() when it arrived


def read_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Server-Sent Events from a line iterator (comments skipped, data lines joined)."""
    event: str = "message"
    event_id: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield SseEvent(event, json.loads("\n".join(data)), event_id, time.monotonic())
            event, event_id, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "id":
            event_id = value
        elif name == "data":
            data.append(value)


def collect_sse(
    client: httpx.Client,
    run_id: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> list[SseEvent]:
    """Every event of GET /runs/{id}/events until the server ends the stream (after `end`)."""
    events: list[SseEvent] = []
    deadline = time.monotonic() + timeout
    with client.stream("GET", f"/runs/{run_id}/events", headers=headers or {}) as stream:
        assert stream.status_code == 200, stream.read().decode()
        assert stream.headers["content-type"].startswith("text/event-stream")
        for event in read_sse(stream.iter_lines()):
            events.append(event)
            assert time.monotonic() < deadline, f"the stream went on for {timeout} s: {events}"
    return events
