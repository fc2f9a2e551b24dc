"""Schedules: saved workflows that run by themselves — a cron expression in a time zone, a fixed
interval, or one time. Every process with a `Scheduler` fires due schedules; each fire time is
taken by one of them (a compare-and-set on `next_fire_at` in the transaction that queues the
run), so a run is made once however many processes there are, and a fire time that was due
while nothing ran is handled by the schedule's catch-up policy, never dropped silently."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter
from sqlalchemy.ext.asyncio import AsyncSession

from runner.workflow import parse_workflow
from services.backends import Services
from services.runs import RunOptions, check_metadata, check_tags, inputs_for, queue_run
from storage import schedules as stored
from storage.errors import GlassboxError, NotFound, ValidationFailed
from storage.models import Run, Schedule, utcnow
from storage.status import RunSource
from storage.workflows import get_workflow

log = logging.getLogger(__name__)

CATCH_UP = ("skip", "run_once")
MIN_INTERVAL_S = 1
MAX_INTERVAL_S = 366 * 86_400
ONCE_GRACE = timedelta(seconds=60)
# A fire time at most this late is fired (a process that was busy, not down), whatever
# `catch_up` says; those that went by meanwhile are folded into its run (counted skipped).
LATE_GRACE = ONCE_GRACE
"""A one-time schedule found this late (the service was down) counts as missed."""


@dataclass(kw_only=True)
class ScheduleSpec:
    """What a schedule request sets; `None` leaves a field as it is (when updating)."""

    title: str | None = None
    cron: str | None = None
    interval_s: int | None = None
    at: datetime | None = None
    timezone: str | None = None
    parameters: dict[str, Any] | None = None
    catch_up: str | None = None
    enabled: bool | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            "timezone", f"unknown time zone {name!r} (e.g. Europe/Paris, UTC)"
        ) from None


def _check_cron(expression: str) -> None:
    if len(expression.split()) != 5:
        raise ValidationFailed(
            "cron", "a cron expression has 5 fields: minute hour day month weekday"
        )
    try:
        croniter(expression)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ValidationFailed("cron", f"not a valid cron expression: {exc}") from None


def next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    """The first fire time strictly after `after` (UTC), or None (a one-time schedule)."""
    if schedule.cron:
        zone = _zone(schedule.timezone or "UTC")
        following: datetime = croniter(schedule.cron, after.astimezone(zone)).get_next(datetime)
        return following.astimezone(UTC)
    if schedule.interval_s:
        return after + timedelta(seconds=schedule.interval_s)
    return None


def first_fire(schedule: Schedule, now: datetime) -> datetime | None:
    if schedule.at is not None:
        return schedule.at if schedule.at > now - ONCE_GRACE else None
    return next_fire(schedule, now)


def _apply(schedule: Schedule, spec: ScheduleSpec, now: datetime, *, creating: bool) -> None:
    """Checks the spec and sets it on `schedule`; refusals name the field."""
    if spec.title is not None:
        schedule.title = spec.title or None
    kinds = [name for name in ("cron", "interval_s", "at") if getattr(spec, name) is not None]
    if len(kinds) > 1:
        raise ValidationFailed(kinds[1], "give one of cron, interval_s or at")
    if creating and not kinds:
        raise ValidationFailed("cron", "give one of cron, interval_s or at")
    if spec.timezone is not None:
        _zone(spec.timezone)
        schedule.timezone = spec.timezone
    if kinds:
        schedule.cron = schedule.interval_s = schedule.at = None
    if spec.cron is not None:
        _check_cron(spec.cron)
        schedule.cron = spec.cron
    if spec.interval_s is not None:
        if not MIN_INTERVAL_S <= spec.interval_s <= MAX_INTERVAL_S:
            raise ValidationFailed(
                "interval_s", f"from {MIN_INTERVAL_S} to {MAX_INTERVAL_S} seconds"
            )
        schedule.interval_s = spec.interval_s
    if spec.at is not None:
        at = spec.at
        if at.tzinfo is None:  # a local time in the schedule's zone
            at = at.replace(tzinfo=_zone(schedule.timezone or "UTC"))
        at = at.astimezone(UTC)
        if at <= now:
            raise ValidationFailed("at", "the time is in the past")
        schedule.at = at
    if spec.catch_up is not None:
        if spec.catch_up not in CATCH_UP:
            raise ValidationFailed("catch_up", f"one of {', '.join(CATCH_UP)}")
        schedule.catch_up = spec.catch_up
    if spec.parameters is not None:
        schedule.parameters = spec.parameters
    if spec.enabled is not None:
        schedule.enabled = spec.enabled
    if spec.tags is not None:
        schedule.tags = list(check_tags(spec.tags))
    if spec.metadata is not None:
        check_metadata(spec.metadata)
        schedule.run_metadata = spec.metadata
    if kinds or spec.timezone is not None or spec.enabled is not None or creating:
        schedule.next_fire_at = first_fire(schedule, now) if schedule.enabled else None


async def _check_parameters(
    services: Services, session: AsyncSession, workflow_id: str, parameters: dict[str, Any]
) -> None:
    """The parameters must make a valid run of the workflow now; no secret's value is kept."""
    saved = await get_workflow(session=session, workflow_id=workflow_id)
    workflow = parse_workflow(saved.definition)
    for name in parameters:
        spec = workflow.parameters.get(name)
        if spec is not None and spec.secret:
            raise ValidationFailed(f"parameters.{name}", "a schedule cannot keep a secret's value")
    inputs_for(services, workflow, parameters)


