"""The OpenAPI description, told truthfully: every status an operation can answer with its
body's schema, typed answers, the workflow format in request bodies, stable operation ids for
generated clients, and links from each create operation to those taking the created id.

The routes stay plain (they return the record functions' dicts); this module completes their
description in one place, from what each route is: protected or not, with a body, with path
parameters. What only a route knows (a 409) is in `CONFLICTS`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.guard import STATE_CHANGING
from api.records import API_PREFIX
from api.schema_models import (
    CREATES,
    RESPONSES,
    Error,
    FieldErrors,
    Health,
    Unavailable,
)
from services.workflows import workflow_json_schema

COMPONENTS = "#/components/schemas/"

CONFLICTS: dict[str, str] = {
    "runs-cancel": "The run has already ended: only a queued or running run can be canceled",
    "runs-delete": "The run has not ended: cancel it first",
    "runs-continue": "The run has not ended, or kept no browser state (none, or dropped after "
    "GLASSBOX_CONTINUE_TTL_S)",
    "runs-webhook-deliveries-send": "The run has not ended, its webhook is not due, or it has no "
    "webhook_url",
}
"""Operations that answer 409, and when."""

OPERATION_IDS: dict[tuple[str, str], str] = {
    ("GET", "/health"): "service-health",
    ("POST", "/hooks/{trigger_id}"): "hooks-call",
    ("POST", "/runs/{run_id}/webhook-deliveries"): "runs-webhook-deliveries-send",
    ("GET", "/artifacts/{artifact_id}/content"): "artifacts-content",
    ("GET", "/schemas/workflow.json"): "schemas-workflow",
}
"""Where the naming rule of `operation_id` would not read well."""

NO_DATABASE = {"schemas-workflow"}
"""Operations that answer without the database (so never 503)."""

_ITEM_VERBS = {"GET": "get", "PUT": "replace", "PATCH": "update", "DELETE": "delete"}
_PARAM = re.compile(r"^\{.+\}$")


def operation_id(method: str, path: str, methods_on_path: set[str]) -> str:
    """`runs-list`, `runs-create`, `runs-get`, `runs-cancel`, `workflows-schedules-list`…:
    the resource names of the path, then what is done."""
    local = path.removeprefix(API_PREFIX)
    if (method, local) in OPERATION_IDS:
        return OPERATION_IDS[(method, local)]
    segments = [s for s in local.split("/") if s]
    names = "-".join(s for s in segments if not _PARAM.match(s))
    if _PARAM.match(segments[-1]):
        return f"{names}-{_ITEM_VERBS.get(method, method.lower())}"
    if len(segments) == 1 or {"GET", "POST"} <= methods_on_path:
        return f"{names}-{'create' if method == 'POST' else 'list'}"
    return names  # an action or a sub-resource: runs-cancel, runs-timeline


def _error(description: str, model: str = Error.__name__) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": COMPONENTS + model}}},
    }


def _errors(path: str, method: str, op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The statuses this operation can answer besides its success, with their bodies."""
    found: dict[str, dict[str, Any]] = {
        "400": _error("The Host header is not one Glassbox serves (DNS rebinding)"),
    }
    has_body = "requestBody" in op
    if op.get("parameters") or has_body:
        found["422"] = _error("A field is refused: each item names it", FieldErrors.__name__)
    if op.get("security"):  # the API key schemes of `require_api_key`
        found["401"] = _error("Missing or invalid API key (X-API-Key header)")
    if "{" in path:
        found["404"] = _error("No such record (the message names the id)")
    if method in STATE_CHANGING:
        found["403"] = _error("Cross-origin request refused (Origin)")
        found["413"] = _error("The body is larger than the limit")
        found["415"] = _error("The body is not JSON (or a multipart upload)")
    if op["operationId"] in CONFLICTS:
        found["409"] = _error(CONFLICTS[op["operationId"]])
    if op["operationId"] == "hooks-call":
        found["401"] = _error("Missing or wrong X-Glassbox-Token (or signature)")
    if op["operationId"] == "service-health":
        found["503"] = _error("A component is down: `down` names it", Health.__name__)
    elif op["operationId"] not in NO_DATABASE:
        found["503"] = _error("The database is unavailable", Unavailable.__name__)
    return found


