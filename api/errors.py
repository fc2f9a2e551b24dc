"""Domain errors to HTTP, in one place. Every error body is JSON `{"detail": …}`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from storage.errors import (
    ConfigurationError,
    GlassboxError,
    InvalidTransition,
    NotFound,
    RunNotFinished,
    TriggerRefused,
    ValidationFailed,
    WebhookNotConfigured,
)

STATUS_CODES: dict[type[GlassboxError], int] = {
    NotFound: 404,
    InvalidTransition: 409,
    RunNotFinished: 409,
    WebhookNotConfigured: 422,
    TriggerRefused: 401,
    ConfigurationError: 500,
}
"""Errors answered `{"detail": "<message>"}` with this status; ValidationFailed names its field."""


def field_error(
    field: str, message: str, *, prefix: tuple[str, ...] = ("body",), line: int | None = None
) -> JSONResponse:
    loc = [*prefix, *[p for p in field.replace("[", ".[").split(".") if p]]
    item: dict[str, object] = {"loc": loc, "field": field, "msg": message, "type": "value_error"}
    if line is not None:
        item["line"] = line  # where the field is in a workflow sent as YAML/JSON text
    return JSONResponse(status_code=422, content={"detail": [item]})


def _answer(status_code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status_code, content={"detail": str(exc)})

    return handler


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationFailed)
    return field_error(exc.field, exc.message, prefix=(exc.location,), line=exc.line)


def install(app: FastAPI) -> None:
    for error, status_code in STATUS_CODES.items():
        app.add_exception_handler(error, _answer(status_code))
    app.add_exception_handler(ValidationFailed, _invalid)
