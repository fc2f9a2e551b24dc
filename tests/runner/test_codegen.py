"""The `code` artifact replays the run: each generated script is run with plain `python` against
the same local site and must print the run's extracted information on its last line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.site_server import LOGIN_PASSWORD, SiteServer
from tests.test_cli import SHOP_EXTRACTED, Recorded, only_artifact, recorded_runs


@pytest.fixture(scope="module")
def runs(site: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Recorded]:
    made = recorded_runs(site, tmp_path_factory, "shop", "login")
    for recorded in made.values():
        assert recorded.result.returncode == 0, recorded.result.describe()
    return made


def run_script(
    code: bytes, workdir: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The script as a user would run it: `python replay.py` in an empty directory."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "replay.py"
    script.write_bytes(code)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GLASSBOX_") and k not in ("PASSWORD", "DOWNLOAD_DIR", "HEADLESS")
    }
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def last_json_line(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}\n{proc.stdout}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, "the script printed nothing"
    return json.loads(lines[-1])


def test_scripts_are_standalone_python(runs: dict[str, Recorded]) -> None:
    for name, recorded in runs.items():
        code = recorded.artifact_bytes("code").decode()
        compile(code, f"{name}/replay.py", "exec")
        assert "sync_playwright" in code
        # Standalone: nothing of Glassbox is imported.
        imports = [line for line in code.splitlines() if line.startswith(("import ", "from "))]
        assert not [line for line in imports if any(m in line for m in ("runner", "storage"))]


def test_shop_script_replays_the_run(runs: dict[str, Recorded], tmp_path: Path) -> None:
    recorded = runs["shop"]
    assert recorded.record["extracted_information"] == SHOP_EXTRACTED
    proc = run_script(recorded.artifact_bytes("code"), tmp_path / "shop")
    assert last_json_line(proc) == recorded.record["extracted_information"]
    # The download step saved the file where the script runs, with the same content.
    saved = tmp_path / "shop" / "downloads" / "results.csv"
    assert saved.is_file(), list((tmp_path / "shop").rglob("*"))
    download = only_artifact(recorded.record, "download")
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == download["sha256"]


def test_login_script_reads_the_secret_from_the_environment(
    runs: dict[str, Recorded], tmp_path: Path
) -> None:
    recorded = runs["login"]
    assert recorded.record["extracted_information"] == {"message": "Welcome, ada"}
    code = recorded.artifact_bytes("code")
    assert LOGIN_PASSWORD.encode() not in code
    text = code.decode()
    assert 'PASSWORD = os.environ["PASSWORD"]' in text
    assert 'page.locator("#password").fill(PASSWORD)' in text
    assert 'USERNAME = "ada"' in text  # plain parameters are constants
    proc = run_script(code, tmp_path / "login", {"PASSWORD": LOGIN_PASSWORD})
    assert last_json_line(proc) == {"message": "Welcome, ada"}
    assert LOGIN_PASSWORD not in proc.stdout + proc.stderr


def test_login_script_without_the_secret_fails(runs: dict[str, Recorded], tmp_path: Path) -> None:
    proc = run_script(runs["login"].artifact_bytes("code"), tmp_path / "nosecret")
    assert proc.returncode != 0
    assert "KeyError" in proc.stderr and "PASSWORD" in proc.stderr, proc.stderr
    assert not (tmp_path / "nosecret" / "downloads").exists()
