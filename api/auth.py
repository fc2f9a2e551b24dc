"""API keys on the service: the start-up guard, the request dependency, the CLI helpers.

The rule, in full:

1. At start-up (`check_startup`), listening on anything but loopback (127.0.0.0/8, ::1,
   localhost) is refused unless at least one active API key exists. 0.0.0.0 and :: are "every
   interface", not loopback.
2. A request that presents a key (`X-API-Key: KEY`, `Authorization: Bearer KEY`, or
   `?api_key=KEY` for browser EventSource/WebSocket clients that cannot set headers) is served
   only if the key is valid and not revoked, whatever the address.
3. A request without a key is served only while no active key exists *and* it comes from a
   loopback client address: the zero-configuration local setup. As soon as one key exists,
   every request needs one. The loopback condition keeps the door shut if the last key is
   revoked while the service listens on a public address, and also refuses keyless requests
   that a local reverse proxy forwards on behalf of other machines (uvicorn takes the client
   address from `X-Forwarded-For` sent by 127.0.0.1).

Refusals are `401 {"detail": "missing or invalid API key (X-API-Key header)"}` with
`WWW-Authenticate: ApiKey` (WebSockets: closed with 1008 before the handshake completes).

The number of active keys is cached on `app.state` for `KEY_COUNT_TTL_S` seconds, so a key
created with `glassbox apikey create` in another process takes effect within that time.
The database is `app.state.db` (a `storage.db.Database`), else `app.state.services.db`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import HTTPException, Security, WebSocketException, status
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from storage.apikeys import (
    KEY_SCHEME,
    count_active_keys,
    create_api_key,
    is_active,
    list_api_keys,
    revoke_api_key,
    verify_api_key,
)
from storage.db import Database
from storage.errors import ConfigurationError
from storage.models import ApiKey

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
API_KEY_QUERY = "api_key"
UNAUTHORIZED_DETAIL = "missing or invalid API key (X-API-Key header)"
KEY_COUNT_TTL_S = 2.0

# Declared as FastAPI security schemes so /openapi.json documents them (and /docs offers
# "Authorize"); none raises by itself, `require_api_key` decides.
_header_scheme = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="An API key from `glassbox apikey create`."
)
_bearer_scheme = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")
_query_scheme = APIKeyQuery(
    name=API_KEY_QUERY,
    auto_error=False,
    description="The API key as a query parameter, for EventSource and WebSocket clients.",
)


# --- addresses -----------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped, bracketed) and `localhost`.

    Wildcards (0.0.0.0, ::, "") listen on every interface and are not loopback. Other names are
    not resolved: a name is only trusted to be loopback if it is `localhost`.
    """
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# --- start-up ------------------------------------------------------------------------------


async def check_startup(*, db: Database, host: str) -> None:
    """Refuses (ConfigurationError) to listen beyond loopback while no active API key exists."""
    if is_loopback(host):
        return
    async with db.session() as session:
        keys = await count_active_keys(session=session)
    if keys == 0:
        where = host or "every interface"
        raise ConfigurationError(
            f"refusing to listen on {where} without API keys: create one with "
            "`glassbox apikey create NAME`, or listen on 127.0.0.1 (--host 127.0.0.1)"
        )
    logger.info("listening on %s: requests need one of the %d active API keys", host, keys)


# --- the request dependency ----------------------------------------------------------------


@dataclass(frozen=True)
class _KeyCount:
    value: int
    checked_at: float


def _database(app: Any) -> Database:
    db = getattr(app.state, "db", None)
    if db is None:
        services = getattr(app.state, "services", None)
        db = getattr(services, "db", None)
    if not isinstance(db, Database):
        raise RuntimeError("app.state.db is not set: the API key check needs the database")
    return db


