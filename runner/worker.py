"""The worker: claims queued runs, holds their leases, cancels on request, recovers runs whose
worker vanished. One browser per worker process; a fresh context per run."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass

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
from storage.runs import create_run, get_run, transition
from storage.status import RunSource, RunStatus

log = logging.getLogger(__name__)

LIVE_FRAME_INTERVAL_S = 0.25


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

    async def forget(self, run_id: str) -> None:
        self._latest.pop(run_id, None)
        self._seq.pop(run_id, None)
        async with self.resources.db.session() as session:
            await delete_live_frame(session=session, run_id=run_id)
            await session.commit()

    async def run_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._latest = self._latest, {}
            for run_id, data in pending.items():
                try:
                    await self._write(run_id, data)
                except Exception:
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

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
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
                self.ready.set()
                log.info(
                    "worker %s ready (concurrency %d)", self.worker_id, self.options.concurrency
                )
                while not stop.is_set():
                    self._slot_freed.clear()
                    await self._claim_while_free()
                    waits = {
                        asyncio.ensure_future(queued.get(self.options.poll_s)),
                        asyncio.ensure_future(stop.wait()),
                        asyncio.ensure_future(self._slot_freed.wait()),
                    }
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for waiting in waits:
                        waiting.cancel()
                await self._stop_runs()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            queued.close()
            cancels.close()

    async def _claim_while_free(self) -> None:
        while len(self.tasks) < self.options.concurrency:
            async with self.resources.db.session() as session:
                run = await claim_next(
                    session=session, worker_id=self.worker_id, lease_s=self.options.lease_s
                )
                await session.commit()
            if run is None:
                return
            await publish_status(self.notifier, run.id, run.status)
            task = asyncio.create_task(self._execute(run), name=f"run {run.id}")
            self.tasks[run.id] = task
            task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[RunStatus]) -> None:
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
            async with self.resources.db.session() as session:
                await transition(
                    session=session, run_id=run.id, to=RunStatus.failed, reason=str(exc)
                )
                await session.commit()
            await publish_status(self.notifier, run.id, RunStatus.failed)
            return RunStatus.failed
        execution = RunExecution(self.env, run, workflow, inputs)
        self.executions[run.id] = execution
        status = await run_to_end(execution, self.notifier)
        await self.live.forget(run.id)
        return status

    async def _on_card(self, card: TimelineCard) -> None:
        await publish_run_event(self.notifier, card.run_id, "card", seq=card.seq)

    async def _stop_runs(self) -> None:
        """Shutting down: running runs are canceled, and keep what they recorded."""
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
                self._cancel_flagged(flags)
                for run_id in sent:
                    if run_id not in flags and not self._ended(run_id):
                        self._lost(run_id)
            except Exception:
                log.warning("heartbeat failed", exc_info=True)

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
                for run_id in flagged:
                    self._cancel(run_id)
            except Exception:
                log.debug("cancel poll failed", exc_info=True)

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
            except Exception:
                log.warning("reaper failed", exc_info=True)
            await asyncio.sleep(interval)

    async def reap(self) -> list[str]:
        """Ends runs whose lease expired `interrupted`, and queues retries if configured."""
        ended: list[str] = []
        async with self.resources.db.session() as session:
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
                try:
                    await transition(
                        session=session, run_id=run_id, to=RunStatus.interrupted, reason=reason
                    )
                except InvalidTransition:
                    continue
                retry = await self._retry(session, run)
                await session.commit()
            ended.append(run_id)
            await publish_status(self.notifier, run_id, RunStatus.interrupted)
            if retry is not None:
                await self.notifier.publish(QUEUE, retry)
        return ended

    async def _retry(self, session: AsyncSession, run: Run) -> str | None:
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
        retry = await create_run(
            session=session,
            title=run.title,
            definition=run.definition,
            parameters=run.parameters,
            source=RunSource.rerun,
            timeout_s=run.timeout_s,
            workflow_id=run.workflow_id,
            parent_run_id=run.id,
            webhook_url=run.webhook_url,
            proxy=run.proxy,
            extra_http_headers=run.extra_http_headers,
            run_with=run.run_with,
            sealed_secrets=run.sealed_secrets,
        )
        await transition(session=session, run_id=retry.id, to=RunStatus.queued)
        return retry.id
