"""/api/v1/schedules over real HTTP against `glassbox serve` (SQLite and PostgreSQL): a schedule
made for a saved workflow fires by itself, its runs say `source: schedule` and name it, it is
disabled and deleted; bad schedules are refused naming the field; a deleted workflow's
schedules stop."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from examples.site_server import SiteServer
from tests.api.conftest import error_fields, visit_workflow, wait_status, wait_until


def saved_workflow(client: httpx.Client, site: SiteServer, title: str) -> str:
    answer = client.post("/workflows", json={"definition": visit_workflow(site, title=title)})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def scheduled_runs(client: httpx.Client, schedule_id: str) -> list[dict[str, Any]]:
    items = client.get("/runs", params={"source": "schedule", "limit": 100}).json()["items"]
    return [r for r in items if r.get("schedule_id") == schedule_id]


def test_a_schedule_runs_its_workflow_by_itself_until_disabled(
    client: httpx.Client, site: SiteServer
) -> None:
    workflow_id = saved_workflow(client, site, "Every two seconds")
    answer = client.post(
        f"/workflows/{workflow_id}/schedules", json={"interval_s": 2, "title": "Tick"}
    )
    assert answer.status_code == 201, answer.text
    schedule = answer.json()
    assert schedule["kind"] == "interval" and schedule["enabled"] is True
    assert schedule["next_fire_at"] and schedule["last_run"] is None

    runs = wait_until(
        lambda: scheduled_runs(client, schedule["id"]), timeout=30, what="a scheduled run"
    )
    first = wait_status(client, runs[0]["id"])
    assert first["status"] == "completed", first["failure_reason"]
    assert first["source"] == "schedule" and first["title"] == "Tick"
    assert first["workflow_id"] == workflow_id

    listed = client.get(f"/workflows/{workflow_id}/schedules").json()["items"]
    assert [s["id"] for s in listed] == [schedule["id"]]
    assert listed[0]["last_run"]["id"] and listed[0]["last_fire_at"]
    assert schedule["id"] in [s["id"] for s in client.get("/schedules").json()["items"]]

    off = client.patch(f"/schedules/{schedule['id']}", json={"enabled": False})
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert off.json()["next_fire_at"] is None
    count = len(scheduled_runs(client, schedule["id"]))
    time.sleep(4.5)  # two intervals and more: nothing fires while disabled
    assert len(scheduled_runs(client, schedule["id"])) == count

    assert client.delete(f"/schedules/{schedule['id']}").status_code == 204
    assert client.get(f"/schedules/{schedule['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "not a cron"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Nowhere/Land"}, "timezone"),
        ({"interval_s": 0}, "interval_s"),
        ({"at": "2001-01-01T00:00:00Z"}, "at"),
        ({"interval_s": 60, "catch_up": "sometimes"}, "catch_up"),
        ({"interval_s": 60, "parameters": {"nope": 1}}, "parameters.nope"),
        ({"interval_s": 60, "every": "day"}, "every"),
    ],
)
def test_bad_schedules_get_a_422_naming_the_field(
    client: httpx.Client, site: SiteServer, body: dict[str, Any], field: str
) -> None:
    workflow_id = saved_workflow(client, site, "Refused schedules")
    answer = client.post(f"/workflows/{workflow_id}/schedules", json=body)
    assert answer.status_code == 422, answer.text
    assert field in error_fields(answer)[0], answer.text
    assert client.get(f"/workflows/{workflow_id}/schedules").json()["items"] == []


def test_schedules_of_unknown_or_deleted_workflows(client: httpx.Client, site: SiteServer) -> None:
    assert client.post("/workflows/wf_nope/schedules", json={"interval_s": 60}).status_code == 422
    assert client.get("/workflows/wf_nope/schedules").status_code == 404
    workflow_id = saved_workflow(client, site, "Deleted later")
    made = client.post("/schedules", json={"workflow_id": workflow_id, "interval_s": 3600})
    assert made.status_code == 201, made.text
    assert client.delete(f"/workflows/{workflow_id}").status_code == 204
    after = client.get(f"/schedules/{made.json()['id']}").json()
    assert after["enabled"] is False and after["next_fire_at"] is None
