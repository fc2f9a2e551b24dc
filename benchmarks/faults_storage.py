"""Storage faults, measured as an operator would see them (issue 10's table): S3 (SeaweedFS)
down for 60 s under runs in flight, a full disk under the data directory, a worker SIGKILLed
mid-run. Prints one line per fault: runs in flight, statuses afterwards, artifacts present /
expected (present: a row whose object reads back with its size and hash), record.complete, time
to recover.

    python benchmarks/faults_storage.py [--outage 60] [--runs 3] [--only s3,disk,worker]

Needs root for the tmpfs (the disk case is skipped otherwise) and PostgreSQL on 127.0.0.1 for
it; the rest runs on SQLite in a scratch directory."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.site_server import SiteServer
from runner.salvage import salvage_spools
from services.backends import Services, open_services
from services.settings import Settings
from storage.artifacts import list_artifacts
from storage.models import TimelineCard
from storage.runs import get_run
from storage.settings import StorageSettings
from tests.conftest import Outcome, execute
from tests.faults.s3fault import RestartableS3
from tests.faults.test_disk import fill
from tests.faults.test_salvage import worker_process
from tests.faults.test_storage import search


def intact(services: Services, artifacts: list[Any]) -> int:
    good = 0
    for artifact in artifacts:
        try:
            data = b"".join(services.store.open(artifact.key))
        except Exception:
            continue
        good += len(data) == artifact.size and hashlib.sha256(data).hexdigest() == artifact.sha256
    return good


def line(
    fault: str, outage: str, runs: list[Any], arts: list[list[Any]], expected: int, **extra: Any
) -> None:
    statuses = ", ".join(sorted(r.status for r in runs))
    complete = sum(not r.record_missing for r in runs)
    present = sum(len(a) for a in arts)
    text = (
        f"{fault:<22} | {outage:<8} | {len(runs)} in flight | {statuses} | artifacts "
        f"{present}/{expected * len(runs)} | record.complete {complete}/{len(runs)}"
    )
    for name, value in extra.items():
        text += f" | {name.replace('_', ' ')} {value}"
    print(text, flush=True)


async def s3_outage(site: SiteServer, scratch: Path, outage_s: float, count: int) -> None:
    s3 = RestartableS3().start_in(scratch / "seaweedfs")
    os.environ["GLASSBOX_STORE_RETRY_S"] = str(outage_s + 60)
    storage = StorageSettings(
        data_dir=scratch / "s3-data",
        storage_url="s3://glassbox-bench",
        s3_endpoint=s3.endpoint,
        s3_access_key=SecretStr(s3.access_key),
        s3_secret_key=SecretStr(s3.secret_key),
        s3_secure=False,
    )
    services = open_services(Settings.load(storage=storage))
    try:
        baseline = await execute(services, search(site))
        expected = len(baseline.artifacts)
        back: list[float] = []

        def outage() -> None:
            s3.kill()
            time.sleep(outage_s)
            s3.restart()
            back.append(time.monotonic())

        started: list[bool] = []

        def at_second_action(card: TimelineCard) -> None:
            if card.kind == "action" and card.data.get("step") == 2 and not started:
                started.append(True)
                threading.Thread(target=outage, daemon=True).start()

        outcomes: list[Outcome] = await asyncio.gather(
            *(
                execute(services, search(site), listeners=[at_second_action] if i == 0 else [])
                for i in range(count)
            )
        )
        done = time.monotonic()
        runs = [o.run for o in outcomes]
        arts = [list(o.artifacts) for o in outcomes]
        good = [a[: intact(services, a)] for a in arts]
        line(
            "S3 down",
            f"{outage_s:g} s",
            runs,
            good,
            expected,
            last_run_ended_after_s3_back=f"{done - back[0]:.1f} s" if back else "n/a",
            failure=";".join(r.failure_reason or "" for r in runs if r.failure_reason) or "none",
        )
    finally:
        await services.close()
        s3.stop()
        os.environ.pop("GLASSBOX_STORE_RETRY_S", None)


async def full_disk(site: SiteServer, scratch: Path) -> None:
    from tests.storage.conftest import postgres_database

    mount = scratch / "small-disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)])
    if mounted.returncode:
        print("full disk              | skipped: cannot mount a tmpfs")
        return
    os.environ["GLASSBOX_STORE_RETRY_S"] = "5"
    try:
        with postgres_database() as url:
            os.environ["GLASSBOX_DATABASE_URL"] = url
            services = open_services(Settings.load(storage=StorageSettings(data_dir=mount)))
            try:
                baseline = await execute(services, search(site))
                expected = len(baseline.artifacts)
                seen: list[TimelineCard] = []

                def at_fourth(card: TimelineCard) -> None:
                    if card.kind == "action":
                        seen.append(card)
                        if len(seen) == 4:
                            fill(mount)

                outcome = await execute(services, search(site), listeners=[at_fourth])
                stored = intact(services, outcome.artifacts)
                line(
                    "full disk",
                    "-",
                    [outcome.run],
                    [outcome.artifacts[:stored]],
                    expected,
                    reason=outcome.run.failure_reason,
                    missing=len(outcome.run.record_missing or []),
                )
                (mount / "ballast").unlink()
                t0 = time.monotonic()
                await salvage_spools(services)
                async with services.db.session() as session:
                    run = await get_run(session=session, run_id=outcome.run.id)
                    artifacts = await list_artifacts(session=session, run_id=run.id)
                line(
                    "  after space freed",
                    "-",
                    [run],
                    [artifacts[: intact(services, artifacts)]],
                    expected,
                    sweep=f"{time.monotonic() - t0:.1f} s",
                    missing=len(run.record_missing or []),
                )
            finally:
                await services.close()
    finally:
        os.environ.pop("GLASSBOX_DATABASE_URL", None)
        os.environ.pop("GLASSBOX_STORE_RETRY_S", None)
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def killed_worker(site: SiteServer, scratch: Path) -> None:
    from tests.faults import test_salvage

    data_dir = scratch / "worker-data"
    os.environ["GLASSBOX_DATA_DIR"] = str(data_dir)
    services = open_services(Settings.load(storage=StorageSettings(data_dir=data_dir)))
    try:
        run_id, killed = await test_salvage.kill_mid_run(services, site, data_dir, scratch)
        log = scratch / "next-worker.log"
        with worker_process(data_dir, log):
            while not (found := await test_salvage.salvaged(services, run_id)):
                await asyncio.sleep(0.2)
            recovered = time.monotonic() - killed
        run, artifacts = found
        line(
            "worker SIGKILLed",
            "-",
            [run],
            [artifacts[: intact(services, artifacts)]],
            len(artifacts) + len(run.record_missing or []),  # what it recorded, and what it lost
            lease=f"{test_salvage.LEASE_S} s",
            interrupted_and_salvaged_after=f"{recovered:.1f} s",
            missing="; ".join(run.record_missing or []),
        )
    finally:
        await services.close()
        os.environ.pop("GLASSBOX_DATA_DIR", None)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outage", type=float, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="s3,disk,worker")
    args = parser.parse_args()
    for name in ("GLASSBOX_DATABASE_URL", "GLASSBOX_STORAGE_URL"):
        os.environ.pop(name, None)
    site = SiteServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="glassbox-faults-") as tmp:
            scratch = Path(tmp)
            only = set(args.only.split(","))
            print("fault | outage | runs | statuses | artifacts present/expected | …")
            if "s3" in only:
                await s3_outage(site, scratch, args.outage, args.runs)
            if "disk" in only:
                await full_disk(site, scratch)
            if "worker" in only:
                await killed_worker(site, scratch)
    finally:
        site.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        asyncio.run(main())
