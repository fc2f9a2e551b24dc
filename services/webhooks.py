"""Webhooks: a finished run's record, POSTed to its `webhook_url`, signed, retried.

Each request carries the run record (JSON, secrets masked as stored) and the headers

- `Content-Type: application/json`, `User-Agent: glassbox`;
- `X-Glassbox-Timestamp: <unix seconds>` (always);
- `X-Glassbox-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`, keyed with
  `GLASSBOX_WEBHOOK_SECRET` — only when that setting is set: without a secret there is nothing
  to sign with, so the header is left out (receivers that require it then refuse the delivery);
- `X-Glassbox-Delivery: <delivery id>` (the id listed at `GET /runs/{id}/webhook-deliveries`)
  and `X-Glassbox-Run-Id: <run id>`, so a receiver can tell retries from new events.

A 2xx answer delivers. Anything else — another status (redirects are not followed), a timeout
(`GLASSBOX_WEBHOOK_TIMEOUT_S` for the whole attempt), a connection error — is a failed attempt,
retried after `GLASSBOX_WEBHOOK_FIRST_RETRY_S`, doubling each time, or after the answer's
`Retry-After` (seconds or an HTTP date) when that is longer; no wait exceeds an hour. After
`GLASSBOX_WEBHOOK_ATTEMPTS` automatic attempts the webhook is `failed`. Every attempt is recorded.

Manual redelivery (`POST /runs/{id}/webhook-deliveries`) sends the record once, right away, and
is listed with `manual: true`. It does not count against the automatic attempts. If it succeeds
the webhook is `delivered` and pending retries stop; if it fails, the automatic schedule (pending
retries, or the final `failed`/`delivered`) is left as it was.

Delivery is at least once: a process that dies between sending and recording lets its claim
expire, and the attempt is made again. Delivering never changes the run's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.settings import WebhookSettings
from storage.artifacts import list_artifacts
from storage.db import Database
from storage.errors import (
    NotFound,
    RunNotFinished,
    ValidationFailed,
    WebhookError,
    WebhookNotConfigured,
    WebhookNotDue,
)
from storage.ids import new_id
from storage.models import Artifact, Run, WebhookDelivery, utcnow
from storage.runs import get_run
from storage.status import TERMINAL_STATUSES, RunStatus
from storage.webhooks import (
    WebhookState,
    due_deliveries,
    mark,
    next_attempt_number,
    next_due_at,
    record_attempt,
    schedule_delivery,
)

log = logging.getLogger(__name__)

USER_AGENT = "glassbox"
MAX_DELAY_S = 3600.0
"""No retry waits longer than this, whatever the backoff or the receiver's Retry-After."""
RecordBuilder = Callable[[Run, list[Artifact]], dict[str, Any]]

CLAIM_MARGIN_S = 60.0
"""A claim outlives the attempt's timeout by this much before another process may retry."""


# --- targets ----------------------------------------------------------------------------------

ALWAYS_DENIED = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, cloud metadata (169.254.169.254)
    ipaddress.ip_network("fe80::/10"),  # link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("0.0.0.0/8"),  # "this network": 0.0.0.0 reaches the local host
    ipaddress.ip_network("::/128"),
)
"""Never a webhook target, whatever the settings."""


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _denied(address: Address, deny_private: bool) -> str | None:
    """Why a webhook may not go to `address`, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in ALWAYS_DENIED:
        if address in network:
            return f"{address} is a link-local or cloud-metadata address"
    if deny_private and not address.is_global:
        return f"{address} is a private address (GLASSBOX_WEBHOOK_DENY_PRIVATE is true)"
    return None


def check_target(url: str, *, deny_private: bool, field: str = "webhook_url") -> None:
    """A webhook URL as given: http(s), a host, no credentials, no CR/LF, and not an address
    that is refused (a host name is checked again when it is resolved, at delivery).
    Raises ValidationFailed naming `field`."""
    if any(c in url for c in "\r\n\t\x00"):
        raise ValidationFailed(field, "must not contain control characters (CR, LF, tab, NUL)")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValidationFailed(field, f"not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ValidationFailed(field, "must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationFailed(
            field,
            "must not contain credentials (user:password@); authenticate the webhook by its "
            "signature (GLASSBOX_WEBHOOK_SECRET) instead",
        )
    address = _literal_address(host)
    if address is None:
        return
    reason = _denied(address, deny_private)
    if reason:
        raise ValidationFailed(field, f"refused target: {reason}")


def _literal_address(host: str) -> Address | None:
    """The address a host written as a number stands for, in any form the resolver takes
    (`169.254.169.254`, `2852039166`, `0251.0376.0251.0376`, `[::ffff:a9fe:a9fe]`)."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def check_resolved_target(url: str, *, deny_private: bool) -> None:
    """At delivery: every address the URL's host resolves to must be allowed (a name that
    resolves to a metadata address, or to another address than when it was accepted, is
    refused). Raises WebhookTargetRefused."""
    try:
        check_target(url, deny_private=deny_private)
    except ValidationFailed as exc:
        raise WebhookTargetRefused(exc.message) from None
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # the connection attempt reports the failure to resolve
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        reason = _denied(address, deny_private)
        if reason:
            raise WebhookTargetRefused(f"{host} resolves to {reason}")


