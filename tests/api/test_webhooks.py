"""Webhooks against a real receiver on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql
from sqlalchemy import update

from api import errors
from api.records import run_record
from api.webhooks import router
from runner.settings import RunnerSettings
from runner.templating import resolve_inputs
from runner.workflow import parse_workflow
from services.backends import open_services
from services.runs import RunOptions, queue_run
from services.settings import Settings, WebhookSettings
from services.webhooks import (
    MAX_DELAY_S,
    WebhookDispatcher,
    backoff_s,
    retry_after_s,
    retry_delay_s,
    sign,
)
from storage import migrate
from storage.artifacts import add_artifact, list_artifacts
from storage.db import Database
from storage.errors import WebhookNotDue
from storage.models import Base, Run, WebhookDelivery
from storage.runs import create_run, get_run, status_history, transition
from storage.settings import StorageSettings
from storage.status import ArtifactKind, RunSource, RunStatus
from storage.webhooks import (
    WebhookState,
    due_deliveries,
    list_deliveries,
    mark,
    next_due_at,
    schedule_delivery,
)
from tests.storage.conftest import BACKENDS, postgres_database, require_postgres

SECRET = "whsec-test-0123456789"

# --- databases ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("webhooks-sqlite") / "glassbox.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def postgres_migrated() -> Iterator[str]:
    with postgres_database() as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "db" / "glassbox.db"
        path.parent.mkdir()
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    require_postgres()
    url: str = request.getfixturevalue("postgres_migrated")
    tables = sql.SQL(", ").join(sql.Identifier(name) for name in Base.metadata.tables)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(tables))
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()


# --- a receiver ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """A small HTTP/1.1 server on 127.0.0.1 that records requests and answers from a script:
    each request takes the script's first reply; the last one repeats."""

    def __init__(self) -> None:
        self.script: list[Reply] = [Reply()]
        self.requests: list[Received] = []
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks/glassbox"

    async def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def _next_reply(self) -> Reply:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request_line = await reader.readline()
            if not request_line:
                return
            method, path, _ = request_line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, path, headers, body, time.monotonic()))
            reply = self._next_reply()
            if reply.delay_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), reply.delay_s)
            head = [f"HTTP/1.1 {reply.status} Scripted", "Content-Length: 2", "Connection: close"]
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\nok").encode("latin-1"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    try:
        yield server
    finally:
        await server.stop()


# --- helpers ------------------------------------------------------------------------------

MakeDispatcher = Callable[..., WebhookDispatcher]


@pytest.fixture
async def make_dispatcher(db: Database) -> AsyncIterator[MakeDispatcher]:
    made: list[WebhookDispatcher] = []

    def make(**overrides: Any) -> WebhookDispatcher:
        options: dict[str, Any] = {
            "webhook_secret": SECRET,
            "webhook_attempts": 3,
            "webhook_first_retry_s": 0.05,
            "webhook_timeout_s": 2.0,
            **overrides,
        }
        dispatcher = WebhookDispatcher(
            db=db, settings=WebhookSettings(**options), record=run_record
        )
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        await dispatcher.aclose()


async def finished_run(
    db: Database,
    webhook_url: str | None,
    *,
    status: RunStatus = RunStatus.completed,
    parameters: dict[str, Any] | None = None,
) -> str:
    async with db.session() as session:
        run = await create_run(
            session=session,
            title="Find the cheapest lamp",
            definition={"title": "Find the cheapest lamp"},
            parameters=parameters if parameters is not None else {"query": "lamp"},
            source=RunSource.api,
            timeout_s=60,
            webhook_url=webhook_url,
        )
        await session.commit()
    for step in (RunStatus.queued, RunStatus.running, status):
        async with db.session() as session:
            await transition(session=session, run_id=run.id, to=step)
            await session.commit()
    return run.id


async def fetch(db: Database, run_id: str) -> Run:
    async with db.session() as session:
        return await get_run(session=session, run_id=run_id)


async def deliveries(db: Database, run_id: str) -> list[WebhookDelivery]:
    async with db.session() as session:
        return await list_deliveries(session=session, run_id=run_id)


