"""A run in progress: its pages (following the active tab), its timeline cards, its generated
code and its counters. Block handlers and the step engine work through it."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page
from playwright.async_api import Error as PlaywrightError
from sqlalchemy import select

from runner import codegen
from runner.artifacts import ArtifactSink
from runner.cache import ActionLog
from runner.llm import LLMClient, LLMSettings
from runner.observe import track_click_listeners
from runner.recorder import RunRecorder
from runner.secrets import SecretMasker, option_secrets
from runner.settings import RunnerSettings
from runner.templating import Inputs
from runner.workflow import Workflow
from storage.db import Database
from storage.ids import new_id
from storage.models import Run, TimelineCard, utcnow
from storage.objects import ObjectStore
from storage.retry import describe, is_transient
from storage.runs import get_run
from storage.sealing import Sealer
from storage.status import CardKind, RunStatus
from storage.timeline import add_card

log = logging.getLogger(__name__)

CardListener = Callable[[TimelineCard], Awaitable[None] | None]
FrameListener = Callable[[str, bytes], None]

# The database writes that keep a run's record (its cards, its final status) are retried while
# the database is down until the run's time limit, and for at least this long after it ended.
FINAL_WRITES_S = 120.0


@dataclass
class RunnerEnv:
    """What a worker gives every run it executes."""

    db: Database
    store: ObjectStore
    settings: RunnerSettings
    llm: LLMSettings
    spool_dir: Path
    browser: Browser
    listeners: list[CardListener] = field(default_factory=list)
    frame_listener: FrameListener | None = None
    # Runs waiting for a child run (`run_workflow` with `wait`): they hold no worker slot.
    waiting: set[str] = field(default_factory=set)
    # Seals the browser state a run ends with (for a continuation), and opens its parent's.
    sealer: Sealer | None = None
    # Set when the worker shuts down (time.monotonic()): its runs' writes are retried until
    # then at most (not their time limit); what is not stored stays in the spool, for the
    # salvage, and the reaper ends the run `interrupted`.
    stop_writes_by: float | None = None


def capped(deadline: float, env: RunnerEnv) -> Callable[[], float]:
    """`deadline` for a write's retries, brought closer if the worker starts shutting down
    while they go on (`RunnerEnv.stop_writes_by`)."""
    return lambda: deadline if env.stop_writes_by is None else min(deadline, env.stop_writes_by)


class CardWriter:
    """Timeline cards, written by a background task in order and in batches, so a run never
    waits for the database between actions; `flush` waits for what was emitted so far.

    While the database is down a batch is kept and retried (later cards queue behind it, in
    order) until `deadline()` — the run's own bound, see `RunContext.write_deadline`. Cards that
    could still not be stored are counted and named in the run's record (`missing`)."""

    def __init__(
        self, env: RunnerEnv, run_id: str, deadline: Callable[[], float] | None = None
    ) -> None:
        self.env = env
        self.run_id = run_id
        self.seq = 0
        self.deadline = deadline or (lambda: time.monotonic() + FINAL_WRITES_S)
        self.unstored = 0
        self.unstored_error = ""
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, fields: dict[str, Any]) -> None:
        self.seq += 1
        self._pending.append({"seq": self.seq, "created_at": utcnow(), **fields})
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                cards = await self.env.db.retrying(
                    functools.partial(self._store, batch),
                    doing=f"storing timeline cards of {self.run_id}",
                    deadline=capped(self.deadline(), self.env),
                )
            except Exception as error:
                self.unstored += len(batch)
                self.unstored_error = describe(error)
                if is_transient(error):
                    self.unstored_error = f"database unavailable: {self.unstored_error}"
                log.error(
                    "run %s: %d timeline cards not stored: %s",
                    self.run_id,
                    len(batch),
                    self.unstored_error,
                    exc_info=not is_transient(error),
                )
                continue
            for card in cards:
                for listener in self.env.listeners:
                    try:
                        outcome = listener(card)
                        if outcome is not None:
                            await outcome
                    except Exception:
                        log.exception("run %s: a card listener failed", self.run_id)

    async def _store(self, batch: list[dict[str, Any]]) -> list[TimelineCard]:
        """One attempt at a batch. A commit whose answer was lost with the connection may have
        been applied: cards already there (same run and seq) are not added twice."""
        async with self.env.db.session() as session:
            stored = set(
                await session.scalars(
                    select(TimelineCard.seq).where(
                        TimelineCard.run_id == self.run_id,
                        TimelineCard.seq.in_([fields["seq"] for fields in batch]),
                    )
                )
            )
            cards = [
                await add_card(session=session, run_id=self.run_id, **fields)
                for fields in batch
                if fields["seq"] not in stored
            ]
            await session.commit()
        return cards

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def missing(self) -> list[str]:
        """What the record lacks because of this writer (for record.missing)."""
        if not self.unstored:
            return []
        return [f"timeline: {self.unstored} cards not stored: {self.unstored_error}"]


