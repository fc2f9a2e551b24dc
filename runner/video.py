"""Continuous H.264 recording of a run from Playwright screencast frames.

``page.screencast`` only delivers a JPEG when the page repaints, so a static page produces no
frames at all. :class:`VideoRecorder` turns that variable-rate stream into a constant-frame-rate
video: a ticker thread writes the *latest* frame to ffmpeg every ``1/fps`` seconds from
:meth:`VideoRecorder.start` on, so the video's duration is the wall-clock duration of the run
and an event that happened ``elapsed_ms()`` after start is at that offset in the video.

Pipeline::

    screencast on_frame -> add_frame() -> [ring of recent JPEGs] -> ticker thread
        -> ffmpeg stdin (image2pipe / mjpeg, -framerate fps)
        -> scale+pad to WxH, yuv420p, libx264 -> fragmented MP4 spool (playable if ffmpeg dies)
    finish() -> ffmpeg -c copy -movflags +faststart -> regular MP4 (moov before mdat)

Timeline: the video has exactly ``fps`` frames per second and video frame ``k`` covers
``[k/fps, (k+1)/fps)``. ``elapsed_ms()`` is ``time.monotonic()`` since ``start()``. Frame ``k`` is
*scheduled* for wall time ``t0 + k/fps`` and shows the newest screencast frame that had arrived by
that moment -- chosen from a small ring of recent frames by arrival time, not by whatever is newest
when the ticker happens to run. So even when the ticker is late (GIL, ffmpeg back-pressure) and
has to write several frames at once to catch up, a screencast frame that arrived at
``elapsed_ms() == a`` first appears at video time ``ceil(a * fps / 1000) * 1000 / fps``, i.e. in
``[a, a + 1000/fps)``. A frame counter would lag behind the real timeline whenever the ticker is
late, which is why the clock is monotonic time and the frame counter is made to follow it.

Everything is streamed: ffmpeg reads the frames from a pipe and writes the spool file; the
remux is another ffmpeg process. Only a bounded ring of recent JPEGs is kept in memory.

Encoder cost, measured on the 2-core target VM (Debian ffmpeg 5.1, 1280x720, CRF 23, keyframes
every 2 s, one x264 thread), in ffmpeg CPU-seconds per wall-second; "static" repeats one busy
text page, "dynamic" gets a new frame of a scrolling page ~30 times a second::

                        static        dynamic       file size static / dynamic
    10 fps ultrafast    0.09-0.10     0.12-0.15     165 / 830-940 kB/s
    10 fps veryfast     0.11-0.14     0.17-0.31      80 / 280-420 kB/s
    15 fps ultrafast    0.13-0.15     0.18          165 / 1000-1200 kB/s
    15 fps veryfast     0.17-0.19     0.25-0.38      75 / 410-490 kB/s

The Python side (ticker thread) costs < 0.01 CPU-s/s. x264's default thread count (3 here)
costs up to +0.08 CPU-s/s more with veryfast for nothing. Hence the defaults: 10 fps,
ultrafast, 1 thread -- about 5 % of the machine, the cheapest option for the wall-time budget
of a recorded run; ``preset="veryfast"`` halves the file size for 1.2-2x the CPU. Most of the
static cost is decoding the repeated JPEG. A longer ``keyframe_interval_s`` shrinks static
videos (5 s: ~77 kB/s ultrafast) at the price of a coarser spool after a crash.
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import ffmpeg
from PIL import Image

from runner.media import find_ffmpeg

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_KEYFRAME_INTERVAL_S",
    "DEFAULT_PRESET",
    "DEFAULT_THREADS",
    "VideoEncoderError",
    "VideoRecorder",
    "blank_jpeg",
    "faststart_remux",
]

DEFAULT_FPS = 10
"""Frames per second of the recording (see the CPU measurements in the module docstring)."""

DEFAULT_PRESET = "ultrafast"
"""libx264 preset: the least CPU; veryfast halves the file size for 1.2-2x the CPU."""

DEFAULT_KEYFRAME_INTERVAL_S = 2.0
"""Keyframe and fragment interval of the spool."""

DEFAULT_THREADS = 1
"""libx264 threads (1 = least total CPU; see the measurements in the module docstring)."""

_RING_SIZE = 32
"""Recent screencast frames kept for catch-up writes (a late ticker picks among them)."""

_STDERR_TAIL = 40
_JPEG_SOI = b"\xff\xd8"


class VideoEncoderError(RuntimeError):
    """ffmpeg failed (died mid-run, exited non-zero, or the remux failed)."""


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    FINISHING = "finishing"
    FINISHED = "finished"
    FAILED = "failed"


def blank_jpeg(width: int, height: int, color: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    """Return a JPEG of ``width`` x ``height`` filled with ``color`` (white by default)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _ffmpeg_error_text(exc: BaseException) -> str:
    stderr = getattr(exc, "stderr", None)
    if isinstance(stderr, bytes):
        return stderr.decode("utf-8", "replace").strip()[-2000:]
    return str(exc)


