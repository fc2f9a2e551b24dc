"""Riding out outages of the things Glassbox depends on: which errors are transient, backoff,
and one log line when a component goes down and one when it is back (not one per attempt)."""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0

# Errors of a connection, not of the statement: retrying the same thing later may succeed.
_TRANSIENT = (
    sa_exc.OperationalError,  # connection refused or reset, server shutting down, SQLite busy
    sa_exc.InterfaceError,  # a connection closed under us
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no connection free in the pool in time
    ConnectionError,
    TimeoutError,
)
_NETWORK_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.ETIMEDOUT, errno.EPIPE}
)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, _TRANSIENT):
        return True
    if isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS:
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


def describe(error: BaseException) -> str:
    """One line: the driver's message without SQLAlchemy's statement and background link."""
    inner = error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig else error
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


class Outage:
    """Whether a component (`database`, `storage`) is down as this process sees it: set by the
    operations that fail on it, cleared by the first that succeeds. Logged once each way."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.down_since: float | None = None  # time.monotonic()
        self.error: str | None = None
        self.back_at: float | None = None  # when the last outage ended (time.monotonic())
        self.lasted = 0.0  # how long the last outage lasted
        self.outages = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException, doing: str) -> None:
        self.error = describe(error)
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.warning(
                "%s unavailable (%s, while %s); retrying until it is back",
                self.component,
                self.error,
                doing,
            )
        else:
            log.debug("%s still unavailable (%s, while %s)", self.component, self.error, doing)

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        self.lasted = time.monotonic() - self.down_since
        self.down_since, self.back_at = None, time.monotonic()
        log.warning("%s is back after %.1f s", self.component, self.lasted)

    def recently_down(self, *, longer_than: float, within_s: float) -> bool:
        """Down for more than `longer_than` now, or after such an outage back less than
        `within_s` ago. (Blips — SQLite's `database is locked` — do not count.)"""
        now = time.monotonic()
        if self.down_since is not None:
            return now - self.down_since > longer_than
        return (
            self.back_at is not None and now - self.back_at < within_s and self.lasted > longer_than
        )


def backoff(attempt: int, *, first: float = FIRST_DELAY_S, cap: float = MAX_DELAY_S) -> float:
    """Exponential, capped, with jitter so that processes that lost the database together do not
    all knock at the same instant when it returns."""
    delay: float = min(cap, first * 2 ** min(attempt, 16))
    return delay * random.uniform(0.75, 1.25)


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    outage: Outage,
    doing: str,
    deadline: float | Callable[[], float] | None = None,
    cap: float = MAX_DELAY_S,
) -> T:
    """`operation()` until it succeeds, waiting with backoff after each transient error; gives up
    (raising the last error) on any other error, or once `deadline` (time.monotonic(); or a
    function giving it, asked after each failure: it may come closer) passed.
    `operation` must be safe to repeat: it opens its own session each time."""
    attempt = 0
    while True:
        try:
            result = await operation()
        except Exception as error:
            if not is_transient(error):
                raise
            outage.failed(error, doing)
            delay = backoff(attempt, cap=cap)
            until = deadline() if callable(deadline) else deadline
            if until is not None and time.monotonic() + delay > until:
                raise
            attempt += 1
            await asyncio.sleep(delay)
        else:
            outage.succeeded()
            return result
