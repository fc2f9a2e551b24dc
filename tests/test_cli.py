"""The `glassbox` console script, run as a real subprocess against the local demo site.

Each command runs with a data directory of the test's (GLASSBOX_DATA_DIR) and no other
GLASSBOX_ setting inherited from the environment. Runs are expensive (a Chromium, ffmpeg, and
each `glassbox` process spends over a second importing), so a workflow runs once per session
(`recorded_runs`) and the tests look at what it left; commands that only read or are refused
run concurrently.

The helpers at the top are shared with the other end-to-end modules that drive the CLI
(tests/runner/test_secrets_e2e.py, test_codegen.py, test_trace_viewer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from examples.site_server import LOGIN_PASSWORD, SiteServer
from services.backends import open_services
from services.settings import Settings
from services.workflows import save_workflow
from storage.settings import StorageSettings

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop.yaml"
LOGIN = ROOT / "tests" / "fixtures" / "login.yaml"
LOGIN_TOKEN = ROOT / "tests" / "fixtures" / "login_token.yaml"
_SCRIPT = Path(sys.executable).with_name("glassbox")
GLASSBOX: list[str] = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "from api.cli import main; main()"]
)
SHOP_EXTRACTED = {"cheapest": "Glow Reading Lamp", "prices": [24.99, 34.5, 49.99, 89.0]}
RECORD_FIELDS = {
    "id",
    "title",
    "status",
    "source",
    "workflow_id",
    "parent_run_id",
    "created_at",
    "started_at",
    "finished_at",
    "parameters",
    "summary",
    "extracted_information",
    "failure_reason",
    "step_count",
    "action_count",
    "metrics",
    "artifacts",
}
ARTIFACT_FIELDS = {"id", "kind", "name", "content_type", "size", "sha256", "url"}
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
# Cheap commands (refused input, artifact reads) run this many at a time.
PARALLEL = 4


# --- helpers (also used by tests/runner/test_secrets_e2e.py, test_codegen.py, ...) ------------


def cli_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any GLASSBOX_ setting, plus the data directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GLASSBOX_") and k not in ("FORCE_COLOR", "CLICOLOR_FORCE")
    }
    env["GLASSBOX_DATA_DIR"] = str(data_dir)
    env.update(extra or {})
    return env


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8")

    def record(self) -> dict[str, Any]:
        """stdout parsed as one JSON document (fails if anything else was printed there)."""
        try:
            parsed = json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"stdout of {self.args} is not only JSON ({exc}):\n{self.out[:2000]}"
            ) from None
        assert isinstance(parsed, dict)
        return parsed

    def describe(self) -> str:
        return (
            f"glassbox {' '.join(self.args)} -> {self.returncode}\n"
            f"--- stderr ---\n{self.stderr[-4000:]}\n--- stdout ---\n{self.out[-2000:]}"
        )


def glassbox(
    *args: str, data_dir: Path, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> Result:
    """Runs `glassbox ARGS...` to its end; stdout as bytes, stderr as text."""
    proc = subprocess.run(
        [*GLASSBOX, *args],
        cwd=cwd,
        env=cli_env(data_dir, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=100,
        check=False,
    )
    return Result(list(args), proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def glassbox_many(
    commands: Sequence[Sequence[str]], data_dir: Path, workers: int = PARALLEL
) -> list[Result]:
    """Several independent commands at once (they share the data directory)."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(commands)))) as pool:
        return list(pool.map(lambda argv: glassbox(*argv, data_dir=data_dir), commands))


def artifact_files(data_dir: Path, record: dict[str, Any]) -> dict[str, Path]:
    """artifact id -> the stored file under the data directory holding exactly its bytes."""
    by_hash: dict[str, Path] = {}
    for path in (data_dir / "artifacts").rglob("*"):
        if path.is_file():
            by_hash.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    found = {a["id"]: by_hash.get(a["sha256"]) for a in record["artifacts"]}
    missing = [i for i, p in found.items() if p is None]
    assert not missing, f"artifacts not stored under {data_dir}: {missing}"
    return {i: p for i, p in found.items() if p is not None}


