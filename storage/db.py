"""Engines and sessions. Users write plain URLs; the driver is chosen here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.errors import ConfigurationError
from storage.retry import MAX_DELAY_S, Outage, retrying

T = TypeVar("T")

# A database that does not answer is down: give up on a connection attempt after this long
# (libpq's default is to wait for the operating system, minutes on a dropped network).
CONNECT_TIMEOUT_S = 5


def _normalize(url: str, *, asynchronous: bool) -> URL:
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigurationError(
            "GLASSBOX_DATABASE_URL is not a database URL (expected e.g. postgresql://user@host/db)"
        ) from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite")
    raise ConfigurationError(
        f"GLASSBOX_DATABASE_URL: unsupported database {backend!r} (use sqlite or postgresql)"
    )


def async_url(url: str) -> URL:
    return _normalize(url, asynchronous=True)


def sync_url(url: str) -> URL:
    return _normalize(url, asynchronous=False)


def _ensure_sqlite_dir(url: URL) -> None:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine_for(url: str) -> AsyncEngine:
    target = async_url(url)
    _ensure_sqlite_dir(target)
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(target, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            target,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=10,
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_S,
                # A peer that vanished without closing (a cut network) is noticed in ~30 s.
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 4,
            },
        )
    return engine


class Database:
    """One engine and its session factory, and whether the database is down as this process
    sees it (`outage`, set by every retried operation)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine_for(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.outage = Outage("database")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def retrying(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        doing: str,
        deadline: float | Callable[[], float] | None = None,
        cap: float = MAX_DELAY_S,
    ) -> T:
        """`operation()` (which opens its own session) retried with backoff while the database
        is unavailable, until `deadline` (time.monotonic(); None: for ever). See storage.retry."""
        return await retrying(
            operation, outage=self.outage, doing=doing, deadline=deadline, cap=cap
        )

    async def ping(self) -> None:
        """A round trip to the database; raises what the driver raises when it is down."""
        async with self.session() as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
