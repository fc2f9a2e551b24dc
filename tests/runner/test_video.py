"""runner.video / runner.media against real ffmpeg, ffprobe and Chromium."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.async_api import async_playwright

from runner.media import find_ffmpeg
from runner.settings import RunnerSettings
from runner.video import VideoEncoderError, VideoRecorder, faststart_remux
from tests.media import find_ffprobe

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FPS = 10
FRAME_MS = 1000 // FPS
RGB = tuple[int, int, int]
RED: RGB = (255, 0, 0)
BLUE: RGB = (0, 0, 255)
WHITE: RGB = (255, 255, 255)

needs_ffprobe = pytest.mark.skipif(find_ffprobe() is None, reason="needs ffprobe")


# ---------------------------------------------------------------------------- helpers


def make_jpeg(color: RGB, size: tuple[int, int] = (1280, 720)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def jpeg_color(data: bytes) -> RGB:
    with Image.open(io.BytesIO(data)) as img:
        pixel = img.convert("RGB").resize((1, 1), Image.Resampling.BOX).tobytes()
    return (pixel[0], pixel[1], pixel[2])


def close_to(actual: RGB, expected: RGB, tol: int = 24) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def ffprobe(path: Path) -> dict[str, Any]:
    probe = find_ffprobe()
    assert probe is not None
    result = subprocess.run(
        [probe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def video_stream(info: dict[str, Any]) -> dict[str, Any]:
    streams = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert len(streams) == 1
    return streams[0]


def frame_colors(path: Path) -> list[RGB]:
    """Mean colour of every frame of ``path``, in order (decoded by ffmpeg)."""
    result = subprocess.run(
        [
            find_ffmpeg(),
            *("-v", "error", "-i", str(path), "-vf", "scale=1:1:flags=area"),
            *("-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    raw = result.stdout
    return [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw) - 2, 3)]


def top_level_boxes(path: Path) -> list[str]:
    """Types of the top-level ISO-BMFF boxes of ``path``, in file order."""
    boxes: list[str] = []
    size_total = path.stat().st_size
    with path.open("rb") as fh:
        pos = 0
        while pos < size_total:
            fh.seek(pos)
            header = fh.read(16)
            size = int.from_bytes(header[0:4], "big")
            boxes.append(header[4:8].decode("latin-1"))
            if size == 1:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                break
            assert size >= 8, f"corrupt box at {pos}"
            pos += size
    return boxes


def feed(rec: VideoRecorder, seconds: float, frames: list[bytes]) -> None:
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        rec.add_frame(frames[i % len(frames)])
        i += 1
        time.sleep(0.05)


def encoder_pid(spool: Path) -> int:
    """The ffmpeg writing `spool`, found as an operator would (`pgrep -f <spool>`)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if str(spool).encode() in args:
            return int(entry.name)
    raise AssertionError(f"no process writes {spool}")


def fragments_written(spool: Path) -> int:
    """Complete `moof` boxes at the top level of a fragmented MP4 that is still being written."""
    data = spool.read_bytes() if spool.exists() else b""
    count, pos = 0, 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size < 8 or pos + size > len(data):
            break  # the box being written
        count += data[pos + 4 : pos + 8] == b"moof"
        pos += size
    return count


def feed_until_fragments(
    rec: VideoRecorder, spool: Path, count: int, frames: list[bytes], timeout_s: float = 60
) -> None:
    """Feed frames until the encoder has written `count` fragments to the spool: however busy
    the machine (ffmpeg may lag behind its input), the spool then holds that much video."""
    deadline = time.monotonic() + timeout_s
    while fragments_written(spool) < count:
        assert time.monotonic() < deadline, f"fewer than {count} fragments in {timeout_s:g} s"
        feed(rec, 0.1, frames)


# ---------------------------------------------------------------------------- media


def test_find_ffmpeg_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert os.access(find_ffmpeg(), os.X_OK)

    # The runner setting `ffmpeg` (GLASSBOX_FFMPEG) first; one that points nowhere is refused.
    with pytest.raises(RuntimeError, match="GLASSBOX_FFMPEG"):
        find_ffmpeg(str(tmp_path / "missing-ffmpeg"))

    fake = tmp_path / "my-ffmpeg"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GLASSBOX_FFMPEG", str(fake))
    assert find_ffmpeg(RunnerSettings().ffmpeg) == str(fake)

    # Nothing on PATH: the imageio-ffmpeg binary.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bundled = find_ffmpeg()
    assert "imageio_ffmpeg" in bundled