def _success(op: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for code, r in op["responses"].items() if code.startswith("2")), None)


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    described: list[type[BaseModel]] = [*RESPONSES.values(), Error, FieldErrors, Unavailable]
    _, models = models_json_schema(
        [(m, "serialization") for m in dict.fromkeys(described)],
        ref_template=COMPONENTS + "{model}",
    )
    components.update(models["$defs"])
    _add_workflow(components)
    created: dict[str, str] = {}  # operationId → the path parameter its record's id fills
    for path, operations in schema["paths"].items():
        for method_lower, op in operations.items():
            method = method_lower.upper()
            op["operationId"] = operation_id(method, path, {m.upper() for m in operations})
            model = RESPONSES.get(op["operationId"])
            success = _success(op)
            if model is not None and success is not None:
                success["content"] = {
                    "application/json": {"schema": {"$ref": COMPONENTS + model.__name__}}
                }
                if model in CREATES and op["responses"].get("201") is success:
                    created[op["operationId"]] = CREATES[model]
            for code, answer in _errors(path, method, op).items():
                given = op["responses"].get(code)
                if given is None or code == "422":  # FastAPI's own 422 lacks `field`, `line`
                    op["responses"][code] = answer
                else:  # the route's own words, with the body's schema
                    given["content"] = answer["content"]
    _add_links(schema, created)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


SAVED_WORKFLOW: dict[str, Any] = {
    "description": "A saved workflow keeps no secret's value: a secret parameter has no default.",
    "properties": {
        "parameters": {
            "additionalProperties": {
                "not": {
                    "required": ["secret", "default"],
                    "properties": {"secret": {"const": True}, "default": {"not": {"type": "null"}}},
                }
            }
        }
    },
}
"""What `services.workflows.checked_definition` adds to the format for a saved workflow."""


def _add_workflow(components: dict[str, Any]) -> None:
    """The workflow format's schema as components, referenced where a request carries one."""
    workflow = workflow_json_schema()
    for name, definition in workflow.pop("$defs").items():
        assert name not in components, f"the workflow's {name} would shadow a component"
        components[name] = definition
    for key in ("$schema", "$id"):
        workflow.pop(key)
    components["Workflow"] = workflow
    _retarget(components)
    typed = {"$ref": COMPONENTS + "Workflow"}
    blocks = copy.deepcopy(workflow["properties"]["blocks"])
    blocks.pop("default", None)
    for model, field, workflow_schema in (
        ("RunCreate", "workflow", typed),
        ("RunContinue", "workflow", typed),
        ("RunContinue", "blocks", blocks),
        ("WorkflowCreate", "definition", {"allOf": [typed, SAVED_WORKFLOW]}),
    ):
        prop = components[model]["properties"][field]
        prop.pop("additionalProperties", None)
        prop.pop("anyOf", None)
        prop.pop("type", None)
        prop.update({"anyOf": [workflow_schema, {"type": "null"}]})


def _retarget(value: Any) -> None:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            value["$ref"] = COMPONENTS + ref.removeprefix("#/$defs/")
        for item in value.values():
            _retarget(item)
    elif isinstance(value, list):
        for item in value:
            _retarget(item)


def _add_links(schema: dict[str, Any], created: dict[str, str]) -> None:
    """From each create operation's answer to every operation taking the created id."""
    for op_id, param in created.items():
        links: dict[str, Any] = {}
        for path, operations in schema["paths"].items():
            if f"{{{param}}}" not in path:
                continue
            for op in operations.values():
                links[op["operationId"]] = {
                    "operationId": op["operationId"],
                    "parameters": {param: "$response.body#/id"},
                    "description": f"The `id` in the answer is the `{param}` of this operation",
                }
        for operations in schema["paths"].values():
            for op in operations.values():
                if op["operationId"] == op_id and links:
                    op["responses"]["201"]["links"] = links


def install(app: FastAPI) -> None:
    """Replace `app.openapi` by the completed description (built once, on first use)."""
    generate = app.openapi
    done: list[dict[str, Any]] = []  # the description completed last (FastAPI caches it)

    def openapi() -> dict[str, Any]:
        schema = generate()
        if not done or done[0] is not schema:
            done[:] = [complete(schema)]
        return done[0]

    app.openapi = openapi  # type: ignore[method-assign]