async def wait_for_state(db: Database, run_id: str, *states: str, timeout: float = 15) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        run = await fetch(db, run_id)
        if run.webhook_state in states:
            return run
        assert time.monotonic() < deadline, f"webhook still {run.webhook_state}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def dispatching(dispatcher: WebhookDispatcher) -> AsyncIterator[asyncio.Event]:
    """Runs the dispatcher's loop; yields its wake event."""
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(dispatcher.run_forever(stop, wake))
    try:
        yield wake
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def gaps(rows: list[WebhookDelivery]) -> list[float]:
    return [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(rows)]


async def assert_status_untouched(db: Database, run_id: str, status: RunStatus) -> None:
    run = await fetch(db, run_id)
    assert run.status == status.value
    async with db.session() as session:
        history = [h.to_status for h in await status_history(session=session, run_id=run_id)]
    assert history == ["created", "queued", "running", status.value]


# --- pure functions -----------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"run_1"}'
    expected = hmac.new(b"k", b'1700000000.{"id":"run_1"}', hashlib.sha256).hexdigest()
    assert sign(b"k", 1700000000, body) == f"sha256={expected}"


def test_backoff_doubles_and_retry_after_wins_when_longer() -> None:
    assert [backoff_s(2.0, n) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert backoff_s(2.0, 40) == MAX_DELAY_S
    assert retry_delay_s(2.0, 1, 30.0) == 30.0
    assert retry_delay_s(2.0, 3, 1.0) == 8.0
    assert retry_delay_s(2.0, 1, 86400.0) == MAX_DELAY_S

    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert retry_after_s("7", now=now) == 7.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90
    assert retry_after_s(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0
    assert retry_after_s("soon", now=now) is None
    assert retry_after_s(None) is None
    assert retry_after_s("nan") is None


# --- storage: the schedule ----------------------------------------------------------------


async def test_finishing_schedules_and_scheduling_is_idempotent(db: Database) -> None:
    before = datetime.now(UTC)
    run_id = await finished_run(db, "http://127.0.0.1:9/a")
    run = await fetch(db, run_id)
    assert (run.webhook_state, run.webhook_attempts) == ("pending", 0)
    assert run.webhook_next_at is not None and run.webhook_next_at >= before

    bare = await finished_run(db, None)
    async with db.session() as session:
        unfinished = await create_run(
            session=session,
            title="t",
            definition={"title": "t"},
            parameters={},
            source=RunSource.api,
            timeout_s=60,
            webhook_url="http://127.0.0.1:9/b",
        )
        now = datetime.now(UTC)
        assert not await schedule_delivery(session=session, run_id=run_id, at=now)  # scheduled
        assert not await schedule_delivery(session=session, run_id=bare, at=now)  # no webhook
        assert not await schedule_delivery(session=session, run_id=unfinished.id, at=now)
        await session.execute(update(Run).where(Run.id == run_id).values(webhook_state=None))
        assert await schedule_delivery(session=session, run_id=run_id, at=now)
        await session.commit()
    assert (await fetch(db, bare)).webhook_state is None
    assert (await fetch(db, unfinished.id)).webhook_state is None


async def test_due_deliveries_are_claimed_by_one_process_at_a_time(db: Database) -> None:
    due = [await finished_run(db, "http://127.0.0.1:9/a") for _ in range(2)]
    later = await finished_run(db, "http://127.0.0.1:9/b")
    await finished_run(db, None)
    now = datetime.now(UTC)
    async with db.session() as session:
        assert await mark(
            session=session,
            run_id=later,
            state=WebhookState.pending,
            next_at=now + timedelta(seconds=30),
        )
        await session.commit()

    async with db.session() as first:
        claimed = await due_deliveries(session=first, now=now, limit=10, claim_s=60)
        assert sorted(claimed) == sorted(due)
        if (
            db.engine.dialect.name == "postgresql"
        ):  # while the claim is uncommitted, another process skips the rows
            async with db.session() as second:
                assert await due_deliveries(session=second, now=now, limit=10) == []
                await second.rollback()
        await first.commit()

    async with db.session() as second:
        assert await due_deliveries(session=second, now=now, limit=10) == []
        assert await next_due_at(session=second) == now + timedelta(seconds=30)
        # An expired claim (its process died) is claimed again.
        expired = now + timedelta(seconds=61)
        again = await due_deliveries(session=second, now=expired, limit=1)
        assert len(again) == 1 and again[0] in (*due, later)
        await second.commit()


# --- delivery -----------------------------------------------------------------------------


async def test_first_attempt_delivers_the_signed_run_record(
    db: Database, receiver: Receiver, make_dispatcher: MakeDispatcher
) -> None:
    run_id = await finished_run(db, receiver.url)
    async with db.session() as session:
        await add_artifact(
            session=session,
            run_id=run_id,
            kind=ArtifactKind.video,
            name="recording.mp4",
            content_type="video/mp4",
            size=123,
            sha256="0" * 64,
            key=f"runs/{run_id}/video/recording.mp4",
        )
        await session.commit()
    assert (await fetch(db, run_id)).webhook_state == "pending"

    dispatcher = make_dispatcher()
    async with dispatching(dispatcher) as wake:
        wake.set()
        run = await wait_for_state(db, run_id, "delivered", "failed")
    assert run.webhook_state == "delivered" and run.webhook_attempts == 1
    assert run.webhook_next_at is None

    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hooks/glassbox")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "glassbox"
    timestamp = request.headers["x-glassbox-timestamp"]
    assert abs(int(timestamp) - time.time()) < 30
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
    assert request.headers["x-glassbox-signature"] == "sha256=" + mac.hexdigest()
    assert request.headers["x-glassbox-run-id"] == run_id

    async with db.session() as session:
        stored = await get_run(session=session, run_id=run_id)
        expected = run_record(stored, await list_artifacts(session=session, run_id=run_id))
    record = json.loads(request.body)
    assert record == json.loads(json.dumps(expected))
    assert record["status"] == "completed" and record["artifacts"][0]["name"] == "recording.mp4"

    [delivery] = await deliveries(db, run_id)
    assert delivery.id == request.headers["x-glassbox-delivery"]
    assert (delivery.attempt, delivery.status_code, delivery.error) == (1, 200, None)
    assert delivery.url == receiver.url and not delivery.manual
    assert delivery.duration_ms is not None and delivery.duration_ms >= 0
    await assert_status_untouched(db, run_id, RunStatus.completed)


async def test_without_a_secret_the_signature_header_is_left_out(
    db: Database, receiver: Receiver, make_dispatcher: MakeDispatcher
) -> None:
    run_id = await finished_run(db, receiver.url)
    delivery = await make_dispatcher(webhook_secret=None).deliver_once(run_id)
    assert delivery.status_code == 200
    [request] = receiver.requests
    assert "x-glassbox-signature" not in request.headers
    assert request.headers["x-glassbox-timestamp"].isdigit()


async def test_retries_follow_backoff_and_retry_after_until_delivered(
    db: Database, receiver: Receiver, make_dispatcher: MakeDispatcher
) -> None:
    receiver.script = [Reply(500), Reply(503, {"Retry-After": "1"}), Reply(200)]
    run_id = await finished_run(db, receiver.url)

    async with dispatching(make_dispatcher(webhook_attempts=6)) as wake:
        wake.set()
        run = await wait_for_state(db, run_id, "delivered", "failed")
    assert run.webhook_state == "delivered" and run.webhook_attempts == 3

    rows = await deliveries(db, run_id)
    assert [(d.attempt, d.status_code, d.manual) for d in rows] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, False),
    ]
    assert rows[0].error is not None and "500" in rows[0].error
    assert rows[2].error is None
    first_gap, second_gap = gaps(rows)
    assert first_gap >= 0.05  # the first retry
    assert second_gap >= 1.0  # Retry-After: 1 beats the 0.1 s backoff
    assert second_gap < 5.0
    arrivals = [r.at for r in receiver.requests]
    assert arrivals[2] - arrivals[1] >= 1.0
    await assert_status_untouched(db, run_id, RunStatus.completed)


