"""Secrets stay masked on the paths a run takes when things go wrong, through `glassbox run`:

- `failing`: tests/fixtures/report_token.yaml, a run that fails with a secret token in its URLs.
  The report page logs a console error with its own address and makes a request that fails
  (404) with its query string; then the run opens a URL on a port nobody listens on. So the
  token is in the failure reason, the failed action card, the console log, the HAR entries of
  the failed requests, the trace and the browser's error page (the final HTML).
- `unmaskable`: tests/fixtures/login_token.yaml (the token in a URL and a form post, so in the
  trace and the HAR) with GLASSBOX_MASK_TIMEOUT_S so small that no masking can finish in time:
  the trace and the HAR cannot be masked, so they are not stored at all, and the run's record
  says they are missing (fail closed), instead of being stored in clear.

Each run has its own data directory, so "everything stored" is exactly that run's: the SQLite
database (record, cards, status history), every artifact, the spool. It is searched with the
scanner of test_secrets_e2e (inside zips, gzip, JSON documents and base64 fields).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest

from examples.site_server import LOGIN_PASSWORD, SiteServer
from tests.runner.test_secrets_e2e import Scan, needles_for
from tests.test_cli import LOGIN_TOKEN, ROOT, Recorded, glassbox

MASK = "********"
TOKEN = "tok3n-S3cr3t/42"  # the failing run's secret (a `/`: encoded differently in places)
REPORT_TOKEN = ROOT / "tests" / "fixtures" / "report_token.yaml"
TINY_MASK_TIMEOUT = "0.000001"  # seconds: no trace or HAR can be masked that fast


def closed_port_url() -> str:
    """A loopback URL nobody listens on (the port was free a moment ago): connection refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def cards_of(data_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's timeline cards as stored in its SQLite database (data flattened in)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{data_dir / 'glassbox.db'}?mode=ro", uri=True)
    ) as db:
        rows = db.execute(
            "select seq, kind, status, data from timeline_cards where run_id = ? order by seq",
            (run_id,),
        ).fetchall()
    return [{"seq": s, "kind": k, "status": st, **json.loads(d)} for s, k, st, d in rows]


def scan_everything(run: Recorded, secret: str) -> Scan:
    scan = Scan(needles_for(secret))
    scan.tree(run.data_dir)  # the database, every artifact, whatever is left of the spool
    scan.bytes("stdout", run.result.stdout)
    scan.bytes("stderr", run.result.stderr.encode())
    return scan


# --- the runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dead_url() -> str:
    return closed_port_url()


