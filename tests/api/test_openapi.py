"""The OpenAPI description tells the truth, as a client generator or a fuzzer reads it: every
operation has a stable id and a tag, documents every status it can answer with the error body's
schema, types its answers, links create operations to those taking the created id — and the
real answers of a served app (a run on the demo site, its workflow, schedule, trigger, upload,
errors) are what it says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from examples.site_server import SiteServer
from runner.workflow_schema import workflow_json_schema
from tests.api.conftest import Service, shop_workflow, wait_status

COMPONENTS = "#/components/schemas/"
MAIN_OPERATIONS = {
    "runs-create": "RunRecord",
    "runs-list": "RunPage",
    "runs-get": "RunRecord",
    "runs-timeline": "Timeline",
    "runs-artifacts": "ArtifactList",
    "artifacts-get": "ArtifactRecord",
    "workflows-create": "WorkflowRecord",
    "workflows-list": "WorkflowList",
    "workflows-get": "WorkflowRecord",
    "schedules-create": "ScheduleRecord",
    "schedules-get": "ScheduleRecord",
    "workflows-triggers-create": "TriggerCreated",
    "triggers-get": "TriggerRecord",
    "uploads-create": "UploadRecord",
    "service-health": "Health",
}


@pytest.fixture(scope="module")
def spec(sqlite_service: Service) -> dict[str, Any]:
    answer = httpx.get(f"{sqlite_service.base_url}/openapi.json", timeout=30)
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def by_id(spec: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {op["operationId"]: (method, path, op) for method, path, op in operations(spec)}


def component(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith(COMPONENTS), ref
    found: dict[str, Any] = spec["components"]["schemas"][ref.removeprefix(COMPONENTS)]
    return found


def test_operation_ids_and_tags_fit_a_generated_client(spec: dict[str, Any]) -> None:
    ids = [op.get("operationId") for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids)) > 40
    for method, path, op in operations(spec):
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", op["operationId"]), (method, path)
        assert op.get("tags"), f"{method} {path} has no tag"
    assert {"runs-list", "runs-create", "runs-get", "runs-cancel", "workflows-create"} <= set(ids)


def test_every_status_is_documented_with_the_error_body(spec: dict[str, Any]) -> None:
    problems: list[str] = []
    for method, path, op in operations(spec):
        responses = op["responses"]
        where = f"{method} {path} ({op['operationId']})"
        if (op.get("parameters") or "requestBody" in op) and "422" not in responses:
            problems.append(f"{where}: no 422")
        if op.get("security") and "401" not in responses:
            problems.append(f"{where}: protected, no 401")
        if "{" in path and "404" not in responses:
            problems.append(f"{where}: takes an id, no 404")
        if method in {"POST", "PUT", "PATCH", "DELETE"}:
            problems += [f"{where}: no {c}" for c in ("403", "413", "415") if c not in responses]
        if "400" not in responses:
            problems.append(f"{where}: no 400 (Host refused)")
        for code, answer in responses.items():
            if int(code) < 400:
                continue
            schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" not in schema:
                problems.append(f"{where}: {code} has no body schema")
            elif op["operationId"] == "service-health" and code == "503":
                continue  # the health record itself, `down` naming what is down
            elif "detail" not in component(spec, schema["$ref"])["properties"]:
                problems.append(f"{where}: {code}'s body has no `detail`")
    assert problems == []


def test_a_422_names_the_field(spec: dict[str, Any]) -> None:
    _, _, op = by_id(spec)["runs-create"]
    errors = component(
        spec, op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    )
    item = component(spec, errors["properties"]["detail"]["items"]["$ref"])
    assert {"field", "loc", "msg", "type", "line"} <= set(item["properties"])
    assert {"field", "loc", "msg", "type"} <= set(item["required"])
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_main_answers_are_typed(spec: dict[str, Any]) -> None:
    operations_by_id = by_id(spec)
    for op_id, model in MAIN_OPERATIONS.items():
        _, _, op = operations_by_id[op_id]
        success = next(a for c, a in op["responses"].items() if c.startswith("2"))
        schema = success["content"]["application/json"]["schema"]
        assert schema == {"$ref": COMPONENTS + model}, op_id
        assert component(spec, schema["$ref"])["properties"], op_id


def test_request_bodies_carry_the_workflow_format(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    typed = {"$ref": COMPONENTS + "Workflow"}
    assert typed in schemas["RunCreate"]["properties"]["workflow"]["anyOf"]
    saved = schemas["WorkflowCreate"]["properties"]["definition"]["anyOf"]  # with no secret value
    assert any(typed in choice.get("allOf", [choice]) for choice in saved)
    published = workflow_json_schema()
    assert set(schemas["Workflow"]["properties"]) == set(published["properties"])
    assert set(published["$defs"]) <= set(schemas)


def test_create_operations_link_to_those_taking_the_id(spec: dict[str, Any]) -> None:
    operations_by_id = by_id(spec)
    expected = {
        "runs-create": ("run_id", "runs-get"),
        "workflows-create": ("workflow_id", "workflows-get"),
        "schedules-create": ("schedule_id", "schedules-get"),
        "workflows-triggers-create": ("trigger_id", "hooks-call"),
        "uploads-create": ("upload_id", "uploads-get"),
    }
    for op_id, (param, target) in expected.items():
        links = operations_by_id[op_id][2]["responses"]["201"]["links"]
        assert links[target]["parameters"] == {param: "$response.body#/id"}, op_id
        for link in links.values():
            _, path, _ = operations_by_id[link["operationId"]]
            assert f"{{{param}}}" in path


class Contract:
    """Checks real answers against the description: status documented, body as its schema."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.ops = by_id(spec)
        self.checked: set[tuple[str, int]] = set()

    def check(self, op_id: str, answer: httpx.Response) -> Any:
        _, _, op = self.ops[op_id]
        code = str(answer.status_code)
        assert code in op["responses"], f"{op_id} answered {code}: not documented"
        content = op["responses"][code].get("content", {}).get("application/json")
        if content is not None:
            schema = {**content["schema"], "components": self.spec["components"]}
            errors = [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in jsonschema.Draft202012Validator(schema).iter_errors(answer.json())
            ]
            assert errors == [], f"{op_id} {code}: {errors}"
        self.checked.add((op_id, answer.status_code))
        return answer.json() if content is not None else None


