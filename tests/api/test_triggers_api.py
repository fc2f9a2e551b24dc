"""Trigger URLs over real HTTP against `glassbox serve` (SQLite and PostgreSQL): a trigger's
token (shown once) starts its workflow with the call's JSON mapped to parameters; a wrong or
missing token gets 401 and starts nothing; a payload that does not fit gets 422 naming the
parameter; a signed trigger refuses unsigned, forged and stale calls."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from examples.site_server import SiteServer
from services.webhooks import sign
from tests.api.conftest import error_fields, visit_workflow, wait_status


def saved(client: httpx.Client, site: SiteServer) -> str:
    definition = visit_workflow(site, title="Triggered visit")
    definition["parameters"] = {
        "term": {"type": "string"},
        "count": {"type": "integer", "default": 1},
    }
    answer = client.post("/workflows", json={"definition": definition})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def webhook_runs(client: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/runs", params={"source": "webhook"}).json()["items"]
    return items


def test_a_trigger_starts_its_workflow_with_the_payload_and_refuses_wrong_tokens(
    client: httpx.Client, base_url: str, site: SiteServer
) -> None:
    workflow_id = saved(client, site)
    made = client.post(
        f"/workflows/{workflow_id}/triggers",
        json={
            "name": "crm",
            "parameters": {"term": "{{ payload.search.term }}", "count": "{{ payload.n }}"},
        },
    )
    assert made.status_code == 201, made.text
    trigger = made.json()
    token = trigger["token"]
    assert token.startswith("gbt_") and trigger["url"] == f"/api/v1/hooks/{trigger['id']}"
    shown = client.get(f"/triggers/{trigger['id']}").json()
    assert "token" not in shown and shown["token_prefix"] == token[:10]
    listed = client.get(f"/workflows/{workflow_id}/triggers").json()["items"]
    assert [t["id"] for t in listed] == [trigger["id"]]

    hook = base_url + trigger["url"]
    before = len(webhook_runs(client))
    body = {"search": {"term": "desk lamp"}, "n": 3}
    for headers in ({}, {"X-Glassbox-Token": "gbt_wrong"}, {"X-Glassbox-Token": token + "x"}):
        refused = httpx.post(hook, json=body, headers=headers)
        assert refused.status_code == 401, refused.text
    unknown = httpx.post(
        base_url + "/api/v1/hooks/trg_nope", json=body, headers={"X-Glassbox-Token": token}
    )
    assert unknown.status_code == 401 and unknown.json() == refused.json()
    assert len(webhook_runs(client)) == before  # nothing started

    # The payload must fit the parameters: named field, nothing started.
    bad = httpx.post(
        hook, json={"search": {"term": "x"}, "n": "many"}, headers={"X-Glassbox-Token": token}
    )
    assert bad.status_code == 422 and error_fields(bad) == ["parameters.count"], bad.text
    missing = httpx.post(hook, json={"n": 2}, headers={"X-Glassbox-Token": token})
    assert missing.status_code == 422 and error_fields(missing) == ["parameters.term"]
    assert len(webhook_runs(client)) == before

    started = httpx.post(hook, json=body, headers={"X-Glassbox-Token": token}, timeout=30)
    assert started.status_code == 201, started.text
    run = wait_status(client, started.json()["id"])
    assert run["status"] == "completed", run["failure_reason"]
    assert run["source"] == "webhook" and run["trigger_id"] == trigger["id"]
    assert run["parameters"] == {"term": "desk lamp", "count": 3}
    assert client.get(f"/triggers/{trigger['id']}").json()["fire_count"] == 1

    assert client.delete(f"/triggers/{trigger['id']}").status_code == 204
    gone = httpx.post(hook, json=body, headers={"X-Glassbox-Token": token})
    assert gone.status_code == 401


def test_a_signed_trigger_needs_a_fresh_valid_signature(
    client: httpx.Client, base_url: str, site: SiteServer
) -> None:
    workflow_id = saved(client, site)
    made = client.post(
        f"/workflows/{workflow_id}/triggers",
        json={"parameters": {"term": "{{ payload.term }}"}, "signed": True},
    ).json()
    secret, token, hook = made["hmac_secret"], made["token"], base_url + made["url"]
    assert (
        made["signed"] is True and "hmac_secret" not in client.get(f"/triggers/{made['id']}").json()
    )
    body = json.dumps({"term": "lamp"}).encode()

    def call(timestamp: int, signature: str) -> httpx.Response:
        return httpx.post(
            hook,
            content=body,
            timeout=30,
            headers={
                "Content-Type": "application/json",
                "X-Glassbox-Token": token,
                "X-Glassbox-Timestamp": str(timestamp),
                "X-Glassbox-Signature": signature,
            },
        )

    now = int(time.time())
    unsigned = httpx.post(hook, content=body, headers={"X-Glassbox-Token": token})
    assert unsigned.status_code == 401 and "signed" in unsigned.json()["detail"]
    assert call(now, sign(b"not the secret", now, body)).status_code == 401
    stale = now - 3600
    assert call(stale, sign(secret.encode(), stale, body)).status_code == 401
    good = call(now, sign(secret.encode(), now, body))
    assert good.status_code == 201, good.text
    assert good.json()["parameters"]["term"] == "lamp"


def test_bad_triggers_are_refused_naming_the_field(client: httpx.Client, site: SiteServer) -> None:
    workflow_id = saved(client, site)
    for body, field in (
        ({"parameters": {"nope": "{{ payload.x }}"}}, "parameters.nope"),
        ({"parameters": {"term": "{{ payload."}}, "parameters.term"),
        ({"parameters": {"term": 5}}, "parameters.term"),
        ({"token": "mine"}, "token"),
    ):
        answer = client.post(f"/workflows/{workflow_id}/triggers", json=body)
        assert answer.status_code == 422, answer.text
        assert field in error_fields(answer)[0], answer.text
    assert client.get(f"/workflows/{workflow_id}/triggers").json()["items"] == []
    assert client.post("/workflows/wf_nope/triggers", json={}).status_code == 422
