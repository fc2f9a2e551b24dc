"""Runner settings: the browser, the recording, the limits."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLASSBOX_", extra="ignore")

    chromium: str | None = Field(
        default=None,
        description=(
            "Path to a Chromium/Chrome binary. Default: Playwright's managed Chromium if "
            "installed, else /usr/bin/chromium (or chromium-browser, google-chrome)."
        ),
    )
    ffmpeg: str | None = Field(
        default=None,
        description=(
            "The ffmpeg executable (a path or a command name). Default: ffmpeg on PATH, else "
            "the binary shipped in the imageio-ffmpeg wheel."
        ),
    )
    headless: bool = Field(default=True, description="Run the browser headless.")
    viewport_width: int = Field(default=1280, ge=200, le=3840, description="Viewport width.")
    viewport_height: int = Field(default=720, ge=200, le=2160, description="Viewport height.")
    video_fps: int = Field(default=10, ge=1, le=30, description="Frame rate of the run video.")
    video_scale: float = Field(
        default=0.625,
        gt=0,
        le=1,
        description=(
            "Size of the video and the action screenshots relative to the viewport: 0.625 "
            "records a 1280x720 viewport at 800x450, as Playwright's own video; 1 records at "
            "full size for about 25 % more CPU per run."
        ),
    )
    video_quality: int = Field(
        default=80, ge=10, le=100, description="JPEG quality of screencast frames (1-100)."
    )
    annotate_actions: Literal["overlay", "playwright", "off"] = Field(
        default="overlay",
        description=(
            "How actions are annotated in the video: overlay (drawn into the frames, no delay), "
            "playwright (page.screencast.show_actions, which pauses each action), or off."
        ),
    )
    annotation_ms: int = Field(
        default=600, ge=50, le=5000, description="How long an action's annotation stays visible."
    )
    step_timeout_ms: int = Field(
        default=10_000, gt=0, description="Default timeout of a step that gives no timeout_ms."
    )
    replay_match_timeout_ms: int = Field(
        default=5_000,
        gt=0,
        description=(
            "How long a replayed action (run_with: code) waits for its cached locator before it "
            "tries the fallbacks and, failing those, records a divergence."
        ),
    )
    continue_ttl_s: int = Field(
        default=86_400,
        ge=0,
        description=(
            "How long a finished run keeps its browser state (cookies, local storage, final URL; "
            "sealed like secrets) for a run continuing from it; 0 keeps none."
        ),
    )
    navigation_timeout_ms: int = Field(
        default=30_000, gt=0, description="Default timeout of goto steps that give no timeout_ms."
    )
    trace: bool = Field(default=True, description="Record a Playwright trace (trace.zip).")
    har: bool = Field(default=True, description="Record a HAR of the run's network traffic.")
    mask_timeout_s: float = Field(
        default=120,
        gt=0,
        description=(
            "How long masking the secrets out of one trace or HAR may take. One that could not "
            "be masked in time is not stored (never stored unmasked); the run's record lists "
            "it as missing."
        ),
    )
    store_retry_s: float = Field(
        default=120,
        gt=0,
        description=(
            "How long storing one artifact (its object and its row) is retried while the object "
            "store, the disk or the database fails. What still could not be stored stays in the "
            "worker's spool, is listed in the run's record.missing and is stored by a later "
            "salvage sweep."
        ),
    )
    salvage_interval_s: float = Field(
        default=60,
        gt=0,
        description=(
            "How often a worker looks for spools left behind (runs interrupted with their "
            "worker, artifacts not stored during an outage) and stores what is in them."
        ),
    )
    allowed_url_schemes: str = Field(
        default="http,https",
        description="Comma-separated URL schemes a run may open (file: and others are refused).",
    )
    template_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="CPU-time budget of rendering one template of a workflow (refused beyond it).",
    )
    template_max_bytes: int = Field(
        default=1_000_000,
        ge=1000,
        description="Longest text (in characters) a template may produce or build.",
    )
    auto_migrate: bool = Field(
        default=True, description="Apply database migrations automatically at start-up."
    )
    upload_dir: Path | None = Field(
        default=None,
        description="Directory of server files that upload steps may give a page (paths "
        "relative to it, or absolute inside it). Unset: none; uploads come from type: file "
        "parameters only.",
    )

    @property
    def video_size(self) -> tuple[int, int]:
        """The frame size: the viewport scaled by video_scale, even numbers (H.264 needs it)."""
        width = max(2, int(self.viewport_width * self.video_scale) & ~1)
        height = max(2, int(self.viewport_height * self.video_scale) & ~1)
        return width, height

    @property
    def url_schemes(self) -> tuple[str, ...]:
        return tuple(s.strip().lower() for s in self.allowed_url_schemes.split(",") if s.strip())
