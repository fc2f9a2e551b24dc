"""Schemathesis hooks of tests/api/test_contract_fuzz.py (loaded through schemathesis.toml).

Each makes generated bodies keep a rule of the workflow format that JSON Schema cannot state,
so that a schema-valid body is one the API must accept: block labels unique within a workflow,
`source` (a workflow as YAML text: any string is schema-valid) a YAML mapping, and a follow-up's
`until` an expression that parses."""

from __future__ import annotations

from typing import Any

import schemathesis
import yaml

SOURCE = yaml.safe_dump(
    {
        "title": "fuzz",
        "blocks": [{"label": "a", "type": "action", "steps": [{"goto": "http://127.0.0.1:9/"}]}],
    }
)


def _unique_labels(workflow: Any) -> None:
    blocks = workflow.get("blocks") if isinstance(workflow, dict) else None
    if not isinstance(blocks, list):
        return
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        if isinstance(block, dict) and isinstance(block.get("label"), str):
            if block["label"] in seen:
                block["label"] = f"{block['label'][:190]}#{i}"
            seen.add(block["label"])


UNTIL = "false"
"""`follow_up.until` is a Jinja expression: any string is schema-valid, few parse."""


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    """Every phase's case, just before it is sent (Schemathesis validates it again after)."""
    body = case.body
    if not isinstance(body, dict):
        return
    for key in ("workflow", "definition"):
        _unique_labels(body.get(key))
        follow_up = body[key].get("follow_up") if isinstance(body.get(key), dict) else None
        if isinstance(follow_up, dict) and isinstance(follow_up.get("until"), str):
            follow_up["until"] = UNTIL
    if isinstance(body.get("source"), str):
        body["source"] = SOURCE
