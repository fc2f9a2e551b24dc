"""Notifications between processes: a run was queued, a cancel was asked, a run has news.

In one process (the embedded default) a local fan-out is enough. With PostgreSQL, LISTEN/NOTIFY
carries them to every API and worker process; payloads are small (ids), readers fetch the rest
from the database, so a missed notification only delays, never loses, anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Protocol

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

QUEUE = "glassbox_queue"
CANCEL = "glassbox_cancel"
RUN = "glassbox_run"
CHANNELS = (QUEUE, CANCEL, RUN)


class Notifier(Protocol):
    async def start(self) -> None: ...
    async def publish(self, channel: str, payload: str) -> None: ...
    def subscribe(self, channel: str) -> Subscription: ...
    async def close(self) -> None: ...


class Subscription:
    def __init__(self, hub: LocalNotifier, channel: str) -> None:
        self.hub = hub
        self.channel = channel
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)

    async def get(self, timeout: float | None = None) -> str | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        while True:
            yield await self.queue.get()

    def close(self) -> None:
        self.hub._subscribers[self.channel].discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalNotifier:
    """In-process fan-out."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)

    async def start(self) -> None:
        return None

    def deliver(self, channel: str, payload: str) -> None:
        for sub in list(self._subscribers.get(channel, ())):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(payload)

    async def publish(self, channel: str, payload: str) -> None:
        self.deliver(channel, payload)

    def subscribe(self, channel: str) -> Subscription:
        sub = Subscription(self, channel)
        self._subscribers[channel].add(sub)
        return sub

    async def close(self) -> None:
        self._subscribers.clear()


class PostgresNotifier(LocalNotifier):
    """LISTEN on one connection, NOTIFY on another; local subscribers get both our own and
    other processes' notifications (PostgreSQL echoes ours back)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        parsed = make_url(url).set(drivername="postgresql")
        self.dsn = parsed.render_as_string(hide_password=False)
        self._publish_conn: object | None = None
        self._publish_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._listen_forever())
        await asyncio.wait_for(self._ready.wait(), 15)

    async def _listen_forever(self) -> None:
        import psycopg

        delay = 0.5
        failures = 0  # since the last connection that worked: the first is logged in full
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                async with conn:
                    for channel in CHANNELS:
                        await conn.execute(f"LISTEN {channel}")
                    self._ready.set()
                    if failures:
                        log.warning("LISTEN connection back after %d failed attempts", failures)
                    delay, failures = 0.5, 0
                    async for note in conn.notifies():
                        self.deliver(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                else:
                    log.warning("LISTEN reconnect %d failed (%s); retrying", failures, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def publish(self, channel: str, payload: str) -> None:
        import psycopg

        async with self._publish_lock:
            for attempt in range(2):
                try:
                    if self._publish_conn is None:
                        self._publish_conn = await psycopg.AsyncConnection.connect(
                            self.dsn, autocommit=True
                        )
                    conn = self._publish_conn
                    assert isinstance(conn, psycopg.AsyncConnection)
                    await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
                    return
                except psycopg.OperationalError:
                    self._publish_conn = None
                    if attempt:
                        log.warning("NOTIFY %s failed", channel, exc_info=True)

    async def close(self) -> None:
        import psycopg

        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        conn = self._publish_conn
        if isinstance(conn, psycopg.AsyncConnection):
            await conn.close()
        await super().close()


async def publish_run_event(notifier: Notifier, run_id: str, kind: str, **extra: object) -> None:
    """News about one run on the RUN channel (`status`, `card`, `frame`); listeners read the
    rest from the database."""
    await notifier.publish(RUN, json.dumps({"run_id": run_id, "type": kind, **extra}))


async def publish_status(notifier: Notifier, run_id: str, status: str) -> None:
    """A run's status changed. Publish after the change is committed, so a listener that
    reads the run sees it."""
    await publish_run_event(notifier, run_id, "status", status=str(status))


def notifier_for(database_url: str) -> LocalNotifier:
    """PostgreSQL NOTIFY where the database is PostgreSQL, else in-process. Publishing needs no
    `start`; receiving other processes' notifications does."""
    backend = make_url(database_url).get_backend_name()
    if backend in ("postgresql", "postgres"):
        return PostgresNotifier(database_url)
    return LocalNotifier()
