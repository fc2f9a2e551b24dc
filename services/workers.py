"""Workers, as the entry points start them: in `glassbox serve` (in-process) and
`glassbox worker`. A worker is given the process's `Services`; one that dies anyway (its
browser exited, a bug) is logged and replaced, so a process never silently stops working."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from runner.salvage import Salvaged, salvage_spools
from runner.worker import Worker, WorkerOptions
from services.backends import Services, open_services
from services.settings import Settings
from storage.retry import backoff, describe, is_transient

__all__ = [
    "Salvaged",
    "Worker",
    "WorkerOptions",
    "WorkerPool",
    "open_when_reachable",
    "salvage_spools",
]

log = logging.getLogger(__name__)

# A worker that ran this long before dying is replaced at once; one that keeps dying at its
# start is replaced after a growing pause (up to RESTART_MAX_S), not in a tight loop.
STEADY_S = 60.0
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0


class WorkerPool:
    """`count` workers kept running until `stop` is set."""

    def __init__(self, services: Services, options: WorkerOptions, count: int) -> None:
        self.services = services
        self.options = options
        self.workers: list[Worker | None] = [None] * count
        self.restarts = 0
        self._live = [False] * count

    def __len__(self) -> int:
        return len(self.workers)

    @property
    def live(self) -> int:
        """Workers running now (not dead and waiting to be replaced)."""
        return sum(self._live)

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self._keep(slot, stop), name=f"worker {slot}")
            for slot in range(len(self.workers))
        ]

    async def _keep(self, slot: int, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            worker = Worker(self.services, self.options)
            self.workers[slot] = worker
            started = time.monotonic()
            self._live[slot] = True
            try:
                await worker.run(stop)
            except Exception:
                log.exception("worker %s died; starting another", worker.worker_id)
            else:
                if stop.is_set():
                    return
                log.error("worker %s stopped on its own; starting another", worker.worker_id)
            finally:
                self._live[slot] = False
            self.restarts += 1
            failures = 0 if time.monotonic() - started > STEADY_S else failures + 1
            pause = backoff(failures - 1, first=RESTART_FIRST_S, cap=RESTART_MAX_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause if failures else 0.1)


async def open_when_reachable(settings: Settings, stop: asyncio.Event) -> Services | None:
    """The process's services once the database answers: a worker started while the database
    is down (migrations, LISTEN) waits for it — logged once, and once when it is back — instead
    of exiting. None if `stop` is set first."""
    attempt, since = 0, time.monotonic()
    while not stop.is_set():
        services: Services | None = None
        try:
            services = await asyncio.to_thread(open_services, settings)
            await services.notifier.start()
        except Exception as error:
            if services is not None:
                await services.close()
            if not is_transient(error):
                raise
            if attempt == 0:
                log.warning("database unavailable at start (%s); waiting for it", describe(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff(attempt))
            attempt += 1
            continue
        if attempt:
            log.warning("database is back after %.1f s; starting", time.monotonic() - since)
        return services
    return None
