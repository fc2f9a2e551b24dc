"""The suite says loudly when its PostgreSQL tests were skipped (tests/conftest.py): pytest run
on a test of the suite, with the PostgreSQL server pointed at a port where nothing listens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOBODY = "postgresql://postgres@127.0.0.1:1/test"  # connection refused at once


def pytest_on(selection: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["GLASSBOX_TEST_POSTGRES_URL"] = NOBODY
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "tests/storage/test_queue.py", "-k", selection),
            *("-p", "no:cacheprovider", "--basetemp", str(tmp_path / "basetemp")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )


def test_skipped_postgresql_tests_are_announced_above_the_final_counts(tmp_path: Path) -> None:
    done = pytest_on("a_claim_gives", tmp_path)
    output = done.stdout
    assert done.returncode == 0, output + done.stderr
    lines = output.rstrip().splitlines()
    assert "1 passed, 1 skipped" in lines[-1], lines[-1]
    banner, reason, consequence = lines[-4:-1]
    assert "1 PostgreSQL test SKIPPED" in banner and banner.startswith("!!!"), banner
    assert f"PostgreSQL at {NOBODY} is not reachable" in reason, reason
    assert "scale-out paths" in consequence and "NOT tested" in consequence, consequence
