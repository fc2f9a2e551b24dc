"""`GET /api/v1/health`: whether this process can do its work, naming what is down.

Checked on each request, each with a short time limit: the database (a round trip), the object
store (cheap: the local directory is writable, the S3 bucket answers), and the workers — the
in-process ones are running (a dead one is being replaced), or, in an API-only process
(`--workers 0`), no run has waited in the queue for longer than a lease while no running run
had a heartbeat (an idle cluster with an empty queue has nothing to show and is not reported).
A database outage anywhere else in the API answers 503 JSON too (`install`), never a 500."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from services.backends import Services
from services.workers import WorkerPool
from storage.models import utcnow
from storage.queue import queue_activity
from storage.retry import describe

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0
PROBE_KEY = "health/probe"


async def _timed(what: str, check: Any) -> str | None:
    """None if `check` (a coroutine) passes in time, else '<what>: <why>'."""
    try:
        problem: str | None = await asyncio.wait_for(check, CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"{what}: no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as error:
        return f"{what}: {describe(error)}"
    return f"{what}: {problem}" if problem else None


async def _database(services: Services) -> str | None:
    await services.db.ping()
    return None


async def _storage(services: Services) -> str | None:
    base = getattr(services.store, "base", None)
    if base is not None:  # the local directory, made on the first write: can it be written?
        existing = Path(base)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return f"artifact directory {base} is not writable"
        return None
    # S3: one HEAD of an object that need not exist (a missing one is an answer too).
    await asyncio.to_thread(services.store.exists, PROBE_KEY)
    return None


async def _workers(services: Services, pool: WorkerPool | None) -> str | None:
    if pool is not None and len(pool):
        if pool.live == 0:
            return "no live worker (the in-process workers died and are being replaced)"
        return None
    lease_s = services.settings.service.lease_s
    async with services.db.session() as session:
        waiting, newest = await queue_activity(session=session, within_s=lease_s)
    if waiting and (newest is None or newest < utcnow() - timedelta(seconds=lease_s)):
        return (
            f"no live worker ({waiting} runs queued for more than {lease_s:g} s "
            "and no heartbeat of a running run within it)"
        )
    return None


async def check(services: Services, pool: WorkerPool | None) -> tuple[int, dict[str, Any]]:
    """The status code and body of the health answer."""
    database, storage = await asyncio.gather(
        _timed("database", _database(services)), _timed("storage", _storage(services))
    )
    down = [problem for problem in (database, storage) if problem]
    if database is None:  # the API-only check reads the queue
        workers = await _timed("workers", _workers(services, pool))
        if workers:
            down.append(workers)
    elif pool is not None and len(pool) and pool.live == 0:
        down.append("workers: no live worker")
    body: dict[str, Any] = {
        "status": "unavailable" if down else "ok",
        "workers": pool.live if pool is not None else 0,
        "worker_restarts": pool.restarts if pool is not None else 0,
        "database_outages": services.db.outage.outages,
        "down": down,
    }
    return (503 if down else 200), body


def install(app: FastAPI) -> None:
    """A database outage met by any route answers 503 JSON naming it, never a plain 500."""

    async def unavailable(_request: Request, error: Exception) -> JSONResponse:
        problem = f"database: {describe(error)}"
        log.warning("answered 503: %s", problem)
        return JSONResponse(
            status_code=503,
            content={"detail": f"{problem}", "status": "unavailable", "down": [problem]},
            headers={"Retry-After": "5"},
        )

    for error in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError):
        app.add_exception_handler(error, unavailable)