async def create_schedule(services: Services, workflow_id: str, spec: ScheduleSpec) -> Schedule:
    now = utcnow()
    schedule = Schedule(
        workflow_id=workflow_id,
        timezone="UTC",
        catch_up="skip",
        enabled=True,
        parameters={},
        tags=[],
        run_metadata={},
    )
    _apply(schedule, spec, now, creating=True)
    async with services.db.session() as session:
        try:
            await _check_parameters(services, session, workflow_id, schedule.parameters)
        except NotFound:
            raise ValidationFailed("workflow_id", f"no saved workflow {workflow_id!r}") from None
        saved = await stored.create_schedule(
            session=session,
            workflow_id=workflow_id,
            **{
                name: getattr(schedule, name)
                for name in (
                    "title",
                    "cron",
                    "interval_s",
                    "at",
                    "timezone",
                    "parameters",
                    "catch_up",
                    "enabled",
                    "next_fire_at",
                    "tags",
                    "run_metadata",
                )
            },
        )
        await session.commit()
    return saved


async def update_schedule(services: Services, schedule_id: str, spec: ScheduleSpec) -> Schedule:
    async with services.db.session() as session:
        schedule = await stored.get_schedule(session=session, schedule_id=schedule_id)
        _apply(schedule, spec, utcnow(), creating=False)
        if spec.parameters is not None:
            await _check_parameters(services, session, schedule.workflow_id, schedule.parameters)
        schedule.updated_at = utcnow()
        await session.commit()
        await session.refresh(schedule)
    return schedule


async def get_schedule(services: Services, schedule_id: str) -> Schedule:
    async with services.db.session() as session:
        return await stored.get_schedule(session=session, schedule_id=schedule_id)


async def list_schedules(services: Services, workflow_id: str | None = None) -> list[Schedule]:
    async with services.db.session() as session:
        if workflow_id is not None:
            await get_workflow(session=session, workflow_id=workflow_id)
        return await stored.list_schedules(session=session, workflow_id=workflow_id)


async def delete_schedule(services: Services, schedule_id: str) -> None:
    async with services.db.session() as session:
        await stored.delete_schedule(session=session, schedule_id=schedule_id)
        await session.commit()


# --- firing ----------------------------------------------------------------------------------


class _Taken(Exception):
    """Another process advanced the schedule first."""


