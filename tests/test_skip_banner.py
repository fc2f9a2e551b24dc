"""The suite says loudly when its PostgreSQL tests were skipped (tests/skip_banner.py): pytest with
that plugin on a test that needs PostgreSQL as the suite's do (`require_postgres`), pointed at a
port where nothing listens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOBODY = "postgresql://postgres@127.0.0.1:1/test"  # connection refused at once

NEEDS_POSTGRES = """
from tests.storage.conftest import require_postgres


def test_on_postgres():
    require_postgres()


def test_elsewhere():
    pass
"""


def test_skipped_postgresql_tests_are_announced_above_the_final_counts(tmp_path: Path) -> None:
    (tmp_path / "test_needs_postgres.py").write_text(NEEDS_POSTGRES)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env.update(GLASSBOX_TEST_POSTGRES_URL=NOBODY, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "tests.skip_banner", "-p", "no:cacheprovider"),
            *("--basetemp", str(tmp_path / "basetemp"), "test_needs_postgres.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    output = done.stdout
    assert done.returncode == 0, output + done.stderr
    lines = output.rstrip().splitlines()
    assert "1 passed, 1 skipped" in lines[-1], lines[-1]
    banner, reason, consequence = lines[-4:-1]
    assert "1 PostgreSQL test SKIPPED" in banner and banner.startswith("!!!"), banner
    assert f"PostgreSQL at {NOBODY} is not reachable" in reason, reason
    assert "scale-out paths" in consequence and "NOT tested" in consequence, consequence
