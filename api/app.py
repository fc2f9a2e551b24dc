"""The FastAPI application: REST API under /api/v1, live events, in-process workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse

from api import (
    artifacts,
    cache,
    errors,
    guard,
    health,
    live,
    openapi,
    published,
    runs,
    schedules,
    triggers,
    uploads,
    webhooks,
    workflows,
)
from api.auth import check_startup, require_api_key
from api.records import API_PREFIX, public_record
from services.backends import Services, open_services
from services.schedules import Scheduler
from services.settings import ServiceSettings, Settings
from services.webhooks import WebhookDispatcher
from services.workers import WorkerOptions, WorkerPool
from ui.routes import install as install_ui

log = logging.getLogger(__name__)


def worker_options(settings: ServiceSettings, concurrency: int | None = None) -> WorkerOptions:
    return WorkerOptions(
        concurrency=concurrency or settings.concurrency,
        lease_s=settings.lease_s,
        heartbeat_s=settings.heartbeat_s,
        poll_s=settings.poll_s,
        retry_interrupted=settings.retry_interrupted,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; `settings` default to the environment's (`Settings.load()`)."""
    settings = settings or Settings.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await asyncio.to_thread(open_services, settings)
        try:
            await check_startup(db=services.db, host=settings.service.host)
        except Exception:
            await services.close()
            raise
        await services.notifier.start()
        app.state.services = services
        app.state.db = services.db
        app.state.settings = settings
        stop = asyncio.Event()
        service = settings.service
        pool = WorkerPool(services, worker_options(service), service.workers)
        app.state.workers = pool
        tasks = pool.start(stop)  # a worker that dies is logged and replaced
        tasks += await _extras(app, services, settings, stop)
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.close()

    app = FastAPI(
        title="Glassbox",
        version="0.1.0",
        summary="Browser-automation runs with a complete, inspectable record.",
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: no CDN
        redoc_url=None,
    )
    _install_docs(app)
    errors.install(app)
    health.install(app)
    guard.install(app, settings.service)  # Host, Origin, content type, body size
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_api_key)])
    api.include_router(runs.router)
    api.include_router(live.router)
    api.include_router(artifacts.router)
    api.include_router(workflows.router)
    api.include_router(cache.router)
    api.include_router(webhooks.router)
    api.include_router(schedules.router)
    api.include_router(triggers.router)
    api.include_router(uploads.router)

    @api.get(
        "/health",
        tags=["service"],
        summary="Whether the database, storage and workers are up; 503 naming what is down",
    )
    async def service_health() -> JSONResponse:
        status_code, body = await health.check(app.state.services, app.state.workers)
        return JSONResponse(status_code=status_code, content=body)

    app.include_router(api)
    app.include_router(triggers.hooks)  # authenticated by each trigger's token, not API keys
    app.include_router(published.router)  # the workflow format's schema: no data, no key
    install_ui(app)  # HTML pages and assets, outside /api/v1: they hold no data
    openapi.install(app)  # every status with its body, typed answers, ids, links
    return app


def _install_docs(app: FastAPI) -> None:
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount(
        "/static/swagger",
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="swagger",
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Glassbox API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )


async def _extras(
    app: FastAPI, services: Services, settings: Settings, stop: asyncio.Event
) -> list[asyncio.Task[Any]]:
    """Background services beside the workers: webhook delivery, schedules."""
    dispatcher = WebhookDispatcher(db=services.db, settings=settings.webhooks, record=public_record)
    app.state.webhooks = dispatcher

    async def deliver() -> None:
        try:
            await dispatcher.run_forever(stop)
        finally:
            await dispatcher.aclose()

    scheduler = Scheduler(services, poll_s=settings.service.scheduler_poll_s)
    return [
        asyncio.create_task(deliver(), name="webhooks"),
        asyncio.create_task(scheduler.run_forever(stop), name="scheduler"),
    ]
