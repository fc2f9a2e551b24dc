"""Tags and metadata on runs (set by the API, schedules and triggers), and the list's filters by
tag, schedule and trigger, over real HTTP against `glassbox serve` (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from examples.site_server import SiteServer
from tests.api.conftest import create_run, error_fields, visit_workflow, wait_status, wait_until


def listed(client: httpx.Client, **params: str) -> list[str]:
    answer = client.get("/runs", params=params)
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["items"]]


def test_tags_and_metadata_are_kept_filtered_and_carried_to_reruns(
    client: httpx.Client, site: SiteServer
) -> None:
    tagged = create_run(
        client,
        visit_workflow(site, title="Tagged"),
        tags=["nightly", "team:shop", "nightly"],
        metadata={"ticket": "OPS-42", "owner": {"name": "Ada"}},
    )
    plain = create_run(client, visit_workflow(site, title="Untagged"))
    assert tagged["tags"] == ["nightly", "team:shop"]  # deduplicated, in order
    assert tagged["metadata"] == {"ticket": "OPS-42", "owner": {"name": "Ada"}}
    assert plain["tags"] == [] and plain["metadata"] == {}
    done = wait_status(client, tagged["id"])
    assert done["tags"] == ["nightly", "team:shop"] and done["metadata"]["ticket"] == "OPS-42"

    assert tagged["id"] in listed(client, tag="team:shop")
    assert plain["id"] not in listed(client, tag="team:shop")
    counts = client.get("/runs", params={"tag": "team:shop"}).json()["counts"]
    assert sum(counts.values()) == len(listed(client, tag="team:shop"))

    again = client.post(f"/runs/{tagged['id']}/rerun", json={})
    assert again.status_code == 201, again.text
    assert again.json()["tags"] == ["nightly", "team:shop"]
    assert again.json()["metadata"] == tagged["metadata"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tags": ["ok", "not ok"]}, "tags[1]"),
        ({"tags": "nightly"}, "tags"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"metadata": {"blob": "x" * 9000}}, "metadata"),
        ({"metadata": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}, "metadata"),
        ({"metadata": [1, 2]}, "metadata"),
    ],
)
def test_bad_tags_and_metadata_are_refused_naming_the_field(
    client: httpx.Client, site: SiteServer, extra: dict[str, Any], field: str
) -> None:
    # Earlier runs may still move from queued to running: the total is what must not change.
    before = sum(client.get("/runs").json()["counts"].values())
    answer = client.post("/runs", json={"workflow": visit_workflow(site), **extra})
    assert answer.status_code == 422, answer.text
    assert error_fields(answer)[0] == field, answer.text
    assert sum(client.get("/runs").json()["counts"].values()) == before


def test_schedules_and_triggers_tag_their_runs_and_the_list_filters_by_them(
    client: httpx.Client, base_url: str, site: SiteServer
) -> None:
    workflow_id = client.post(
        "/workflows", json={"definition": visit_workflow(site, title="Sourced")}
    ).json()["id"]
    trigger = client.post(
        f"/workflows/{workflow_id}/triggers", json={"tags": ["from-crm"], "metadata": {"k": 1}}
    ).json()
    called = httpx.post(
        base_url + trigger["url"], json={}, headers={"X-Glassbox-Token": trigger["token"]}
    )
    assert called.status_code == 201, called.text
    by_trigger = called.json()
    assert by_trigger["tags"] == ["from-crm"] and by_trigger["metadata"] == {"k": 1}
    assert listed(client, trigger_id=trigger["id"]) == [by_trigger["id"]]

    schedule = client.post(
        f"/workflows/{workflow_id}/schedules", json={"interval_s": 1, "tags": ["scheduled"]}
    ).json()
    runs = wait_until(
        lambda: listed(client, schedule_id=schedule["id"]), timeout=30, what="a scheduled run"
    )
    client.patch(f"/schedules/{schedule['id']}", json={"enabled": False})
    record = client.get(f"/runs/{runs[0]}").json()
    assert record["tags"] == ["scheduled"] and record["schedule_id"] == schedule["id"]
    assert set(listed(client, tag="scheduled")) == set(listed(client, schedule_id=schedule["id"]))
    assert by_trigger["id"] not in listed(client, schedule_id=schedule["id"])
