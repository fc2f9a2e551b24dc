"""The request guard: an ASGI middleware in front of every route.

- `Host` must be one Glassbox serves (loopback names, the bound address, GLASSBOX_PUBLIC_URL's
  host, GLASSBOX_ALLOWED_HOSTS): a DNS-rebinding name gets `400`.
- A state-changing request (POST, PUT, PATCH, DELETE) with a body must carry JSON
  (`application/json` or `…+json`), or `multipart/form-data` on a route that takes files;
  anything else gets `415`. A request without a body passes: browsers send `Origin` with every
  cross-site POST, and that is checked next.
- `Origin`, when sent (state-changing requests and WebSockets), must be Glassbox's own origin:
  else `403`.
- A body over GLASSBOX_MAX_BODY_BYTES gets `413`, from its `Content-Length` or as soon as the
  stream passes the limit, never read whole.
- A JSON body is checked before any route sees it: nested deeper than `MAX_JSON_DEPTH`, `NaN` or
  `Infinity`, a string that is not valid Unicode (a lone surrogate), or not JSON at all → `422`
  naming the field.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from fastapi import params
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import field_error

MAX_JSON_DEPTH = 64
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
UPLOAD_PREFIX = "/api/v1/uploads"
HOOK_PREFIX = "/api/v1/hooks/"  # an upload trigger's files; the route checks its token first
_JSON_TYPE = re.compile(r"^application/([\w.+-]+\+)?json$")
_UNSPECIFIED = frozenset({"", "0.0.0.0", "::", "[::]"})


class _NotANumber:
    def __init__(self, text: str) -> None:
        self.text = text


def host_name(host: str) -> str:
    """`Host` header → the lower-case name or address without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Guard:
    """See the module's docstring. `allowed_hosts` may hold `*` (any host)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        bound_host: str,
        public_url: str | None,
        allowed_hosts: Iterable[str],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        hosts = {host_name(h) for h in allowed_hosts if h.strip()}
        if bound_host.strip().lower() not in _UNSPECIFIED:
            hosts.add(host_name(bound_host))
        self.public_origin: str | None = None
        if public_url:
            parts = urlsplit(public_url)
            if parts.hostname:
                hosts.add(parts.hostname.lower())
                self.public_origin = f"{parts.scheme}://{parts.netloc}".lower()
        self.any_host = "*" in hosts
        self.hosts = frozenset(hosts - {"*"})
        self._multipart: list[re.Pattern[str]] | None = None

    # --- the checks ---------------------------------------------------------------------------

    def host_allowed(self, host: str) -> bool:
        if self.any_host:
            return True
        name = host_name(host)
        return bool(name) and (is_loopback(name) or name in self.hosts)

    def origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().lower()
        if self.public_origin is not None and origin == self.public_origin:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed frames, file: pages) and the like
        default = {"http": 80, "https": 443}[parts.scheme]
        try:
            origin_port = parts.port or default
        except ValueError:
            return False
        own = urlsplit(f"{parts.scheme}://{host.strip().lower()}")
        try:
            own_port = own.port or default
        except ValueError:
            return False
        return parts.hostname == own.hostname and origin_port == own_port

    def takes_multipart(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if path == UPLOAD_PREFIX or path.startswith((UPLOAD_PREFIX + "/", HOOK_PREFIX)):
            return True
        if self._multipart is None:
            self._multipart = _multipart_routes(scope.get("app"))
        return any(p.match(path) for p in self._multipart)

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        if not self.host_allowed(host):
            await _refuse(
                scope, receive, send, 400, "unknown Host header (see GLASSBOX_ALLOWED_HOSTS)"
            )
            return
        origin = headers.get("origin")
        method = scope.get("method", "GET")
        checks_origin = scope["type"] == "websocket" or method in STATE_CHANGING
        if checks_origin and origin is not None and not self.origin_allowed(origin, host):
            await _refuse(scope, receive, send, 403, "cross-origin request refused (Origin)")
            return
        if scope["type"] == "websocket" or method not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        length = headers.get("content-length")
        has_body = bool(content_type) or "transfer-encoding" in headers or length not in (None, "0")
        if not has_body:
            await self.app(scope, receive, send)
            return
        if content_type == "multipart/form-data" and self.takes_multipart(scope):
            await self.app(scope, receive, send)  # uploads have their own size limit
            return
        if not _JSON_TYPE.match(content_type):
            await _refuse(
                scope,
                receive,
                send,
                415,
                "a request body must be JSON (Content-Type: application/json)",
            )
            return
        if length is not None and (
            not length.isascii() or not length.isdigit() or len(length) > 18
        ):
            await _refuse(scope, receive, send, 400, "invalid Content-Length header")
            return
        if length is not None and int(length) > self.max_body_bytes:
            await _refuse(scope, receive, send, 413, self._too_large())
            return
        body = await self._read(receive)
        if body is None:
            await _refuse(scope, receive, send, 413, self._too_large())
            return
        problem = json_problem(body)
        if problem is not None:
            field, message = problem  # "body.workflow.title": named like FastAPI's own 422s
            field = field.removeprefix("body").removeprefix(".")
            response = field_error(field or "body", message, prefix=("body",) if field else ())
            await response(scope, _drained(), send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self) -> str:
        return (
            f"request body too large (limit {self.max_body_bytes} bytes, GLASSBOX_MAX_BODY_BYTES)"
        )

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def install(app: Any, settings: Any) -> None:
    """Adds the guard to a FastAPI app, configured from the service's settings section."""
    app.add_middleware(
        Guard,
        bound_host=settings.host,
        public_url=settings.public_url,
        allowed_hosts=(settings.allowed_hosts or "").split(","),
        max_body_bytes=settings.max_body_bytes,
    )


