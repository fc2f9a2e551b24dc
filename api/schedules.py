"""/api/v1/schedules and /api/v1/workflows/{id}/schedules: saved workflows that run by
themselves (cron with a time zone, a fixed interval, or one time)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.deps import ServicesDep
from api.records import iso
from api.schemas import Tags
from services import schedules
from services.backends import Services
from services.schedules import ScheduleSpec
from storage.errors import NotFound
from storage.models import Schedule
from storage.runs import get_run

router = APIRouter(tags=["schedules"])


class ScheduleBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "parameters": {"q": "lamp"}},
                {"interval_s": 3600, "catch_up": "run_once"},
                {"at": "2026-12-24T18:00:00+01:00"},
            ]
        },
    )

    title: str | None = Field(default=None, max_length=500, description="The runs' title.")
    cron: str | None = Field(
        default=None, max_length=200, description="5 fields: minute hour day month weekday."
    )
    interval_s: int | None = Field(default=None, description="Every N seconds.")
    at: datetime | None = Field(default=None, description="Once, at this time.")
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA name, for cron and `at` (default UTC)."
    )
    parameters: dict[str, Any] | None = Field(
        default=None, description="The runs' parameters (no secret values)."
    )
    catch_up: Literal["skip", "run_once"] | None = Field(
        default=None,
        description="After fire times were missed (nothing ran): skip them, or run once.",
    )
    enabled: StrictBool | None = None
    tags: Tags | None = Field(default=None, description="Tags of the runs it makes.")
    metadata: dict[str, Any] | None = Field(
        default=None, description="Metadata of the runs it makes."
    )

    def spec(self) -> ScheduleSpec:
        return ScheduleSpec(**self.model_dump())


class ScheduleCreate(ScheduleBody):
    workflow_id: str = Field(max_length=40)


async def record(services: Services, schedule: Schedule) -> dict[str, Any]:
    last_run = None
    if schedule.last_run_id:
        last_run = {"id": schedule.last_run_id, "status": None}
        try:
            async with services.db.session() as session:
                run = await get_run(session=session, run_id=schedule.last_run_id)
            last_run["status"] = run.status
        except NotFound:
            last_run["status"] = "deleted"
    return {
        "id": schedule.id,
        "workflow_id": schedule.workflow_id,
        "title": schedule.title,
        "kind": "cron" if schedule.cron else "interval" if schedule.interval_s else "once",
        "cron": schedule.cron,
        "interval_s": schedule.interval_s,
        "at": iso(schedule.at),
        "timezone": schedule.timezone,
        "parameters": schedule.parameters or {},
        "catch_up": schedule.catch_up,
        "enabled": schedule.enabled,
        "next_fire_at": iso(schedule.next_fire_at),
        "last_fire_at": iso(schedule.last_fire_at),
        "last_run": last_run,
        "last_error": schedule.last_error,
        "skipped": schedule.skipped,
        "tags": list(schedule.tags or []),
        "metadata": schedule.run_metadata or {},
        "created_at": iso(schedule.created_at),
        "updated_at": iso(schedule.updated_at),
    }


@router.post("/schedules", status_code=201, summary="Schedule a saved workflow")
async def create(body: ScheduleCreate, services: ServicesDep) -> dict[str, Any]:
    spec = ScheduleBody.model_validate(body.model_dump(exclude={"workflow_id"})).spec()
    return await record(services, await schedules.create_schedule(services, body.workflow_id, spec))


@router.post(
    "/workflows/{workflow_id}/schedules", status_code=201, summary="Schedule this workflow"
)
async def create_for_workflow(
    workflow_id: str, body: ScheduleBody, services: ServicesDep
) -> dict[str, Any]:
    return await record(
        services, await schedules.create_schedule(services, workflow_id, body.spec())
    )


@router.get("/schedules", summary="Every schedule")
async def list_all(services: ServicesDep) -> dict[str, Any]:
    items = await schedules.list_schedules(services)
    return {"items": [await record(services, s) for s in items]}


@router.get("/workflows/{workflow_id}/schedules", summary="This workflow's schedules")
async def list_for_workflow(workflow_id: str, services: ServicesDep) -> dict[str, Any]:
    items = await schedules.list_schedules(services, workflow_id)
    return {"items": [await record(services, s) for s in items]}


@router.get("/schedules/{schedule_id}", summary="A schedule")
async def get(schedule_id: str, services: ServicesDep) -> dict[str, Any]:
    return await record(services, await schedules.get_schedule(services, schedule_id))


@router.patch("/schedules/{schedule_id}", summary="Change a schedule (e.g. enabled: false)")
async def change(schedule_id: str, body: ScheduleBody, services: ServicesDep) -> dict[str, Any]:
    return await record(
        services, await schedules.update_schedule(services, schedule_id, body.spec())
    )


@router.delete("/schedules/{schedule_id}", status_code=204, summary="Delete a schedule")
async def remove(schedule_id: str, services: ServicesDep) -> Response:
    await schedules.delete_schedule(services, schedule_id)
    return Response(status_code=204)
