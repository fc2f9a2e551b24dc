"""Schemathesis hooks of tests/api/test_contract_fuzz.py (loaded through schemathesis.toml).

Each makes generated bodies keep a rule of the workflow format that JSON Schema cannot state,
so that a schema-valid body is one the API must accept: block labels unique within a workflow,
and `source` (a workflow as YAML text: any string is schema-valid) a YAML mapping."""

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


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    """Every phase's case, just before it is sent (Schemathesis validates it again after)."""
    body = case.body
    if not isinstance(body, dict):
        return
    for key in ("workflow", "definition"):
        _unique_labels(body.get(key))
    if isinstance(body.get("source"), str):
        body["source"] = SOURCE
