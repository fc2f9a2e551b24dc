"""A full disk under the data directory (spool and artifact files; the record in PostgreSQL):
the run ends honestly — failed at the step that needed the disk, the reason naming the step and
"disk full" —, its record lists what could not be kept, and what was stored is intact."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.records import run_record
from examples.site_server import SiteServer
from runner.salvage import salvage_spools
from services.backends import open_services
from services.settings import Settings
from storage.artifacts import list_artifacts
from storage.models import TimelineCard
from storage.runs import get_run
from storage.settings import StorageSettings
from tests.conftest import execute
from tests.faults.test_storage import search
from tests.storage.conftest import postgres_database

pytestmark = [pytest.mark.faults, pytest.mark.postgres]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs, mounted for the test."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(directory: Path) -> Path:
    """Writes a file until the filesystem is full."""
    ballast = directory / "ballast"
    chunk = b"\0" * (1 << 20)
    with ballast.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    with contextlib.suppress(OSError), ballast.open("ab", buffering=0) as out:
        while out.write(b"\0" * 4096):
            pass
    return ballast


async def test_a_full_disk_fails_the_step_that_needs_it_and_corrupts_nothing(
    site: SiteServer, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLASSBOX_STORE_RETRY_S", "1")
    with postgres_database() as database_url:
        monkeypatch.setenv("GLASSBOX_DATABASE_URL", database_url)
        monkeypatch.delenv("GLASSBOX_STORAGE_URL", raising=False)
        services = open_services(Settings.load(storage=StorageSettings(data_dir=small_disk)))
        full = threading.Event()
        seen: list[TimelineCard] = []

        def at_fourth_action(card: TimelineCard) -> None:
            if card.kind == "action":
                seen.append(card)
                if len(seen) == 4:
                    fill(small_disk)
                    full.set()

        try:
            outcome = await execute(services, search(site), listeners=[at_fourth_action])
            assert full.is_set()
            run = outcome.run
            assert outcome.status == "failed"
            assert run.failure_reason is not None
            assert run.failure_reason == (
                'block "search", step 8 download text="Export CSV": '
                "disk full: [Errno 28] No space left on device"
            )
            missing = run.record_missing or []
            assert run_record(run, outcome.artifacts)["record"]["complete"] is False
            assert missing and all("disk full" in line for line in missing), missing
            for kind in ("video recording.mp4", "trace trace.zip", "har network.har"):
                assert any(line.startswith(f"{kind}: ") for line in missing), (kind, missing)
            assert all(a.size > 0 for a in outcome.artifacts if a.kind != "console")

            # What was stored is whole: every row's file has its size and hash; no temp files.
            store = services.store
            for artifact in outcome.artifacts:
                data = b"".join(store.open(artifact.key))
                assert (len(data), hashlib.sha256(data).hexdigest()) == (
                    artifact.size,
                    artifact.sha256,
                ), artifact.key
            files = [p for p in (small_disk / "artifacts").rglob("*") if p.is_file()]
            assert sorted(p.relative_to(small_disk / "artifacts").as_posix() for p in files) == (
                sorted(a.key for a in outcome.artifacts)
            )
            # The screenshots of the first actions, taken before the disk filled, are there.
            # (How many fit depends on what else filled the disk first: the network log, the
            # video's fragments; under load fewer.)
            assert sum(a.kind == "screenshot" for a in outcome.artifacts) >= 1

            # Space freed: the sweep stores the video the spool still held, up to the full disk.
            (small_disk / "ballast").unlink()
            swept = await salvage_spools(services)
            async with services.db.session() as session:
                after = await get_run(session=session, run_id=run.id)
                artifacts = await list_artifacts(session=session, run_id=run.id)
            assert after.status == "failed"
            stored = {s for found in swept for s in found.stored}
            assert "video recording.mp4" in stored, swept
            assert any(a.kind == "video" for a in artifacts)
            assert not any(
                line.startswith("video recording.mp4: ") for line in after.record_missing or []
            )
            kinds = sorted((a.kind, a.size) for a in outcome.artifacts)
            print(f"full disk: stored {kinds}; missing {missing}; the sweep stored {stored}")
        finally:
            await services.close()