# ---------------------------------------------------------------------------- frames


def test_frames_must_be_jpeg_and_finish_needs_start(tmp_path: Path) -> None:
    rec = VideoRecorder(tmp_path / "unused.mp4", fps=FPS)
    with pytest.raises(ValueError, match="JPEG"):
        rec.add_frame(b"not a jpeg")
    with pytest.raises(RuntimeError, match="before start"):
        rec.finish(tmp_path / "video.mp4")
    assert rec.elapsed_ms() == 0
    assert not (tmp_path / "unused.mp4").exists()


# ---------------------------------------------------------------------------- encoder


@needs_ffprobe
def test_static_tail_keeps_duration_and_output_is_faststart_h264(tmp_path: Path) -> None:
    spool = tmp_path / "video.spool.mp4"
    rec = VideoRecorder(spool, fps=FPS)
    frames = [make_jpeg(RED), make_jpeg(BLUE)]
    called = time.monotonic()
    rec.start()
    started = time.monotonic()
    time.sleep(0.3)  # no frame yet: blank white
    # Another size and aspect (letterboxed), then 1280x720 frames until 2 s.
    rec.add_frame(make_jpeg(BLUE, (1000, 800)))
    feed(rec, started + 2.0 - time.monotonic(), frames)
    rec.add_frame(frames[1])
    time.sleep(max(0.0, started + 3.5 - time.monotonic()))  # a static page: no frames at all
    before = time.monotonic()
    end_ms = rec.elapsed_ms()
    after = time.monotonic()
    # elapsed_ms() is monotonic time since start() (the video's time 0 is set while start()
    # runs), whenever the sleep above returned.
    assert int((before - started) * 1000) <= end_ms <= int((after - called) * 1000) + 1
    assert end_ms >= 3500
    out = rec.finish(tmp_path / "video.mp4")
    assert out == tmp_path / "video.mp4"
    assert not spool.exists()
    assert rec.finish(tmp_path / "video.mp4") == out  # second call: same result

    info = ffprobe(out)
    stream = video_stream(info)
    assert stream["codec_name"] == "h264"
    assert stream["pix_fmt"] == "yuv420p"
    assert (stream["width"], stream["height"]) == (1280, 720)
    assert stream["profile"] in {"Constrained Baseline", "Baseline", "Main", "High"}
    assert stream["r_frame_rate"] == f"{FPS}/1"
    duration_ms = float(info["format"]["duration"]) * 1000
    final_ms = rec.elapsed_ms()  # frozen by finish()
    assert end_ms <= final_ms
    # The video lasts until finish(), rounded up to a whole frame: the 1.5 s and more of static
    # tail without a single screencast frame are in it.
    assert final_ms < duration_ms <= final_ms + FRAME_MS + 1

    boxes = top_level_boxes(out)
    assert "moof" not in boxes  # a regular MP4, not fragmented
    assert boxes.index("moov") < boxes.index("mdat"), boxes

    colors = frame_colors(out)
    assert len(colors) == int(stream["nb_frames"])
    assert close_to(colors[0], WHITE, tol=6)  # blank frame, full range preserved
    assert close_to(colors[-1], BLUE)  # the static tail repeats the latest frame
    assert close_to(colors[-10], BLUE)


@needs_ffprobe
def test_overlay_decorates_frames_by_scheduled_time(tmp_path: Path) -> None:
    green = make_jpeg((0, 255, 0))
    scheduled: list[float] = []  # the `at` of every call, frame by frame

    def overlay(jpeg: bytes, at: float) -> bytes:
        scheduled.append(at)
        video_ms = round((at - scheduled[0]) * 1000)  # frame 0 is due at video time 0
        if video_ms >= 950:
            raise RuntimeError("overlay bug")  # must not break the video
        return green if 450 <= video_ms < 750 else jpeg

    rec = VideoRecorder(tmp_path / "spool.mp4", fps=FPS, overlay=overlay)
    rec.add_frame(make_jpeg(RED))  # before start(): shown from the first video frame
    called = time.monotonic()
    rec.start()
    started = time.monotonic()
    time.sleep(1.2)
    out = rec.finish(tmp_path / "video.mp4")

    # `at` is the frame's scheduled monotonic time: time 0 of the video is set in start(), and
    # frame k is due 1/fps after frame k-1 (however late the ticker got to it).
    assert called <= scheduled[0] <= started
    steps = [round((b - a) * 1000) for a, b in itertools.pairwise(scheduled)]
    assert steps and all(step == FRAME_MS for step in steps), steps

    colors = frame_colors(out)
    assert len(colors) >= 12
    green_frames = [i for i, c in enumerate(colors) if close_to(c, (0, 255, 0))]
    assert green_frames == [5, 6, 7]
    assert all(close_to(c, RED) for i, c in enumerate(colors) if i not in green_frames)


