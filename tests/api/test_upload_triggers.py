"""Upload triggers over real HTTP against `glassbox serve` (SQLite and PostgreSQL): a multipart
POST of files to the trigger's URL with its token starts one run per file (`source: upload`,
the trigger's id), each file the run's `input` artifact and given to the demo site's upload
page by the workflow's `upload` step; a wrong token, a JSON body, a file of the wrong type or
size start nothing and are refused naming the field."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from examples.site_server import SiteServer
from tests.api.conftest import error_fields, wait_status


def upload_workflow(site: SiteServer) -> dict[str, Any]:
    return {
        "title": "Send a photo",
        "url": site.url,
        "timeout_s": 60,
        "parameters": {
            "photo": {"type": "file", "accept": [".txt", "text/plain"], "max_bytes": 1000},
            "note": {"type": "string", "default": "none"},
        },
        "blocks": [
            {
                "label": "send",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}upload.html"},
                    {"upload": {"selector": "#file", "file": "{{ photo }}"}},
                    {"click": {"role": "button", "name": "Upload"}},
                    {"wait_for": {"text": "Received", "timeout_ms": 10_000}},
                ],
            },
            {
                "label": "answer",
                "type": "extract",
                "fields": {"received": {"selector": "#message", "first": True}},
            },
        ],
    }


def save(client: httpx.Client, definition: dict[str, Any]) -> str:
    answer = client.post("/workflows", json={"definition": definition})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def upload_runs(client: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/runs", params={"source": "upload"}).json()["items"]
    return items


def test_each_uploaded_file_starts_a_run_that_gives_it_to_the_page(
    client: httpx.Client, base_url: str, site: SiteServer
) -> None:
    workflow_id = save(client, upload_workflow(site))
    made = client.post(
        f"/workflows/{workflow_id}/triggers",
        json={"name": "inbox", "kind": "upload", "parameters": {"note": "{{ file.name }}"}},
    )
    assert made.status_code == 201, made.text
    trigger = made.json()
    assert trigger["kind"] == "upload" and trigger["file_parameter"] == "photo"
    hook, token = base_url + trigger["url"], trigger["token"]
    first, second = b"first photo\n", b"the second photo, longer\n"
    files = [("file", ("a.txt", first, "text/plain")), ("file", ("b.txt", second, "text/plain"))]
    before = len(upload_runs(client))

    for headers in ({}, {"X-Glassbox-Token": token + "x"}):
        refused = httpx.post(hook, files=files, headers=headers)
        assert refused.status_code == 401, refused.text
    as_json = httpx.post(hook, json={"file": "a.txt"}, headers={"X-Glassbox-Token": token})
    assert error_fields(as_json) == ["file"]
    only_text = {"note": (None, b"x")}  # multipart, without a file part
    no_file = httpx.post(hook, files=only_text, headers={"X-Glassbox-Token": token})
    assert error_fields(no_file) == ["file"]
    wrong_type = [*files[:1], ("file", ("c.exe", b"MZ", "application/x-msdownload"))]
    refused = httpx.post(hook, files=wrong_type, headers={"X-Glassbox-Token": token})
    assert error_fields(refused) == ["file[1]"] and "c.exe" in refused.text
    too_big = httpx.post(
        hook,
        files=[("file", ("big.txt", b"x" * 1001, "text/plain"))],
        headers={"X-Glassbox-Token": token},
    )
    assert error_fields(too_big) == ["file"] and "1000" in too_big.text
    elsewhere = httpx.post(
        hook, files=[("photo", ("a.txt", first, "text/plain"))], headers={"X-Glassbox-Token": token}
    )
    assert error_fields(elsewhere) == ["photo"]
    assert len(upload_runs(client)) == before  # nothing started

    started = httpx.post(hook, files=files, headers={"X-Glassbox-Token": token}, timeout=30)
    assert started.status_code == 201, started.text
    items = started.json()["items"]
    assert len(items) == 2
    for item, (name, data) in zip(items, [("a.txt", first), ("b.txt", second)], strict=True):
        run = wait_status(client, item["id"])
        assert run["status"] == "completed", run["failure_reason"]
        assert run["source"] == "upload" and run["trigger_id"] == trigger["id"]
        assert run["workflow_id"] == workflow_id and run["parameters"]["note"] == name
        # The page got the file: the demo site answers with its name and size.
        assert run["extracted_information"] == {"received": f"Received {name} ({len(data)} bytes)"}
        inputs = [a for a in run["artifacts"] if a["kind"] == "input"]
        assert [(a["name"], a["size"]) for a in inputs] == [(name, len(data))]
        assert inputs[0]["sha256"] == hashlib.sha256(data).hexdigest()
        content = client.get(inputs[0]["url"].removeprefix("/api/v1"))
        assert content.content == data
    assert len(upload_runs(client)) == before + 2
    shown = client.get(f"/triggers/{trigger['id']}").json()
    assert shown["fire_count"] == 2 and shown["last_run_id"] in {i["id"] for i in items}
    listed = client.get("/runs", params={"source": "upload", "workflow_id": workflow_id}).json()
    assert {r["id"] for r in listed["items"]} == {i["id"] for i in items}


def test_an_upload_trigger_needs_a_file_parameter_and_refuses_what_does_not_fit(
    client: httpx.Client, base_url: str, site: SiteServer
) -> None:
    with_file = save(client, upload_workflow(site))
    definition = upload_workflow(site)
    definition["parameters"]["scan"] = {"type": "file"}
    two_files = save(client, definition)
    definition = upload_workflow(site)
    definition["parameters"] = {}
    definition["blocks"] = definition["blocks"][:1]
    definition["blocks"][0]["steps"] = definition["blocks"][0]["steps"][:1]
    no_file = save(client, definition)

    def create(workflow_id: str, **body: Any) -> httpx.Response:
        return client.post(f"/workflows/{workflow_id}/triggers", json=body)

    assert error_fields(create(no_file, kind="upload")) == ["kind"]
    assert error_fields(create(two_files, kind="upload")) == ["file_parameter"]
    assert error_fields(create(two_files, kind="upload", file_parameter="note")) == [
        "file_parameter"
    ]
    assert error_fields(create(with_file, file_parameter="photo")) == ["file_parameter"]
    assert error_fields(create(with_file, kind="upload", signed=True)) == ["signed"]
    assert error_fields(create(with_file, kind="email")) == ["kind"]
    assert error_fields(
        create(with_file, kind="upload", parameters={"photo": "{{ file.name }}"})
    ) == ["parameters.photo"]
    chosen = create(two_files, kind="upload", file_parameter="scan")
    assert chosen.status_code == 201 and chosen.json()["file_parameter"] == "scan"

    # A webhook trigger takes JSON, not files; nothing is read or started.
    webhook = create(with_file).json()
    assert webhook["kind"] == "webhook" and webhook["file_parameter"] is None
    refused = httpx.post(
        base_url + webhook["url"],
        files=[("file", ("a.txt", b"a", "text/plain"))],
        headers={"X-Glassbox-Token": webhook["token"]},
    )
    assert error_fields(refused) == ["payload"]
