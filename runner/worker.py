"""The worker: claims queued runs, holds their leases, cancels on request, recovers runs whose
worker vanished. One browser per worker process; a fresh context per run."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runner.context import RunnerEnv
from runner.executor import RunExecution
from runner.resources import RunnerResources, inputs_of, runner_env
from runner.salvage import sweep_forever
from storage.errors import GlassboxError, InvalidTransition
from storage.frames import delete_live_frame, put_live_frame
from storage.ids import new_id
from storage.models import Run, TimelineCard, utcnow
from storage.notify import CANCEL, QUEUE, Notifier, Subscription, publish_run_event, publish_status
from storage.queue import cancel_requested, claim_next, expired_runs, heartbeat
from storage.retry import backoff, is_transient
from storage.runs import copy_run, drop_expired_states, get_run, transition
from storage.status import RunSource, RunStatus

log = logging.getLogger(__name__)

REPLAYED_AGAIN = ("from_run_id", "from_block", "continue_from")

LIVE_FRAME_INTERVAL_S = 0.25
# A worker shutting down while the database is down waits this long for its runs' writes.
SHUTDOWN_WRITES_S = 10.0


class BrowserGone(RuntimeError):
    """The worker's Chromium exited (crashed or killed): the worker stops, to be replaced."""


@dataclass
class WorkerOptions:
    concurrency: int = 1
    lease_s: float = 30.0
    heartbeat_s: float = 5.0
    poll_s: float = 0.5
    retry_interrupted: int = 0


async def run_to_end(execution: RunExecution, notifier: Notifier) -> RunStatus:
    """Executes a running run to its terminal status, then announces it: the executor has
    committed the final transition by the time it returns. Workers and in-process runs (the
    CLI's) both end runs through here."""
    status = await execution.execute()
    await publish_status(notifier, execution.ctx.run.id, status)
    return status


class LiveFrames:
    """The newest screencast frame of each running run, written at most 4 times a second to the
    database (so API processes anywhere can show it) with a notification."""

    def __init__(self, resources: RunnerResources) -> None:
        self.resources = resources
        self._latest: dict[str, bytes] = {}
        self._seq: dict[str, int] = {}
        self._wake = asyncio.Event()

    def offer(self, run_id: str, data: bytes) -> None:
        self._latest[run_id] = data
        self._wake.set()

    async def forget(self, run_id: str, *, within_s: float) -> None:
        """The run ended: its frame row goes (retried for `within_s` while the database is
        down; a row left behind shows a still picture of a finished run, nothing worse)."""
        self._latest.pop(run_id, None)
        self._seq.pop(run_id, None)

        async def delete() -> None:
            async with self.resources.db.session() as session:
                await delete_live_frame(session=session, run_id=run_id)
                await session.commit()

        try:
            await self.resources.db.retrying(
                delete,
                doing=f"deleting the live frame of {run_id}",
                deadline=time.monotonic() + within_s,
            )
        except Exception:
            log.warning("run %s: its live frame was not deleted", run_id, exc_info=True)

    async def run_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._latest = self._latest, {}
            for run_id, data in pending.items():
                try:
                    await self._write(run_id, data)
                except Exception as error:
                    if is_transient(error):  # a frame is news, not record: skipped, not retried
                        self.resources.db.outage.failed(error, "writing live frames")
                    else:
                        log.debug("live frame of %s not written", run_id, exc_info=True)
            await asyncio.sleep(LIVE_FRAME_INTERVAL_S)

    async def _write(self, run_id: str, data: bytes) -> None:
        seq = self._seq.get(run_id, 0) + 1
        self._seq[run_id] = seq
        async with self.resources.db.session() as session:
            await put_live_frame(session=session, run_id=run_id, seq=seq, data=data)
            await session.commit()
        await publish_run_event(self.resources.notifier, run_id, "frame", seq=seq)


