"""The JSON Schema of the workflow format, derived from the models `parse_workflow` enforces.

The models are the one source: every step verb of `STEP_VERBS`, every block type of
`BLOCK_TYPES` and every field of `Workflow` appears here as they do. What the schema adds is
the shape the validator normalizes away — a step is written as an object with exactly one verb
key (`{click: {...}}`, with `goto: URL`, `wait: SECONDS` and `go_back:` shorthands), blocks are
told apart by `type`, an agent run is a top-level `goal` — and the rules the models check in
code ("exactly one of selector, role or text"…), restated as JSON Schema so an editor flags
them too. tests/test_workflow_schema.py holds the validator and the schema to the same answers.
What the schema cannot say (block labels unique across the list, templates that render) is
left to the validator.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from runner.workflow import (
    BLOCK_TYPES,
    STEP_VERBS,
    ActionBlock,
    ExtractBlock,
    ExtractField,
    GoalBlock,
    Parameter,
    PressArgs,
    SelectArgs,
    Target,
    Workflow,
)

SCHEMA_ID = "https://glassbox.invalid/schemas/workflow.json"
REF = "#/$defs/{model}"


def _given(*names: str) -> dict[str, Any]:
    """These fields are given: present and not null (the models treat null as not given)."""
    return {"required": list(names), "properties": {n: {"not": {"type": "null"}} for n in names}}


_WAYS = ("selector", "role", "text")
_EXACTLY_ONE_WAY = {"oneOf": [_given(w) for w in _WAYS]}
_AT_MOST_ONE_WAY = {
    "not": {"anyOf": [_given(a, b) for i, a in enumerate(_WAYS) for b in _WAYS[i + 1 :]]}
}
URL_PATTERN = r"^$|\{\{|^[Hh][Tt][Tt][Pp][Ss]?:"
"""A URL saved in a workflow: http(s) (or the schemes GLASSBOX_URL_SCHEMES adds), or a template
checked when a run renders it (`services.workflows` checks the others when it is saved)."""

_SHORTHANDS: dict[str, dict[str, Any]] = {
    "goto": {
        "type": "string",
        "pattern": URL_PATTERN,
        "description": "The URL alone: `goto: https://…`",
    },
    "wait": {"type": "number", "minimum": 0, "maximum": 30, "description": "Seconds alone"},
    "go_back": {"type": "null", "description": "No arguments: `- go_back:`"},
}


def _rules(model: type[BaseModel]) -> dict[str, Any]:
    """The checks a model's validators make, as JSON Schema keywords."""
    rules: list[dict[str, Any]] = []
    if issubclass(model, Target):
        # Which class's `_one_way` check the model runs: subclasses may replace Target's.
        owner = next(c for c in model.__mro__ if "_one_way" in vars(c))
        if owner is PressArgs:
            rules.append(_AT_MOST_ONE_WAY)
        else:
            rules.append(_EXACTLY_ONE_WAY)
        if owner is Target:
            rules.append({"if": _given("name"), "then": _given("role")})
        if issubclass(model, SelectArgs):
            rules.append({"oneOf": [_given("value"), _given("label")]})
    if model is ExtractField:
        rules.append(
            {
                "not": {
                    "properties": {"first": {"const": True}, "all": {"const": True}},
                    "required": ["first", "all"],
                }
            }
        )
    if model is ExtractBlock:
        rules.append(
            {
                "anyOf": [
                    {"required": ["fields"], "properties": {"fields": {"minProperties": 1}}},
                    {
                        "required": ["instruction"],
                        "properties": {"instruction": {"type": "string", "minLength": 1}},
                    },
                ]
            }
        )
    if model is Parameter:
        rules.append(
            {
                "if": {"properties": {"type": {"const": "file"}}, "required": ["type"]},
                "then": {"properties": {"default": {"type": "null"}, "secret": {"const": False}}},
                "else": {"properties": {"accept": {"type": "null"}, "max_bytes": {"type": "null"}}},
            }
        )
    if not rules:
        return {}
    return {"allOf": rules}


def _step_schema() -> dict[str, Any]:
    """A step: an object with exactly one verb key, whose value is that verb's arguments."""
    choices = []
    for verb, model in STEP_VERBS.items():
        args: dict[str, Any] = {"$ref": REF.format(model=model.__name__)}
        if verb in _SHORTHANDS:
            args = {"anyOf": [args, _SHORTHANDS[verb]]}
        choices.append(
            {
                "type": "object",
                "title": verb,
                "properties": {verb: args},
                "required": [verb],
                "additionalProperties": False,
            }
        )
    return {
        "description": "One browser operation, written as an object with exactly one verb key, "
        "e.g. `{click: {role: button, name: Search}}`.",
        "oneOf": choices,
    }


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow document, YAML or JSON."""
    models: list[type[BaseModel]] = [Workflow, *STEP_VERBS.values(), *BLOCK_TYPES.values()]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    defs: dict[str, Any] = copy.deepcopy(top.get("$defs", {}))
    defs.pop("Step", None)  # the parsed form ({verb, args}); documents hold the one-verb form
    defs["Step"] = _step_schema()
    for name, schema in defs.items():
        model = _model_named(name, models)
        if model is not None:
            schema.update(_rules(model))
    action = defs[ActionBlock.__name__]["properties"]
    action["steps"] = {
        "type": "array",
        "minItems": 1,
        "items": {"$ref": REF.format(model="Step")},
        "description": "Deterministic steps, executed in order.",
    }
    defs["GotoArgs"]["properties"]["url"]["pattern"] = URL_PATTERN
    goal = defs[GoalBlock.__name__]["properties"]
    root = defs.pop(Workflow.__name__)
    properties = root["properties"]
    properties["url"]["anyOf"][0]["pattern"] = URL_PATTERN
    properties["blocks"] = {
        "type": "array",
        "minItems": 1,
        "description": "The blocks, executed in order; each is told apart by its `type`.",
        "items": {  # discriminated by `type`: an error is reported inside the block it is in
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": list(BLOCK_TYPES)}},
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                    "then": {"$ref": REF.format(model=m.__name__)},
                }
                for kind, m in BLOCK_TYPES.items()
            ],
        },
    }
    # A field given as null is not given: null is allowed where the model treats it so.
    properties["goal"] = {
        **goal["goal"],
        "type": ["string", "null"],
        "description": "An agent run: the workflow is one `goal` block with this goal "
        "(instead of `blocks`).",
    }
    properties["blocks"]["type"] = ["array", "null"]
    properties["max_steps"] = {  # checked beside `blocks` too, where it has no use
        **goal["max_steps"],
        "type": ["integer", "null"],
        "description": "With `goal`: its step limit.",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Glassbox workflow",
        "description": "A Glassbox workflow (YAML or JSON): deterministic steps, extraction and "
        "LLM-driven goals. See docs/workflows.md.",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "oneOf": [  # a field given as null is not given
            {**_given("blocks"), "not": _given("goal")},
            {**_given("goal"), "not": _given("blocks")},
        ],
        "$defs": dict(sorted(defs.items())),
    }


def _model_named(name: str, models: list[type[BaseModel]]) -> type[BaseModel] | None:
    seen: list[type[BaseModel]] = [*models, Target, ExtractField, Parameter]
    return next((m for m in seen if m.__name__ == name), None)
