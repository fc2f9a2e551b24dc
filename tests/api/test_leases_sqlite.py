"""Leases, the reaper and `interrupted` on the embedded default, SQLite, end to end: real
`glassbox serve` and `glassbox worker` processes sharing one data directory, each in its own
process group, a worker vanishing by SIGKILL or freezing by SIGSTOP. (tests/api/test_scale_out.py
does the same on PostgreSQL and S3; tests/storage/test_queue.py and tests/runner/test_worker.py
check the rules underneath on both databases.)

Leases of 3 s renewed every 0.5 s, a fallback poll of 0.5 s (on SQLite there are no notifications
between processes), and one retry of an interrupted run. The database is read directly where the
API does not show a thing (worker ids, the status history).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.site_server import SiteServer
from tests.api.conftest import (
    TERMINAL,
    Proc,
    Service,
    create_run,
    get_record,
    running_service,
    spawn_glassbox,
    stepwise_workflow,
    timeline,
    visit_workflow,
    wait_status,
    wait_until,
)

LEASE_S = 3.0
SETTINGS = {
    "GLASSBOX_LEASE_S": str(LEASE_S),
    "GLASSBOX_HEARTBEAT_S": "0.5",
    "GLASSBOX_POLL_S": "0.5",
    "GLASSBOX_RETRY_INTERRUPTED": "1",
}
MID_RUN_CARDS = 4  # the start narration, the block, the first actions: into the slow steps


def ts(value: str | None) -> float:
    assert value, "missing timestamp"
    return datetime.fromisoformat(value).timestamp()


class Database:
    """The service's SQLite file, read by the test as any other process would."""

    def __init__(self, service: Service) -> None:
        self.path = service.data_dir / "glassbox.db"

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            yield conn

    def run(self, run_id: str) -> dict[str, Any]:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT id, status, worker_id, attempt, source, parent_run_id, failure_reason,"
                " (SELECT count(*) FROM timeline_cards c WHERE c.run_id = runs.id) AS cards"
                " FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
        assert row is not None, run_id
        return dict(row)

    def history(self, run_id: str) -> list[str]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT to_status FROM run_status_history WHERE run_id = ? ORDER BY id", (run_id,)
            ).fetchall()
        return [row[0] for row in rows]

    def children(self, run_id: str) -> list[str]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT id FROM runs WHERE parent_run_id = ? ORDER BY created_at", (run_id,)
            ).fetchall()
        return [row[0] for row in rows]

    def writable(self) -> bool:
        """Whether a writer could start now (nobody holds the write lock)."""
        with self.connect() as conn:
            conn.isolation_level = None
            try:
                conn.execute("PRAGMA busy_timeout = 0")
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    return False
                raise
            conn.execute("ROLLBACK")
            return True


def mid_run(db: Database, run_id: str) -> dict[str, Any] | None:
    row = db.run(run_id)
    return row if row["status"] == "running" and row["cards"] >= MID_RUN_CARDS else None


def freeze(proc: Proc, db: Database) -> None:
    """SIGSTOP the process group at a moment it holds no SQLite write lock. A process stopped
    inside a write transaction blocks every writer of the file until it resumes: that is SQLite,
    which no lease helps with, and not what these tests are about."""
    for _ in range(200):
        os.killpg(proc.pid, signal.SIGSTOP)
        if db.writable():
            return
        os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError(f"{proc.name} always held the SQLite write lock")


def print_logs(*procs: Proc | Service) -> None:
    """Shown by pytest when the test fails."""
    for proc in procs:
        if isinstance(proc, Service):
            print(f"----- glassbox serve -----\n{proc.output()}")
        else:
            print(f"----- {proc.name} (pid {proc.pid}) -----\n{proc.tail()}")


# --- the embedded default: `glassbox serve` dies mid-run, and starts again ------------------------


@pytest.mark.timeout(300)
def test_a_run_of_a_killed_serve_is_interrupted_and_retried_when_it_starts_again(
    tmp_path: Path, site: SiteServer
) -> None:
    """`glassbox serve` (API and its in-process worker) is SIGKILLed mid-run. Started again on
    the same data directory, its reaper ends the run `interrupted` (the lease ran out without a
    heartbeat), queues the retry, and the worker runs the retry and the run that was waiting."""
    root = tmp_path / "serve"
    with running_service(root, extra_env=SETTINGS) as first:
        db = Database(first)
        try:
            with httpx.Client(base_url=first.api, timeout=30) as client:
                run_id = create_run(client, stepwise_workflow(site, title="killed"))["id"]
                waiting_id = create_run(client, visit_workflow(site, title="waiting"))["id"]
                wait_until(lambda: mid_run(db, run_id), timeout=90, what="the run to be mid-run")
                cards_before = len(timeline(client, run_id))
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait(timeout=30)
            at_kill = db.run(run_id)
        finally:
            print_logs(first)
    assert at_kill["status"] == "running" and f":{first.process.pid}:" in at_kill["worker_id"]
    assert db.run(waiting_id)["status"] == "queued"

    with (
        running_service(root, extra_env=SETTINGS) as second,
        httpx.Client(base_url=second.api, timeout=30) as client,
    ):
        since = second.log_size()
        try:
            original = wait_status(client, run_id, timeout=60)
            assert original["status"] == "interrupted", original
            reason = original["failure_reason"] or ""
            assert "vanished" in reason and f"lease of {LEASE_S:g} s expired" in reason, reason
            assert f":{first.process.pid}:" in reason, reason  # names the worker that vanished
            assert len(timeline(client, run_id)) >= cards_before  # what it recorded stays
            retry_id = wait_until(
                lambda: db.children(run_id), timeout=10, what="the retry to be queued"
            )[0]
            for other in (retry_id, waiting_id):
                done = wait_status(client, other, timeout=120)
                assert done["status"] == "completed", (other, done["failure_reason"])
            retry = get_record(client, retry_id)
            assert (retry["source"], retry["parent_run_id"]) == ("rerun", run_id)
            assert retry["title"] == original["title"]
            # One claim each, by the new process's worker; the history of each run once.
            for each in (run_id, retry_id, waiting_id):
                row = db.run(each)
                assert row["attempt"] == 1, row
                ended = "interrupted" if each == run_id else "completed"
                assert db.history(each) == ["created", "queued", "running", ended], each
            for each in (retry_id, waiting_id):
                assert f":{second.process.pid}:" in db.run(each)["worker_id"]
            assert db.children(retry_id) == []
        finally:
            print(f"----- glassbox serve, started again -----\n{second.output(since)}")