# --- JSON bodies ------------------------------------------------------------------------------


def json_problem(body: bytes) -> tuple[str, str] | None:
    """None for a JSON body routes may read; else (field, message)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "body", f"not UTF-8 text (byte {exc.start})"
    try:
        data = json.loads(text, parse_constant=_NotANumber)
    except RecursionError:
        return "body", f"JSON nested too deeply (limit {MAX_JSON_DEPTH} levels)"
    except ValueError as exc:
        message = str(exc)
        return "body", f"not valid JSON: {message[:200]}"
    return _walk(data, "body", 0)


def _walk(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    if depth > MAX_JSON_DEPTH:
        return path, f"nested too deeply (limit {MAX_JSON_DEPTH} levels)"
    if isinstance(value, _NotANumber):
        return path, f"{value.text} is not a number JSON allows (finite numbers only)"
    if isinstance(value, float) and not math.isfinite(value):
        return path, "a number too large to represent (finite numbers only)"
    if isinstance(value, str):
        return _check_text(value, path)
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _walk(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{_short(key)}"
            found = _check_text(key, path) or _walk(item, where, depth + 1)
            if found:
                return found
    return None


def _check_text(text: str, path: str) -> tuple[str, str] | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return path, f"not valid Unicode text (lone surrogate at character {exc.start})"
    return None


def _short(key: str) -> str:
    key = key.encode("utf-8", "replace").decode("utf-8")
    return key if len(key) <= 60 else key[:60] + "…"


# --- plumbing ---------------------------------------------------------------------------------


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def _drained() -> Receive:
    async def receive() -> Message:
        return {"type": "http.disconnect"}

    return receive


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _multipart_routes(app: Any) -> list[re.Pattern[str]]:
    """Routes whose body declares form fields or files (FastAPI `Form`/`File`)."""
    found: list[re.Pattern[str]] = []
    for route in getattr(app, "routes", []):
        if isinstance(route, APIRoute) and any(
            isinstance(p.field_info, params.Form) for p in route.dependant.body_params
        ):
            found.append(route.path_regex)
    return found