async def test_screencast_frames_land_at_elapsed_ms(tmp_path: Path) -> None:
    rec = VideoRecorder(tmp_path / "spool.mp4", fps=FPS)
    # Each frame with the video offsets read just before and after add_frame() stamped it.
    arrivals: list[tuple[int, int, bytes]] = []

    def on_frame(frame: Any) -> None:
        before = rec.elapsed_ms()
        rec.add_frame(frame["data"])
        arrivals.append((before, rec.elapsed_ms(), frame["data"]))

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 720})
            await page.set_content("<body style='margin:0;background:rgb(255,0,0)'></body>")
            rec.start()
            await page.screencast.start(
                on_frame=on_frame, size={"width": 1280, "height": 720}, quality=80
            )
            # Red frames in the video for a while (the first frame may be slow to come).
            async with asyncio.timeout(30):
                while not arrivals:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.6)
            change_ms = rec.elapsed_ms()
            await page.evaluate("document.body.style.background = 'rgb(0,0,255)'")
            async with asyncio.timeout(30):
                while not any(close_to(jpeg_color(data), BLUE) for _, _, data in arrivals):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            await page.screencast.stop()
            # As runner.recorder finishes it: in a thread, off the event loop.
            out = await asyncio.to_thread(rec.finish, tmp_path / "video.mp4")
        finally:
            await browser.close()

    arrived_after, arrived_before = next(
        (low, high) for low, high, data in arrivals if close_to(jpeg_color(data), BLUE)
    )
    assert arrived_after >= change_ms
    colors = frame_colors(out)
    first_blue = next(i for i, c in enumerate(colors) if close_to(c, BLUE))
    first_blue_ms = first_blue * FRAME_MS
    # The frame shows up in the video at the first video frame at or after its arrival: within
    # one frame interval of the offsets read around add_frame(), however late the ticker ran.
    assert arrived_after <= first_blue_ms <= arrived_before + FRAME_MS, (
        change_ms,
        (arrived_after, arrived_before),
        first_blue_ms,
    )
    # Just before the change the page was red, and it stays blue afterwards.
    before = colors[(change_ms - FRAME_MS) // FRAME_MS]
    assert close_to(before, RED), before
    assert all(close_to(c, BLUE) for c in colors[first_blue:])
    assert abs(len(colors) * FRAME_MS - rec.elapsed_ms()) <= FRAME_MS


@needs_ffprobe
def test_killed_encoder_leaves_playable_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool.mp4"
    rec = VideoRecorder(spool, fps=FPS, keyframe_interval_s=0.5)
    rec.start()
    frames = [make_jpeg(RED), make_jpeg(BLUE)]
    feed_until_fragments(rec, spool, 2, frames)
    os.kill(encoder_pid(spool), signal.SIGKILL)  # ffmpeg dies mid-run (the OOM killer, ...)
    feed(rec, 0.5, frames)  # the run goes on, unaware

    out = tmp_path / "video.mp4"
    with pytest.raises(VideoEncoderError, match="ffmpeg") as excinfo:
        rec.finish(out)
    assert str(spool) in str(excinfo.value)
    with pytest.raises(VideoEncoderError):
        rec.finish(out)  # still a clear error, not a hang or a crash
    assert not out.exists()

    stream = video_stream(ffprobe(spool))
    assert stream["codec_name"] == "h264"
    salvaged = faststart_remux(spool, tmp_path / "salvaged.mp4")
    assert float(ffprobe(salvaged)["format"]["duration"]) >= 0.45


@needs_ffprobe
def test_bundled_ffmpeg_records(tmp_path: Path) -> None:
    spool = tmp_path / "spool.mp4"
    bundled = __import__("imageio_ffmpeg").get_ffmpeg_exe()  # the other ffmpeg we support
    rec = VideoRecorder(spool, fps=FPS, ffmpeg=bundled)
    rec.start()
    feed(rec, 1.0, [make_jpeg(BLUE), make_jpeg(RED)])
    out = rec.finish(tmp_path / "video.mp4")

    assert not spool.exists()
    info = ffprobe(out)
    assert video_stream(info)["codec_name"] == "h264"
    assert float(info["format"]["duration"]) >= 1.0
