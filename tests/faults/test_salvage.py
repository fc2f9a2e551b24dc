"""A `glassbox worker` SIGKILLed mid-run, another started on the same data directory: the run
ends `interrupted` (after its lease), its recording is salvaged from the dead worker's spool —
video (playable), console, downloads —, the record says so, and its live frame row is gone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.records import run_record
from examples.site_server import SiteServer
from runner.templating import resolve_inputs
from runner.workflow import parse_workflow
from services.backends import Services
from services.runs import RunOptions, queue_run
from storage.artifacts import list_artifacts
from storage.frames import get_live_frame
from storage.runs import get_run
from storage.status import RunSource
from storage.timeline import list_cards
from tests.media import find_ffprobe

pytestmark = pytest.mark.faults

GLASSBOX = str(Path(sys.executable).parent / "glassbox")
LEASE_S = 2


def slow_search(site: SiteServer) -> dict[str, Any]:
    """Downloads a file, then waits for a text that never comes: killed while it waits."""
    return {
        "title": "Killed mid-run",
        "timeout_s": 120,
        "blocks": [
            {
                "label": "search",
                "type": "action",
                "steps": [
                    {"goto": site.url + "login.html"},  # logs "login page ready"
                    {"goto": site.url + "shop/search.html"},
                    {"fill": {"selector": "#q", "value": "lamp"}},
                    {"click": {"role": "button", "name": "Search"}},
                    {"download": {"click": {"text": "Export CSV"}}},
                    {"wait_for": {"text": "never shown", "timeout_ms": 90000}},
                ],
            }
        ],
    }


@contextlib.contextmanager
def worker_process(data_dir: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "GLASSBOX_DATA_DIR": str(data_dir),
        "GLASSBOX_LEASE_S": str(LEASE_S),
        "GLASSBOX_HEARTBEAT_S": "0.5",
        "GLASSBOX_SALVAGE_INTERVAL_S": "0.5",
    }
    for name in ("GLASSBOX_DATABASE_URL", "GLASSBOX_STORAGE_URL"):
        env.pop(name, None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [GLASSBOX, "-v", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            # The whole group: the browser and ffmpeg of a killed worker may linger.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def until(check: Any, timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s; worker log:\n{log.read_text()[-3000:]}")


async def kill_mid_run(
    services: Services, site: SiteServer, data_dir: Path, tmp_path: Path
) -> tuple[str, float]:
    """Queues a run, lets a `glassbox worker` take it and SIGKILLs the worker 2 s into the
    endless wait, after 5 actions and a download stored. The run id and the time of the kill."""
    workflow = parse_workflow(slow_search(site))
    inputs = resolve_inputs(workflow, {}, allowed_schemes=services.runner.url_schemes)
    run = await queue_run(services, workflow, inputs, RunOptions(source=RunSource.api))
    spool = services.spool_dir / run.id

    async def waiting() -> bool:
        async with services.db.session() as session:
            cards = await list_cards(session=session, run_id=run.id)
            frame = await get_live_frame(session=session, run_id=run.id)
        downloaded = [c for c in cards if c.data.get("verb") == "download"]
        return bool(downloaded) and frame is not None

    log = tmp_path / "killed-worker.log"
    with worker_process(data_dir, log) as worker:
        await until(waiting, 60, "the run's wait", log)
        await asyncio.sleep(2)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        killed = time.monotonic()
    left = sorted(p.relative_to(spool).as_posix() for p in spool.rglob("*") if p.is_file())
    assert left == ["console.jsonl", "network.jsonl", "video.spool.mp4"], left
    return run.id, killed


async def salvaged(services: Services, run_id: str) -> Any:
    """The run and its artifacts once it is interrupted and its spool is gone. The spool is
    looked at first: the salvage stores the record, then deletes the spool (a row read before
    the spool is seen gone may predate the salvage)."""
    if (services.spool_dir / run_id).exists():
        return None
    async with services.db.session() as session:
        found = await get_run(session=session, run_id=run_id)
        await session.refresh(found)
        artifacts = await list_artifacts(session=session, run_id=run_id)
    return (found, artifacts) if found.status == "interrupted" else None


async def check_salvaged(
    services: Services, row: Any, artifacts: list[Any], tmp_path: Path, log: str
) -> None:
    assert row.status == "interrupted"
    assert "vanished" in (row.failure_reason or "")
    kinds = sorted(a.kind for a in artifacts)
    assert {"video", "console", "download", "har"} <= set(kinds), kinds
    assert kinds.count("download") == 1  # stored while the run went; not stored twice
    assert kinds.count("screenshot") == 5
    # The HAR and the trace are written by the browser only at the run's end: the HAR is
    # rebuilt from the network log the run kept as it went (no bodies), the trace went with the
    # worker, and the record says both.
    assert run_record(row, artifacts)["record"] == {
        "complete": False,
        "missing": [
            "har network.har: rebuilt from the network log (no bodies)",
            "trace trace.zip: lost with its worker",
        ],
    }, log[-3000:]
    har_artifact = next(a for a in artifacts if a.kind == "har")
    har = json.loads(b"".join(services.store.open(har_artifact.key)))
    entries = har["log"]["entries"]
    assert entries and all(e["request"]["url"].startswith("http") for e in entries)
    assert any(e["response"]["status"] == 200 for e in entries)
    assert har["log"]["version"] == "1.2"

    video = next(a for a in artifacts if a.kind == "video")
    copy = tmp_path / "salvaged.mp4"
    copy.write_bytes(b"".join(services.store.open(video.key)))
    ffprobe = find_ffprobe()
    assert ffprobe
    probed = json.loads(
        subprocess.run(
            [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(copy)],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
    )
    assert probed["streams"][0]["codec_name"] == "h264"
    assert float(probed["format"]["duration"]) >= 2.0  # the 2 s waited before the kill
    console = next(a for a in artifacts if a.kind == "console")
    lines = [json.loads(line) for line in b"".join(services.store.open(console.key)).splitlines()]
    assert "login page ready" in [line["text"] for line in lines]

    async with services.db.session() as session:
        cards = await list_cards(session=session, run_id=row.id)
        assert await get_live_frame(session=session, run_id=row.id) is None
    told = [c.data.get("text", "") for c in cards if c.kind == "thought"]
    assert any(t.startswith("Salvaged after the run ended: video recording.mp4") for t in told), (
        told
    )


async def test_a_killed_worker_s_recording_is_salvaged_by_the_next(
    services: Services, site: SiteServer, data_dir: Path, tmp_path: Path
) -> None:
    run_id, killed = await kill_mid_run(services, site, data_dir, tmp_path)
    log = tmp_path / "next-worker.log"
    with worker_process(data_dir, log):
        row, artifacts = await until(lambda: salvaged(services, run_id), 60, "the salvage", log)
        recovered = time.monotonic() - killed
    await check_salvaged(services, row, artifacts, tmp_path, log.read_text())
    print(f"killed worker: interrupted and salvaged {recovered:.1f} s after the kill")


async def test_glassbox_worker_salvage_does_it_once_and_exits(
    services: Services, site: SiteServer, data_dir: Path, tmp_path: Path
) -> None:
    run_id, _ = await kill_mid_run(services, site, data_dir, tmp_path)
    await asyncio.sleep(LEASE_S + 0.5)  # the lease runs out: the run may be ended
    env = {**os.environ, "GLASSBOX_DATA_DIR": str(data_dir), "GLASSBOX_LEASE_S": str(LEASE_S)}
    done = subprocess.run(
        [GLASSBOX, "worker", "--salvage"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"{run_id}: stored video recording.mp4, console console.jsonl" in done.stderr
    found = await salvaged(services, run_id)
    assert found, done.stderr
    row, artifacts = found
    await check_salvaged(services, row, artifacts, tmp_path, done.stderr)