def test_real_answers_are_what_the_description_says(
    spec: dict[str, Any], sqlite_service: Service, site: SiteServer
) -> None:
    contract = Contract(spec)
    with httpx.Client(base_url=sqlite_service.api, timeout=30) as client:
        workflow = contract.check(
            "workflows-create",
            client.post("/workflows", json={"definition": shop_workflow(site, title="OpenAPI")}),
        )
        contract.check("workflows-list", client.get("/workflows"))
        run = contract.check(
            "runs-create", client.post("/runs", json={"workflow_id": workflow["id"]})
        )
        wait_status(client, run["id"], {"completed"})
        contract.check("workflows-get", client.get(f"/workflows/{workflow['id']}"))
        contract.check("runs-get", client.get(f"/runs/{run['id']}"))
        contract.check("runs-list", client.get("/runs", params={"limit": 5}))
        contract.check("runs-timeline", client.get(f"/runs/{run['id']}/timeline"))
        listed = contract.check("runs-artifacts", client.get(f"/runs/{run['id']}/artifacts"))
        contract.check("artifacts-get", client.get(f"/artifacts/{listed['items'][0]['id']}"))
        contract.check("runs-activity", client.get(f"/runs/{run['id']}/activity"))
        contract.check("runs-reproduce", client.get(f"/runs/{run['id']}/reproduce"))
        contract.check("runs-cancel", client.post(f"/runs/{run['id']}/cancel", json={}))  # 409
        contract.check("runs-get", client.get("/runs/run_nosuchrun"))  # 404
        contract.check("runs-list", client.get("/runs", params={"limit": 0}))  # 422
        contract.check("runs-create", client.post("/runs", json={"workflow": {"x": []}}))  # 422
        schedule = contract.check(
            "schedules-create",
            client.post(
                "/schedules",
                json={"workflow_id": workflow["id"], "interval_s": 3600, "enabled": False},
            ),
        )
        contract.check("schedules-get", client.get(f"/schedules/{schedule['id']}"))
        contract.check("schedules-list", client.get("/schedules"))
        trigger = contract.check(
            "workflows-triggers-create",
            client.post(f"/workflows/{workflow['id']}/triggers", json={"name": "openapi"}),
        )
        contract.check("triggers-get", client.get(f"/triggers/{trigger['id']}"))
        contract.check("triggers-list", client.get("/triggers"))
        contract.check(
            "hooks-call",
            client.post(f"/hooks/{trigger['id']}", json={}, headers={"X-Glassbox-Token": "no"}),
        )  # 401
        upload = contract.check(
            "uploads-create", client.post("/uploads", files={"file": ("a.txt", b"openapi")})
        )
        contract.check("uploads-get", client.get(f"/uploads/{upload['id']}"))
        contract.check("service-health", client.get("/health"))
        contract.check(
            "runs-create",
            client.post("/runs", content=b"<x/>", headers={"Content-Type": "application/xml"}),
        )  # 415
    assert {code for _, code in contract.checked} >= {200, 201, 401, 404, 409, 415, 422}


def test_the_workflow_schema_is_served_without_a_key(sqlite_service: Service) -> None:
    answer = httpx.get(f"{sqlite_service.api}/schemas/workflow.json", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == workflow_json_schema()