class Worker:
    def __init__(
        self,
        resources: RunnerResources,
        options: WorkerOptions,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.resources = resources
        self.notifier = resources.notifier
        self.options = options
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id('w')[-6:]}"
        self.tasks: dict[str, asyncio.Task[RunStatus]] = {}
        self.live = LiveFrames(resources)
        self.env: RunnerEnv | None = None
        self.ready = asyncio.Event()
        self.executions: dict[str, RunExecution] = {}
        self._canceling: set[str] = set()
        self._slot_freed = asyncio.Event()
        self._claim_failures = 0

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claims and executes runs until `stop` is set. Database outages are waited out; it
        raises only if its browser exits (the host starts another worker)."""
        queued = self.notifier.subscribe(QUEUE)
        cancels = self.notifier.subscribe(CANCEL)
        background = [
            asyncio.create_task(self._heartbeats(stop), name="heartbeats"),
            asyncio.create_task(self._cancel_watch(cancels), name="cancels"),
            asyncio.create_task(self._reaper(stop), name="reaper"),
            asyncio.create_task(self.live.run_forever(), name="live-frames"),
            # Spools left behind (dead workers, outages) stored, at start and periodically.
            asyncio.create_task(
                sweep_forever(self.resources, lambda: set(self.tasks)), name="salvage"
            ),
        ]
        try:
            async with runner_env(
                self.resources, [self._on_card], frame_listener=self.live.offer
            ) as env:
                self.env = env
                browser_gone = asyncio.Event()
                env.browser.on("disconnected", lambda _browser: browser_gone.set())
                self.ready.set()
                log.info(
                    "worker %s ready (concurrency %d)", self.worker_id, self.options.concurrency
                )
                await self._claim_until(stop, browser_gone, queued)
                if browser_gone.is_set() and not stop.is_set():
                    await self._let_runs_end()
                    raise BrowserGone(f"worker {self.worker_id}: Chromium exited")
                await self._stop_runs()
        finally:
            self.ready.clear()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            queued.close()
            cancels.close()

    async def _claim_until(
        self, stop: asyncio.Event, browser_gone: asyncio.Event, queued: Subscription
    ) -> None:
        while not stop.is_set() and not browser_gone.is_set():
            self._slot_freed.clear()
            pause = await self._claim_while_free()
            waits: set[asyncio.Future[Any]]
            if pause is not None:  # the database is down: wait, news or not
                waits = {asyncio.ensure_future(asyncio.sleep(pause))}
            else:
                waits = {
                    asyncio.ensure_future(queued.get(self.options.poll_s)),
                    asyncio.ensure_future(self._slot_freed.wait()),
                }
            waits.add(asyncio.ensure_future(stop.wait()))
            waits.add(asyncio.ensure_future(browser_gone.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()

    async def _let_runs_end(self) -> None:
        """The browser is gone: runs in flight fail on their own and keep their record."""
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=self.options.lease_s)
        await self._stop_runs()

    async def _claim_while_free(self) -> float | None:
        """Claims queued runs while a slot is free. Returns how long to wait before the next
        attempt when claiming failed (the database is down), else None."""
        # A run waiting for its child lends its slot, so the child can run here too.
        while (
            len(self.tasks) - len(self.env.waiting if self.env else ()) < self.options.concurrency
        ):
            try:
                run = await self._claim()
            except Exception as error:
                self._db_failed(error, "claiming runs")
                self._claim_failures += 1
                return backoff(self._claim_failures - 1)
            self._claim_failures = 0
            if run is None:
                return None
            await publish_status(self.notifier, run.id, run.status)
            task = asyncio.create_task(self._execute(run), name=f"run {run.id}")
            self.tasks[run.id] = task
            task.add_done_callback(self._forget_task)
        return None

    async def _claim(self) -> Run | None:
        async with self.resources.db.session() as session:
            run = await claim_next(
                session=session, worker_id=self.worker_id, lease_s=self.options.lease_s
            )
            await session.commit()
        self.resources.db.outage.succeeded()
        return run

    def _db_failed(self, error: Exception, doing: str) -> None:
        """An error of a loop that goes on: an outage is logged once (storage.retry.Outage);
        anything else in full, as a bug."""
        if is_transient(error):
            self.resources.db.outage.failed(error, doing)
        else:
            log.error("worker %s: %s failed", self.worker_id, doing, exc_info=error)

    def _forget_task(self, task: asyncio.Task[RunStatus]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s ended with an error", task.get_name(), exc_info=task.exception())
        for run_id, known in list(self.tasks.items()):
            if known is task:
                del self.tasks[run_id]
                self.executions.pop(run_id, None)
                self._canceling.discard(run_id)
        self._slot_freed.set()  # a queued run may be waiting for this slot

    async def _execute(self, run: Run) -> RunStatus:
        assert self.env is not None
        try:
            workflow, inputs = inputs_of(self.resources, run)
        except GlassboxError as exc:
            await self._refuse(run, str(exc))
            return RunStatus.failed
        execution = RunExecution(self.env, run, workflow, inputs)
        self.executions[run.id] = execution
        status = await run_to_end(execution, self.notifier)
        await self.live.forget(run.id, within_s=self.options.lease_s)
        return status

    async def _refuse(self, run: Run, reason: str) -> None:
        """A claimed run that cannot start (its stored inputs no longer resolve) fails."""

        async def fail() -> None:
            async with self.resources.db.session() as session:
                run_now = await get_run(session=session, run_id=run.id)
                if run_now.status == RunStatus.running.value:
                    await transition(
                        session=session, run_id=run.id, to=RunStatus.failed, reason=reason
                    )
                    await session.commit()

        await self.resources.db.retrying(
            fail,
            doing=f"failing {run.id}",
            deadline=time.monotonic() + max(self.options.lease_s, 60),
        )
        await publish_status(self.notifier, run.id, RunStatus.failed)

    async def _on_card(self, card: TimelineCard) -> None:
        await publish_run_event(self.notifier, card.run_id, "card", seq=card.seq)

    async def _stop_runs(self) -> None:
        """Shutting down: running runs are canceled, and keep what they recorded — what the
        database takes within SHUTDOWN_WRITES_S (it may be down: the rest stays in the spool
        for the salvage, and the run's lease runs out for the reaper)."""
        if self.env is not None:
            self.env.stop_writes_by = time.monotonic() + SHUTDOWN_WRITES_S
        for task in list(self.tasks.values()):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    # --- leases, cancels, vanished workers --------------------------------------------------

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.options.heartbeat_s)
            if not self.tasks:
                continue
            sent = list(self.tasks)
            try:
                async with self.resources.db.session() as session:
                    flags = await heartbeat(
                        session=session,
                        worker_id=self.worker_id,
                        run_ids=sent,
                        lease_s=self.options.lease_s,
                    )
                    await session.commit()
            except Exception as error:
                # Not a lost lease: the next heartbeat that gets through renews it, and a run
                # is lost only if that one finds it ended elsewhere.
                self._db_failed(error, "sending heartbeats")
                continue
            self.resources.db.outage.succeeded()
            self._cancel_flagged(flags)
            for run_id in sent:
                if run_id not in flags and not self._ended(run_id):
                    self._lost(run_id)

    async def _cancel_watch(self, cancels: Subscription) -> None:
        """Cancels arrive as notifications; polling catches them where there are none."""
        while True:
            run_id = await cancels.get(self.options.poll_s)
            if run_id is not None:
                self._cancel(run_id)
                continue
            if not self.tasks:
                continue
            try:
                async with self.resources.db.session() as session:
                    flagged = await cancel_requested(session=session, run_ids=list(self.tasks))
            except Exception as error:
                self._db_failed(error, "polling for cancels")
                await asyncio.sleep(backoff(0))
                continue
            for run_id in flagged:
                self._cancel(run_id)

    def _cancel_flagged(self, flags: dict[str, bool]) -> None:
        for run_id, cancel in flags.items():
            if cancel:
                self._cancel(run_id)

    def _cancel(self, run_id: str) -> None:
        task = self.tasks.get(run_id)
        if task is not None and not task.done() and run_id not in self._canceling:
            self._canceling.add(run_id)  # once: a second cancel would cut the recording short
            log.info("canceling %s", run_id)
            task.cancel()

    def _ended(self, run_id: str) -> bool:
        """The run stored its final status itself (it is no longer running, so a heartbeat
        finds no lease of it), or is already done and forgotten: not a lost lease."""
        execution = self.executions.get(run_id)
        return run_id not in self.tasks or (execution is not None and execution.ended)

    def _lost(self, run_id: str) -> None:
        """The run is no longer ours (its lease expired and it was ended elsewhere): stop it
        without touching its status, so it never runs beside a retry. Said once."""
        execution = self.executions.get(run_id)
        if execution is not None:
            if execution.lost:
                return
            execution.lost = True
        log.warning("lost the lease of %s; stopping it", run_id)
        self._cancel(run_id)

    async def _reaper(self, stop: asyncio.Event) -> None:
        interval = max(0.5, min(self.options.lease_s / 2, 10.0))
        while not stop.is_set():
            try:
                await self.reap()
            except Exception as error:
                self._db_failed(error, "reaping runs of vanished workers")
            await asyncio.sleep(interval)

    async def reap(self) -> list[str]:
        """Ends runs whose lease expired `interrupted`, and queues retries if configured.
        Not within a lease of a database outage long enough to let leases of live workers run
        out (no heartbeat got through): they get one lease to renew them first."""
        ended: list[str] = []
        options = self.options
        if self.resources.db.outage.recently_down(
            longer_than=(options.lease_s - options.heartbeat_s) / 2, within_s=options.lease_s
        ):
            return ended
        async with self.resources.db.session() as session:
            cutoff = utcnow() - timedelta(seconds=self.resources.runner.continue_ttl_s)
            if await drop_expired_states(session=session, ended_before=cutoff):
                await session.commit()
            candidates = await expired_runs(session=session)
        for run_id in candidates:
            if run_id in self.tasks:
                continue  # ours and alive; the heartbeat is just late
            async with self.resources.db.session() as session:
                run = await get_run(session=session, run_id=run_id, lock=True)
                await session.refresh(run)
                if run.status != RunStatus.running.value or (
                    run.lease_expires_at and run.lease_expires_at > utcnow()
                ):
                    continue
                seen = run.heartbeat_at.isoformat() if run.heartbeat_at else "never"
                reason = (
                    f"worker {run.worker_id} vanished: no heartbeat since {seen} "
                    f"(lease of {self.options.lease_s:g} s expired)"
                )
                sealed = run.sealed_secrets  # dropped by the transition; the retry needs them
                try:
                    await transition(
                        session=session, run_id=run_id, to=RunStatus.interrupted, reason=reason
                    )
                except InvalidTransition:
                    continue
                retry = await self._retry(session, run, sealed)
                await session.commit()
            ended.append(run_id)
            await publish_status(self.notifier, run_id, RunStatus.interrupted)
            if retry is not None:
                await self.notifier.publish(QUEUE, retry)
        return ended

    async def _retry(self, session: AsyncSession, run: Run, sealed: str | None) -> str | None:
        if self.options.retry_interrupted <= 0:
            return None
        depth, child = 0, run
        while child.parent_run_id and child.source == RunSource.rerun.value:
            parent = await get_run(session=session, run_id=child.parent_run_id)
            if parent.status != RunStatus.interrupted.value:
                break  # a rerun a user asked for, not a retry
            depth, child = depth + 1, parent
        if depth >= self.options.retry_interrupted:
            return None
        retry = await copy_run(
            session=session, run=run, source=RunSource.rerun, sealed_secrets=sealed
        )
        # What it replayed it replays again (a rerun from a block, a continuation's state).
        replay = {k: v for k, v in (run.replay or {}).items() if k in REPLAYED_AGAIN}
        retry.replay, retry.sealed_state = replay or None, run.sealed_state
        await transition(session=session, run_id=retry.id, to=RunStatus.queued)
        return retry.id
