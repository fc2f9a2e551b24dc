"""Executing one run: open the browser, run the blocks, and whatever the ending keep the record
(the recorder's artifacts, the generated code) and set the run's status."""

from __future__ import annotations

import asyncio
import logging

from runner import codegen, replay
from runner.artifacts import release_spool
from runner.blocks import run_blocks
from runner.context import RunContext, RunnerEnv, capped
from runner.errors import RunEnded, StepFailed
from runner.followups import decide, queue_follow_up
from runner.recorder import store
from runner.templating import Inputs
from runner.workflow import Workflow
from storage.errors import InvalidTransition
from storage.models import Run
from storage.runs import get_run, transition
from storage.status import ArtifactKind, RunStatus

log = logging.getLogger(__name__)


class RunExecution:
    def __init__(self, env: RunnerEnv, run: Run, workflow: Workflow, inputs: Inputs) -> None:
        self.ctx = RunContext(env, run, workflow, inputs)
        self.missing: list[str] = []  # what the record lacks (record.missing)
        # The run stores its final status (or has): a heartbeat that finds no lease of it sees
        # the run ending, not a lost lease.
        self.ended = False
        self.follow_up = "none"  # "queue", or why the completed run queues no follow-up
        self.state: str | None = None  # the browser state it ends with, sealed

    @property
    def lost(self) -> bool:
        return self.ctx.lost

    @lost.setter
    def lost(self, value: bool) -> None:
        """Set by the worker when another process took the run over."""
        self.ctx.lost = value

    async def execute(self) -> RunStatus:
        ctx = self.ctx
        status, reason = RunStatus.completed, None
        try:
            async with asyncio.timeout(ctx.run.timeout_s) as ctx.deadline:
                await ctx.open_browser()
                await ctx.env.db.retrying(
                    lambda: replay.prepare(ctx),
                    doing=f"reading what {ctx.run.id} replays",
                    deadline=ctx.write_deadline(),
                )
                await replay.resume(ctx)
                await run_blocks(ctx)
        except StepFailed as exc:
            status, reason = RunStatus.failed, exc.reason
        except RunEnded as exc:
            status, reason = exc.status, exc.reason
        except TimeoutError:
            status, reason = RunStatus.timed_out, ctx.time_limit_reason()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            status, reason = ctx.why_stopped()
        except Exception as exc:
            log.exception("run %s crashed", ctx.run.id)
            status, reason = RunStatus.failed, f"internal error: {type(exc).__name__}: {exc}"
        reason = ctx.masker.mask_text(reason) if reason else None
        # Finishing keeps the record: it must not be cut short by another cancel.
        finishing = asyncio.ensure_future(self.finish(status, reason))
        while True:
            try:
                await asyncio.shield(finishing)
                break
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
        return status

    async def finish(self, status: RunStatus, reason: str | None) -> None:
        """Keeps everything recorded, whatever the ending: the recording, the code, the
        timeline; then the status."""
        ctx = self.ctx
        if status is not RunStatus.completed and ctx.page is not None:
            await ctx.narrate(f"Run {status.value}: {reason}")
        self.state = await ctx.final_state()  # before the recorder closes the context
        missing = await ctx.recorder.finish(ctx.page)
        script = codegen.generate(
            run_id=ctx.run.id,
            title=ctx.run.title,
            context=ctx.code,
            body=ctx.code_body,
            viewport=(ctx.settings.viewport_width, ctx.settings.viewport_height),
        )
        code = ctx.masker.mask_text(script).encode()
        missing += await store(
            ArtifactKind.code,
            ctx.sink.put_bytes(ArtifactKind.code, "replay.py", code),
            30 + ctx.sink.retry_s,
        )
        for text in missing:
            # Never silently: logged, on the timeline and in the record (record.missing).
            log.error("run %s: %s", ctx.run.id, text)
            await ctx.narrate(text)
        self.missing = [ctx.masker.mask_text(text) for text in missing]
        await ctx.cards.flush()  # retried while the database is down, within a bound
        self.missing += ctx.cards.missing()
        try:
            await ctx.env.db.retrying(
                lambda: replay.save(ctx),
                doing=f"storing the actions of {ctx.run.id}",
                deadline=ctx.write_deadline(),
            )
        except Exception:
            log.exception("run %s: its actions could not be stored", ctx.run.id)
            self.missing.append("action cache: the run's actions could not be stored")
        if status is RunStatus.completed and not ctx.summary:
            ctx.summary = self._summary()
        if status is RunStatus.completed and ctx.workflow.follow_up is not None:
            self.follow_up = decide(ctx.workflow.follow_up, ctx.inputs.scope, ctx.extracted)
            if self.follow_up != "queue":
                await ctx.narrate(f"No follow-up: {self.follow_up}")
                await ctx.cards.flush()
        try:
            await ctx.env.db.retrying(
                lambda: self._save(status, reason),
                doing=f"storing the end of {ctx.run.id}",
                deadline=capped(ctx.write_deadline(), ctx.env),
            )
        except Exception:
            log.exception("run %s: its end (%s) could not be stored", ctx.run.id, status.value)
        release_spool(ctx.spool)  # kept while it holds what could not be stored (salvage)
        try:
            await asyncio.wait_for(ctx.close_llm(), 10)
        except Exception:
            log.warning("run %s: the LLM client did not close", ctx.run.id, exc_info=True)

    async def _save(self, status: RunStatus, reason: str | None) -> None:
        ctx = self.ctx
        async with ctx.env.db.session() as session:
            run = await get_run(session=session, run_id=ctx.run.id)
            run.summary = ctx.summary
            run.extracted_information = (
                ctx.masker.mask_obj(ctx.extracted) if ctx.extracted else None
            )
            run.step_count = ctx.step_count
            run.action_count = ctx.action_count
            run.metrics = dict(ctx.metrics)
            run.record_missing = list(self.missing) or None
            if ctx.replay:
                run.replay = ctx.replay
            run.sealed_state = self.state
            if self.lost:
                log.warning("run %s: lost its lease; its status stays %s", ctx.run.id, run.status)
            elif run.status != status.value:  # else stored by an attempt whose answer was lost
                sealed = run.sealed_secrets  # dropped by the transition; a follow-up takes them
                try:
                    await transition(session=session, run_id=ctx.run.id, to=status, reason=reason)
                except InvalidTransition as exc:  # ended elsewhere meanwhile (e.g. the reaper)
                    log.warning("run %s: %s", ctx.run.id, exc)
                else:
                    if self.follow_up == "queue" and ctx.workflow.follow_up is not None:
                        await queue_follow_up(
                            session=session,
                            run=run,
                            follow_up=ctx.workflow.follow_up,
                            sealed_secrets=sealed,
                        )
            self.ended = True  # before the commit: a heartbeat may see it before we resume
            await session.commit()

    def _summary(self) -> str:
        ctx = self.ctx
        blocks = len(ctx.workflow.blocks)
        actions = ctx.action_count
        text = f"Ran {blocks} block{'s' * (blocks != 1)}, {actions} action{'s' * (actions != 1)}"
        if ctx.extracted:
            text += f"; extracted {', '.join(ctx.extracted)}"
        return text