def only_artifact(record: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [a for a in record["artifacts"] if a["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} artifact, got {found}"
    return found[0]


def run_rows(data_dir: Path) -> list[tuple[str, str]]:
    """(id, status) of every run in the SQLite database; [] when there is no database."""
    db = data_dir / "glassbox.db"
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        if "runs" not in tables:
            return []
        return [(r[0], r[1]) for r in conn.execute("select id, status from runs order by id")]


def run_dirs(data_dir: Path) -> list[str]:
    """The runs that have artifacts stored under the data directory."""
    runs = data_dir / "artifacts" / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []


# The workflows end-to-end modules share: (file, arguments after it; {site} is the site's URL).
WORKFLOWS: dict[str, tuple[Path, list[str]]] = {
    "shop": (SHOP, ["--param", "url={site}shop/"]),
    "login": (LOGIN, ["--param", "url={site}", "--param", f"password={LOGIN_PASSWORD}"]),
    "login_token": (
        LOGIN_TOKEN,
        ["--param", "url={site}", "--param", f"password={LOGIN_PASSWORD}"],
    ),
}


@dataclass
class Recorded:
    """A finished `glassbox run --json` and the data directory it alone wrote to."""

    name: str
    result: Result
    data_dir: Path

    @property
    def record(self) -> dict[str, Any]:
        return self.result.record()

    def artifact_path(self, kind: str) -> Path:
        return artifact_files(self.data_dir, self.record)[only_artifact(self.record, kind)["id"]]

    def artifact_bytes(self, kind: str) -> bytes:
        return self.artifact_path(kind).read_bytes()


_RECORDED: dict[tuple[str, str, str], Recorded] = {}


def recorded_runs(
    site: SiteServer, tmp_path_factory: pytest.TempPathFactory, *names: str
) -> dict[str, Recorded]:
    """Runs of WORKFLOWS, each in its own data directory, made once per test session and shared
    by the modules that only read what they left. The ones not made yet run concurrently.
    Callers check the outcome (a failed run is returned, not raised)."""
    session = str(tmp_path_factory.getbasetemp())

    def run(name: str) -> Recorded:
        flow, args = WORKFLOWS[name]
        data_dir = tmp_path_factory.mktemp(f"run-{name}") / "data"
        argv = [a.format(site=site.url) for a in args]
        result = glassbox("run", str(flow), *argv, "--json", data_dir=data_dir)
        return Recorded(name, result, data_dir)

    missing = [n for n in dict.fromkeys(names) if (session, site.url, n) not in _RECORDED]
    if missing:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for recorded in pool.map(run, missing):
                _RECORDED[(session, site.url, recorded.name)] = recorded
    return {n: _RECORDED[(session, site.url, n)] for n in names}


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(site: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    recorded = recorded_runs(site, tmp_path_factory, "shop")["shop"]
    assert recorded.result.returncode == 0, recorded.result.describe()
    return recorded


@pytest.fixture(scope="module")
def shop_run(shop: Recorded) -> Result:
    return shop.result


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own data directory: the failed run, then the refused commands."""
    return tmp_path_factory.mktemp("cli") / "data"


@pytest.fixture(scope="module")
def failed_run(site: SiteServer, data_dir: Path) -> Result:
    flow = data_dir.parent / "failing.yaml"
    flow.write_text(
        """\
title: Buy now [beta]
url: http://127.0.0.1:8080/
blocks:
  - label: search [v2]
    type: action
    steps:
      - goto: "{{ url }}shop/search.html"
      - fill: {selector: "#q", value: lamp}
      - click: {selector: "#buy-now", timeout_ms: 700}
  - label: never
    type: action
    steps:
      - goto: "{{ url }}shop/cart.html"
""",
        encoding="utf-8",
    )
    return glassbox("run", str(flow), "--param", f"url={site.url}", "--json", data_dir=data_dir)


# --- glassbox run: a completed run ------------------------------------------------------------


def test_run_json_prints_only_the_run_record(shop_run: Result) -> None:
    record = shop_run.record()
    assert shop_run.out.lstrip().startswith("{") and shop_run.out.rstrip().endswith("}")
    assert set(record) >= RECORD_FIELDS, RECORD_FIELDS - set(record)
    assert record["id"].startswith("run_")
    assert record["title"] == "Find the cheapest lamp"
    assert record["status"] == "completed"
    assert record["source"] == "cli"
    assert record["workflow_id"] is None and record["parent_run_id"] is None
    assert record["failure_reason"] is None
    assert record["parameters"] == {"query": "lamp"}
    assert record["extracted_information"] == SHOP_EXTRACTED
    assert record["summary"]
    assert record["step_count"] == 9 and record["action_count"] == 9
    metrics = dict(record["metrics"])
    video_started_at = metrics.pop("video_started_at")
    assert metrics == {"prompt_tokens": 0, "completion_tokens": 0, "llm_calls": 0, "cost_usd": 0.0}
    started = datetime.fromisoformat(record["started_at"].replace("Z", "+00:00")).timestamp()
    assert started <= video_started_at <= started + 60  # the video's 0, once the browser is up
    for name in ("created_at", "started_at", "finished_at"):
        assert ISO_TIME.match(record[name]), (name, record[name])
    assert record["created_at"] <= record["started_at"] <= record["finished_at"]


def test_run_json_lists_every_artifact(shop: Recorded) -> None:
    shop_run, data_dir = shop.result, shop.data_dir
    record = shop_run.record()
    artifacts = record["artifacts"]
    kinds = {a["kind"] for a in artifacts}
    assert {"video", "trace", "har", "console", "download", "code", "html", "screenshot"} <= kinds
    assert len([a for a in artifacts if a["kind"] == "screenshot"]) == 9  # one per action
    for artifact in artifacts:
        assert set(artifact) >= ARTIFACT_FIELDS, artifact
        assert artifact["id"].startswith("art_")
        assert artifact["url"] == f"/api/v1/artifacts/{artifact['id']}/content"
        assert re.fullmatch(r"[0-9a-f]{64}", artifact["sha256"]), artifact
        assert isinstance(artifact["size"], int) and artifact["size"] >= 0
        assert artifact["name"] and artifact["content_type"]
    assert len({a["id"] for a in artifacts}) == len(artifacts)
    assert only_artifact(record, "download")["name"] == "results.csv"
    assert only_artifact(record, "video")["content_type"] == "video/mp4"
    # Every listed artifact is stored with the size and hash the record gives.
    files = artifact_files(data_dir, record)
    for artifact in artifacts:
        assert files[artifact["id"]].stat().st_size == artifact["size"], artifact


def test_run_progress_goes_to_stderr(shop_run: Result) -> None:
    err = shop_run.stderr
    record = shop_run.record()
    assert "\x1b[" not in err, "no terminal escapes when stderr is not a terminal"
    lines = [line.strip() for line in err.splitlines()]
    # The blocks, every step with its target, and the outcome, one readable line each.
    expected = [
        "search (action)",
        "goto http://127.0.0.1:",
        "fill #q = lamp",
        "select #sort = price",
        "check #in-stock",
        'click role=button[name="Search"]',
        "wait_for .result",
        "assert_text",
        "download",
        "results.csv",
        "products (extract)",
        "extract .result .name",
        "completed",
        record["id"],
    ]
    for needle in expected:
        assert any(needle in line for line in lines), f"{needle!r} not in stderr:\n{err}"
    # In order: the search block's steps come before the extraction.
    assert err.index("fill #q") < err.index("click role=button") < err.index("products")
    # Nothing of the progress on stdout.
    assert "search (action)" not in shop_run.out and "✓" not in shop_run.out


# --- glassbox run: a failed run ---------------------------------------------------------------


def test_failed_step_exits_1_and_names_block_step_and_target(failed_run: Result) -> None:
    assert failed_run.returncode == 1, failed_run.describe()
    record = failed_run.record()
    assert record["status"] == "failed"
    assert record["failure_reason"] == (
        'block "search [v2]", step 3 click #buy-now: no element matched within 700 ms'
    )
    assert record["extracted_information"] is None
    # The record of what happened before the failure is kept.
    kinds = {a["kind"] for a in record["artifacts"]}
    assert {"video", "trace", "har", "code", "screenshot"} <= kinds
    # The block after the failing one never ran.
    assert record["step_count"] == 3
    assert "failed" in failed_run.stderr and "#buy-now" in failed_run.stderr
    assert "never (action)" not in failed_run.stderr


def test_progress_shows_titles_and_labels_verbatim(failed_run: Result) -> None:
    # Titles and labels are the user's text: brackets in them are not terminal markup.
    err = failed_run.stderr
    assert "Buy now [beta]" in err, err
    assert "search [v2] (action)" in err, err
    assert 'block "search [v2]", step 3 click #buy-now' in err, err


# --- glassbox run: refused input --------------------------------------------------------------

REFUSED_FLOWS: dict[str, str | bytes] = {
    "unknown_verb.yaml": """\
title: Typo
url: http://127.0.0.1:8080/
blocks:
  - label: search
    type: action
    steps:
      - clickk: {selector: "#go"}
""",
    "file_url.yaml": """\
title: Local file
blocks:
  - label: peek
    type: action
    steps:
      - goto: file:///etc/passwd
""",
    "typed.yaml": """\
title: Typed parameter
url: http://127.0.0.1:8080/
parameters:
  count: {type: integer, default: 3}
blocks:
  - label: open
    type: action
    steps:
      - goto: "{{ url }}?n={{ count }}"
""",
    "invalid.yaml": "title: [unclosed\nblocks:\n  - label: x\n    type: {action\n",
    "latin1.yaml": "title: Café lamps\nblocks: []\n".encode("latin-1"),
}

# case -> (argv after `run`, what stderr must name)
REFUSED_CASES: dict[str, tuple[list[str], list[str]]] = {
    "unknown verb": (["{dir}/unknown_verb.yaml"], ["blocks[0].steps[0].clickk", "unknown"]),
    "unknown parameter": (
        [str(SHOP), "--param", "url={site}shop/", "--param", "nope=1"],
        ["parameters.nope", "unknown parameter"],
    ),
    "param without =": ([str(SHOP), "--param", "query"], ["--param", "NAME=VALUE", "'query'"]),
    "file: goto": (["{dir}/file_url.yaml"], ["blocks[0].steps[0].goto.url", "'file'"]),
    "missing file": (["{dir}/no-such-flow.yaml"], ["no-such-flow.yaml", "cannot read"]),
    "bad type": (
        ["{dir}/typed.yaml", "--param", "count=abc"],
        ["parameters.count", "integer", "'abc'"],
    ),
    "invalid YAML": (["{dir}/invalid.yaml"], ["invalid.yaml", "not valid YAML", "line"]),
    "not UTF-8": (["{dir}/latin1.yaml"], ["latin1.yaml"]),
    # Field names and paths are shown verbatim, brackets included (not read as markup).
    "bracketed parameter name": (
        [str(SHOP), "--param", "filter[name]=x"],
        ["parameters.filter[name]", "unknown parameter"],
    ),
}


@pytest.fixture(scope="module")
def refused(site: SiteServer, data_dir: Path, failed_run: Result) -> dict[str, Any]:
    """Every refused command, run at once on the module's data directory (which the failed
    run created, so no two commands race to create the database)."""
    flows = data_dir.parent / "refused"
    flows.mkdir(exist_ok=True)
    for name, content in REFUSED_FLOWS.items():
        if isinstance(content, bytes):
            (flows / name).write_bytes(content)
        else:
            (flows / name).write_text(content, encoding="utf-8")
    before = run_rows(data_dir)
    dirs_before = run_dirs(data_dir)
    commands = [
        ["run", *(a.format(dir=flows, site=site.url) for a in argv), "--json"]
        for argv, _ in REFUSED_CASES.values()
    ]
    results = dict(zip(REFUSED_CASES, glassbox_many(commands, data_dir), strict=True))
    return {
        "results": results,
        "runs_before": before,
        "runs_after": run_rows(data_dir),
        "artifact_dirs_before": dirs_before,
        "artifact_dirs_after": run_dirs(data_dir),
    }


@pytest.mark.parametrize("case", list(REFUSED_CASES))
def test_refused_input_exits_2_naming_the_field(case: str, refused: dict[str, Any]) -> None:
    result: Result = refused["results"][case]
    assert result.returncode == 2, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert result.stdout == b"", "nothing ran, so there is no run record to print"
    for needle in REFUSED_CASES[case][1]:
        assert needle in result.stderr, f"{needle!r} not named:\n{result.describe()}"


def test_refused_input_creates_no_run(
    refused: dict[str, Any], data_dir: Path, failed_run: Result
) -> None:
    assert refused["runs_before"] == refused["runs_after"]
    assert refused["artifact_dirs_before"] == refused["artifact_dirs_after"]
    # The only run in this data directory is the one that was started (and failed).
    assert run_rows(data_dir) == [(failed_run.record()["id"], "failed")]


# --- glassbox artifact ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact_reads(shop: Recorded, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    record, data_dir = shop.record, shop.data_dir
    out = tmp_path_factory.mktemp("artifact-out")
    wanted = {kind: only_artifact(record, kind) for kind in ("code", "download", "trace")}
    to_file, to_stdout, unknown = glassbox_many(
        [
            ["artifact", wanted["code"]["id"], "-o", str(out / "replay.py")],
            ["artifact", wanted["trace"]["id"], "-o", "-"],
            ["artifact", "art_doesnotexist", "-o", str(out / "nothing.bin")],
        ],
        data_dir,
    )
    # The default output name is the artifact's own name, in the working directory.
    default_name = subprocess.run(
        [*GLASSBOX, "artifact", wanted["download"]["id"]],
        cwd=out,
        env=cli_env(data_dir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=100,
        check=False,
    )
    return {
        "wanted": wanted,
        "out": out,
        "to_file": to_file,
        "to_stdout": to_stdout,
        "unknown": unknown,
        "default_name": default_name,
    }


def test_artifact_to_file_writes_the_recorded_bytes(artifact_reads: dict[str, Any]) -> None:
    result: Result = artifact_reads["to_file"]
    assert result.returncode == 0, result.describe()
    assert result.stdout == b"", "-o FILE keeps stdout clean"
    code = artifact_reads["wanted"]["code"]
    data = (artifact_reads["out"] / "replay.py").read_bytes()
    assert len(data) == code["size"]
    assert hashlib.sha256(data).hexdigest() == code["sha256"]
    assert b"from playwright.sync_api import sync_playwright" in data


def test_artifact_without_o_writes_its_name(artifact_reads: dict[str, Any]) -> None:
    proc = artifact_reads["default_name"]
    assert proc.returncode == 0, proc.stderr.decode()
    download = artifact_reads["wanted"]["download"]
    data = (artifact_reads["out"] / "results.csv").read_bytes()
    assert hashlib.sha256(data).hexdigest() == download["sha256"]
    assert b"Glow Reading Lamp" in data


def test_artifact_to_stdout(artifact_reads: dict[str, Any]) -> None:
    result: Result = artifact_reads["to_stdout"]
    trace = artifact_reads["wanted"]["trace"]
    assert result.returncode == 0, result.describe()
    assert len(result.stdout) == trace["size"]
    assert hashlib.sha256(result.stdout).hexdigest() == trace["sha256"]
    assert result.stdout.startswith(b"PK\x03\x04"), "binary bytes, unchanged"


def test_unknown_artifact_fails_clearly(artifact_reads: dict[str, Any]) -> None:
    result: Result = artifact_reads["unknown"]
    assert result.returncode != 0, result.describe()
    assert "Traceback" not in result.stderr
    assert "art_doesnotexist" in result.stderr and "not found" in result.stderr
    assert result.stdout == b""
    assert not (artifact_reads["out"] / "nothing.bin").exists()


# --- glassbox db upgrade, --help ---------------------------------------------------------------


def test_db_upgrade_creates_the_database_and_is_idempotent(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    first = glassbox("db", "upgrade", data_dir=data_dir)
    assert first.returncode == 0, first.describe()
    db = data_dir / "glassbox.db"
    assert db.is_file()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        (version,) = conn.execute("select version_num from alembic_version").fetchone()
    assert {"runs", "artifacts", "timeline_cards", "alembic_version"} <= tables
    assert version
    second = glassbox("db", "upgrade", data_dir=data_dir)
    assert second.returncode == 0, second.describe()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        assert conn.execute("select version_num from alembic_version").fetchall() == [(version,)]
    assert run_rows(data_dir) == []


def test_help(tmp_path: Path) -> None:
    main_help, run_help = glassbox_many([["--help"], ["run", "--help"]], tmp_path / "data")
    assert main_help.returncode == 0, main_help.describe()
    for command in ("run", "artifact", "db"):
        assert command in main_help.out
    assert run_help.returncode == 0, run_help.describe()
    for option in ("--param", "NAME=VALUE", "--json", "flow"):
        assert option in run_help.out
    # Help touches no storage.
    assert not (tmp_path / "data").exists()


# --- glassbox schedule ---------------------------------------------------------------------


def test_schedule_add_list_disable_delete(tmp_path: Path, site: SiteServer) -> None:
    data_dir = tmp_path / "data"

    async def saved_workflow() -> str:
        services = open_services(Settings.load(storage=StorageSettings(data_dir=data_dir)))
        try:
            definition = {
                "title": "Nightly visit",
                "url": site.url,
                "parameters": {"query": {"type": "string", "default": "lamp"}},
                "blocks": [{"label": "v", "type": "action", "steps": [{"goto": "{{ url }}"}]}],
            }
            return (await save_workflow(services, definition)).id
        finally:
            await services.close()

    workflow_id = asyncio.run(saved_workflow())
    refused = glassbox("schedule", "add", workflow_id, "--cron", "every night", data_dir=data_dir)
    assert refused.returncode == 2, refused.describe()
    assert "cron" in refused.stderr and "Traceback" not in refused.stderr
    zone = glassbox(
        "schedule",
        "add",
        workflow_id,
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Moon/Base",
        data_dir=data_dir,
    )
    assert zone.returncode == 2 and "timezone" in zone.stderr, zone.describe()

    added = glassbox(
        "schedule",
        "add",
        workflow_id,
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Asia/Tokyo",
        "--param",
        "query=desk",
        data_dir=data_dir,
    )
    assert added.returncode == 0, added.describe()
    schedule = json.loads(added.out)
    assert schedule["cron"] == "0 3 * * *" and schedule["timezone"] == "Asia/Tokyo"
    assert schedule["parameters"] == {"query": "desk"}
    assert schedule["next_fire_at"].endswith("T18:00:00Z")  # 03:00 in Tokyo
    assert "next run at" in added.stderr

    listed = glassbox("schedule", "list", "--workflow", workflow_id, data_dir=data_dir)
    assert [json.loads(line)["id"] for line in listed.out.splitlines()] == [schedule["id"]]
    disabled = glassbox("schedule", "disable", schedule["id"], data_dir=data_dir)
    assert disabled.returncode == 0 and json.loads(disabled.out)["enabled"] is False, (
        disabled.describe()
    )
    deleted = glassbox("schedule", "delete", schedule["id"], data_dir=data_dir)
    assert deleted.returncode == 0, deleted.describe()
    assert glassbox("schedule", "list", data_dir=data_dir).out == ""
    gone = glassbox("schedule", "delete", schedule["id"], data_dir=data_dir)
    assert gone.returncode == 1 and "not found" in gone.stderr