async def test_gives_up_after_the_configured_attempts(
    db: Database, receiver: Receiver, make_dispatcher: MakeDispatcher
) -> None:
    receiver.script = [Reply(500)]
    run_id = await finished_run(db, receiver.url, status=RunStatus.failed)

    async with dispatching(make_dispatcher(webhook_attempts=4)) as wake:
        wake.set()
        run = await wait_for_state(db, run_id, "failed", "delivered")
        await asyncio.sleep(0.3)  # nothing more is sent
    assert run.webhook_state == "failed" and run.webhook_attempts == 4
    assert run.webhook_next_at is None
    assert len(receiver.requests) == 4

    rows = await deliveries(db, run_id)
    assert [d.attempt for d in rows] == [1, 2, 3, 4]
    assert all(d.status_code == 500 and not d.manual for d in rows)
    for gap, backoff in zip(gaps(rows), (0.05, 0.1, 0.2), strict=True):
        assert gap >= backoff
    await assert_status_untouched(db, run_id, RunStatus.failed)

    with pytest.raises(WebhookNotDue):  # no automatic attempt after giving up
        await make_dispatcher().deliver_once(run_id)


async def test_a_timeout_is_a_failed_attempt(
    db: Database, receiver: Receiver, make_dispatcher: MakeDispatcher
) -> None:
    receiver.script = [Reply(200, delay_s=10)]
    run_id = await finished_run(db, receiver.url)

    dispatcher = make_dispatcher(webhook_attempts=1, webhook_timeout_s=0.3)
    delivery = await dispatcher.deliver_once(run_id)
    assert delivery.status_code is None
    assert delivery.error is not None and "timeout" in delivery.error.lower()
    assert delivery.duration_ms is not None and 250 <= delivery.duration_ms < 5000
    run = await fetch(db, run_id)
    assert run.webhook_state == "failed" and run.webhook_attempts == 1
    assert len(receiver.requests) == 1
    await assert_status_untouched(db, run_id, RunStatus.completed)