@dataclass
class Action:
    """One browser operation in progress (see `RunContext.action`)."""

    block: str
    verb: str
    number: int
    video_ms: int
    started: float
    url: str | None


class RunContext:
    def __init__(self, env: RunnerEnv, run: Run, workflow: Workflow, inputs: Inputs) -> None:
        self.env = env
        self.run = run
        self.workflow = workflow
        self.inputs = inputs
        self.settings = env.settings
        # The options in clear: the run row keeps secret headers and the proxy password masked.
        headers, proxy = inputs.extra_http_headers, inputs.proxy
        self.extra_http_headers = run.extra_http_headers if headers is None else headers
        self.proxy = run.proxy if proxy is None else proxy
        self.masker = SecretMasker(
            [*inputs.secret_values, *option_secrets(self.extra_http_headers, self.proxy)]
        )
        self.spool = env.spool_dir / run.id
        self.spool.mkdir(parents=True, exist_ok=True)
        self.sink = ArtifactSink(db=env.db, store=env.store, run_id=run.id)
        self.sink.stop_by = lambda: env.stop_writes_by
        self.recorder = RunRecorder.for_run(
            sink=self.sink, masker=self.masker, spool=self.spool, settings=self.settings
        )
        if env.frame_listener is not None:
            listener, run_id = env.frame_listener, run.id
            self.recorder.on_live_frame = lambda data: listener(run_id, data)
        self.started = time.monotonic()
        self.cards = CardWriter(env, run.id, self.write_deadline)
        self.code = codegen.CodeContext(values=inputs.values, secret_names=inputs.secret_names)
        self.code_body: list[str] = []
        # The action cache: what this run did (`actions`), what it replays (`replayed`:
        # label → the cached block), and where that came from (`replay`: for the run record).
        self.actions = ActionLog()
        self.replayed: dict[str, dict[str, Any]] = {}
        self.replay: dict[str, Any] = {}
        self.browser_context: BrowserContext | None = None
        self.page: Page | None = None
        self.step_count = 0
        self.action_count = 0
        self.extracted: dict[str, Any] = {}
        self.summary: str | None = None
        self.metrics: dict[str, Any] = {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "llm_calls": 0,
            "cost_usd": 0.0,
        }
        self.last_llm: dict[str, Any] | None = None
        self._llm: LLMClient | None = None
        self._following: asyncio.Task[bool] | None = None
        self._last_code: tuple[int, int] | None = None
        self.deadline: asyncio.Timeout | None = None  # the run's time limit
        self.lost = False  # another process took the run over

    def why_stopped(self) -> tuple[RunStatus, str]:
        """Why the run was cut short (its task canceled): its time limit, a lost lease or a
        user's cancel. Blocks ended by it say the same as the run."""
        if self.deadline is not None and self.deadline.expired():
            return RunStatus.timed_out, self.time_limit_reason()
        if self.lost:
            return RunStatus.interrupted, "the worker lost this run's lease"
        return RunStatus.canceled, "canceled by a user"

    def write_deadline(self) -> float:
        """Until when (time.monotonic()) the writes that keep the run's record are retried
        while the database is down: the run's time limit, and at least FINAL_WRITES_S from
        now — unless its worker is shutting down (`RunnerEnv.stop_writes_by`)."""
        deadline = max(self.started + self.run.timeout_s, time.monotonic() + FINAL_WRITES_S)
        stop_by = self.env.stop_writes_by
        return deadline if stop_by is None else min(deadline, stop_by)

    def time_limit_reason(self) -> str:
        return f"the run exceeded its time limit of {self.run.timeout_s} s"

    # --- cards ------------------------------------------------------------------------------

    async def emit(self, kind: CardKind, **fields: Any) -> None:
        """Adds a timeline card (secrets masked in its data)."""
        data = self.masker.mask_obj(fields.pop("data", {}))
        video_ms = fields.pop("video_ms", self.recorder.video_ms())
        self.cards.add({"kind": kind, "video_ms": video_ms, "data": data, **fields})

    async def narrate(self, text: str, block: str | None = None) -> None:
        await self.emit(
            CardKind.thought, block_label=block, data={"text": self.masker.mask_text(text)}
        )

    async def action_card(
        self,
        action: Action,
        *,
        target: str | None,
        result: str,
        url: str | None,
        value: str | None = None,
        error: str | None = None,
        code: list[str] | None = None,
        box_of: Any = None,
        extra: dict[str, Any] | None = None,
        status: str | None = None,
    ) -> None:
        """The card of one browser operation, with the screenshot that shows its effect.
        `status` defaults to failed with an error, completed without."""
        self.action_count += 1
        shot_id = new_id("art")
        name = f"{self.action_count:04d}-{action.verb}.jpg"
        self.recorder.screenshot_after(shot_id, name, box_of)
        await self.emit(
            CardKind.action,
            block_label=action.block,
            status=status or ("failed" if error else "completed"),
            duration_ms=int((time.monotonic() - action.started) * 1000),
            screenshot_artifact_id=shot_id,
            video_ms=action.video_ms,
            data={
                "verb": action.verb,
                "step": action.number,
                "target": target,
                "value": value,
                "result": result,
                "error": error,
                "url": url,
                "code": code or [],
                **(extra or {}),
            },
        )

    # --- actions ----------------------------------------------------------------------------

    async def begin_action(self, block: str, verb: str, number: int) -> Action:
        """A browser operation starts: the tab the previous one opened becomes the active one,
        and the previous action's screenshot is taken now if not yet."""
        await self.settle_tabs()
        action = Action(
            block=block,
            verb=verb,
            number=number,
            video_ms=self.recorder.video_ms(),
            started=time.monotonic(),
            url=self.page.url if self.page else None,
        )
        self.recorder.action_started()
        return action

    def add_code(self, lines: list[str]) -> None:
        """The lines of one action; remembered so a tab it opens can be caught in the code."""
        self._last_code = (len(self.code_body), len(self.code_body) + len(lines))
        self.code_body.extend(lines)

    @property
    def url(self) -> str | None:
        return self.page.url if self.page is not None and not self.page.is_closed() else None

    # --- pages ------------------------------------------------------------------------------

    def on_new_page(self, page: Page) -> None:
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
        if page is not self.page or self.browser_context is None:
            return
        remaining = [p for p in self.browser_context.pages if not p.is_closed()]
        if remaining:
            self._following = asyncio.ensure_future(self._follow(remaining[-1]))

    async def settle_tabs(self) -> None:
        """Makes a tab the last action opened the active one, in the run and in the code."""
        task, self._following = self._following, None
        if task is None:
            return
        if await task and self._last_code is not None:
            start, end = self._last_code
            # The action that opened the tab, replayed so the script catches the new tab too.
            self.code_body[start:end] = [
                "with context.expect_page() as new_tab:",
                *(f"    {line}" for line in self.code_body[start:end]),
                "page = new_tab.value",
                'page.wait_for_load_state("domcontentloaded")',
            ]
            self._last_code = None

    async def open_browser(self) -> None:
        """A fresh browser context for the run, recorded from its first page on."""
        settings = self.settings
        options: dict[str, Any] = {
            "viewport": {"width": settings.viewport_width, "height": settings.viewport_height},
            "accept_downloads": True,
            **self.recorder.context_options(),
        }
        if self.proxy:
            options["proxy"] = self.proxy
        if self.extra_http_headers:
            options["extra_http_headers"] = self.extra_http_headers
        state = self.parent_state()
        if state.get("storage_state"):
            options["storage_state"] = state["storage_state"]
        context = await self.env.browser.new_context(**options)
        self.browser_context = context
        context.set_default_timeout(settings.step_timeout_ms)
        await track_click_listeners(context)
        page = await self.recorder.start(context, title=self.run.title)
        self.metrics["video_started_at"] = self.recorder.video_started_at
        self.page = page
        page.on("close", self._on_page_closed)
        context.on("page", self.on_new_page)

    def parent_state(self) -> dict[str, Any]:
        """The browser state and URL of the run this one continues from (empty if none)."""
        replay = self.run.replay or {}
        if not replay.get("continue_from") or self.env.sealer is None:
            return {}
        return self.env.sealer.open(self.run.sealed_state)

    async def final_state(self) -> str | None:
        """The browser state and URL the run ends with, sealed (None: none kept)."""
        context, sealer = self.browser_context, self.env.sealer
        if context is None or sealer is None or self.settings.continue_ttl_s <= 0:
            return None
        try:
            state = await asyncio.wait_for(context.storage_state(), 10)
        except Exception:
            log.warning("run %s: its browser state could not be read", self.run.id, exc_info=True)
            return None
        return sealer.seal({"storage_state": state, "url": self.url})

    async def save_counters(self) -> None:
        """The run's step count and metrics as they stand, for whoever watches it. Skipped
        while the database is down: the run's final save stores them anyway."""
        try:
            async with self.env.db.session() as session:
                run = await get_run(session=session, run_id=self.run.id)
                run.metrics = dict(self.metrics)
                run.step_count = self.step_count
                await session.commit()
        except Exception as error:
            if not is_transient(error):
                raise
            self.env.db.outage.failed(error, f"saving the counters of {self.run.id}")

    # --- the LLM ----------------------------------------------------------------------------

    def llm(self) -> LLMClient:
        if self._llm is None:
            self._llm = LLMClient(self.env.llm)
        return self._llm

    async def close_llm(self) -> None:
        if self._llm is not None:
            await self._llm.close()
