"""Domain errors to HTTP, in one place. Every error body is JSON `{"detail": …}`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from storage.errors import (
    ConfigurationError,
    InvalidTransition,
    NotFound,
    ValidationFailed,
)


def field_error(field: str, message: str, *, prefix: tuple[str, ...] = ("body",)) -> JSONResponse:
    loc = [*prefix, *[p for p in field.replace("[", ".[").split(".") if p]]
    return JSONResponse(
        status_code=422,
        content={
            "detail": [
                {
                    "loc": loc,
                    "field": field,
                    "msg": message,
                    "type": "value_error",
                }
            ]
        },
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(InvalidTransition)
    async def _conflict(_request: Request, exc: InvalidTransition) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(ValidationFailed)
    async def _invalid(_request: Request, exc: ValidationFailed) -> JSONResponse:
        return field_error(exc.field, exc.message, prefix=(exc.location,))

    @app.exception_handler(ConfigurationError)
    async def _config(_request: Request, exc: ConfigurationError) -> JSONResponse:
        return JSONResponse(status_code=500, content={"detail": str(exc)})