class WebhookTargetRefused(Exception):
    """The webhook's target address is not allowed (an attempt that fails, not retried)."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 over b"<timestamp>." + body>`."""
    digest = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delay-seconds or an HTTP date); None if the
    header is missing or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or utcnow())).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def backoff_s(first_retry_s: float, attempts_made: int) -> float:
    """Wait after the `attempts_made`-th failed automatic attempt: first_retry_s, doubling."""
    exponent = min(max(attempts_made - 1, 0), 60)
    return min(first_retry_s * 2.0**exponent, MAX_DELAY_S)


def retry_delay_s(first_retry_s: float, attempts_made: int, retry_after: float | None) -> float:
    """The longer of the backoff and the receiver's Retry-After, at most MAX_DELAY_S."""
    return min(max(backoff_s(first_retry_s, attempts_made), retry_after or 0.0), MAX_DELAY_S)


@dataclass(frozen=True)
class _Prepared:
    run_id: str
    url: str
    body: bytes
    manual: bool
    attempts_before: int  # automatic attempts made before this one


@dataclass(frozen=True)
class _Outcome:
    delivery_id: str
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookDispatcher:
    """Sends webhooks: `run_forever` delivers what is due; `deliver_once` makes one attempt."""

    def __init__(
        self,
        *,
        db: Database,
        settings: WebhookSettings,
        record: RecordBuilder,
        client: httpx.AsyncClient | None = None,
        concurrency: int = 8,
        poll_s: float = 1.0,
    ) -> None:
        """`record` builds the JSON body from the run and its artifacts (the API's run record;
        it must not add anything secret)."""
        self.db = db
        self.settings = settings
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(follow_redirects=False)
        self.concurrency = max(1, concurrency)
        self.poll_s = poll_s
        self.record = record
        self._kick = asyncio.Event()

    async def aclose(self) -> None:
        """Closes the HTTP client if the dispatcher made it."""
        if self._own_client:
            await self.client.aclose()

    async def __aenter__(self) -> WebhookDispatcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def claim_s(self) -> float:
        return self.settings.webhook_timeout_s + CLAIM_MARGIN_S

    # --- one attempt ------------------------------------------------------------------------

    async def deliver_once(self, run_id: str, *, manual: bool = False) -> WebhookDelivery:
        """Sends the run's record once and records the attempt.

        Automatic (`manual=False`): the next attempt of the run's schedule (scheduling it first
        if nothing was); its outcome moves the schedule on (delivered, retry later, failed).
        Raises NotFound, RunNotFinished, WebhookNotConfigured, or WebhookNotDue (automatic, and
        the webhook is already delivered or failed)."""
        prepared = await self._prepare(run_id, manual=manual)
        outcome = await self._post(prepared)
        return await self._finish(prepared, outcome)

    async def redeliver(self, run_id: str) -> WebhookDelivery:
        """A manual attempt, now: see the module's docstring for what it changes."""
        return await self.deliver_once(run_id, manual=True)

    async def _prepare(self, run_id: str, *, manual: bool) -> _Prepared:
        async with self.db.session() as session:
            run = await get_run(session=session, run_id=run_id)
            if RunStatus(run.status) not in TERMINAL_STATUSES:
                raise RunNotFinished(run_id, run.status)
            if not run.webhook_url:
                raise WebhookNotConfigured(run_id)
            attempts_before = run.webhook_attempts or 0
            if not manual:
                if run.webhook_state is None:
                    await schedule_delivery(session=session, run_id=run_id, at=utcnow())
                    await session.commit()
                    attempts_before = 0
                elif run.webhook_state != WebhookState.pending.value:
                    raise WebhookNotDue(run_id, run.webhook_state)
            record = self.record(run, await list_artifacts(session=session, run_id=run_id))
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return _Prepared(run_id, run.webhook_url, body, manual, attempts_before)

    def _headers(self, delivery_id: str, run_id: str, body: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Glassbox-Timestamp": str(timestamp),
            "X-Glassbox-Delivery": delivery_id,
            "X-Glassbox-Run-Id": run_id,
        }
        secret = self.settings.webhook_secret
        if secret is not None and secret.get_secret_value():
            headers["X-Glassbox-Signature"] = sign(
                secret.get_secret_value().encode("utf-8"), timestamp, body
            )
        return headers

    async def _post(self, prepared: _Prepared) -> _Outcome:
        delivery_id = new_id("whd")
        timeout = self.settings.webhook_timeout_s
        headers = self._headers(delivery_id, prepared.run_id, prepared.body)
        at = utcnow()
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            await check_resolved_target(
                prepared.url, deny_private=self.settings.webhook_deny_private
            )
            # httpx's timeout bounds each read; this bounds the whole attempt.
            async with (
                asyncio.timeout(timeout),
                self.client.stream(
                    "POST",
                    prepared.url,
                    content=prepared.body,
                    headers=headers,
                    timeout=timeout,
                    follow_redirects=False,
                ) as response,
            ):
                # The answer's body is not read: only its status counts.
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code} {response.reason_phrase}".rstrip()
                    if 300 <= status_code < 400:
                        error += " (redirects are not followed)"
                    retry_after = retry_after_s(response.headers.get("retry-after"))
        except WebhookTargetRefused as exc:
            error = f"refused target: {exc}"
        except (TimeoutError, httpx.TimeoutException) as exc:
            error = f"timeout: no answer within {timeout:g} s ({type(exc).__name__})"
        except httpx.ConnectError as exc:
            error = f"connection failed: {exc or type(exc).__name__}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        except Exception as exc:  # recorded as a failed attempt rather than retried forever
            log.exception("webhook of run %s: unexpected error", prepared.run_id)
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        duration_ms = int((time.perf_counter() - started) * 1000)
        return _Outcome(delivery_id, at, status_code, error, duration_ms, retry_after)

    async def _finish(self, prepared: _Prepared, outcome: _Outcome) -> WebhookDelivery:
        run_id = prepared.run_id
        async with self.db.session() as session:
            delivery = await record_attempt(
                session=session,
                run_id=run_id,
                url=prepared.url,
                attempt=await next_attempt_number(session=session, run_id=run_id),
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
                manual=prepared.manual,
                at=outcome.at,
                delivery_id=outcome.delivery_id,
            )
            made = prepared.attempts_before + 1
            if prepared.manual:
                if outcome.ok:
                    await mark(session=session, run_id=run_id, state=WebhookState.delivered)
            elif outcome.ok:
                await mark(
                    session=session,
                    run_id=run_id,
                    state=WebhookState.delivered,
                    attempts=made,
                    expect_attempts=prepared.attempts_before,
                )
            elif made >= self.settings.webhook_attempts:
                await mark(
                    session=session,
                    run_id=run_id,
                    state=WebhookState.failed,
                    attempts=made,
                    expect_attempts=prepared.attempts_before,
                )
            else:
                delay = retry_delay_s(
                    self.settings.webhook_first_retry_s, made, outcome.retry_after
                )
                await mark(
                    session=session,
                    run_id=run_id,
                    state=WebhookState.pending,
                    next_at=utcnow() + timedelta(seconds=delay),
                    attempts=made,
                    expect_attempts=prepared.attempts_before,
                )
            await session.commit()
        kind = "manual" if prepared.manual else f"attempt {made}/{self.settings.webhook_attempts}"
        if outcome.ok:
            log.info("webhook of run %s delivered (%s, HTTP %s)", run_id, kind, outcome.status_code)
        else:
            log.warning("webhook of run %s not delivered (%s): %s", run_id, kind, outcome.error)
        return delivery

    # --- the loop ---------------------------------------------------------------------------

    async def run_forever(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Delivers due webhooks until `stop` is set, up to `concurrency` at once. Sleeps until
        the earliest pending delivery is due, `wake` is set (it is cleared on waking), an
        attempt finishes, or `poll_s` passes.
        On stop, attempts in flight are finished (each is bounded by the webhook timeout)."""
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                if wake is not None:
                    wake.clear()
                self._kick.clear()
                delay = self.poll_s
                try:
                    free = self.concurrency - len(inflight)
                    claimed = await self._claim(free)
                    for run_id in claimed:
                        task = asyncio.create_task(self._attempt(run_id))
                        inflight.add(task)
                        task.add_done_callback(inflight.discard)
                    if len(claimed) < free:
                        delay = await self._until_next_due()
                    # else: every slot is busy; a finishing attempt sets the kick.
                except Exception:
                    log.exception("webhook dispatcher: cannot look for due deliveries")
                await self._wait(delay, stop, wake)
        except asyncio.CancelledError:
            for task in inflight:
                task.cancel()
            raise
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)

    async def _claim(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        async with self.db.session() as session:
            claimed = await due_deliveries(
                session=session, now=utcnow(), limit=limit, claim_s=self.claim_s
            )
            await session.commit()
        return claimed

    async def _until_next_due(self) -> float:
        async with self.db.session() as session:
            earliest = await next_due_at(session=session)
        if earliest is None:
            return self.poll_s
        # A due delivery that could not be claimed (another process holds it) is not spun on.
        return min(max((earliest - utcnow()).total_seconds(), 0.02), self.poll_s)

    async def _attempt(self, run_id: str) -> None:
        try:
            await self.deliver_once(run_id)
        except (WebhookError, NotFound) as exc:
            log.debug("webhook of run %s skipped: %s", run_id, exc)
        except Exception:
            log.exception("webhook of run %s: attempt failed", run_id)
        finally:
            self._kick.set()

    async def _wait(self, delay: float, stop: asyncio.Event, wake: asyncio.Event | None) -> None:
        events = [stop, self._kick] + ([wake] if wake is not None else [])
        if delay <= 0 or any(e.is_set() for e in events):
            return
        waiters = [asyncio.create_task(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            for waiter in waiters:
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
