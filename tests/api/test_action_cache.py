"""The action cache over HTTP, on SQLite and PostgreSQL: a saved workflow's runs make versions,
`run_with: code` replays them (the record says so), a renamed button heals with a divergence card
on the timeline and a new version; versions are listed, shown, pinned (a replay then uses the
pinned one), unpinned and deleted; refusals name their field."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from examples.site_server import SiteServer
from tests.api.conftest import timeline, wait_status

EMAIL = "ada@example.com"


def subscribe_workflow(site: SiteServer) -> dict[str, Any]:
    return {
        "title": "Subscribe (steps)",
        "url": site.url,
        "timeout_s": 60,
        "parameters": {
            "email": {"type": "string", "default": EMAIL},
            "button": {"type": "string", "default": "Subscribe"},
        },
        "blocks": [
            {
                "label": "subscribe",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}newsletter.html?button={{ button }}"},
                    {"fill": {"selector": "#email", "value": "{{ email }}"}},
                    {"click": {"role": "button", "name": "Subscribe"}},
                ],
            },
            {"label": "read", "type": "extract", "fields": {"result": {"selector": "#result"}}},
        ],
    }


def run(client: httpx.Client, workflow_id: str, **body: Any) -> dict[str, Any]:
    answer = client.post("/runs", json={"workflow_id": workflow_id, **body})
    assert answer.status_code == 201, answer.text
    record = wait_status(client, answer.json()["id"], timeout=90)
    assert record["status"] == "completed", record["failure_reason"]
    return record


def test_versions_replay_heal_pin_and_delete(client: httpx.Client, site: SiteServer) -> None:
    saved = client.post("/workflows", json={"definition": subscribe_workflow(site)})
    assert saved.status_code == 201, saved.text
    workflow_id = saved.json()["id"]
    key = urlsplit(site.url).netloc

    first = run(client, workflow_id)
    assert first["replay"]["cache_key"] == key
    assert first["replay"]["blocks"] == {"subscribe": "live", "read": "live"}
    [version] = client.get(f"/workflows/{workflow_id}/cache").json()["items"]
    assert version["run_id"] == first["id"] and version["cache_key"] == key
    assert version["current"] and not version["pinned"]
    assert version["blocks"] == {"subscribe": {"type": "action", "actions": 3}}
    shown = client.get(f"/workflows/{workflow_id}/cache/{version['id']}").json()
    fill = shown["blocks"]["subscribe"]["actions"][1]
    assert fill["verb"] == "fill" and fill["args"]["value"] == "{{ email }}"
    assert fill["locators"][0] == {"css": "#email"}

    replayed = run(client, workflow_id, run_with="code", parameters={"email": "bob@example.com"})
    assert replayed["replay"]["cache_version_id"] == version["id"]
    assert replayed["replay"]["blocks"] == {"subscribe": "replayed", "read": "live"}
    assert replayed["extracted_information"] == {"result": "Subscribed bob@example.com"}
    assert len(client.get(f"/workflows/{workflow_id}/cache").json()["items"]) == 1

    healed = run(client, workflow_id, run_with="code", parameters={"button": "Join"})
    [card] = [c for c in timeline(client, healed["id"]) if c["kind"] == "divergence"]
    assert card["status"] == "healed" and card["block_label"] == "subscribe"
    assert card["expected"] == 'role=button[name="Subscribe"]' and "Join" in card["found"]
    assert healed["extracted_information"] == {"result": f"Subscribed {EMAIL}"}
    items = client.get(f"/workflows/{workflow_id}/cache").json()["items"]
    assert [v["run_id"] for v in items] == [healed["id"], first["id"]]
    assert healed["replay"]["new_version_id"] == items[0]["id"] and items[0]["current"]

    # Pinned, the first version is replayed again: the renamed button diverges once more.
    pinned = client.post(f"/workflows/{workflow_id}/cache/{version['id']}/pin", json={})
    assert pinned.status_code == 200 and pinned.json()["pinned"] and pinned.json()["current"]
    again = run(client, workflow_id, run_with="code", parameters={"button": "Join"})
    assert again["replay"]["cache_version_id"] == version["id"]
    assert [c for c in timeline(client, again["id"]) if c["kind"] == "divergence"]
    unpinned = client.post(f"/workflows/{workflow_id}/cache/{version['id']}/unpin", json={})
    assert unpinned.status_code == 200 and not unpinned.json()["pinned"]

    newest = client.get(f"/workflows/{workflow_id}/cache").json()["items"][0]["id"]
    assert client.delete(f"/workflows/{workflow_id}/cache/{newest}").status_code == 204
    assert client.get(f"/workflows/{workflow_id}/cache/{newest}").status_code == 404
    assert newest not in [
        v["id"] for v in client.get(f"/workflows/{workflow_id}/cache").json()["items"]
    ]


def test_refusals_name_the_field_or_the_record(client: httpx.Client, site: SiteServer) -> None:
    assert client.get("/workflows/wf_nope/cache").status_code == 404
    saved = client.post("/workflows", json={"definition": subscribe_workflow(site)}).json()
    assert client.get(f"/workflows/{saved['id']}/cache/acv_nope").status_code == 404
    assert client.post(f"/workflows/{saved['id']}/cache/acv_nope/pin", json={}).status_code == 404
    first = run(client, saved["id"])
    answer = client.post(f"/runs/{first['id']}/rerun", json={"from_block": "nope"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "from_block"
    answer = client.post("/runs", json={"workflow_id": saved["id"], "run_with": "later"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "run_with"
    keyed = client.post(
        "/workflows", json={"definition": {**subscribe_workflow(site), "cache_key": "{{ nope }}"}}
    ).json()
    answer = client.post("/runs", json={"workflow_id": keyed["id"], "run_with": "code"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["field"] == "workflow.cache_key"


def test_continue_from_a_run_over_http(client: httpx.Client, site: SiteServer) -> None:
    parent = client.post("/runs", json={"workflow": subscribe_workflow(site)}).json()
    answer = client.post(f"/runs/{parent['id']}/continue", json={"goal": "Look around"})
    assert answer.status_code == 409, answer.text  # it has not ended: a browser takes seconds
    assert parent["id"] in answer.json()["detail"]
    parent = wait_status(client, parent["id"], timeout=90)
    assert parent["status"] == "completed", parent["failure_reason"]
    assert "sealed_state" not in parent and "storage_state" not in str(parent)

    blocks = [{"label": "again", "type": "extract", "fields": {"seen": {"selector": "#result"}}}]
    answer = client.post(f"/runs/{parent['id']}/continue", json={"blocks": blocks})
    assert answer.status_code == 201, answer.text
    child = wait_status(client, answer.json()["id"], timeout=90)
    assert child["status"] == "completed", child["failure_reason"]
    assert child["parent_run_id"] == parent["id"]
    assert child["replay"]["continue_from"] == parent["id"]
    assert child["extracted_information"] == {"seen": f"Welcome back, {EMAIL}"}

    both = client.post(f"/runs/{parent['id']}/continue", json={"goal": "x", "blocks": blocks})
    assert both.status_code == 422 and both.json()["detail"][0]["field"] == "workflow"
    bad = client.post(f"/runs/{parent['id']}/continue", json={"blocks": [{"label": "x"}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"].startswith("blocks[0]")
    assert client.post("/runs/run_nope/continue", json={"goal": "x"}).status_code == 404
