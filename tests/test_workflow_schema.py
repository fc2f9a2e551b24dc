"""The workflow format's JSON Schema: generated from the validator's models, committed as
docs/workflow.schema.json (what editors read through the `yaml-language-server` comment of the
examples and docs), satisfied by every example and doc snippet, and in agreement with
`parse_workflow` on a corpus of good and bad workflows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from api.cli import main
from runner.workflow import parse_workflow
from runner.workflow_schema import workflow_json_schema
from storage.errors import ValidationFailed
from tests.test_docs_examples import YAML_BLOCKS, is_workflow

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "workflow.schema.json"
MODELINE = "# yaml-language-server: $schema="
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SNIPPETS = [b for b in YAML_BLOCKS if not b.fragment]

SCHEMA = workflow_json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def schema_errors(document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in VALIDATOR.iter_errors(document)
    ]


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_committed_copy_is_the_generated_schema() -> None:
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == SCHEMA, (
        "docs/workflow.schema.json is stale: `glassbox schema workflow > docs/workflow.schema.json`"
    )


def test_glassbox_schema_workflow_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["schema", "workflow"])
    assert exit_.value.code == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA


def _modeline_target(text: str, where: Path) -> Path:
    first = text.splitlines()[0]
    assert first.startswith(MODELINE), f"{where}: the first line is not `{MODELINE}…`"
    return (where.parent / first[len(MODELINE) :].strip()).resolve()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_points_at_the_schema_and_satisfies_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert _modeline_target(text, path) == COMMITTED
    assert schema_errors(yaml.safe_load(text)) == []


@pytest.mark.parametrize("block", SNIPPETS, ids=lambda b: f"{b.path.name}:{b.line}")
def test_every_doc_snippet_points_at_the_schema_and_satisfies_it(block: Any) -> None:
    document = yaml.safe_load(block.text)
    assert is_workflow(document)
    assert _modeline_target(block.text, block.path) == COMMITTED
    assert schema_errors(document) == []


def test_there_are_examples_and_snippets() -> None:
    assert EXAMPLES and len(SNIPPETS) >= 10


def _flow(*steps: Any, **extra: Any) -> dict[str, Any]:
    return {
        "title": "t",
        "blocks": [{"label": "a", "type": "action", "steps": list(steps)}],
        **extra,
    }


GOOD: dict[str, Any] = {
    "one goto": _flow({"goto": "https://example.com/"}),
    "goto as a mapping": _flow({"goto": {"url": "https://example.com/", "wait_until": "commit"}}),
    "every target way": _flow(
        {"click": {"selector": "#a"}},
        {"click": {"role": "button", "name": "Go"}},
        {"click": {"text": "Go", "exact": True}},
    ),
    "null fields are not given": _flow(
        {"click": {"selector": "#a", "role": None, "text": None, "name": None}},
        {"select": {"selector": "#s", "value": "v", "label": None}},
        {"press": {"selector": "#q", "role": None, "key": "Enter"}},
    ),
    "fill and press": _flow(
        {"fill": {"selector": "#q", "value": "x"}}, {"press": {"key": "Enter"}}
    ),
    "select by label": _flow({"select": {"selector": "#s", "label": "Price"}}),
    "wait shorthand and go_back": _flow({"wait": 1.5}, {"go_back": None}),
    "download and scroll": _flow(
        {"download": {"click": {"text": "Export"}}}, {"scroll": {"direction": "up"}}
    ),
    "upload with a file list": _flow(
        {"upload": {"selector": "input", "file": ["{{ a }}", "{{ b }}"]}}
    ),
    "agent run": {"goal": "Find a lamp", "max_steps": 5},
    "extract with fields and a goal block": {
        "blocks": [
            {"label": "e", "type": "extract", "fields": {"p": {"selector": ".p", "as": "number"}}},
            {"label": "g", "type": "goal", "goal": "buy", "max_steps": 3},
        ]
    },
    "extract with an instruction": {
        "blocks": [{"label": "e", "type": "extract", "instruction": "the prices"}]
    },
    "file parameter": {
        "parameters": {"f": {"type": "file", "accept": [".pdf"], "max_bytes": 10}},
        "blocks": [
            {
                "label": "u",
                "type": "action",
                "steps": [{"upload": {"selector": "i", "file": "{{ f }}"}}],
            }
        ],
    },
    "secret parameter": _flow(
        {"fill": {"selector": "#p", "value": "{{ pw }}"}},
        parameters={"pw": {"type": "string", "secret": True, "default": "x"}},
    ),
}

BAD: dict[str, Any] = {
    "no blocks and no goal": {"title": "t"},
    "blocks and a goal": {**_flow({"goto": "https://e.com"}), "goal": "x"},
    "empty blocks": {"blocks": []},
    "unknown top-level field": _flow({"goto": "https://e.com"}, colour="red"),
    "unknown block type": {"blocks": [{"label": "a", "type": "dance"}]},
    "block without a label": {"blocks": [{"type": "goal", "goal": "x"}]},
    "empty steps": {"blocks": [{"label": "a", "type": "action", "steps": []}]},
    "unknown verb": _flow({"hover": {"selector": "#a"}}),
    "two verbs in a step": _flow({"goto": "https://e.com", "click": {"selector": "#a"}}),
    "a step as a string": _flow("click #a"),
    "click with two ways": _flow({"click": {"selector": "#a", "text": "A"}}),
    "click with no way": _flow({"click": {"exact": True}}),
    "name without role": _flow({"click": {"text": "A", "name": "B"}}),
    "press with two ways": _flow({"press": {"selector": "#a", "role": "textbox", "key": "A"}}),
    "select with value and label": _flow(
        {"select": {"selector": "#s", "value": "a", "label": "b"}}
    ),
    "a null way is no way": _flow({"fill": {"role": None, "value": "x"}}),
    "a null way does not count twice": _flow({"click": {"selector": None, "text": None}}),
    "extract with a null instruction": {
        "blocks": [{"label": "e", "type": "extract", "instruction": None}]
    },
    "select with neither": _flow({"select": {"selector": "#s"}}),
    "fill without value": _flow({"fill": {"selector": "#q"}}),
    "unknown argument": _flow({"click": {"selector": "#a", "force": True}}),
    "negative timeout": _flow({"click": {"selector": "#a", "timeout_ms": -1}}),
    "wait too long": _flow({"wait": 60}),
    "wrong scroll direction": _flow({"scroll": {"direction": "sideways"}}),
    "extract with nothing": {"blocks": [{"label": "e", "type": "extract"}]},
    "extract field first and all": {
        "blocks": [
            {
                "label": "e",
                "type": "extract",
                "fields": {"p": {"selector": ".p", "first": True, "all": True}},
            }
        ]
    },
    "goal block max_steps too high": {
        "blocks": [{"label": "g", "type": "goal", "goal": "x", "max_steps": 1000}]
    },
    "timeout_s zero": _flow({"goto": "https://e.com"}, timeout_s=0),
    "file parameter with a default": {
        "parameters": {"f": {"type": "file", "default": "x"}},
        "goal": "x",
    },
    "accept on a string parameter": {
        "parameters": {"f": {"type": "string", "accept": [".pdf"]}},
        "goal": "x",
    },
    "secret file parameter": {"parameters": {"f": {"type": "file", "secret": True}}, "goal": "x"},
    "unknown parameter type": {"parameters": {"f": {"type": "date"}}, "goal": "x"},
    "a list, not a workflow": [{"goal": "x"}],
}


def _validator_accepts(document: Any) -> bool:
    try:
        parse_workflow(document)
    except ValidationFailed:
        return False
    return True


def test_the_corpus_is_large_enough() -> None:
    assert len(GOOD) + len(BAD) >= 20


@pytest.mark.parametrize("name", GOOD)
def test_both_accept(name: str) -> None:
    assert _validator_accepts(GOOD[name])
    assert schema_errors(GOOD[name]) == []


@pytest.mark.parametrize("name", BAD)
def test_both_refuse(name: str) -> None:
    assert not _validator_accepts(BAD[name])
    assert schema_errors(BAD[name]), "the schema accepts what the validator refuses"


def test_what_only_the_validator_checks() -> None:
    """Unique block labels: JSON Schema cannot compare items' fields, so the schema accepts
    what the validator refuses — the one known gap, kept visible here."""
    twice = {"blocks": [{"label": "a", "type": "goal", "goal": "x"}] * 2}
    assert not _validator_accepts(twice)
    assert schema_errors(twice) == []


def test_a_typo_is_flagged_where_it_is() -> None:
    """What an editor shows: the misspelt verb's step, not just "invalid document"."""
    errors = list(VALIDATOR.iter_errors(_flow({"clik": {"selector": "#a"}})))
    assert [list(e.absolute_path) for e in errors] == [["blocks", 0, "steps", 0]]
