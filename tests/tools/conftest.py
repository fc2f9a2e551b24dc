"""Tests of the test tools (the scripted LLM server, the MiniWoB++ pages and policies) and of the
deployment files (docker/). They count apart from the product's coverage: each carries the
`tools` marker, so `pytest -m "not tools"` runs the product's tests alone, and the terminal
summary gives the two counts side by side (tests/tool_counts.py: a plugin of the root conftest,
so that it runs where the summary is written — with pytest-xdist, the controller, which loads
no conftest below tests/)."""

from __future__ import annotations

from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TOOLS in item.path.parents:
            item.add_marker(pytest.mark.tools)