async def test_a_refused_connection_is_recorded_and_retried_later(
    db: Database, make_dispatcher: MakeDispatcher
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run_id = await finished_run(db, f"http://127.0.0.1:{port}/hook")

    before = datetime.now(UTC)
    delivery = await make_dispatcher().deliver_once(run_id)
    assert delivery.status_code is None
    assert delivery.error is not None and "connect" in delivery.error.lower()
    run = await fetch(db, run_id)
    assert run.webhook_state == "pending" and run.webhook_attempts == 1
    assert run.webhook_next_at is not None
    assert run.webhook_next_at >= before + timedelta(seconds=0.05)
    await assert_status_untouched(db, run_id, RunStatus.completed)


async def test_secret_parameters_stay_masked_in_the_delivered_record(
    db_url: str, db: Database, receiver: Receiver, make_dispatcher: MakeDispatcher, tmp_path: Path
) -> None:
    services = open_services(
        Settings.load(
            storage=StorageSettings(data_dir=tmp_path / "data", database_url=db_url),
            runner=RunnerSettings(auto_migrate=False),
        )
    )
    try:
        workflow = parse_workflow(
            {
                "title": "Log in",
                "url": "http://127.0.0.1:8080/login",
                "parameters": {
                    "user": {"type": "string", "default": "ada"},
                    "password": {"type": "string", "secret": True},
                },
                "blocks": [{"label": "open", "type": "action", "steps": [{"goto": "{{ url }}"}]}],
            }
        )
        inputs = resolve_inputs(workflow, {"password": "hunter2-sesame"})
        run = await queue_run(
            services, workflow, inputs, RunOptions(source=RunSource.api, webhook_url=receiver.url)
        )
    finally:
        await services.close()
    for step in (RunStatus.running, RunStatus.completed):
        async with db.session() as session:
            await transition(session=session, run_id=run.id, to=step)
            await session.commit()

    delivery = await make_dispatcher().deliver_once(run.id)
    assert delivery.status_code == 200
    [request] = receiver.requests
    assert b"hunter2-sesame" not in request.body
    stored = await fetch(db, run.id)
    assert stored.sealed_secrets is None  # dropped when the run ended
    assert run.sealed_secrets and run.sealed_secrets.encode() not in request.body
    assert json.loads(request.body)["parameters"] == {"user": "ada", "password": "********"}


# --- the REST endpoints -------------------------------------------------------------------


@pytest.fixture
async def api(
    db: Database, make_dispatcher: MakeDispatcher
) -> AsyncIterator[Callable[..., Awaitable[httpx.Response]]]:
    app = FastAPI()
    errors.install(app)
    app.state.db = db
    app.state.webhooks = make_dispatcher()
    app.include_router(router, prefix="/api/v1")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://glassbox") as client:

        async def call(method: str, run_id: str) -> httpx.Response:
            return await client.request(method, f"/api/v1/runs/{run_id}/webhook-deliveries")

        yield call


async def test_manual_redelivery_is_listed_as_manual(
    db: Database,
    receiver: Receiver,
    make_dispatcher: MakeDispatcher,
    api: Callable[..., Awaitable[httpx.Response]],
) -> None:
    run_id = await finished_run(db, receiver.url)
    await make_dispatcher().deliver_once(run_id)

    answer = await api("POST", run_id)
    assert answer.status_code == 202, answer.text
    sent = answer.json()
    assert (sent["attempt"], sent["status_code"], sent["manual"]) == (2, 200, True)
    assert sent["url"] == receiver.url and sent["error"] is None

    listed = await api("GET", run_id)
    assert listed.status_code == 200
    body = listed.json()
    assert [(d["attempt"], d["manual"]) for d in body["items"]] == [(1, False), (2, True)]
    assert body["items"][1] == sent
    assert set(sent) == {"id", "attempt", "at", "url", "status_code", "error", "duration_ms"} | {
        "manual"
    }
    assert body["state"] == "delivered" and body["next_attempt_at"] is None
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    await assert_status_untouched(db, run_id, RunStatus.completed)


async def test_a_failed_manual_attempt_leaves_the_schedule_alone(
    db: Database,
    receiver: Receiver,
    make_dispatcher: MakeDispatcher,
    api: Callable[..., Awaitable[httpx.Response]],
) -> None:
    receiver.script = [Reply(500)]
    run_id = await finished_run(db, receiver.url)
    await make_dispatcher(webhook_first_retry_s=60).deliver_once(run_id)
    scheduled = await fetch(db, run_id)
    assert scheduled.webhook_state == "pending" and scheduled.webhook_attempts == 1

    answer = await api("POST", run_id)
    assert answer.status_code == 202 and answer.json()["status_code"] == 500
    run = await fetch(db, run_id)
    assert (run.webhook_state, run.webhook_attempts) == ("pending", 1)
    assert run.webhook_next_at == scheduled.webhook_next_at
    listed = (await api("GET", run_id)).json()
    assert listed["state"] == "pending" and listed["next_attempt_at"] is not None

    receiver.script = [Reply(204)]
    answer = await api("POST", run_id)
    assert answer.status_code == 202 and answer.json()["status_code"] == 204
    run = await fetch(db, run_id)
    assert (run.webhook_state, run.webhook_next_at, run.webhook_attempts) == ("delivered", None, 1)
    assert [d.manual for d in await deliveries(db, run_id)] == [False, True, True]


async def test_endpoint_errors(
    db: Database, receiver: Receiver, api: Callable[..., Awaitable[httpx.Response]]
) -> None:
    for method in ("GET", "POST"):
        missing = await api(method, "run_missing")
        assert missing.status_code == 404 and "run_missing" in missing.json()["detail"]

    async with db.session() as session:
        running = await create_run(
            session=session,
            title="Still going",
            definition={"title": "Still going"},
            parameters={},
            source=RunSource.api,
            timeout_s=60,
            webhook_url=receiver.url,
        )
        await session.commit()
    conflict = await api("POST", running.id)
    assert conflict.status_code == 409 and "created" in conflict.json()["detail"]

    bare = await finished_run(db, None)
    refused = await api("POST", bare)
    assert refused.status_code == 409 and "webhook_url" in refused.json()["detail"]

    empty = await api("GET", bare)
    assert empty.status_code == 200
    assert empty.json() == {"items": [], "state": None, "next_attempt_at": None}
    assert receiver.requests == []


async def test_the_delivered_record_says_whether_it_is_complete(
    db: Database, receiver: Receiver, make_dispatcher: MakeDispatcher
) -> None:
    """A run whose steps succeeded but whose evidence could not all be kept is `completed`
    with `record.complete` false, and its webhook says so: neither hides the other."""
    missing = ["video recording.mp4: storage unavailable: connection refused"]
    incomplete = await finished_run(db, receiver.url)
    complete = await finished_run(db, receiver.url)
    async with db.session() as session:
        (await get_run(session=session, run_id=incomplete)).record_missing = missing
        await session.commit()

    async with dispatching(make_dispatcher()) as wake:
        wake.set()
        for run_id in (incomplete, complete):
            await wait_for_state(db, run_id, "delivered", "failed")
    sent = {json.loads(r.body)["id"]: json.loads(r.body) for r in receiver.requests}
    assert sent[incomplete]["status"] == "completed"
    assert sent[incomplete]["record"] == {"complete": False, "missing": missing}
    assert sent[complete]["record"] == {"complete": True, "missing": []}
