"""A pytest plugin (loaded by tests/conftest.py): skipped tests about a real service announced
above the final counts.

Tests about a real service skip when it is not there (locally; CI turns them into failures). A
green run that tested no PostgreSQL path looks like any other green run, so say it loudly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _pytest.terminal import TerminalReporter

SKIPPED_SERVICES = (
    # (name, words that name it in a skip reason, what the skipped tests were about)
    (
        "PostgreSQL",
        ("postgresql",),
        "the scale-out paths (claims with FOR UPDATE SKIP LOCKED, LISTEN/NOTIFY between "
        "processes, leases and the reaper across processes, the PostgreSQL half of the storage "
        "and API suites) were NOT tested",
    ),
    ("S3", ("s3", "seaweedfs"), "artifacts on S3 (SeaweedFS) were NOT tested"),
)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: TerminalReporter) -> Iterator[None]:
    """After the short test summary, just above the final counts: where it is seen."""
    yield
    by_service: dict[str, list[str]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = _skip_reason(report) if report.longrepr else ""
        for name, words, _ in SKIPPED_SERVICES:  # the first named: the one that made it skip
            if any(word in reason.lower() for word in words):
                by_service.setdefault(name, []).append(reason.splitlines()[0])
                break
    for name, _, consequence in SKIPPED_SERVICES:
        reasons = by_service.get(name)
        if not reasons:
            continue
        tests = "test" if len(reasons) == 1 else "tests"
        terminalreporter.write_sep(
            "!", f"{len(reasons)} {name} {tests} SKIPPED", red=True, bold=True
        )
        for line in sorted(set(reasons))[:3]:
            terminalreporter.write_line(line, red=True)
        terminalreporter.write_line(f"=> {consequence}.", red=True, bold=True)
