"""Database outages with runs in flight (issue 10): what is left of the record afterwards.

A private PostgreSQL cluster (tests/faults/pg.py) behind a TCP proxy (tests/faults/proxy.py), a
real `glassbox worker` process with the default lease (30 s) and heartbeat (5 s), the demo site.
For each outage length: a baseline run without an outage gives the expected cards and
artifacts; then `--runs` runs are queued on a worker of concurrency `--concurrency` (so some are
in flight and some wait), the database is refused (connections reset, new ones refused) once
the runs in flight are a few steps in, restored after the outage, and every run is awaited.

    .venv/bin/python benchmarks/faults.py                 # 5 s and 60 s
    .venv/bin/python benchmarks/faults.py --outage 5 --outage 60 --runs 4 --concurrency 2

Prints one row per outage: runs in flight when it began, statuses afterwards, cards and
artifacts present / expected, and times to recover: from the database's return until the
worker's card writes got through again and until every run ended. Needs root or the postgres
user's binaries (initdb, pg_ctl in /usr/local/bin, as the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from examples.site_server import SiteServer
from runner.templating import resolve_inputs
from runner.workflow import parse_workflow
from services.backends import Services, open_services
from services.runs import RunOptions, queue_run
from services.settings import Settings
from storage.models import Artifact, Run, TimelineCard
from storage.settings import StorageSettings
from storage.status import RunSource
from tests.api.conftest import spawn_glassbox, stepwise_workflow
from tests.faults.pg import DATABASE, PrivateCluster
from tests.faults.proxy import TcpProxy

TERMINAL = {"completed", "failed", "terminated", "canceled", "timed_out", "interrupted"}


async def queue(services: Services, definition: dict[str, Any]) -> str:
    workflow = parse_workflow(definition)
    inputs = resolve_inputs(workflow, {}, allowed_schemes=services.runner.url_schemes)
    run = await queue_run(services, workflow, inputs, RunOptions(source=RunSource.api))
    return run.id


async def state(services: Services, run_id: str) -> dict[str, Any]:
    async with services.db.session() as session:
        run = await session.get(Run, run_id, populate_existing=True)
        assert run is not None
        cards = await session.scalar(
            select(func.count()).select_from(TimelineCard).where(TimelineCard.run_id == run_id)
        )
        artifacts = await session.scalar(
            select(func.count()).select_from(Artifact).where(Artifact.run_id == run_id)
        )
    return {
        "status": run.status,
        "cards": int(cards or 0),
        "artifacts": int(artifacts or 0),
        "missing": run.record_missing,
        "started": run.started_at,
    }


async def wait(services: Services, run_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        states = [await state(services, run_id) for run_id in run_ids]
        if all(s["status"] in TERMINAL for s in states) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.25)


async def one_outage(
    outage_s: float, args: argparse.Namespace, site: SiteServer, root: Path
) -> dict[str, Any]:
    flow = stepwise_workflow(site, steps=args.steps, step_ms=500, title="outage")
    flow["timeout_s"] = 300
    with PrivateCluster() as cluster, TcpProxy(cluster.port) as proxy:
        data_dir = root / f"outage-{outage_s:g}"
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{DATABASE}"
        direct = open_services(
            Settings.load(storage=StorageSettings(data_dir=data_dir, database_url=cluster.url))
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
        env.update({"GLASSBOX_DATA_DIR": str(data_dir), "GLASSBOX_DATABASE_URL": url})
        log = root / f"worker-{outage_s:g}.log"
        worker = spawn_glassbox(
            "worker", ["worker", "--concurrency", str(args.concurrency)], env=env, cwd=root, log=log
        )
        try:
            baseline = (await wait(direct, [await queue(direct, flow)], 120))[0]
            run_ids = [await queue(direct, flow) for _ in range(args.runs)]
            while True:  # the runs in flight a few steps in
                states = [await state(direct, r) for r in run_ids]
                if sum(s["status"] == "running" and s["cards"] >= 5 for s in states) >= min(
                    args.concurrency, args.runs
                ):
                    break
                await asyncio.sleep(0.1)
            in_flight = sum(s["status"] == "running" for s in states)
            proxy.refuse()
            before = sum([(await state(direct, r))["cards"] for r in run_ids])  # then stuck
            await asyncio.sleep(outage_s)
            proxy.restore()
            back = time.monotonic()
            resumed_at = None
            while True:
                states = [await state(direct, r) for r in run_ids]
                if resumed_at is None and sum(s["cards"] for s in states) > before:
                    resumed_at = time.monotonic() - back  # the worker's writes got through
                if all(s["status"] in TERMINAL for s in states):
                    break
                if time.monotonic() - back > 600:
                    break
                await asyncio.sleep(0.25)
            ended = time.monotonic() - back
            alive = worker.alive()
        finally:
            worker.kill()
            await direct.close()
    return {
        "outage_s": outage_s,
        "in_flight": in_flight,
        "runs": args.runs,
        "statuses": Counter(s["status"] for s in states),
        "cards": (sum(s["cards"] for s in states), baseline["cards"] * args.runs),
        "artifacts": (sum(s["artifacts"] for s in states), baseline["artifacts"] * args.runs),
        "complete": sum(not s["missing"] for s in states),
        "resumed_s": resumed_at,
        "ended_s": ended,
        "worker_alive": alive,
        "log": log.read_text(errors="replace"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, action="append", help="seconds (repeatable)")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--steps", type=int, default=16, help="slow steps per run (0.5 s each)")
    args = parser.parse_args()
    outages = args.outage or [5.0, 60.0]
    rows = []
    with SiteServer().start() as site, tempfile.TemporaryDirectory() as scratch:
        for outage_s in outages:
            rows.append(asyncio.run(one_outage(outage_s, args, site, Path(scratch))))
    print(
        "| fault | outage | runs in flight (queued) | statuses afterwards | cards present/expected"
        " | artifacts present/expected | record complete | time to recover |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(row["statuses"].items()))
        resumed = f"{row['resumed_s']:.1f} s" if row["resumed_s"] is not None else "never"
        print(
            f"| database (PostgreSQL refused) | {row['outage_s']:g} s"
            f" | {row['in_flight']} ({row['runs'] - row['in_flight']})"
            f" | {statuses} | {row['cards'][0]}/{row['cards'][1]}"
            f" | {row['artifacts'][0]}/{row['artifacts'][1]}"
            f" | {row['complete']}/{row['runs']}"
            f" | cards stored again {resumed}, all runs ended {row['ended_s']:.1f} s after it"
            " was back;"
            f" worker {'alive' if row['worker_alive'] else 'EXITED'} |"
        )
    for row in rows:
        lines = [line for line in row["log"].splitlines() if "database" in line]
        print(f"\nworker log, {row['outage_s']:g} s outage: " + " / ".join(lines[:4]))


if __name__ == "__main__":
    main()
