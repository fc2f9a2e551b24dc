"""ffprobe, for the tests that check the videos the runner writes (the product runs only ffmpeg)."""

from __future__ import annotations

import shutil


def find_ffprobe() -> str | None:
    """The system ffprobe on ``PATH``, or ``None`` (the ``imageio-ffmpeg`` wheel ships none)."""
    return shutil.which("ffprobe")
