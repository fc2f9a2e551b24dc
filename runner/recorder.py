"""The run's recording: screencast frames into the video and the action screenshots, console
messages, downloads. One recorder per run; it follows the active tab."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from playwright._impl._api_structures import ScreencastFrame
from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Download,
    ElementHandle,
    Error,
    Locator,
    Page,
)

from runner.annotations import Annotator
from runner.artifacts import PENDING, ArtifactSink, StoreFailed, missing_line
from runner.browser import untraced
from runner.errors import StepFailed
from runner.secrets import SecretMasker
from runner.settings import RunnerSettings
from runner.tracking import BINDING, TRACKER_SCRIPT, Acted, ActionTracker
from runner.video import VideoRecorder
from storage.models import Artifact
from storage.objects import disk_full, storage_failure
from storage.status import ArtifactKind

log = logging.getLogger(__name__)

OUTLINE = (229, 57, 53)
SETTLE_S = 0.25
FRESH_S = 0.3  # how long a screenshot waits for the frames of its step to arrive
IN_FLIGHT_S = 0.05  # at the end of the run: frames captured but not yet delivered
LATE_PAINT_S = 0.1  # a frame this soon after the next step began still shows this one's paint


@dataclass
class Box:
    x: float
    y: float
    width: float
    height: float


@dataclass
class Frame:
    data: bytes
    captured: float  # time.time() the browser captured it
    viewport_width: int
    viewport_height: int


def outline(frame: Frame, box: Box | None) -> bytes:
    """The frame as JPEG, the acted-on element outlined."""
    image = Image.open(io.BytesIO(frame.data)).convert("RGB")
    if box is not None and frame.viewport_width > 0:
        scale = image.width / frame.viewport_width
        draw = ImageDraw.Draw(image)
        pad = 3
        left = max(0, box.x * scale - pad)
        top = max(0, box.y * scale - pad)
        right = min(image.width - 1, (box.x + box.width) * scale + pad)
        bottom = min(image.height - 1, (box.y + box.height) * scale + pad)
        if right > left and bottom > top:
            draw.rectangle((left, top, right, bottom), outline=OUTLINE, width=3)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


async def _box_of(element: Locator | ElementHandle) -> Box | None:
    try:
        if isinstance(element, Locator):
            found = await untraced(lambda: element.bounding_box(timeout=500))
        else:
            found = await untraced(element.bounding_box)
    except Error:
        return None
    return Box(**found) if found else None


class RunRecorder:
    def __init__(
        self,
        *,
        sink: ArtifactSink,
        masker: SecretMasker,
        spool: Path,
        fps: int,
        width: int,
        height: int,
        quality: int,
        annotate: str = "overlay",
        annotation_ms: int = 600,
        ffmpeg: str | None = None,
    ) -> None:
        self.sink = sink
        self.masker = masker
        self.spool = spool
        self.width = width
        self.height = height
        self.quality = quality
        self.annotate = annotate
        self.annotation_ms = annotation_ms
        self.annotator = Annotator(annotation_ms / 1000, quality)
        self.video = VideoRecorder(
            spool / "video.spool.mp4",
            fps=fps,
            width=width,
            height=height,
            overlay=self.annotator if annotate == "overlay" else None,
            ffmpeg=ffmpeg,
        )
        self.active: Page | None = None
        self.on_live_frame: Callable[[bytes], None] | None = None
        self._console = (spool / "console.jsonl").open("w", encoding="utf-8")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._downloads: dict[int, asyncio.Future[Artifact]] = {}
        self._action_started = asyncio.Event()
        self._step_started = time.time()  # wall clock, as the browser's frame timestamps
        self._draining = False
        self.recent: deque[Frame] = deque(maxlen=64)
        self.tracker = ActionTracker()
        self.started = False
        self.video_started_at: float | None = None
        self.har = False
        self.trace = False
        self.mask_timeout_s = 120.0
        self.tracing = False
        self.context: BrowserContext | None = None
        # What could not be kept while the run went (record.missing), and why the console log
        # stopped being written (a full disk), if it did.
        self.failures: list[str] = []
        self._console_error: OSError | None = None

    @classmethod
    def for_run(
        cls, *, sink: ArtifactSink, masker: SecretMasker, spool: Path, settings: RunnerSettings
    ) -> RunRecorder:
        recorder = cls(
            sink=sink,
            masker=masker,
            spool=spool,
            fps=settings.video_fps,
            width=settings.video_size[0],
            height=settings.video_size[1],
            quality=settings.video_quality,
            annotate=settings.annotate_actions,
            annotation_ms=settings.annotation_ms,
            ffmpeg=settings.ffmpeg,
        )
        recorder.har, recorder.trace = settings.har, settings.trace
        recorder.mask_timeout_s = settings.mask_timeout_s
        sink.retry_s, sink.pending = settings.store_retry_s, spool / PENDING
        return recorder

    # --- the start --------------------------------------------------------------------------

    def context_options(self) -> dict[str, Any]:
        """The browser context's own recording: the HAR."""
        if not self.har:
            return {}
        return {"record_har_path": str(self.spool / "network.har"), "record_har_content": "embed"}

    async def start(self, context: BrowserContext, *, title: str) -> Page:
        """Records `context` from its first page on, which it opens and returns."""
        self.context = context
        await self.track(context)
        page = await context.new_page()
        self.watch(page)
        self.start_video()
        # Our screencast first, so the trace's own screencast joins it at our frame size.
        await self.follow(page)
        if self.trace:
            await context.tracing.start(
                title=title, screenshots=True, snapshots=True, sources=False
            )
            self.tracing = True
        return page

    async def group(self, title: str) -> None:
        """Opens a group in the trace's action list (one per block)."""
        if self.tracing and self.context is not None:
            await self.context.tracing.group(title)

    async def group_end(self) -> None:
        if self.tracing and self.context is not None:
            try:
                await self.context.tracing.group_end()
            except Error:
                pass

    # --- video and frames -------------------------------------------------------------------

    @property
    def latest(self) -> Frame | None:
        """The newest frame of the recorded tab."""
        return self.recent[-1] if self.recent else None

    def start_video(self) -> None:
        self.video.start()
        self.started = True
        self.video_started_at = time.time()  # wall clock of video time 0 (HAR times map to it)

    def video_ms(self) -> int:
        return self.video.elapsed_ms() if self.started else 0

    def _on_frame(self, page: Page, frame: ScreencastFrame) -> None:
        if page is not self.active:
            return
        self.recent.append(
            Frame(
                data=frame["data"],
                captured=frame.get("timestamp", time.time() * 1000) / 1000,
                viewport_width=frame.get("viewportWidth", self.width),
                viewport_height=frame.get("viewportHeight", self.height),
            )
        )
        self.video.add_frame(frame["data"])
        if self.on_live_frame is not None:
            self.on_live_frame(frame["data"])

    async def follow(self, page: Page) -> None:
        """Make `page` the recorded tab."""
        previous, self.active = self.active, page
        if previous is not None and not previous.is_closed():
            try:
                await untraced(previous.screencast.stop)
            except Error:
                pass
        await untraced(
            lambda: page.screencast.start(
                on_frame=lambda frame: self._on_frame(page, frame),
                size={"width": self.width, "height": self.height},
                quality=self.quality,
            )
        )
        if self.annotate == "playwright":
            await page.screencast.show_actions(duration=self.annotation_ms, position="top-right")

    async def track(self, context: BrowserContext) -> None:
        """Installs the action tracker (runner.tracking) in every page of `context`."""
        await context.expose_binding(BINDING, self._on_acted)
        await context.add_init_script(TRACKER_SCRIPT)

    def _on_acted(self, source: dict[str, Any], info: Any) -> None:
        frame = source.get("frame")
        if frame is not None and frame.page is not self.active:
            return
        acted = self.tracker.report(info)
        if acted is not None and acted.box is not None and self.annotate == "overlay":
            self.annotator.update_box(acted.box)

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self._on_page_error(page, error))
        page.on("download", self._on_download)

    # --- console ----------------------------------------------------------------------------

    def _write_console(self, entry: dict[str, Any]) -> None:
        if self._console.closed:
            return
        line = json.dumps(entry, ensure_ascii=False)
        try:
            self._console.write(self.masker.mask_text(line) + "\n")
            self._console.flush()
        except OSError as exc:  # a full disk: the lines so far are kept, the loss is reported
            if self._console_error is None:
                log.error("%s: console log not written: %s", self.sink.run_id, exc)
                self._console_error = exc

    def _on_console(self, message: ConsoleMessage) -> None:
        location = message.location
        self._write_console(
            {
                "time": time.time(),
                "video_ms": self.video_ms(),
                "type": message.type,
                "text": message.text,
                "url": location.get("url") if location else None,
                "line": location.get("lineNumber") if location else None,
            }
        )

    def _on_page_error(self, page: Page, error: Error) -> None:
        self._write_console(
            {
                "time": time.time(),
                "video_ms": self.video_ms(),
                "type": "pageerror",
                "text": f"{error.name}: {error.message}" if error.name else error.message,
                "stack": error.stack,
                "url": page.url,
            }
        )

    # --- downloads --------------------------------------------------------------------------

    def _on_download(self, download: Download) -> None:
        future: asyncio.Future[Artifact] = asyncio.get_running_loop().create_future()
        self._downloads[id(download)] = future
        self._spawn(self._save_download(download, future))

    async def _save_download(self, download: Download, future: asyncio.Future[Artifact]) -> None:
        folder = self.spool / "downloads"
        folder.mkdir(exist_ok=True)
        path = folder / f"{len(self._downloads)}-{download.suggested_filename or 'download'}"
        name = download.suggested_filename or "download"
        try:
            try:
                await download.save_as(path)
            except Exception as exc:
                reason = storage_failure(exc) if disk_full(exc) else f"not saved: {exc}"
                raise StoreFailed(ArtifactKind.download, name, reason, kept=False) from exc
            artifact = await self.sink.put_file(ArtifactKind.download, name, path, consume=True)
            future.set_result(artifact)
        except Exception as exc:  # the download step reports it; the run keeps going
            self.failures.append(_line(ArtifactKind.download, name, exc))
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: a download no step waits for is not an error

    async def download_artifact(self, download: Download) -> Artifact:
        """The stored download; `StepFailed` naming the component when it could not be."""
        for _ in range(50):
            if id(download) in self._downloads:
                break
            await asyncio.sleep(0.01)
        try:
            return await self._downloads[id(download)]
        except StoreFailed as exc:
            raise StepFailed(exc.reason) from None

    # --- action screenshots -----------------------------------------------------------------

    def action_started(self) -> None:
        """A step begins: the previous action's screenshot is taken now, if not yet."""
        self._step_started = time.time()
        self._action_started.set()
        self.tracker.begin(expect=False)

    def announce(self, title: str, box: Box | None, *, expect: bool = False) -> int:
        """An action is about to happen: annotates it in the video (overlay mode). `expect`:
        it acts on an element, whose box the page will report (runner.tracking)."""
        seq = self.tracker.begin(expect=expect)
        if self.annotate == "overlay":
            frame = self.latest
            viewport = (
                (frame.viewport_width, frame.viewport_height)
                if frame
                else (self.width, self.height)
            )
            self.annotator.show(
                title, (box.x, box.y, box.width, box.height) if box else None, viewport
            )
        return seq

    async def acted(self, seq: int, timeout: float = 0.2) -> Acted | None:
        """What the page reported of action `seq`, waiting up to `timeout` s for it."""
        return await self.tracker.wait(seq, timeout)

    def screenshot_after(
        self, artifact_id: str, name: str, box_of: Locator | ElementHandle | None = None
    ) -> None:
        """Stores the frame that shows the action's result (`_frame_of_step`), outlined, as
        `artifact_id`: the box the page reported for the action, else `box_of`'s box (looked
        up in the background: for steps that wait for an element rather than act on it)."""
        self._action_started.clear()
        seq = self.tracker.seq
        taking = self._screenshot(artifact_id, name, box_of, seq, self._step_started)
        self._spawn(self._keep_screenshot(name, taking))

    async def _keep_screenshot(self, name: str, taking: Awaitable[None]) -> None:
        try:
            await taking
        except Exception as exc:  # never a dead task: the record says what is missing
            log.error("%s: screenshot %s not stored: %s", self.sink.run_id, name, exc)
            self.failures.append(_line(ArtifactKind.screenshot, name, exc))

    async def _screenshot(
        self,
        artifact_id: str,
        name: str,
        box_of: Locator | ElementHandle | None,
        seq: int,
        began: float,
    ) -> None:
        event = self._action_started
        lookup = None
        if box_of is not None and self.tracker.get(seq) is None:
            lookup = asyncio.ensure_future(_box_of(box_of))
        # Settled: a moment after the action, unless the next action starts first.
        try:
            await asyncio.wait_for(event.wait(), timeout=SETTLE_S)
        except TimeoutError:
            pass
        frame = await self._frame_of_step(
            self.tracker.last_event.get(seq, began), acted=seq in self.tracker.last_event
        )
        box: Box | None = None
        acted = self.tracker.get(seq)
        if acted is not None and acted.box is not None:
            box = Box(*acted.box)
        elif lookup is not None:
            box = await lookup
        if lookup is not None and not lookup.done():
            lookup.cancel()
        if frame is None:
            return
        data = await asyncio.to_thread(outline, frame, box)
        await self.sink.put_bytes(
            ArtifactKind.screenshot, name, data, content_type="image/jpeg", artifact_id=artifact_id
        )

    async def _frame_of_step(self, began: float, *, acted: bool = False) -> Frame | None:
        """The screen as the step left it: the last frame the browser captured between the
        step's start (`began`, wall clock like the frames' capture timestamps) and the next
        step's start. Frames arrive a little after their capture, so wait briefly for one
        captured after that limit. If the browser painted nothing in between (the next step
        came first), the first frame after the limit if it came soon after (a paint that
        missed the limit, or any later one when the page reported an action on an element: a
        busy browser paints late); else the screen did not change: the last frame before."""
        limit = self._step_started if self._step_started > began else time.time()
        deadline = time.monotonic() + (IN_FLIGHT_S if self._draining else FRESH_S)
        while (self.latest is None or self.latest.captured < limit) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.01)
        frames = list(self.recent)
        within = [f for f in frames if began <= f.captured < limit]
        if within:
            return within[-1]
        after = [f for f in frames if f.captured >= limit]
        if after and (acted or after[0].captured < limit + LATE_PAINT_S):
            return after[0]
        before = [f for f in frames if f.captured < began]
        return before[-1] if before else self.latest

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Waits for screenshots and downloads still being written."""
        self._draining = True  # no next step: only frames already in flight are waited for
        self._action_started.set()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- the end ----------------------------------------------------------------------------

    async def stop_loading(self) -> None:
        """Stops every tab's loading, as the browser's stop button does."""
        context = self.context
        if context is None:
            return
        for page in context.pages:
            if page.is_closed():
                continue
            session = await untraced(lambda: context.new_cdp_session(page))  # noqa: B023
            try:
                await session.send("Page.stopLoading")
            finally:
                await session.detach()

    async def stop_screencast(self) -> None:
        page = self.active
        self.active = None
        if page is not None and not page.is_closed():
            try:
                await asyncio.wait_for(untraced(page.screencast.stop), timeout=5)
            except (Error, TimeoutError):
                pass

    def close_console(self) -> Path:
        self._console.close()
        return self.spool / "console.jsonl"

    async def finish_video(self) -> Path | None:
        if not self.started:
            return None
        out = self.spool / "recording.mp4"
        return await asyncio.to_thread(self.video.finish, out)

    async def finish(self, page: Page | None) -> list[str]:
        """Stops everything recorded and stores it, secrets masked, whatever the run's ending.
        Returns what could not be kept, one line per artifact (the run's record.missing).
        What could not be stored stays in the spool for runner.salvage."""
        problems: dict[str, BaseException] = {}

        async def guard(what: str, coro: Awaitable[Any], timeout: float) -> Any:
            t0 = time.monotonic()
            try:
                return await asyncio.wait_for(coro, timeout)
            except Exception as exc:
                log.warning("%s: %s failed", self.sink.run_id, what, exc_info=True)
                problems[what] = exc
                return None
            finally:
                log.debug("phase %s %.2f", what, time.monotonic() - t0)

        budget = self.sink.retry_s
        await guard("screenshots", self.drain(), 30 + budget)
        # A navigation still pending (a cancel or a time limit during a goto) would hold the
        # final HTML and the context's closing for as long as the server keeps it waiting.
        await guard("stop loading", self.stop_loading(), 2)
        html: str | None = None
        if page is not None and not page.is_closed():
            html = await guard("final html", untraced(page.content), 5)
        await guard("screencast", self.stop_screencast(), 10)
        # The video's remux runs while the trace and the HAR are written.
        video = asyncio.ensure_future(guard("video", self.finish_video(), 120))
        trace_path = self.spool / "trace.zip"
        if self.tracing and self.context is not None:
            await guard("trace", self.context.tracing.stop(path=str(trace_path)), 60)
        if self.context is not None:
            await guard("context", self.context.close(), 30)
        console = self.close_console()
        lines = list(self.failures)

        def not_written(kind: ArtifactKind, name: str, what: str) -> None:
            exc = problems.get(what)
            reason = storage_failure(exc) if exc is not None and disk_full(exc) else None
            if reason is None:
                reason = f"not written: {_why(exc, 0)}" if exc else "not written"
            lines.append(missing_line(kind, name, reason))

        har_path = self.spool / "network.har"
        for path, what in ((trace_path, "trace"), (har_path, "context")):
            # The browser leaves an empty file where it could not write one (a full disk).
            with contextlib.suppress(OSError):
                if path.exists() and path.stat().st_size == 0:
                    path.unlink()
                    if what not in problems and shutil.disk_usage(self.spool).free < 1 << 20:
                        problems[what] = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.tracing and not trace_path.exists():
            not_written(ArtifactKind.trace, "trace.zip", "trace")
        if self.har and self.context is not None and not har_path.exists():
            not_written(ArtifactKind.har, "network.har", "context")
        if self._console_error is not None:
            reason = storage_failure(self._console_error)
            lines.append(
                missing_line(ArtifactKind.console, "console.jsonl", f"cut short: {reason}")
            )

        async def store_video() -> list[str]:
            path = await video
            if path is None:
                if self.started:
                    # The fragmented spool stays: runner.salvage finalizes what it holds.
                    not_written(ArtifactKind.video, "recording.mp4", "video")
                return []
            stored = self.sink.put_file(ArtifactKind.video, "recording.mp4", path, consume=True)
            return await store(ArtifactKind.video, stored, 300 + budget)

        storing = [
            store_video(),
            self._store_masked(ArtifactKind.trace, trace_path, self.masker.mask_zip, None),
            self._store_masked(
                ArtifactKind.har,
                self.spool / "network.har",
                self.masker.mask_har,
                "application/json",
            ),
            store(
                ArtifactKind.console,
                self.sink.put_file(ArtifactKind.console, "console.jsonl", console, consume=True),
                30 + budget,
            ),
        ]
        if html is not None:
            data = self.masker.mask_text(html).encode()
            storing.append(
                store(
                    ArtifactKind.html,
                    self.sink.put_bytes(ArtifactKind.html, "final.html", data),
                    30 + budget,
                )
            )
        stored = [line for found in await asyncio.gather(*storing) for line in found]
        return lines + stored

    async def _store_masked(
        self,
        kind: ArtifactKind,
        path: Path,
        mask: Callable[[Path], Any],
        content_type: str | None,
    ) -> list[str]:
        """Masks the secrets in a spooled file in place (a thread: zips and HARs are big), then
        stores it under its own name. Fails closed: a file whose masking failed or did not end
        within `mask_timeout_s` may still hold a secret in clear, so it is deleted, not stored,
        and reported missing."""
        if not path.exists():
            return []
        try:
            # A masking thread that overran goes on, but only ever writes a masked copy, and
            # only next to the file it masks, which is gone by then (it fails).
            await asyncio.wait_for(asyncio.to_thread(mask, path), self.mask_timeout_s)
        except Exception as exc:
            with contextlib.suppress(OSError):  # else the spool's removal deletes it
                path.unlink(missing_ok=True)
            reason = storage_failure(exc) if disk_full(exc) else _why(exc, self.mask_timeout_s)
            return [f"{kind.value}: not stored: masking failed: {reason}"]
        stored = self.sink.put_file(kind, path.name, path, content_type=content_type, consume=True)
        return await store(kind, stored, 300 + self.sink.retry_s)


async def store(kind: ArtifactKind, storing: Awaitable[Any], timeout: float) -> list[str]:
    """Stores one artifact of the run's record; one that could not be is reported missing."""
    try:
        await asyncio.wait_for(storing, timeout)
    except Exception as exc:
        return [_line(kind, None, exc, timeout)]
    return []


def _line(kind: ArtifactKind, name: str | None, exc: Exception, timeout: float = 0) -> str:
    """The `record.missing` line of an artifact not kept because of `exc`."""
    if isinstance(exc, StoreFailed):
        return exc.line
    reason = storage_failure(exc) if disk_full(exc) else f"not stored: {_why(exc, timeout)}"
    return missing_line(kind, name, reason) if name else f"{kind.value}: {reason}"


def _why(exc: BaseException | None, timeout: float) -> str:
    if isinstance(exc, TimeoutError) and timeout:
        return f"not done within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"
