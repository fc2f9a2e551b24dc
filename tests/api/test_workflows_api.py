"""/api/v1/workflows over real HTTP: saved workflows, and runs of them."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from examples.site_server import SiteServer
from tests.api.conftest import (
    LOGIN_PASSWORD,
    create_run,
    error_fields,
    login_workflow,
    visit_workflow,
    wait_status,
)


def save(client: httpx.Client, definition: dict[str, Any], **body: Any) -> dict[str, Any]:
    answer = client.post("/workflows", json={"definition": definition, **body})
    assert answer.status_code == 201, answer.text
    saved: dict[str, Any] = answer.json()
    return saved


def listed_ids(client: httpx.Client) -> list[str]:
    answer = client.get("/workflows")
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert set(page) >= {"items"}
    return [w["id"] for w in page["items"]]


def fast_login(site: SiteServer) -> dict[str, Any]:
    """login.yaml, with a short assert so a wrong password fails in a second, not ten."""
    definition = login_workflow(site)
    steps = definition["blocks"][0]["steps"]
    steps[-1] = {"assert_text": {"text": "Welcome", "timeout_ms": 1500}}
    return definition


def test_saved_workflows_can_be_created_listed_read_replaced_and_deleted(
    client: httpx.Client, site: SiteServer
) -> None:
    definition = visit_workflow(site, title="Saved visit")
    saved = save(client, definition)
    wf_id = saved["id"]
    assert wf_id.startswith("wf_")
    assert saved["title"] == "Saved visit"
    assert saved["definition"]["url"] == site.url
    assert saved["definition"]["blocks"][0]["label"] == "visit"
    assert saved["created_at"] and saved["updated_at"]

    other = save(client, definition, title="Another name")
    assert other["title"] == "Another name" and other["id"] != wf_id
    ids = listed_ids(client)
    assert ids[:2] == [other["id"], wf_id]  # newest first

    answer = client.get(f"/workflows/{wf_id}")
    assert answer.status_code == 200
    assert answer.json() == saved

    replacement = copy.deepcopy(definition)
    replacement["title"] = "Saved visit, twice"
    replacement["blocks"][0]["steps"].append({"goto": "{{ url }}login.html"})
    answer = client.put(f"/workflows/{wf_id}", json={"definition": replacement})
    assert answer.status_code == 200, answer.text
    replaced = answer.json()
    assert replaced["id"] == wf_id and replaced["title"] == "Saved visit, twice"
    assert len(replaced["definition"]["blocks"][0]["steps"]) == 2
    assert replaced["updated_at"] >= saved["updated_at"]
    assert client.get(f"/workflows/{wf_id}").json() == replaced

    answer = client.delete(f"/workflows/{wf_id}")
    assert answer.status_code == 204 and answer.content == b""
    for method in ("GET", "PUT", "DELETE"):
        kwargs: dict[str, Any] = {"json": {"definition": replacement}} if method == "PUT" else {}
        gone = client.request(method, f"/workflows/{wf_id}", **kwargs)
        assert gone.status_code == 404, (method, gone.text)
        assert wf_id in gone.json()["detail"]
    assert wf_id not in listed_ids(client)
    assert other["id"] in listed_ids(client)
    # A deleted workflow cannot be run.
    assert error_fields(client.post("/runs", json={"workflow_id": wf_id})) == ["workflow_id"]


def test_an_invalid_definition_is_refused_naming_the_field(
    client: httpx.Client, site: SiteServer
) -> None:
    before = listed_ids(client)
    bad = visit_workflow(site)
    bad["blocks"][0]["steps"] = [{"goto": "{{ url }}"}, {"clik": {"selector": "#buy"}}]
    fields = error_fields(client.post("/workflows", json={"definition": bad}))
    assert any("definition.blocks[0].steps[1].clik" in f for f in fields), fields

    no_blocks = {"title": "nothing to do"}
    fields = error_fields(client.post("/workflows", json={"definition": no_blocks}))
    assert fields and all(f.startswith("definition") for f in fields), fields

    assert error_fields(client.post("/workflows", json={})) == ["definition"]
    assert error_fields(client.post("/workflows", json={"definition": "text"})) == ["definition"]
    assert listed_ids(client) == before

    good = save(client, visit_workflow(site))
    fields = error_fields(client.put(f"/workflows/{good['id']}", json={"definition": bad}))
    assert any("definition.blocks[0].steps[1].clik" in f for f in fields), fields
    assert client.get(f"/workflows/{good['id']}").json() == good  # unchanged


def test_a_definition_with_a_url_no_run_may_open_is_refused_when_saved(
    client: httpx.Client, site: SiteServer
) -> None:
    """Refused at once, naming the field, rather than saved and refused at every run."""
    before = listed_ids(client)
    for url in ("file:///etc/passwd", "javascript:alert(1)"):
        bad_url = {**visit_workflow(site), "url": url}
        answer = client.post("/workflows", json={"definition": bad_url})
        assert answer.status_code == 422, f"{url}: {answer.status_code} {answer.text[:200]}"
        assert error_fields(answer) == ["definition.url"]
    assert listed_ids(client) == before


def test_a_saved_workflow_runs_by_id_with_parameters_and_its_runs_are_listed(
    client: httpx.Client, site: SiteServer
) -> None:
    saved = save(client, fast_login(site))
    wf_id = saved["id"]
    assert error_fields(
        client.post("/runs", json={"workflow_id": wf_id, "parameters": {"x": 1}})
    ) == ["parameters.x"]
    assert error_fields(client.post("/runs", json={"workflow_id": wf_id})) == [
        "parameters.password"
    ]

    answer = client.post(
        "/runs",
        json={"workflow_id": wf_id, "parameters": {"password": LOGIN_PASSWORD, "username": "bo"}},
    )
    assert answer.status_code == 201, answer.text
    run = answer.json()
    assert run["workflow_id"] == wf_id
    assert run["title"] == saved["title"]
    assert run["parameters"] == {"username": "bo", "password": "********"}
    record = wait_status(client, run["id"], timeout=60)
    assert record["status"] == "completed", record["failure_reason"]
    assert record["extracted_information"] == {"message": "Welcome, bo"}
    assert record["workflow_id"] == wf_id

    # An inline run of the same definition is not a run of the saved workflow.
    other = create_run(client, visit_workflow(site, title="not saved"))
    wait_status(client, other["id"], timeout=60)

    answer = client.get("/runs", params={"workflow_id": wf_id})
    assert answer.status_code == 200
    page = answer.json()
    assert [r["id"] for r in page["items"]] == [run["id"]]
    assert page["counts"]["completed"] == 1 and sum(page["counts"].values()) == 1
    assert client.get("/runs", params={"workflow_id": "wf_nothing"}).json()["items"] == []


def test_a_secret_default_is_refused_when_saving_and_nothing_is_stored(
    client: httpx.Client, site: SiteServer
) -> None:
    """A saved workflow cannot keep a secret's value (it is given with each run): saving or
    replacing one with a secret default is a 422 naming the field, and nothing is stored."""
    with_default = fast_login(site)
    with_default["parameters"]["password"]["default"] = LOGIN_PASSWORD
    before = listed_ids(client)
    refused = client.post("/workflows", json={"definition": with_default})
    assert error_fields(refused) == ["definition.parameters.password.default"]
    assert LOGIN_PASSWORD not in refused.text
    assert listed_ids(client) == before

    saved = save(client, fast_login(site))
    refused = client.put(f"/workflows/{saved['id']}", json={"definition": with_default})
    assert error_fields(refused) == ["definition.parameters.password.default"]
    assert LOGIN_PASSWORD not in refused.text
    kept = client.get(f"/workflows/{saved['id']}").json()
    assert kept == saved
    assert "default" not in kept["definition"]["parameters"]["password"]


def test_a_workflow_sent_as_yaml_text_is_saved_and_a_mistake_names_its_line(
    client: httpx.Client, site: SiteServer
) -> None:
    """The web editor's way: `source` text; a refusal gives the field and its line."""
    source = (
        "title: Visit from text\n"
        "description: Opens the shop's front page.\n"
        f"url: {site.url}\n"
        "parameters:\n"
        "  page: {type: string, default: index.html, description: Which page}\n"
        "blocks:\n"
        "  - label: visit\n"
        "    type: action\n"
        "    steps:\n"
        '      - goto: "{{ url }}{{ page }}"\n'
        "      - click: {}\n"
    )
    refused = client.post("/workflows", json={"source": source})
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"][0]
    assert detail["field"].startswith("definition.blocks[0].steps[1]")
    assert detail["line"] == 11  # `- click: {}`

    broken = client.post("/workflows", json={"source": "title: x\nblocks: [\n  - a: b\n"})
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["field"] == "source"
    assert broken.json()["detail"][0]["line"] >= 2

    neither = client.post("/workflows", json={"title": "nothing"})
    assert neither.status_code == 422 and error_fields(neither) == ["definition"]

    fixed = source.replace("      - click: {}\n", "")
    answer = client.post("/workflows", json={"source": fixed})
    assert answer.status_code == 201, answer.text
    saved = answer.json()
    assert saved["title"] == "Visit from text"
    assert saved["description"] == "Opens the shop's front page."
    assert saved["parameters"]["page"]["description"] == "Which page"
    assert saved["last_run"] is None
    # The editor gets the definition back as YAML text, which saves to the same definition.
    again = client.put(f"/workflows/{saved['id']}", json={"source": saved["source"]})
    assert again.status_code == 200, again.text
    assert again.json()["definition"] == saved["definition"]

    started = client.post("/runs", json={"workflow_id": saved["id"]})
    assert started.status_code == 201, started.text
    run = started.json()
    wait_status(client, run["id"])
    listed = {w["id"]: w for w in client.get("/workflows").json()["items"]}
    assert listed[saved["id"]]["last_run"]["id"] == run["id"]
    assert listed[saved["id"]]["last_run"]["status"] == "completed"