async def fire_due(services: Services, now: datetime | None = None) -> list[str]:
    """Fires every due schedule this process wins; returns the runs it queued."""
    now = now or utcnow()
    async with services.db.session() as session:
        due = await stored.due_schedules(session=session, now=now)
    queued: list[str] = []
    for schedule in due:
        run_id = await _fire(services, schedule, now)
        if run_id is not None:
            queued.append(run_id)
    return queued


def _plan(schedule: Schedule, now: datetime) -> tuple[bool, datetime | None, int]:
    """(fire now?, the next fire time, fire times skipped) for a due schedule."""
    due = schedule.next_fire_at
    assert due is not None
    if schedule.at is not None:  # one time
        missed = now - due > ONCE_GRACE
        return (
            (not missed or schedule.catch_up == "run_once"),
            None,
            int(missed and schedule.catch_up == "skip"),
        )
    following = next_fire(schedule, due)
    if following is None or following > now:
        return True, following, 0  # on time (or a little late): this fire time, then the next
    # More than one fire time went by since this one.
    behind = 1
    while following is not None and following <= now and behind < 100_000:
        following = next_fire(schedule, following)
        behind += 1
    upcoming = next_fire(schedule, now)
    if now - due <= LATE_GRACE or schedule.catch_up == "run_once":
        # Late by a busy process (not down), or caught up by policy: one run for them all.
        return True, upcoming, behind - 1
    return False, upcoming, behind


async def _fire(services: Services, schedule: Schedule, now: datetime) -> str | None:
    expected = schedule.next_fire_at
    assert expected is not None
    fire, upcoming, skipped = _plan(schedule, now)

    async def take(session: AsyncSession, run: Run | None) -> None:
        won = await stored.advance(
            session=session,
            schedule_id=schedule.id,
            expected=expected,
            next_fire_at=upcoming,
            fired_at=now if fire else None,
            run_id=run.id if run is not None else None,
            skipped=skipped,
            error=None,
        )
        if not won:
            raise _Taken
        if run is not None:
            run.schedule_id = schedule.id

    if not fire:
        async with services.db.session() as session:
            try:
                await take(session, None)
            except _Taken:
                return None
            await session.commit()
        log.warning(
            "schedule %s: %d fire time(s) missed while no process was running; skipped "
            "(catch_up: skip), next at %s",
            schedule.id,
            skipped,
            upcoming,
        )
        return None

    try:
        async with services.db.session() as session:
            saved = await get_workflow(session=session, workflow_id=schedule.workflow_id)
        workflow = parse_workflow(saved.definition)
        inputs = inputs_for(services, workflow, schedule.parameters or {})
    except GlassboxError as exc:
        # The workflow changed (or went) under the schedule: say so on it, and move on.
        async with services.db.session() as session:
            won = await stored.advance(
                session=session,
                schedule_id=schedule.id,
                expected=expected,
                next_fire_at=upcoming,
                fired_at=now,
                run_id=None,
                error=str(exc),
            )
            await session.commit()
        if won:
            log.error("schedule %s made no run: %s", schedule.id, exc)
        return None
    options = RunOptions(
        source=RunSource.schedule,
        workflow_id=schedule.workflow_id,
        title=schedule.title,
        tags=tuple(schedule.tags or ()),
        metadata=schedule.run_metadata or None,
    )
    try:
        run = await queue_run(services, workflow, inputs, options, within=take)
    except _Taken:
        return None
    log.info("schedule %s fired: run %s (due %s)", schedule.id, run.id, expected.isoformat())
    return run.id


class Scheduler:
    """Fires due schedules every `poll_s` seconds until `stop`; survives database outages."""

    def __init__(self, services: Services, poll_s: float = 1.0) -> None:
        self.services = services
        self.poll_s = poll_s

    async def run_forever(self, stop: asyncio.Event) -> None:
        failing = False
        while not stop.is_set():
            try:
                await fire_due(self.services)
                if failing:
                    log.info("scheduler: the database is back; firing schedules again")
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("scheduler: cannot fire schedules (%s); retrying", exc)
                failing = True
            try:
                await asyncio.wait_for(stop.wait(), self.poll_s)
            except TimeoutError:
                pass
