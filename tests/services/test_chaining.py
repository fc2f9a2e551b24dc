"""Runs that start runs, against a real `glassbox serve` (one in-process worker of concurrency
1, SQLite): a `run_workflow` block starts a saved workflow, waits for it — the child still runs
on that single slot — and later blocks use what it extracted; `wait: false` goes on; canceling
the parent cancels its child. Follow-ups: a chain stops when `until` holds over what a run
extracted, or at `max_count`; canceling the pending follow-up ends the chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from examples.site_server import SiteServer
from tests.api.conftest import (
    Service,
    error_fields,
    running_service,
    timeline,
    wait_status,
    wait_until,
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("serve-chaining")) as found:
        yield found


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.api, timeout=30) as http:
        yield http


def save(client: httpx.Client, definition: dict[str, Any]) -> str:
    answer = client.post("/workflows", json={"definition": definition})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def start(client: httpx.Client, definition: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    answer = client.post("/runs", json={"workflow": definition, "parameters": parameters})
    assert answer.status_code == 201, answer.text
    run: dict[str, Any] = answer.json()
    return run


def cheapest_lookup(site: SiteServer) -> dict[str, Any]:
    """The child: the cheapest in-stock product matching `query`."""
    return {
        "title": "Cheapest lookup",
        "url": f"{site.url}shop/",
        "timeout_s": 60,
        "parameters": {"query": {"type": "string"}},
        "blocks": [
            {
                "label": "search",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}search.html?q={{ query }}&sort=price&in_stock=1"},
                    {"wait_for": {"selector": ".result", "timeout_ms": 5000}},
                ],
            },
            {
                "label": "found",
                "type": "extract",
                "fields": {"cheapest": {"selector": ".result .name", "first": True}},
            },
        ],
    }


def test_a_parent_waits_for_its_child_on_one_slot_and_uses_what_it_extracted(
    client: httpx.Client, site: SiteServer
) -> None:
    child_workflow = save(client, cheapest_lookup(site))
    parent = start(
        client,
        {
            "title": "Parent",
            "url": f"{site.url}shop/",
            "timeout_s": 90,
            "parameters": {"query": {"type": "string", "default": "lamp"}},
            "blocks": [
                {
                    "label": "lookup",
                    "type": "run_workflow",
                    "workflow_id": child_workflow,
                    "parameters": {"query": "{{ query }}"},
                },
                {
                    "label": "again",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}search.html?q={{ runs.lookup.extracted.cheapest }}"},
                        {"assert_text": {"text": "{{ runs.lookup.extracted.cheapest }}"}},
                    ],
                },
                {
                    "label": "check",
                    "type": "extract",
                    "fields": {"seen": {"selector": ".result .name", "first": True}},
                },
            ],
        },
    )
    # One worker, concurrency 1: the waiting parent lends its slot to its child.
    ended = wait_status(client, parent["id"], timeout=90)
    assert ended["status"] == "completed", ended["failure_reason"]
    children = client.get("/runs", params={"parent_run_id": parent["id"]}).json()["items"]
    assert len(children) == 1
    child = children[0]
    assert child["source"] == "agent" and child["parent_run_id"] == parent["id"]
    assert child["workflow_id"] == child_workflow and child["status"] == "completed"
    assert child["parameters"] == {"query": "lamp"}
    cheapest = child["extracted_information"]["cheapest"]
    assert cheapest == "Glow Reading Lamp"  # the cheapest lamp in stock (products.json)
    assert ended["extracted_information"] == {"lookup": {"cheapest": cheapest}, "seen": cheapest}
    cards = [c for c in timeline(client, parent["id"]) if c.get("child_run_id")]
    assert [c["child_run_id"] for c in cards] == [child["id"], child["id"]]
    assert cards[0]["text"] == f"Started run {child['id']} of workflow {child_workflow}"
    assert cards[1]["text"] == f"Run {child['id']} ended completed"


def test_without_wait_the_parent_goes_on_and_the_child_runs_later(
    client: httpx.Client, site: SiteServer
) -> None:
    child_workflow = save(client, cheapest_lookup(site))
    parent = start(
        client,
        {
            "title": "Fire and forget",
            "url": f"{site.url}shop/",
            "blocks": [
                {
                    "label": "kick",
                    "type": "run_workflow",
                    "workflow_id": child_workflow,
                    "parameters": {"query": "desk"},
                    "wait": False,
                },
                {"label": "visit", "type": "action", "steps": [{"goto": "{{ url }}"}]},
            ],
        },
    )
    ended = wait_status(client, parent["id"], timeout=60)
    assert ended["status"] == "completed", ended["failure_reason"]
    assert ended["extracted_information"] is None  # nothing waited for, nothing taken
    (child,) = client.get("/runs", params={"parent_run_id": parent["id"]}).json()["items"]
    child = wait_status(client, child["id"], timeout=60)
    assert child["status"] == "completed" and child["source"] == "agent"
    assert child["extracted_information"] == {"cheapest": "Nimbus Desk Lamp"}


def test_canceling_a_waiting_parent_cancels_its_child(
    client: httpx.Client, site: SiteServer
) -> None:
    never = save(
        client,
        {
            "title": "Waits for ever",
            "url": site.url,
            "blocks": [
                {
                    "label": "wait",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}"},
                        {"wait_for": {"text": "zq-never-qz", "timeout_ms": 60_000}},
                    ],
                }
            ],
        },
    )
    parent = start(
        client,
        {
            "title": "Parent of a slow child",
            "url": site.url,
            "blocks": [{"label": "slow", "type": "run_workflow", "workflow_id": never}],
        },
    )

    def child_running() -> bool:
        items = client.get("/runs", params={"parent_run_id": parent["id"]}).json()["items"]
        return bool(items) and items[0]["status"] == "running"

    wait_until(child_running, timeout=60, what="the child to run")
    assert client.post(f"/runs/{parent['id']}/cancel").status_code == 200
    assert wait_status(client, parent["id"], timeout=20)["status"] == "canceled"
    (child,) = client.get("/runs", params={"parent_run_id": parent["id"]}).json()["items"]
    child = wait_status(client, child["id"], timeout=20)
    assert child["status"] == "canceled"
    assert parent["id"] in child["failure_reason"]


def test_a_run_workflow_block_is_checked_before_anything_runs(
    client: httpx.Client, site: SiteServer
) -> None:
    definition = {
        "title": "Bad chaining",
        "url": site.url,
        "blocks": [
            {"label": "x", "type": "run_workflow", "workflow_id": "wf_x", "wait": "sometimes"}
        ],
    }
    answer = client.post("/runs", json={"workflow": definition})
    assert answer.status_code == 422 and error_fields(answer) == ["workflow.blocks[0].wait"]
    definition["blocks"] = [
        {"label": "x", "type": "run_workflow", "workflow_id": "wf_x", "parameters": {"a": "{{"}}
    ]
    answer = client.post("/runs", json={"workflow": definition})
    assert answer.status_code == 422
    assert error_fields(answer) == ["workflow.blocks[0].parameters.a"]
    # An unknown saved workflow is found out when the block runs: the run fails, named.
    definition["blocks"] = [{"label": "x", "type": "run_workflow", "workflow_id": "wf_nope"}]
    ended = wait_status(client, start(client, definition)["id"])
    assert ended["status"] == "failed"
    assert ended["failure_reason"] == "block \"x\": no saved workflow 'wf_nope'"


# --- follow-ups ------------------------------------------------------------------------------


class StatusPage:
    """A page whose text says `pending` for the first `pending` visits, then `ready`."""

    def __init__(self, pending: int) -> None:
        self.visits = 0
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/":  # the browser also asks for /favicon.ico
                    self.send_error(404)
                    return
                page.visits += 1
                state = "pending" if page.visits <= pending else "ready"
                body = f"<html><body><p id=state>{state}</p></body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def status_page() -> Iterator[StatusPage]:
    page = StatusPage(pending=2)
    yield page
    page.close()


def poll_workflow(url: str, follow_up: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": "Poll the status",
        "url": url,
        "timeout_s": 30,
        "follow_up": follow_up,
        "blocks": [
            {"label": "open", "type": "action", "steps": [{"goto": "{{ url }}"}]},
            {"label": "read", "type": "extract", "fields": {"state": {"selector": "#state"}}},
        ],
    }


def chain(client: httpx.Client, first: str, length: int) -> list[dict[str, Any]]:
    """The follow-ups of `first` once there are `length` of them and all have ended."""
    found: list[dict[str, Any]] = []

    def complete() -> bool:
        nonlocal found
        found = client.get(f"/runs/{first}/follow-ups").json()["items"]
        return len(found) >= length and all(r["finished_at"] for r in found)

    wait_until(complete, timeout=60, what=f"{length} follow-ups to end")
    return found


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_follow_up_chain_stops_when_until_holds(
    client: httpx.Client, status_page: StatusPage
) -> None:
    definition = poll_workflow(
        status_page.url, {"after_s": 0.5, "max_count": 10, "until": "state == 'ready'"}
    )
    first = wait_status(client, start(client, definition)["id"])
    assert first["extracted_information"] == {"state": "pending"}
    runs = chain(client, first["id"], 2)
    time.sleep(1.5)  # longer than after_s: a third follow-up would have been queued by now
    assert client.get(f"/runs/{first['id']}/follow-ups").json()["items"] == runs
    assert [r["extracted_information"] for r in runs] == [{"state": "pending"}, {"state": "ready"}]
    assert [r["status"] for r in runs] == ["completed", "completed"]
    parents = [first["id"], runs[0]["id"]]
    assert [r["parent_run_id"] for r in runs] == parents
    assert {r["source"] for r in runs} == {"follow_up"}
    previous = first
    for run in runs:  # each waited its after_s after the one before ended
        assert at(run["started_at"]) >= at(previous["finished_at"])
        assert at(run["not_before"]) >= at(previous["finished_at"])
        previous = run
    last = [c.get("text") for c in timeline(client, runs[-1]["id"])]
    assert "No follow-up: until holds" in last
    assert status_page.visits == 3


def test_a_follow_up_chain_stops_at_max_count(
    client: httpx.Client, status_page: StatusPage
) -> None:
    definition = poll_workflow(status_page.url, {"after_s": 0.2, "max_count": 2})
    first = wait_status(client, start(client, definition)["id"])
    runs = chain(client, first["id"], 2)
    time.sleep(1.5)
    assert len(client.get(f"/runs/{first['id']}/follow-ups").json()["items"]) == 2
    assert [r["status"] for r in runs] == ["completed", "completed"]
    assert status_page.visits == 3


def test_canceling_the_pending_follow_up_ends_the_chain(
    client: httpx.Client, status_page: StatusPage
) -> None:
    definition = poll_workflow(status_page.url, {"after_s": 30, "max_count": 5})
    first = wait_status(client, start(client, definition)["id"])
    (pending,) = client.get(f"/runs/{first['id']}/follow-ups").json()["items"]
    assert pending["status"] == "queued" and pending["source"] == "follow_up"
    assert (at(pending["not_before"]) - at(first["finished_at"])).total_seconds() >= 29
    time.sleep(1.5)  # workers are idle, yet it is not due: nobody claims it
    assert client.get(f"/runs/{pending['id']}").json()["status"] == "queued"
    canceled = client.post(f"/runs/{pending['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    (after,) = client.get(f"/runs/{first['id']}/follow-ups").json()["items"]
    assert after["status"] == "canceled" and after["started_at"] is None
    assert status_page.visits == 1


def test_follow_up_and_its_until_are_checked(client: httpx.Client, site: SiteServer) -> None:
    for follow_up, field in (
        ({"after_s": -1}, "workflow.follow_up.after_s"),
        ({"max_count": 0}, "workflow.follow_up.max_count"),
        ({"until": "state =="}, "workflow.follow_up.until"),
        ({"every": 3}, "workflow.follow_up.every"),
    ):
        answer = client.post("/runs", json={"workflow": poll_workflow(site.url, follow_up)})
        assert answer.status_code == 422, answer.text
        assert error_fields(answer) == [field], answer.text
    assert client.get("/runs/run_nope/follow-ups").status_code == 404
