"""Domain errors to HTTP, in one place. Every error body is JSON `{"detail": …}`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Mount

from storage.errors import (
    ConfigurationError,
    GlassboxError,
    InvalidTransition,
    NotFound,
    RunNotFinished,
    StateGone,
    TriggerRefused,
    ValidationFailed,
    WebhookNotConfigured,
)

STATUS_CODES: dict[type[GlassboxError], int] = {
    NotFound: 404,
    InvalidTransition: 409,
    RunNotFinished: 409,
    StateGone: 409,
    WebhookNotConfigured: 409,  # nothing to send to: the run's state, not the request's
    TriggerRefused: 401,
    ConfigurationError: 500,
}
"""Errors answered `{"detail": "<message>"}` with this status; ValidationFailed names its field."""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def field_error(
    field: str, message: str, *, prefix: tuple[str, ...] = ("body",), line: int | None = None
) -> JSONResponse:
    field = _cut(field, 200)
    loc = [*prefix, *[p for p in field.replace("[", ".[").split(".") if p]]
    item: dict[str, object] = {
        "loc": loc,
        "field": field,
        "msg": _cut(message, 400),
        "type": "value_error",
    }
    if line is not None:
        item["line"] = line  # where the field is in a workflow sent as YAML/JSON text
    return JSONResponse(status_code=422, content={"detail": [item]})


def _answer(status_code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status_code, content={"detail": _cut(str(exc), 400)})

    return handler


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationFailed)
    return field_error(exc.field, exc.message, prefix=(exc.location,), line=exc.line)


EXCERPT_CHARS = 120
"""Refusals repeat at most this much of the offending input."""


def excerpt(value: Any) -> Any:
    """The input as a refusal may echo it: small values as they are, others cut short."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(jsonable_encoder(value), ensure_ascii=False, allow_nan=True)
        except (TypeError, ValueError, RecursionError):
            text = type(value).__name__
        if len(text) <= EXCERPT_CHARS:
            return jsonable_encoder(value)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "header", "path") else loc)
    field = ""
    for part in parts:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return field or (str(loc[0]) if loc else "")


async def _shape(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for bodies and parameters of the wrong shape, with `field` added and the
    echoed `input` cut to an excerpt (a 50 MB title is not sent back)."""
    assert isinstance(exc, RequestValidationError)
    detail = []
    for error in exc.errors()[:20]:
        loc = tuple(error.get("loc", ()))
        item: dict[str, Any] = {
            "loc": [excerpt(p) if isinstance(p, str) else p for p in loc],
            "field": excerpt(_field_of(loc)),
            "msg": excerpt(str(error.get("msg", ""))),
            "type": error.get("type", "value_error"),
        }
        if "input" in error:
            item["input"] = excerpt(error["input"])
        detail.append(item)
    return JSONResponse(status_code=422, content={"detail": detail})


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path (Starlette's 405 names only the
    methods of the first route whose path matched: GET /runs and POST /runs are two routes)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
            if not isinstance(route, Mount)  # a mount matches whatever the method
        )
    ] or ["GET", "HEAD"]  # no route: a mount's static files, which are read-only


async def _http(request: Request, exc: Exception) -> Response:
    """Starlette's HTTP errors as FastAPI answers them, a 405 with the path's whole `Allow`."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
        exc = StarletteHTTPException(405, exc.detail, headers=headers)
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    for error, status_code in STATUS_CODES.items():
        app.add_exception_handler(error, _answer(status_code))
    app.add_exception_handler(ValidationFailed, _invalid)
    app.add_exception_handler(RequestValidationError, _shape)
    app.add_exception_handler(StarletteHTTPException, _http)