def faststart_remux(src: Path, dst: Path, *, ffmpeg_exe: str | None = None) -> Path:
    """Remux ``src`` (e.g. a fragmented MP4 spool) to a regular MP4 at ``dst``, moov first.

    Streams are copied (no re-encode). The output is written to a temporary file next to
    ``dst`` and renamed into place, so ``dst`` is never half-written. Blocks until done.

    Raises:
        VideoEncoderError: ffmpeg failed (e.g. ``src`` holds no complete fragment).
    """
    exe = find_ffmpeg(ffmpeg_exe)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part")
    stream = (
        ffmpeg.input(str(src))
        .output(str(tmp), c="copy", movflags="+faststart", f="mp4")
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
    )
    try:
        stream.run(cmd=exe, capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise VideoEncoderError(
            f"remuxing {src} to {dst} failed: {_ffmpeg_error_text(exc)}"
        ) from exc
    os.replace(tmp, dst)
    return dst


class VideoRecorder:
    """Record one continuous constant-frame-rate H.264 video from screencast JPEG frames.

    Thread-safe. ``add_frame``, ``elapsed_ms`` and ``start`` are cheap and may be called from
    the event loop. ``finish`` blocks: from asyncio run it in a thread (``asyncio.to_thread``),
    as :class:`runner.recorder.RunRecorder` does.

    Typical use::

        rec = VideoRecorder(run_dir / "video.spool.mp4")
        rec.start()
        await page.screencast.start(on_frame=lambda f: rec.add_frame(f["data"]),
                                    size={"width": 1280, "height": 720}, quality=80)
        ...  # event["video_ms"] = rec.elapsed_ms()
        await page.screencast.stop()
        await asyncio.to_thread(rec.finish, run_dir / "video.mp4")
    """

    def __init__(
        self,
        spool_path: Path,
        *,
        fps: int = DEFAULT_FPS,
        width: int = 1280,
        height: int = 720,
        ffmpeg: str | None = None,
        preset: str = DEFAULT_PRESET,
        crf: int = 23,
        keyframe_interval_s: float = DEFAULT_KEYFRAME_INTERVAL_S,
        threads: int = DEFAULT_THREADS,
        overlay: Callable[[bytes, float], bytes] | None = None,
    ) -> None:
        """Create a recorder; nothing runs until :meth:`start`.

        Args:
            spool_path: the fragmented MP4 written while recording (removed by ``finish``;
                left in place after a failure, for runner.salvage).
            fps: constant output frame rate.
            width, height: output size; odd values are rounded down to even. Frames of another
                size or aspect are scaled to fit and letterboxed (black bars).
            ffmpeg: the ffmpeg executable (the runner setting ``ffmpeg``), found as
                :func:`runner.media.find_ffmpeg` finds it; default: on ``PATH``, else bundled.
            preset: libx264 preset.
            crf: libx264 constant rate factor (lower = better quality, bigger file).
            keyframe_interval_s: keyframe (and MP4 fragment) interval. After a crash the spool
                holds everything up to the last complete fragment.
            threads: libx264 threads; 0 lets x264 choose (1.5 x cores). One thread costs less
                CPU in total and leaves the other cores to the browser.
            overlay: called by the ticker as ``overlay(jpeg, at)`` for every video frame, with
                ``at`` the frame's scheduled ``time.monotonic()``; returns the JPEG to encode
                (e.g. with an action annotation drawn on it). It runs on the ticker thread, so
                it must be thread-safe and fast when it has nothing to draw; if it raises, the
                frame is encoded undecorated.
        """
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if width < 2 or height < 2:
            raise ValueError(f"video size too small: {width}x{height}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        if keyframe_interval_s <= 0:
            raise ValueError(f"keyframe_interval_s must be positive, got {keyframe_interval_s}")
        self.spool_path = Path(spool_path)
        self.fps = fps
        self.width = width - width % 2
        self.height = height - height % 2
        self.preset = preset
        self.crf = crf
        self.keyframe_interval_s = keyframe_interval_s
        self.threads = threads
        self.overlay = overlay
        self._ffmpeg_exe = ffmpeg

        self._frames_lock = threading.Lock()
        # (arrival monotonic time, jpeg bytes), oldest first; guarded by _frames_lock.
        self._frames: deque[tuple[float, bytes]] = deque(maxlen=_RING_SIZE)
        self._frame_count = 0

        self._state_lock = threading.RLock()
        self._state = _State.NEW
        self._proc: subprocess.Popen[bytes] | None = None
        self._t0: float | None = None
        self._stop_at: float | None = None
        self._stop_event = threading.Event()
        self._ticker: threading.Thread | None = None
        self._stderr_thread: threading.Thread | None = None
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._frames_written = 0
        self._error: str | None = None
        self._out_path: Path | None = None
        self._final_ms: int | None = None
        self._blank: bytes | None = None
        self._overlay_failed = False

    # ------------------------------------------------------------------ lifecycle

    def build_command(self) -> list[str]:
        """The ffmpeg command line used by :meth:`start` (for logs and debugging)."""
        exe = find_ffmpeg(self._ffmpeg_exe)
        w, h = self.width, self.height
        keyint = max(1, round(self.keyframe_interval_s * self.fps))
        video = (
            ffmpeg.input(
                "pipe:0",
                f="image2pipe",
                framerate=self.fps,
                # Without these ffmpeg buffers ~5 s / 5 MB of frames to probe the stream before
                # it encodes (and writes) anything, and the pipe backs up meanwhile.
                probesize=32,
                analyzeduration=0,
                fflags="nobuffer",
                **{"c:v": "mjpeg"},
            )
            .filter(
                "scale",
                w,
                h,
                force_original_aspect_ratio="decrease",
                force_divisible_by=2,
            )
            .filter("pad", w, h, "(ow-iw)/2", "(oh-ih)/2", color="black")
            .filter("setsar", 1)
            .filter("format", "yuv420p")
        )
        out = (
            ffmpeg.output(
                video,
                str(self.spool_path),
                f="mp4",
                preset=self.preset,
                crf=self.crf,
                g=keyint,
                keyint_min=keyint,
                threads=self.threads,
                pix_fmt="yuv420p",
                # JPEG is BT.601 full range; scale converts to limited range and keeps the
                # BT.601 matrix, so tag exactly that (browsers honour the tags).
                colorspace="smpte170m",
                color_primaries="bt709",
                color_trc="bt709",
                color_range="tv",
                movflags="frag_keyframe+empty_moov+default_base_moof",
                flush_packets=1,
                **{"c:v": "libx264", "profile:v": "high"},
            )
            .global_args("-hide_banner", "-nostats", "-loglevel", "error")
            .overwrite_output()
        )
        return [str(part) for part in out.compile(cmd=exe)]

    def start(self) -> None:
        """Launch ffmpeg and the ticker thread. The video timeline starts now."""
        with self._state_lock:
            if self._state is not _State.NEW:
                raise RuntimeError(f"VideoRecorder.start() called in state {self._state.value}")
            self._ffmpeg_exe = find_ffmpeg(self._ffmpeg_exe)
            cmd = self.build_command()
            self._blank = blank_jpeg(self.width, self.height)
            self.spool_path.parent.mkdir(parents=True, exist_ok=True)
            logger.debug("starting video encoder: %s", " ".join(cmd))
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                bufsize=0,
                # Own session: a Ctrl-C meant for the runner must not kill the encoder before
                # the runner had a chance to finish() the video.
                start_new_session=True,
            )
            self._t0 = time.monotonic()
            self._state = _State.RUNNING
            assert self._proc.stderr is not None
            self._stderr_thread = threading.Thread(
                target=self._drain_stderr,
                args=(self._proc.stderr,),
                name="glassbox-ffmpeg-stderr",
                daemon=True,
            )
            self._stderr_thread.start()
            self._ticker = threading.Thread(
                target=self._run_ticker, name="glassbox-video-ticker", daemon=True
            )
            self._ticker.start()

    def finish(self, out_path: Path, *, timeout_s: float = 60.0) -> Path:
        """Stop recording and write a regular, faststart MP4 at ``out_path``. Blocks.

        Writes the frames still due so the duration covers everything up to now, closes
        ffmpeg's stdin, waits for it, then remuxes the fragmented spool (``-c copy -movflags
        +faststart``). The spool is deleted afterwards.

        Calling it again after success returns the first result. After a failure it raises
        :class:`VideoEncoderError`; the spool stays, playable up to its last complete fragment
        (salvage it with :func:`faststart_remux`).
        """
        out_path = Path(out_path)
        with self._state_lock:
            if self._state is _State.FINISHED:
                assert self._out_path is not None
                if out_path != self._out_path:
                    logger.warning(
                        "finish(%s) called again; video already written to %s",
                        out_path,
                        self._out_path,
                    )
                return self._out_path
            if self._state is _State.NEW:
                raise RuntimeError("VideoRecorder.finish() called before start()")
            if self._state is _State.FINISHING:
                raise RuntimeError("VideoRecorder.finish() is already running in another thread")
            failed = self._state is _State.FAILED
            if self._final_ms is None:
                self._final_ms = self.elapsed_ms()
            if not failed:
                self._state = _State.FINISHING
                self._stop_at = time.monotonic()
        if failed:
            self._stop_event.set()
            self._release_process()
            raise VideoEncoderError(self._failure_message())
        try:
            self._stop_encoder(timeout_s)
            faststart_remux(self.spool_path, out_path, ffmpeg_exe=self._ffmpeg_exe)
        except BaseException as exc:
            self._release_process()
            with self._state_lock:
                self._state = _State.FAILED
                if self._error is None:
                    self._error = str(exc)
            if isinstance(exc, VideoEncoderError):
                raise
            if isinstance(exc, Exception):
                raise VideoEncoderError(self._failure_message()) from exc
            raise
        with contextlib.suppress(FileNotFoundError):
            self.spool_path.unlink()
        with self._state_lock:
            self._state = _State.FINISHED
            self._out_path = out_path
        logger.info(
            "video written: %s (%d frames, %.1f s)",
            out_path,
            self._frames_written,
            self._frames_written / self.fps,
        )
        return out_path

    # ------------------------------------------------------------------ frames and time

    def add_frame(self, jpeg: bytes) -> None:
        """Make ``jpeg`` the latest frame. Cheap; call it from the screencast callback."""
        if not jpeg.startswith(_JPEG_SOI):
            raise ValueError("add_frame() expects JPEG data")
        with self._frames_lock:
            # Stamped under the lock: once the ticker has looked at the ring for a slot, no
            # frame can show up later with an arrival time before that look.
            self._frames.append((time.monotonic(), jpeg))
            self._frame_count += 1

    def elapsed_ms(self) -> int:
        """Offset of "now" into the video, in ms (0 before start, frozen after finish)."""
        if self._final_ms is not None:
            return self._final_ms
        t0 = self._t0
        if t0 is None:
            return 0
        return int((time.monotonic() - t0) * 1000)

    # ------------------------------------------------------------------ internals

    def _failure_message(self) -> str:
        proc = self._proc
        code = proc.returncode if proc is not None else None
        tail = "\n".join(self._stderr_tail).strip()
        parts = [f"video encoder failed: {self._error or 'unknown error'}"]
        if code is not None:
            parts.append(f"ffmpeg exit code {code}")
        if tail:
            parts.append(f"ffmpeg stderr:\n{tail}")
        parts.append(f"spool (playable up to its last fragment): {self.spool_path}")
        return "; ".join(parts)

    def _frame_for(self, scheduled: float) -> bytes:
        """Newest frame that had arrived by ``scheduled`` (blank before the first frame)."""
        with self._frames_lock:
            chosen: bytes | None = None
            for arrived, data in self._frames:
                if arrived <= scheduled:
                    chosen = data
                else:
                    break
            if chosen is None and self._frames and self._frame_count > len(self._frames):
                # The ring no longer reaches back that far (long stall): oldest we have.
                chosen = self._frames[0][1]
        if chosen is None:
            assert self._blank is not None
            return self._blank
        return chosen

    def _run_ticker(self) -> None:
        proc = self._proc
        t0 = self._t0
        assert proc is not None and proc.stdin is not None and t0 is not None
        fd = proc.stdin.fileno()
        interval = 1.0 / self.fps
        written = 0
        last_lag_warning = 0.0
        try:
            while True:
                stop_at = self._stop_at
                horizon = stop_at if stop_at is not None else time.monotonic()
                # Frame k is due at t0 + k/fps: by `horizon`, frames 0..floor(...) are due.
                due = int((horizon - t0) * self.fps) + 1
                behind = due - written
                if behind > self.fps and horizon - last_lag_warning > 10.0:
                    # ffmpeg cannot keep up (or the machine is overloaded). The timeline stays
                    # right, but frames are now picked from an ever older ring.
                    last_lag_warning = horizon
                    logger.warning("video encoder is %.1f s behind", behind / self.fps)
                while written < due:
                    scheduled = t0 + written * interval
                    data = self._decorate(self._frame_for(scheduled), scheduled)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    written += 1
                    self._frames_written = written
                if stop_at is not None:
                    return
                self._stop_event.wait(max(0.0, t0 + written * interval - time.monotonic()))
        except Exception as exc:
            if proc.poll() is None and isinstance(exc, OSError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
            self._error = f"ffmpeg stopped accepting frames ({exc!r})"
            logger.error("%s", self._failure_message())
            with self._state_lock:
                if self._state is _State.RUNNING:
                    self._state = _State.FAILED

    def _decorate(self, data: bytes, scheduled: float) -> bytes:
        overlay = self.overlay
        if overlay is None:
            return data
        try:
            decorated = overlay(data, scheduled)
        except Exception:
            if not self._overlay_failed:
                self._overlay_failed = True
                logger.exception("video overlay failed; encoding frames without it")
            return data
        if not decorated.startswith(_JPEG_SOI):
            if not self._overlay_failed:
                self._overlay_failed = True
                logger.error("video overlay returned no JPEG; encoding frames without it")
            return data
        return decorated

    def _drain_stderr(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr_tail.append(line)
                logger.debug("ffmpeg: %s", line)
        stream.close()

    def _release_process(self) -> None:
        """Kill ffmpeg if it still runs, reap it, close its pipes, join the helper threads."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for thread in (self._ticker, self._stderr_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(5)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _stop_encoder(self, timeout_s: float) -> None:
        """Let the ticker write the frames still due, close stdin and wait for ffmpeg."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._stop_event.set()
        ticker = self._ticker
        if ticker is not None:
            ticker.join(timeout_s)
            if ticker.is_alive():
                proc.kill()
                ticker.join(5)
                self._error = self._error or "ffmpeg stopped reading frames (killed)"
        if self._error is not None:
            raise VideoEncoderError(self._failure_message())
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            self._error = f"ffmpeg did not exit within {timeout_s:.0f} s after end of input"
            raise VideoEncoderError(self._failure_message()) from None
        if self._stderr_thread is not None:
            self._stderr_thread.join(5)
        if code != 0:
            self._error = f"ffmpeg exited with code {code}"
            raise VideoEncoderError(self._failure_message())

    def __repr__(self) -> str:
        return (
            f"VideoRecorder({str(self.spool_path)!r}, fps={self.fps}, "
            f"size={self.width}x{self.height}, state={self._state.value})"
        )

    def __del__(self) -> None:
        proc: Any = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()
