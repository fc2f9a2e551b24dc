"""Tests of the test tools (the scripted LLM server, the MiniWoB++ pages and policies) and of the
deployment files (docker/). They count apart from the product's coverage: each carries the
`tools` marker, so `pytest -m "not tools"` runs the product's tests alone, and the terminal
summary gives the two counts side by side."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TOOLS in item.path.parents:
            item.add_marker(pytest.mark.tools)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts: dict[str, Counter[str]] = {"product": Counter(), "tools": Counter()}
    for outcome in OUTCOMES:
        for report in terminalreporter.stats.get(outcome, []):
            # A collection error's report has no keywords: it counts as the product's.
            tools = "tools" in getattr(report, "keywords", {})
            counts["tools" if tools else "product"][outcome] += 1
    for item in terminalreporter.stats.get("deselected", []):
        counts["tools" if item.get_closest_marker("tools") else "product"]["deselected"] += 1
    if not any(counts.values()):
        return
    terminalreporter.write_sep("-", "product tests and tests of the test tools")
    for group, label in (
        ("product", "product"),
        ("tools", "tools (marker `tools`: test tooling and deployment files)"),
    ):
        shown = ", ".join(f"{n} {outcome}" for outcome, n in counts[group].items()) or "none"
        terminalreporter.write_line(f"{label}: {shown}")
