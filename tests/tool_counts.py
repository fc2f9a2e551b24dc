"""A pytest plugin (loaded by tests/conftest.py): the terminal summary counts the product's
tests and the tests of the test tools (marker `tools`, set by tests/tools/conftest.py) apart."""

from __future__ import annotations

from collections import Counter

import pytest

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


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
