"""Locating the ffmpeg executable used for video recording."""

from __future__ import annotations

import logging
import os
import shutil

logger = logging.getLogger(__name__)


def find_ffmpeg(configured: str | None = None) -> str:
    """Return the path of an ffmpeg executable.

    Order: ``configured`` (the runner setting ``ffmpeg``, ``GLASSBOX_FFMPEG``), ``ffmpeg`` on
    ``PATH``, then the binary bundled with the ``imageio-ffmpeg`` wheel.

    Raises:
        RuntimeError: no usable ffmpeg was found (or ``configured`` points nowhere).
    """
    configured = (configured or "").strip()
    if configured:
        resolved = shutil.which(configured)
        if resolved is None:
            raise RuntimeError(
                f"GLASSBOX_FFMPEG={configured!r} is not an executable ffmpeg "
                "(not found, or not executable)"
            )
        return resolved

    on_path = shutil.which("ffmpeg")
    if on_path is not None:
        return on_path

    try:
        import imageio_ffmpeg

        bundled = str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # ImportError, or RuntimeError when the wheel has no binary
        logger.debug("imageio-ffmpeg has no usable ffmpeg: %s", exc)
    else:
        if os.access(bundled, os.X_OK):
            return bundled

    raise RuntimeError(
        "ffmpeg not found: install ffmpeg (e.g. `apt-get install ffmpeg`), install the "
        "`imageio-ffmpeg` wheel, or set GLASSBOX_FFMPEG to the path of an ffmpeg executable"
    )