@pytest.fixture(scope="module")
def failing(site: SiteServer, dead_url: str, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    data_dir = tmp_path_factory.mktemp("run-report-token") / "data"
    result = glassbox(
        "run",
        str(REPORT_TOKEN),
        *("--param", f"url={site.url}"),
        *("--param", f"token={TOKEN}"),
        *("--param", f"dead={dead_url}"),
        "--json",
        data_dir=data_dir,
    )
    return Recorded("report_token", result, data_dir)


@pytest.fixture(scope="module")
def unmaskable(site: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    data_dir = tmp_path_factory.mktemp("run-unmaskable") / "data"
    result = glassbox(
        "run",
        str(LOGIN_TOKEN),
        *("--param", f"url={site.url}"),
        *("--param", f"password={LOGIN_PASSWORD}"),
        "--json",
        data_dir=data_dir,
        env={"GLASSBOX_MASK_TIMEOUT_S": TINY_MASK_TIMEOUT},
    )
    return Recorded("login_token", result, data_dir)


# --- a failing run ----------------------------------------------------------------------------


def test_a_failing_run_names_the_url_that_failed_with_the_secret_masked(
    failing: Recorded, dead_url: str
) -> None:
    assert failing.result.returncode == 1, failing.result.describe()
    record = failing.record
    assert record["status"] == "failed"
    reason = record["failure_reason"]
    target = f"{dead_url}report?token={MASK}"
    assert reason.startswith(f'block "report", step 3 goto {target}: '), reason
    assert reason.endswith(f"net::ERR_CONNECTION_REFUSED at {target}"), reason
    assert record["parameters"] == {"token": MASK, "dead": dead_url}
    assert record["record"] == {"complete": True, "missing": []}
    assert f"failed: {reason}" in failing.result.stderr


def test_nothing_a_failing_run_stored_or_printed_holds_the_secret(failing: Recorded) -> None:
    assert failing.result.returncode == 1, failing.result.describe()
    scan = scan_everything(failing, TOKEN)
    assert scan.leaks == []
    stored = {p.name for p in failing.data_dir.rglob("*") if p.is_file()}
    assert "glassbox.db" in stored
    kinds = {a["kind"] for a in failing.record["artifacts"]}
    assert {"video", "trace", "har", "console", "code", "html", "screenshot"} <= kinds
    assert scan.zip_members > 5 and scan.json_documents > 10, scan


def test_the_secret_is_masked_wherever_the_failure_left_it(
    failing: Recorded, site: SiteServer, dead_url: str
) -> None:
    record = failing.record
    reason = record["failure_reason"]
    failed_url = f"{dead_url}report?token={MASK}"
    page_url = f"{site.url}report-error.html?token={MASK}"
    missing_url = f"{site.url}missing-report.json?token={MASK}"

    # The cards: the failed goto, the block's end and the final narration.
    cards = cards_of(failing.data_dir, record["id"])
    failed = [c for c in cards if c["kind"] == "action" and c["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["verb"] == "goto"
    assert failed[0]["target"] == failed_url
    assert failed[0]["error"].endswith(f"at {failed_url}"), failed[0]
    ended = [c for c in cards if c["kind"] == "block" and c["event"] == "finished"]
    assert [(c["status"], c["error"]) for c in ended] == [("failed", reason)]
    assert cards[-1]["kind"] == "thought" and cards[-1]["text"] == f"Run failed: {reason}"

    # The console: the page's own error with its address, and the browser's for the 404.
    lines = [json.loads(x) for x in failing.artifact_bytes("console").splitlines()]
    errors = [(e["text"], e["url"]) for e in lines if e["type"] == "error"]
    assert (f"report not loaded (HTTP 404) for {page_url}", page_url) in errors, errors
    assert any(url == missing_url for _, url in errors), errors

    # The HAR: the request that got a 404, and the one that never connected.
    har = json.loads(failing.artifact_bytes("har"))
    entries = {e["request"]["url"]: e["response"] for e in har["log"]["entries"]}
    assert entries[missing_url]["status"] == 404, entries.keys()
    assert entries[failed_url]["status"] <= 0, entries[failed_url]  # no answer at all
    assert "ERR_CONNECTION_REFUSED" in json.dumps(entries[failed_url])

    # The trace: both failed requests and the console error, masked.
    with zipfile.ZipFile(io.BytesIO(failing.artifact_bytes("trace"))) as trace:
        network = trace.read("trace.network").decode()
        events = trace.read("trace.trace").decode()
    assert failed_url in network and missing_url in network
    assert f"report not loaded (HTTP 404) for {page_url}" in events

    # The final HTML is the browser's error page for the URL that failed.
    assert f"token={MASK}" in failing.artifact_bytes("html").decode()


# --- masking that fails: the artifact is not stored, and the record says so ---------------------


def test_an_artifact_that_could_not_be_masked_is_not_stored_and_the_record_says_so(
    unmaskable: Recorded,
) -> None:
    assert unmaskable.result.returncode == 0, unmaskable.result.describe()
    record = unmaskable.record
    # The workflow succeeded; its record is incomplete: neither is hidden by the other.
    assert record["status"] == "completed", record["failure_reason"]
    missing = [
        f"{kind}: not stored: masking failed: not done within {float(TINY_MASK_TIMEOUT):g} s"
        for kind in ("har", "trace")
    ]
    assert record["record"]["complete"] is False
    assert sorted(record["record"]["missing"]) == missing
    kinds = {a["kind"] for a in record["artifacts"]}
    assert kinds == {"video", "console", "code", "html", "screenshot"}, kinds
    # The timeline says it too, and so does the progress on stderr.
    told = [
        c["text"] for c in cards_of(unmaskable.data_dir, record["id"]) if c["kind"] == "thought"
    ]
    assert sorted(t for t in told if "not stored" in t) == missing
    assert all(line in unmaskable.result.stderr for line in missing)


def test_nothing_stored_holds_the_secret_when_masking_failed(unmaskable: Recorded) -> None:
    assert unmaskable.result.returncode == 0, unmaskable.result.describe()
    scan = scan_everything(unmaskable, LOGIN_PASSWORD)
    assert scan.leaks == []
    # The clear trace and HAR spooled for masking are gone with the spool.
    spool = unmaskable.data_dir / "spool"
    # (An empty run directory may outlive the masking thread that timed out; no file may.)
    left = [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []
    assert left == [], left
