from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.templating import resolve_inputs
from runner.workflow import load_workflow_file, parse_workflow, workflow_to_json
from storage.errors import ValidationFailed

EXAMPLE = Path(__file__).parents[2] / "examples" / "shop.yaml"


def action(*steps: Any) -> dict[str, Any]:
    return {"blocks": [{"label": "a", "type": "action", "steps": list(steps)}]}


def refused(definition: dict[str, Any], params: dict[str, Any] | None = None) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        workflow = parse_workflow(definition)
        resolve_inputs(workflow, params or {})
    return caught.value


def test_example_workflow_loads() -> None:
    workflow = load_workflow_file(EXAMPLE)
    assert [b.label for b in workflow.blocks] == ["search", "products"]
    inputs = resolve_inputs(workflow, {})
    assert inputs.values == {"query": "lamp"}


@pytest.mark.parametrize(
    ("definition", "field", "words"),
    [
        (action({"clik": {"selector": "#a"}}), "blocks[0].steps[0].clik", "unknown step verb"),
        (action({"click": {"role": 3}}), "blocks[0].steps[0].click.role", "string"),
        (action({"click": {}}), "blocks[0].steps[0].click", "exactly one of"),
        (action({"click": {"selector": "#a", "timeout_ms": "soon"}}), "timeout_ms", "integer"),
        (action({"fill": {"selector": "#a"}}), "blocks[0].steps[0].fill.value", "required"),
        (action({"goto": "file:///etc/passwd"}), "blocks[0].steps[0].goto.url", "'file'"),
        (action({"goto": "javascript:alert(1)"}), "blocks[0].steps[0].goto.url", "javascript"),
        (action({"goto": "chrome://settings"}), "blocks[0].steps[0].goto.url", "chrome"),
        (action("click"), "blocks[0].steps[0]", "mapping"),
        ({"blocks": [{"label": "a", "type": "dance"}]}, "blocks[0].type", "unknown block type"),
        ({"blocks": []}, "blocks", "needs blocks"),
        ({"goal": "x", "timeout_s": "abc"}, "timeout_s", "integer"),
        ({"goal": "x", "colour": "red"}, "colour", "unknown field"),
        ({"url": "file:///tmp/x", "goal": "x"}, "url", "not allowed"),
        (
            {
                "blocks": [
                    {
                        "label": "e",
                        "type": "extract",
                        "fields": {"p": {"selector": "a", "as": "float"}},
                    }
                ]
            },
            "blocks[0].fields.p.as",
            "number",
        ),
        (
            {"goal": "x", "extraction_schema": {"type": "thing"}},
            "extraction_schema",
            "thing",
        ),
        (
            {
                "blocks": [
                    {"label": "a", "type": "goal", "goal": "x"},
                    {"label": "a", "type": "goal", "goal": "y"},
                ]
            },
            "blocks[1].label",
            "duplicate",
        ),
        (
            action({"fill": {"selector": "#q", "value": "{{ nope }}"}}),
            "steps[0].fill.value",
            "nope",
        ),
        (
            action({"fill": {"selector": "#q", "value": "{{ broken"}}),
            "steps[0].fill.value",
            "template",
        ),
    ],
)
def test_bad_workflows_are_refused_naming_the_field(
    definition: dict[str, Any], field: str, words: str
) -> None:
    error = refused(definition)
    assert field in error.field, (error.field, error.message)
    assert words in str(error)


def test_parameters_are_typed_defaulted_and_required() -> None:
    definition = {
        "parameters": {
            "query": {"type": "string", "default": "lamp"},
            "count": {"type": "integer", "default": 2},
            "strict": {"type": "boolean", "default": False},
            "password": {"type": "string", "secret": True},
        },
        **action({"fill": {"selector": "#q", "value": "{{ query }} {{ count + 1 }}"}}),
    }
    workflow = parse_workflow(definition)
    inputs = resolve_inputs(workflow, {"count": "5", "strict": "yes", "password": "pw"})
    assert inputs.values == {"query": "lamp", "count": 5, "strict": True, "password": "pw"}
    assert inputs.masked["password"] == "********"
    assert inputs.secret_values == ["pw"]
    assert refused(definition, {"count": "five", "password": "x"}).field == "parameters.count"
    assert refused(definition, {}).field == "parameters.password"
    assert refused(definition, {"password": "x", "colour": "red"}).field == "parameters.colour"


def test_templates_are_sandboxed() -> None:
    definition = action({"fill": {"selector": "#q", "value": "{{ ''.__class__.__mro__ }}"}})
    error = refused(definition)
    assert "steps[0].fill.value" in error.field


def test_stored_definition_masks_secret_defaults() -> None:
    workflow = parse_workflow(
        {
            "parameters": {"password": {"type": "string", "secret": True, "default": "hunter2"}},
            **action({"fill": {"selector": "#p", "value": "{{ password }}"}}),
        }
    )
    stored = workflow_to_json(workflow)
    assert "hunter2" not in str(stored)
    assert stored["blocks"][0]["steps"] == [{"fill": {"selector": "#p", "value": "{{ password }}"}}]
    assert parse_workflow(stored).blocks[0].label == "a"  # the stored form parses again


def test_top_level_goal_is_one_goal_block() -> None:
    workflow = parse_workflow({"goal": "Buy a lamp", "max_steps": 4})
    assert len(workflow.blocks) == 1
    assert workflow.blocks[0].type == "goal"