async def active_key_count(app: Any) -> int:
    """Active API keys, cached on `app.state` for `KEY_COUNT_TTL_S` seconds."""
    cached = getattr(app.state, "api_key_count", None)
    now = time.monotonic()
    if isinstance(cached, _KeyCount) and now - cached.checked_at < KEY_COUNT_TTL_S:
        return cached.value
    async with _database(app).session() as session:
        value = await count_active_keys(session=session)
    app.state.api_key_count = _KeyCount(value, now)
    return value


def _refuse(conn: HTTPConnection) -> Exception:
    if conn.scope["type"] == "websocket":
        return WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=UNAUTHORIZED_DETAIL)
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=UNAUTHORIZED_DETAIL,
        headers={"WWW-Authenticate": "ApiKey"},
    )


async def require_api_key(
    request: HTTPConnection,
    header_key: Annotated[str | None, Security(_header_scheme)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)] = None,
    query_key: Annotated[str | None, Security(_query_scheme)] = None,
) -> ApiKey | None:
    """FastAPI dependency (HTTP and WebSocket routes): the caller's key, or None when the
    request is served without one (no active key exists and the client is on loopback).
    Raises 401 otherwise; see the module docstring for the rule."""
    presented = header_key or (bearer.credentials if bearer else None) or query_key
    client = request.client.host if request.client else ""
    if presented:
        db = _database(request.app)
        async with db.session() as session:
            key = await verify_api_key(session=session, key=presented)
            await session.commit()  # last_used_at, when it moved
        if key is None:
            logger.info("refused an invalid or revoked API key from %s", client or "?")
            raise _refuse(request)
        return key
    if await active_key_count(request.app) > 0:
        raise _refuse(request)
    if not is_loopback(client):
        logger.warning(
            "refused a request from %s without an API key: no key exists, so only this machine "
            "is served (create one with `glassbox apikey create NAME`)",
            client or "an unknown address",
        )
        raise _refuse(request)
    return None


# --- access log ----------------------------------------------------------------------------

_QUERY_KEY = re.compile(rf"(\b{API_KEY_QUERY}=)[^&#\s\"]+")


def redact(text: str) -> str:
    """Masks `api_key=…` query values in a logged URL."""
    return _QUERY_KEY.sub(r"\1********", text)


class RedactApiKeys(logging.Filter):
    """Masks `?api_key=` values in log records (uvicorn's access log prints the query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_access_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Adds `RedactApiKeys` to the access logger (once); call before serving."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactApiKeys) for f in target.filters):
        target.addFilter(RedactApiKeys())


# --- CLI helpers (`glassbox apikey create|list|revoke`) ------------------------------------


async def cli_create(db: Database, name: str) -> str:
    """Creates a key; returns the text to print, which is the only time the key is shown."""
    async with db.session() as session:
        row, key = await create_api_key(session=session, name=name)
        await session.commit()
    logger.info("created API key %s (%s)", row.id, row.prefix)
    return (
        f"Created API key {row.name!r}: id {row.id}\n"
        f"{key}\n"
        f"It is shown only this once: store it now. Clients send it as the {API_KEY_HEADER} "
        "header."
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def cli_list(db: Database) -> list[dict[str, Any]]:
    """Keys, oldest first, as JSON-ready dicts (no hash, no secret)."""
    async with db.session() as session:
        rows = await list_api_keys(session=session)
    return [
        {
            "id": row.id,
            "name": row.name,
            "prefix": f"{KEY_SCHEME}_{row.prefix}",
            "status": "active" if is_active(row) else "revoked",
            "created_at": _iso(row.created_at),
            "last_used_at": _iso(row.last_used_at),
            "revoked_at": _iso(row.revoked_at),
        }
        for row in rows
    ]


async def cli_revoke(db: Database, key_id: str) -> None:
    """Revokes a key by id; `storage.errors.NotFound` if there is none."""
    async with db.session() as session:
        row = await revoke_api_key(session=session, key_id=key_id)
        await session.commit()
    logger.info("revoked API key %s (%s)", row.id, row.prefix)