# --- a `glassbox worker` freezes past its lease, and comes back -----------------------------------


@pytest.fixture
def api_and_two_workers(tmp_path: Path) -> Iterator[tuple[Service, list[Proc]]]:
    """`glassbox serve --workers 0` and two `glassbox worker` processes, one data directory."""
    with running_service(tmp_path / "shared", workers=0, extra_env=SETTINGS) as api:
        workers = [
            spawn_glassbox(
                f"worker-{name}",
                ["worker", "--concurrency", "1"],
                env=api.env,
                cwd=api.data_dir.parent,
                log=api.data_dir.parent / f"worker-{name}.log",
            )
            for name in "ab"
        ]
        try:
            yield api, workers
        finally:
            for proc in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                proc.kill()
            print_logs(api, *workers)


@pytest.mark.timeout(300)
def test_a_frozen_worker_loses_its_run_to_the_reaper_and_stops_it_when_it_wakes(
    api_and_two_workers: tuple[Service, list[Proc]], site: SiteServer
) -> None:
    """A worker stalled past its lease (SIGSTOP: a long pause, a frozen VM) has its run ended
    `interrupted` by the other worker, which runs the retry. When the stalled worker wakes up
    while the retry runs, its next heartbeat finds the run gone and it stops executing it: the
    run is never executed twice at once, and its status stays `interrupted`."""
    api, workers = api_and_two_workers
    db = Database(api)
    with httpx.Client(base_url=api.api, timeout=30) as client:
        run_id = create_run(client, stepwise_workflow(site, steps=12, title="frozen"))["id"]
        row = wait_until(lambda: mid_run(db, run_id), timeout=90, what="the run to be mid-run")
        (victim,) = [w for w in workers if w.owns(row["worker_id"])]
        (survivor,) = [w for w in workers if w is not victim]

        freeze(victim, db)
        try:
            original = wait_status(client, run_id, timeout=60)
            assert original["status"] == "interrupted", original
            reason = original["failure_reason"] or ""
            assert "vanished" in reason and f":{victim.pid}:" in reason, reason
            retry_id = wait_until(
                lambda: db.children(run_id), timeout=10, what="the retry to be queued"
            )[0]
            wait_status(client, retry_id, {"running", *TERMINAL}, timeout=60)
        finally:
            os.killpg(victim.pid, signal.SIGCONT)
        resumed_at = time.time()

        wait_until(
            lambda: f"lost the lease of {run_id}" in victim.tail(),
            timeout=30,
            what="the worker that woke up to see that its run was taken away",
        )
        retry = wait_status(client, retry_id, timeout=120)
        assert retry["status"] == "completed", retry["failure_reason"]
        assert survivor.owns(db.run(retry_id)["worker_id"])
        assert victim.alive() and survivor.alive()

        # The woken worker may finish the step it was in when it froze, and no more.
        late = [
            c
            for c in timeline(client, run_id)
            if c["kind"] == "action" and ts(c["created_at"]) > resumed_at
        ]
        assert len(late) <= 1, (
            f"the worker went on executing {run_id} after it was interrupted: "
            f"{[(c.get('verb'), c.get('target')) for c in late]}"
        )
        assert get_record(client, run_id)["status"] == "interrupted"
    assert db.history(run_id) == ["created", "queued", "running", "interrupted"]
    assert db.history(retry_id) == ["created", "queued", "running", "completed"]
    assert db.run(run_id)["attempt"] == 1 and db.run(retry_id)["attempt"] == 1


@pytest.mark.timeout(300)
def test_runs_that_complete_are_never_taken_for_lost_leases(
    tmp_path: Path, site: SiteServer
) -> None:
    """A heartbeat that comes after a run stored its final status, before the worker forgets
    it, finds no lease of it: that is the run ending, not a lost lease. With a heartbeat every
    20 ms that moment comes in nearly every run; no run may be stopped or logged as lost."""
    env = {"GLASSBOX_HEARTBEAT_S": "0.02", "GLASSBOX_LEASE_S": "5"}
    with running_service(tmp_path / "serve", extra_env=env) as service:
        with httpx.Client(base_url=service.api, timeout=30) as client:
            runs = [create_run(client, visit_workflow(site))["id"] for _ in range(6)]
            records = [wait_status(client, run_id, timeout=120) for run_id in runs]
        output = service.log.read_text(errors="replace")
    assert [r["status"] for r in records] == ["completed"] * 6, records
    assert "lost the lease" not in output, output
