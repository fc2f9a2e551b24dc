"""Executing one run: the browser context, the blocks, the recording, the ending."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page
from playwright.async_api import Error as PlaywrightError

from runner import codegen
from runner.agent import TOOLS as AGENT_TOOLS
from runner.agent import wire_messages
from runner.artifacts import ArtifactSink
from runner.extract import extract_fields, schema_errors
from runner.llm import Completion, LLMClient, LLMSettings
from runner.observe import track_click_listeners
from runner.recorder import RunRecorder
from runner.secrets import SecretMasker, option_secrets
from runner.settings import RunnerSettings
from runner.steps import StepEnv, StepFailed, run_step
from runner.templating import Inputs
from runner.workflow import ActionBlock, Block, ExtractBlock, GoalBlock, Workflow
from storage.db import Database
from storage.errors import InvalidTransition
from storage.ids import new_id
from storage.models import Run, TimelineCard, utcnow
from storage.objects import ObjectStore
from storage.runs import get_run, transition
from storage.status import ArtifactKind, CardKind, RunStatus
from storage.timeline import add_card

log = logging.getLogger(__name__)

CardListener = Callable[[TimelineCard], Awaitable[None] | None]


class RunEnded(Exception):
    """Ends the run early with a status other than completed (terminate, guards)."""

    def __init__(self, status: RunStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


FrameListener = Callable[[str, bytes], None]


@dataclass
class RunnerEnv:
    db: Database
    store: ObjectStore
    settings: RunnerSettings
    spool_dir: Path
    browser: Browser
    listeners: list[CardListener] = field(default_factory=list)
    frame_listener: FrameListener | None = None


class RunExecution:
    def __init__(self, env: RunnerEnv, run: Run, workflow: Workflow, inputs: Inputs) -> None:
        self.env = env
        self.run = run
        self.workflow = workflow
        self.inputs = inputs
        self.settings = env.settings
        self.masker = SecretMasker(
            [*inputs.secret_values, *option_secrets(run.extra_http_headers, run.proxy)]
        )
        self.spool = env.spool_dir / run.id
        self.spool.mkdir(parents=True, exist_ok=True)
        self.sink = ArtifactSink(db=env.db, store=env.store, run_id=run.id)
        self.recorder = RunRecorder(
            sink=self.sink,
            masker=self.masker,
            spool=self.spool,
            fps=self.settings.video_fps,
            width=self.settings.video_size[0],
            height=self.settings.video_size[1],
            quality=self.settings.video_quality,
            annotate=self.settings.annotate_actions,
            annotation_ms=self.settings.annotation_ms,
        )
        if env.frame_listener is not None:
            listener, run_id = env.frame_listener, run.id
            self.recorder.on_live_frame = lambda data: listener(run_id, data)
        self.code = codegen.CodeContext(values=inputs.values, secret_names=inputs.secret_names)
        self.code_body: list[str] = []
        self.context: BrowserContext | None = None
        self.page: Page | None = None
        self.seq = 0
        self.step_count = 0
        self.action_count = 0
        self.extracted: dict[str, Any] = {}
        self.summary: str | None = None
        self._following: asyncio.Task[bool] | None = None
        self._last_action: tuple[int, int] | None = None
        self.tracing = False
        self._llm: LLMClient | None = None
        self.metrics: dict[str, Any] = {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "llm_calls": 0,
            "cost_usd": 0.0,
        }
        self.last_llm: dict[str, Any] | None = None
        self.lost = False
        self._cards: list[dict[str, Any]] = []
        self._card_writer: asyncio.Task[None] | None = None

    # --- cards ------------------------------------------------------------------------------

    async def emit(self, kind: CardKind, **fields: Any) -> None:
        """Adds a timeline card. Written by a background writer, in order and in batches, so
        the run never waits for the database between actions; `flush_cards` waits for it."""
        self.seq += 1
        data = self.masker.mask_obj(fields.pop("data", {}))
        self._cards.append(
            {
                "seq": self.seq,
                "kind": kind,
                "video_ms": fields.pop("video_ms", self.recorder.video_ms()),
                "created_at": utcnow(),
                "data": data,
                **fields,
            }
        )
        if self._card_writer is None or self._card_writer.done():
            self._card_writer = asyncio.ensure_future(self._write_cards())

    async def _write_cards(self) -> None:
        while self._cards:
            batch, self._cards = self._cards, []
            try:
                async with self.env.db.session() as session:
                    cards = [
                        await add_card(session=session, run_id=self.run.id, **fields)
                        for fields in batch
                    ]
                    await session.commit()
            except Exception:
                log.exception("run %s: %d timeline cards not stored", self.run.id, len(batch))
                continue
            for card in cards:
                for listener in self.env.listeners:
                    try:
                        outcome = listener(card)
                        if outcome is not None:
                            await outcome
                    except Exception:
                        log.exception("run %s: a card listener failed", self.run.id)

    async def flush_cards(self) -> None:
        """Waits until every card emitted so far is stored and announced."""
        while self._card_writer is not None and not self._card_writer.done():
            await asyncio.shield(self._card_writer)

    async def narrate(self, text: str, block: str | None = None) -> None:
        await self.emit(
            CardKind.thought, block_label=block, data={"text": self.masker.mask_text(text)}
        )

    # --- pages ------------------------------------------------------------------------------

    def _on_new_page(self, page: Page) -> None:
        self.recorder.watch(page)
        page.on("close", self._on_page_closed)
        self._following = asyncio.ensure_future(self._follow(page, opened=True))

    async def _follow(self, page: Page, *, opened: bool = False) -> bool:
        if opened:
            try:
                await page.wait_for_load_state("domcontentloaded", timeout=5000)
            except PlaywrightError:
                pass
        if page.is_closed():
            return False
        self.page = page
        try:
            await self.recorder.follow(page)
        except PlaywrightError:
            log.debug("run %s: could not follow a tab", self.run.id, exc_info=True)
        return opened

    def _on_page_closed(self, page: Page) -> None:
        if page is not self.page or self.context is None:
            return
        remaining = [p for p in self.context.pages if not p.is_closed()]
        if remaining:
            self._following = asyncio.ensure_future(self._follow(remaining[-1]))

    async def _settle_tabs(self) -> None:
        """Makes a tab the last action opened the active one, in the run and in the code."""
        task, self._following = self._following, None
        if task is None:
            return
        if await task and self._last_action is not None:
            start, end = self._last_action
            # The action that opened the tab, replayed so the script catches the new tab too.
            self.code_body[start:end] = [
                "with context.expect_page() as new_tab:",
                *(f"    {line}" for line in self.code_body[start:end]),
                "page = new_tab.value",
                'page.wait_for_load_state("domcontentloaded")',
            ]
            self._last_action = None

    # --- blocks -----------------------------------------------------------------------------

    async def run_blocks(self) -> None:
        for index, block in enumerate(self.workflow.blocks):
            await self.run_block(index, block)
        if self.workflow.extraction_schema is not None:
            problem = schema_errors(self.extracted, self.workflow.extraction_schema)
            if problem:
                raise StepFailed(
                    f"extracted information does not match extraction_schema: {problem}"
                )

    async def run_block(self, index: int, block: Block) -> None:
        started = time.monotonic()
        await self.emit(
            CardKind.block,
            block_label=block.label,
            status="running",
            data={"label": block.label, "type": block.type, "index": index, "event": "started"},
        )
        if self.tracing and self.context is not None:
            await self.context.tracing.group(f"{block.label} ({block.type})")
        error: str | None = None
        status = "completed"
        try:
            if isinstance(block, ActionBlock):
                await self.run_action_block(block)
            elif isinstance(block, ExtractBlock):
                await self.run_extract_block(block)
            elif isinstance(block, GoalBlock):
                from runner.agent import run_goal

                await run_goal(self, block, self.llm())
        except StepFailed as exc:
            error, status = exc.reason, "failed"
            raise
        except RunEnded as exc:
            error, status = exc.reason, exc.status.value
            raise
        except asyncio.CancelledError:
            error, status = "stopped", "canceled"
            raise
        finally:
            if self.tracing and self.context is not None:
                try:
                    await asyncio.shield(self.context.tracing.group_end())
                except PlaywrightError:
                    pass
            await asyncio.shield(
                self.emit(
                    CardKind.block,
                    block_label=block.label,
                    status=status,
                    duration_ms=int((time.monotonic() - started) * 1000),
                    data={
                        "label": block.label,
                        "type": block.type,
                        "index": index,
                        "event": "finished",
                        "error": error,
                    },
                )
            )

    def _step_env(self) -> StepEnv:
        assert self.page is not None
        return StepEnv(
            page=self.page,
            recorder=self.recorder,
            code=self.code,
            mask=self.masker.mask_text,
            step_timeout_ms=self.settings.step_timeout_ms,
            navigation_timeout_ms=self.settings.navigation_timeout_ms,
            upload_dir=Path.cwd(),
        )

    async def run_action_block(self, block: ActionBlock) -> None:
        self.code_body.append(f"# block {block.label!r}")
        block_index = self.workflow.blocks.index(block)
        for number, step in enumerate(block.steps, start=1):
            where = f"blocks[{block_index}].steps[{number - 1}].{step.verb}"
            await self._settle_tabs()  # a tab the previous action opened may only appear now
            args = self.inputs.render_model(step.args, where)
            if step.verb == "goto":
                await self.narrate(f"Opening {getattr(args, 'url', '')}", block.label)
            self.step_count += 1
            video_ms = self.recorder.video_ms()
            self.recorder.action_started()
            started = time.monotonic()
            url_before = self.page.url if self.page else None
            try:
                outcome = await run_step(step.verb, args, step.args, self._step_env())
            except StepFailed as exc:
                reason = f'block "{block.label}", step {number} {step.verb}'
                target = _target_of(args)
                if target:
                    reason += f" {self.masker.mask_text(target)}"
                reason += f": {exc.reason}"
                await self.action_card(
                    block.label,
                    step.verb,
                    number,
                    video_ms,
                    started,
                    target=target,
                    result="failed",
                    error=exc.reason,
                    url=url_before,
                )
                raise StepFailed(reason) from None
            lines = list(outcome.code)
            self._last_action = (len(self.code_body), len(self.code_body) + len(lines))
            self.code_body.extend(lines)
            await self._settle_tabs()
            await self.action_card(
                block.label,
                step.verb,
                number,
                video_ms,
                started,
                target=outcome.target,
                value=outcome.value,
                result=outcome.result,
                code=lines,
                box=outcome.box,
                box_of=outcome.box_of,
                extra=outcome.extra,
                url=self.page.url if self.page else None,
            )

    async def action_card(
        self,
        block: str,
        verb: str,
        number: int,
        video_ms: int,
        started: float,
        *,
        target: str | None,
        result: str,
        url: str | None,
        value: str | None = None,
        error: str | None = None,
        code: list[str] | None = None,
        box: Any = None,
        box_of: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.action_count += 1
        shot_id = new_id("art")
        self.recorder.screenshot_after(shot_id, f"{self.action_count:04d}-{verb}.jpg", box, box_of)
        await self.emit(
            CardKind.action,
            block_label=block,
            status="failed" if error else "completed",
            duration_ms=int((time.monotonic() - started) * 1000),
            screenshot_artifact_id=shot_id,
            video_ms=video_ms,
            data={
                "verb": verb,
                "step": number,
                "target": target,
                "value": value,
                "result": result,
                "error": error,
                "url": url,
                "code": code or [],
                **(extra or {}),
            },
        )

    # --- the LLM agent ----------------------------------------------------------------------

    def llm(self) -> LLMClient:
        if self._llm is None:
            self._llm = LLMClient(LLMSettings())
        return self._llm

    async def account_llm(
        self, step: int, messages: list[dict[str, Any]], completion: Completion, model: str
    ) -> None:
        """Stores the prompt and the response (secrets masked) and adds the usage to the run."""
        name = f"step-{self.step_count:04d}"
        prompt = {
            "model": model,
            "messages": wire_messages(messages),
            "tools": [t["function"]["name"] for t in AGENT_TOOLS],
        }
        prompt_art = await self.sink.put_bytes(
            ArtifactKind.llm_prompt,
            f"{name}-prompt.json",
            json.dumps(self.masker.mask_obj(prompt), ensure_ascii=False, indent=1).encode(),
            content_type="application/json",
        )
        response_art = await self.sink.put_bytes(
            ArtifactKind.llm_response,
            f"{name}-response.json",
            json.dumps(self.masker.mask_obj(completion.raw), ensure_ascii=False, indent=1).encode(),
            content_type="application/json",
        )
        self.metrics["prompt_tokens"] += completion.prompt_tokens
        self.metrics["completion_tokens"] += completion.completion_tokens
        self.metrics["llm_calls"] += 1
        self.metrics["cost_usd"] = round(self.metrics["cost_usd"] + completion.cost_usd, 8)
        self.last_llm = {
            "model": model,
            "step": step,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "cost_usd": completion.cost_usd,
            "duration_ms": completion.duration_ms,
            "prompt_artifact_id": prompt_art.id,
            "response_artifact_id": response_art.id,
        }
        async with self.env.db.session() as session:
            run = await get_run(session=session, run_id=self.run.id)
            run.metrics = dict(self.metrics)
            run.step_count = self.step_count
            await session.commit()

    async def agent_action(
        self,
        block: str,
        step: int,
        name: str,
        args: dict[str, Any],
        observation: Any,
        placeholders: dict[str, str],
    ) -> str:
        from runner.agent import act

        return await act(self, block, step, name, args, observation, placeholders)

    async def run_extract_block(self, block: ExtractBlock) -> None:
        assert self.page is not None
        if not block.fields:
            from runner.agent import extract_with_model

            await self._settle_tabs()
            await extract_with_model(self, block, self.llm())
            return
        await self._settle_tabs()
        self.step_count += 1
        video_ms = self.recorder.video_ms()
        self.recorder.action_started()
        started = time.monotonic()
        data = await extract_fields(self.page, block, self.settings.step_timeout_ms)
        if block.schema_ is not None:
            problem = schema_errors(data, block.schema_)
            if problem:
                raise StepFailed(
                    f'block "{block.label}": extracted data does not match schema: {problem}'
                )
        self.extracted.update(data)
        lines = codegen.extract_code(block)
        self.code_body.extend(lines)
        await self.action_card(
            block.label,
            "extract",
            1,
            video_ms,
            started,
            target=", ".join(f.selector for f in block.fields.values()),
            value=json.dumps(data, ensure_ascii=False)[:2000],
            result="ok",
            code=lines,
            url=self.page.url,
            extra={"extracted": data},
        )

    # --- the whole run ----------------------------------------------------------------------

    async def start_browser(self) -> None:
        settings = self.settings
        options: dict[str, Any] = {
            "viewport": {"width": settings.viewport_width, "height": settings.viewport_height},
            "accept_downloads": True,
        }
        if settings.har:
            options["record_har_path"] = str(self.spool / "network.har")
            options["record_har_content"] = "embed"
        if self.run.proxy:
            options["proxy"] = self.run.proxy
        if self.run.extra_http_headers:
            options["extra_http_headers"] = self.run.extra_http_headers
        self.context = await self.env.browser.new_context(**options)
        self.context.set_default_timeout(settings.step_timeout_ms)
        await track_click_listeners(self.context)
        await self.recorder.track(self.context)
        page = await self.context.new_page()
        self.page = page
        self.recorder.watch(page)
        page.on("close", self._on_page_closed)
        self.recorder.start()
        # Our screencast first, so the trace's own screencast joins it at our frame size.
        await self.recorder.follow(page)
        if settings.trace:
            await self.context.tracing.start(
                title=self.run.title, screenshots=True, snapshots=True, sources=False
            )
            self.tracing = True
        self.context.on("page", self._on_new_page)

    async def execute(self) -> RunStatus:
        status, reason = RunStatus.completed, None
        try:
            async with asyncio.timeout(self.run.timeout_s):
                await self.start_browser()
                await self.run_blocks()
        except StepFailed as exc:
            status, reason = RunStatus.failed, exc.reason
        except RunEnded as exc:
            status, reason = exc.status, exc.reason
        except TimeoutError:
            status = RunStatus.timed_out
            reason = f"the run exceeded its time limit of {self.run.timeout_s} s"
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if self.lost:
                status, reason = RunStatus.interrupted, "the worker lost this run's lease"
            else:
                status, reason = RunStatus.canceled, "canceled by a user"
        except Exception as exc:
            log.exception("run %s crashed", self.run.id)
            status, reason = RunStatus.failed, f"internal error: {type(exc).__name__}: {exc}"
        reason = self.masker.mask_text(reason) if reason else None
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

    async def _guard(self, what: str, coro: Awaitable[Any], timeout: float = 30) -> Any:
        try:
            return await asyncio.wait_for(coro, timeout)
        except Exception:
            log.warning("run %s: %s failed", self.run.id, what, exc_info=True)
            return None

    async def finish(self, status: RunStatus, reason: str | None) -> None:
        """Keeps everything recorded, whatever the ending."""
        recorder, context = self.recorder, self.context
        if status is not RunStatus.completed and self.page is not None:
            await self._guard("narration", self.narrate(f"Run {status.value}: {reason}"))
        await self._guard("screenshots", recorder.drain())
        html: str | None = None
        if self.page is not None and not self.page.is_closed():
            html = await self._guard("final html", self.page.content(), 5)
        await self._guard("screencast", recorder.stop_screencast(), 10)
        # The video's remux runs while the trace and the HAR are written.
        video_task = asyncio.ensure_future(self._guard("video", recorder.finish_video(), 120))
        trace_path = self.spool / "trace.zip"
        if self.tracing and context is not None:
            await self._guard("trace", context.tracing.stop(path=str(trace_path)), 60)
        if context is not None:
            await self._guard("context", context.close(), 30)
        console = recorder.close_console()
        script = codegen.generate(
            run_id=self.run.id,
            title=self.run.title,
            context=self.code,
            body=self.code_body,
            viewport=(self.settings.viewport_width, self.settings.viewport_height),
        )
        storing = [
            self._store_video(video_task),
            self._store_masked(ArtifactKind.trace, trace_path, self.masker.mask_zip),
            self._store_masked(
                ArtifactKind.har,
                self.spool / "network.har",
                self.masker.mask_har,
                content_type="application/json",
            ),
            self._guard(
                "store console", self.sink.put_file(ArtifactKind.console, "console.jsonl", console)
            ),
            self._guard(
                "store code",
                self.sink.put_bytes(
                    ArtifactKind.code, "replay.py", self.masker.mask_text(script).encode()
                ),
            ),
        ]
        if html is not None:
            storing.append(
                self._guard(
                    "store html",
                    self.sink.put_bytes(
                        ArtifactKind.html, "final.html", self.masker.mask_text(html).encode()
                    ),
                )
            )
        await asyncio.gather(*storing)
        await self._guard("timeline", self.flush_cards(), 60)
        if status is RunStatus.completed and not self.summary:
            self.summary = self._summary()
        async with self.env.db.session() as session:
            run = await get_run(session=session, run_id=self.run.id)
            run.summary = self.summary
            run.extracted_information = (
                self.masker.mask_obj(self.extracted) if self.extracted else None
            )
            run.step_count = self.step_count
            run.action_count = self.action_count
            run.metrics = dict(self.metrics)
            if self.lost:
                log.warning("run %s: lost its lease; its status stays %s", self.run.id, run.status)
            else:
                try:
                    await transition(session=session, run_id=self.run.id, to=status, reason=reason)
                except InvalidTransition as exc:  # ended elsewhere meanwhile (e.g. the reaper)
                    log.warning("run %s: %s", self.run.id, exc)
            await session.commit()
        shutil.rmtree(self.spool, ignore_errors=True)
        if self._llm is not None:
            await self._guard("llm client", self._llm.close(), 10)

    async def _store_video(self, finishing: Awaitable[Path | None]) -> None:
        video = await finishing
        if video is not None:
            await self._guard(
                "store video", self.sink.put_file(ArtifactKind.video, "recording.mp4", video), 300
            )

    async def _store_masked(
        self,
        kind: ArtifactKind,
        path: Path,
        mask: Callable[[Path], Any],
        *,
        content_type: str | None = None,
    ) -> None:
        """Masks the secrets in a spooled file in place (a thread: zips and HARs are big),
        then stores it under its own name."""
        if path.exists():
            await self._guard(f"mask {kind.value}", asyncio.to_thread(mask, path), 120)
            await self._guard(
                f"store {kind.value}",
                self.sink.put_file(kind, path.name, path, content_type=content_type),
                300,
            )

    def _summary(self) -> str:
        blocks = len(self.workflow.blocks)
        text = f"Ran {blocks} block{'s' * (blocks != 1)}, {self.action_count} actions"
        if self.extracted:
            text += f"; extracted {', '.join(self.extracted)}"
        return text


def _target_of(args: Any) -> str | None:
    from runner import locators
    from runner.workflow import DownloadArgs, GotoArgs, ScrollArgs, Target

    if isinstance(args, GotoArgs):
        return args.url
    if isinstance(args, DownloadArgs):
        return locators.describe(args.click)
    if isinstance(args, ScrollArgs):
        return args.selector
    if isinstance(args, Target) and (args.selector or args.role or args.text):
        return locators.describe(args)
    return getattr(args, "selector", None)


async def execute_run(env: RunnerEnv, run_id: str, workflow: Workflow, inputs: Inputs) -> RunStatus:
    """Runs a queued run to its end. The caller owns the browser."""
    async with env.db.session() as session:
        run = await transition(session=session, run_id=run_id, to=RunStatus.running)
        await session.commit()
    execution = RunExecution(env, run, workflow, inputs)
    return await execution.execute()
