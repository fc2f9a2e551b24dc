"""API keys: storage, the start-up guard, and the request dependency over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, WebSocket
from sqlalchemy import select
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

import api.auth
from api.auth import (
    UNAUTHORIZED_DETAIL,
    check_startup,
    cli_create,
    cli_list,
    cli_revoke,
    install_access_log_redaction,
    is_loopback,
    require_api_key,
)
from storage import migrate
from storage.apikeys import (
    count_active_keys,
    create_api_key,
    list_api_keys,
    parse_key,
    revoke_api_key,
    verify_api_key,
)
from storage.db import Database
from storage.errors import ConfigurationError, NotFound, ValidationFailed
from storage.models import ApiKey

# Both backends (PostgreSQL where reachable), migrated once and reused.
from tests.storage.conftest import _postgres_migrated, _sqlite_template, migrated_url  # noqa: F401


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:  # noqa: F811
    database = Database(migrated_url)
    try:
        yield database
    finally:
        await database.dispose()


async def _create(db: Database, name: str = "ci") -> tuple[ApiKey, str]:
    async with db.session() as session:
        row, key = await create_api_key(session=session, name=name)
        await session.commit()
    return row, key


async def _verify(db: Database, key: str) -> ApiKey | None:
    async with db.session() as session:
        row = await verify_api_key(session=session, key=key)
        await session.commit()
    return row


async def _revoke(db: Database, key_id: str) -> None:
    async with db.session() as session:
        await revoke_api_key(session=session, key_id=key_id)
        await session.commit()


# --- storage -------------------------------------------------------------------------------


async def test_created_key_verifies_and_is_stored_hashed(db: Database) -> None:
    row, key = await _create(db, "  nightly job ")
    scheme, prefix, secret = key.split("_", 2)
    assert (scheme, prefix) == ("gbx", row.prefix)
    assert len(prefix) == 8 and len(secret) >= 43
    assert parse_key(key) == (prefix, secret)
    assert row.name == "nightly job" and row.id.startswith("key_")
    assert row.key_hash.startswith("sha256:") and secret not in row.key_hash

    found = await _verify(db, key)
    assert found is not None and found.id == row.id
    assert found.last_used_at is not None

    async with db.session() as session:
        stored = (await session.execute(select(ApiKey))).scalar_one()
        assert all(
            secret not in str(getattr(stored, column))
            for column in ("id", "name", "prefix", "key_hash", "created_at")
        )
        assert await count_active_keys(session=session) == 1


async def test_keys_are_unique(db: Database) -> None:
    keys = [(await _create(db, f"k{i}"))[1] for i in range(5)]
    assert len(set(keys)) == 5
    assert len({k.split("_")[1] for k in keys}) == 5


async def test_wrong_malformed_and_revoked_keys_fail(db: Database) -> None:
    row, key = await _create(db)
    other_row, other_key = await _create(db, "other")
    prefix, secret = key.split("_", 2)[1:]
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for wrong in (
        f"gbx_{prefix}_{flipped}",  # right prefix, wrong secret
        f"gbx_{other_row.prefix}_{secret}",  # another key's prefix
        f"gbx_zzzzzzzz_{secret}",  # unknown prefix
        key[:-1],  # truncated
        key + "x",
        "gbx_" + prefix,
        "",
        "Bearer " + key,
        key.upper(),
    ):
        assert await _verify(db, wrong) is None, wrong

    await _revoke(db, row.id)
    assert await _verify(db, key) is None
    assert (await _verify(db, other_key)) is not None
    async with db.session() as session:
        assert await count_active_keys(session=session) == 1
        listed = await list_api_keys(session=session)
        assert [k.id for k in listed] == [row.id, other_row.id]
        assert listed[0].revoked_at is not None and listed[1].revoked_at is None
        active = await list_api_keys(session=session, include_revoked=False)
        assert [k.id for k in active] == [other_row.id]


async def test_revoke_is_idempotent_and_unknown_ids_are_not_found(db: Database) -> None:
    row, _ = await _create(db)
    async with db.session() as session:
        first = (await revoke_api_key(session=session, key_id=row.id)).revoked_at
        await session.commit()
    async with db.session() as session:
        again = await revoke_api_key(session=session, key_id=row.id)
        assert again.revoked_at == first
        with pytest.raises(NotFound, match="key_nope"):
            await revoke_api_key(session=session, key_id="key_nope")


async def test_names_are_required(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(ValidationFailed, match="name"):
            await create_api_key(session=session, name="   ")
        with pytest.raises(ValidationFailed, match="name"):
            await create_api_key(session=session, name="x" * 201)


async def test_last_used_is_written_at_most_once_a_minute(db: Database) -> None:
    row, key = await _create(db)
    first = await _verify(db, key)
    assert first is not None and first.last_used_at is not None
    second = await _verify(db, key)
    assert second is not None and second.last_used_at == first.last_used_at

    async with db.session() as session:
        stored = await session.get(ApiKey, row.id)
        assert stored is not None
        stored.last_used_at = first.last_used_at - timedelta(seconds=61)
        await session.commit()
    third = await _verify(db, key)
    assert third is not None and third.last_used_at is not None
    assert third.last_used_at > first.last_used_at - timedelta(seconds=61)
    assert third.last_used_at >= first.last_used_at


async def test_the_database_file_holds_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "glassbox.db"
    migrate.upgrade(f"sqlite:///{path}")
    database = Database(f"sqlite:///{path}")
    try:
        text = await cli_create(database, "scanner")
        key = next(line for line in text.splitlines() if line.startswith("gbx_"))
        assert await _verify(database, key) is not None  # also writes last_used_at
    finally:
        await database.dispose()
    _, prefix, secret = key.split("_", 2)
    files = sorted(tmp_path.glob("glassbox.db*"))  # the database and any WAL left behind
    data = b"".join(f.read_bytes() for f in files)
    assert prefix.encode() in data  # the row is in the bytes scanned
    assert secret.encode() not in data
    for size in (12, 16):  # not even a slice of the secret
        assert all(secret[i : i + size].encode() not in data for i in range(len(secret) - size + 1))


# --- addresses and start-up ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("localhost.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_startup_refuses_public_address_without_keys(db: Database) -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        with pytest.raises(ConfigurationError) as refused:
            await check_startup(db=db, host=host)
        message = str(refused.value)
        assert host in message and "glassbox apikey create" in message and "127.0.0.1" in message
    await check_startup(db=db, host="127.0.0.1")
    await check_startup(db=db, host="localhost")
    await check_startup(db=db, host="::1")

    row, _ = await _create(db)
    await check_startup(db=db, host="0.0.0.0")
    await _revoke(db, row.id)  # a revoked key does not count
    with pytest.raises(ConfigurationError, match="without API keys"):
        await check_startup(db=db, host="0.0.0.0")


async def test_cli_helpers(db: Database) -> None:
    text = await cli_create(db, "deploy")
    key = next(line for line in text.splitlines() if line.startswith("gbx_"))
    row = await _verify(db, key)
    assert row is not None and row.id in text and "only this once" in text
    listed = await cli_list(db)
    assert listed == [
        {
            "id": row.id,
            "name": "deploy",
            "prefix": f"gbx_{row.prefix}",
            "status": "active",
            "created_at": row.created_at.isoformat(),
            "last_used_at": listed[0]["last_used_at"],
            "revoked_at": None,
        }
    ]
    assert listed[0]["last_used_at"] is not None
    assert not any(key.split("_", 2)[2] in str(value) for value in listed[0].values())
    await cli_revoke(db, row.id)
    assert (await cli_list(db))[0]["status"] == "revoked"
    assert await _verify(db, key) is None
    with pytest.raises(NotFound):
        await cli_revoke(db, "key_unknown")


# --- the dependency, over real HTTP --------------------------------------------------------


def _app(db: Database) -> FastAPI:
    app = FastAPI()
    app.state.db = db
    router = APIRouter(prefix="/api/v1")

    @router.get("/whoami")
    async def whoami(key: Annotated[ApiKey | None, Depends(require_api_key)]) -> dict[str, Any]:
        return {"key": key.id if key else None}

    @router.websocket("/live")
    async def live(
        websocket: WebSocket, key: Annotated[ApiKey | None, Depends(require_api_key)]
    ) -> None:
        await websocket.accept()
        await websocket.send_text(key.id if key else "-")
        await websocket.close()

    app.include_router(router)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:  # leave pytest's signal handlers alone
        yield


@dataclass
class Served:
    app: FastAPI
    base: str
    client: httpx.AsyncClient


@pytest.fixture
async def served(db: Database) -> AsyncIterator[Served]:
    app = _app(db)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, ws="websockets-sansio", access_log=True
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    base = f"127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=f"http://{base}", timeout=10) as client:
        try:
            yield Served(app, base, client)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            sock.close()


async def _wait_for_status(client: httpx.AsyncClient, expected: int, *, within: float) -> float:
    start = time.monotonic()
    while True:
        response = await client.get("/api/v1/whoami")
        if response.status_code == expected:
            return time.monotonic() - start
        assert time.monotonic() - start < within, response.text
        await asyncio.sleep(0.05)


async def _ws_text(url: str, **kwargs: Any) -> str:
    async with ws_connect(url, **kwargs) as websocket:
        message = await websocket.recv()
    assert isinstance(message, str)
    return message


async def test_dependency_over_http(served: Served, db: Database) -> None:
    client = served.client
    # No key exists, the client is on loopback: served without one.
    response = await client.get("/api/v1/whoami")
    assert response.status_code == 200 and response.json() == {"key": None}
    assert await _ws_text(f"ws://{served.base}/api/v1/live") == "-"

    row, key = await _create(db, "http")
    # Another process created the key: it takes effect once the cached count expires.
    waited = await _wait_for_status(client, 401, within=api.auth.KEY_COUNT_TTL_S + 10)
    assert waited <= api.auth.KEY_COUNT_TTL_S + 5, waited

    missing = await client.get("/api/v1/whoami")
    assert missing.status_code == 401
    assert missing.json() == {"detail": UNAUTHORIZED_DETAIL}
    assert missing.headers["www-authenticate"] == "ApiKey"
    for headers, params in (
        ({"X-API-Key": key}, {}),
        ({"Authorization": f"Bearer {key}"}, {}),
        ({}, {"api_key": key}),
    ):
        ok = await client.get("/api/v1/whoami", headers=headers, params=params)
        assert ok.status_code == 200 and ok.json() == {"key": row.id}, (headers, params)
    for headers, params in (
        ({"X-API-Key": key[:-1] + ("1" if key.endswith("0") else "0")}, {}),  # one char off
        ({"Authorization": "Bearer nope"}, {}),
        ({"Authorization": f"Basic {key}"}, {}),
        ({}, {"api_key": "gbx_x"}),
    ):
        refused = await client.get("/api/v1/whoami", headers=headers, params=params)
        assert refused.status_code == 401, (headers, params)
        assert refused.json() == {"detail": UNAUTHORIZED_DETAIL}
    assert (await client.get("/health")).status_code == 200  # only routes that ask for it

    # WebSocket (browsers cannot set headers): the query parameter.
    assert await _ws_text(f"ws://{served.base}/api/v1/live?api_key={key}") == row.id
    assert await _ws_text(f"ws://{served.base}/api/v1/live", additional_headers={"X-API-Key": key})
    with pytest.raises(InvalidStatus) as refused_ws:
        await _ws_text(f"ws://{served.base}/api/v1/live")
    assert refused_ws.value.response.status_code == 403

    await _revoke(db, row.id)
    revoked = await client.get("/api/v1/whoami", headers={"X-API-Key": key})
    assert revoked.status_code == 401 and revoked.json() == {"detail": UNAUTHORIZED_DETAIL}
    # No active key is left: loopback clients are served without one again, once the cached
    # count goes (it is cached for KEY_COUNT_TTL_S; dropped here instead of waiting).
    served.app.state.api_key_count = None
    assert (await client.get("/api/v1/whoami")).json() == {"key": None}


async def test_query_keys_are_masked_in_the_access_log(
    served: Served, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    install_access_log_redaction()
    try:
        _, key = await _create(db)
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            response = await served.client.get("/api/v1/whoami", params={"api_key": key})
            assert response.status_code == 200
        access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
        assert any("/api/v1/whoami?api_key=********" in line for line in access), access
        assert key not in caplog.text
    finally:
        access_logger = logging.getLogger("uvicorn.access")
        for f in list(access_logger.filters):
            access_logger.removeFilter(f)


async def test_without_keys_other_machines_are_refused(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the last key is revoked while listening on a public address, the door stays shut."""
    monkeypatch.setattr(api.auth, "KEY_COUNT_TTL_S", 0.0)
    app = _app(db)
    remote = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    local = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with (
        httpx.AsyncClient(transport=remote, base_url="http://glassbox") as from_afar,
        httpx.AsyncClient(transport=local, base_url="http://glassbox") as from_here,
    ):
        assert (await from_here.get("/api/v1/whoami")).status_code == 200
        refused = await from_afar.get("/api/v1/whoami")
        assert refused.status_code == 401 and refused.json() == {"detail": UNAUTHORIZED_DETAIL}

        row, key = await _create(db)
        answer = await from_afar.get("/api/v1/whoami", headers={"X-API-Key": key})
        assert answer.status_code == 200 and answer.json() == {"key": row.id}
        assert (await from_here.get("/api/v1/whoami")).status_code == 401

        await _revoke(db, row.id)
        assert (await from_afar.get("/api/v1/whoami")).status_code == 401
        assert (await from_here.get("/api/v1/whoami")).status_code == 200


async def test_openapi_documents_the_schemes(db: Database) -> None:
    schema = _app(db).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key from `glassbox apikey create`.",
    }
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyQuery"]["in"] == "query"
    assert "security" not in schema["paths"]["/health"]["get"]
