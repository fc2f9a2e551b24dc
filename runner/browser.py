"""Finding and launching Chromium: Playwright's own where installed, else the system's."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from playwright.async_api import Browser, Playwright

from runner.media import find_ffmpeg
from runner.settings import RunnerSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

try:  # Playwright's own way to keep a call out of the trace's action list (its internal calls)
    from playwright._impl.channel_owner import ApiZone
    from playwright._impl.utils.zones import current_zone
except ImportError:  # pragma: no cover - another Playwright layout: the calls are traced
    ApiZone = None  # type: ignore[assignment,misc]


async def untraced(call: Callable[[], Awaitable[T]]) -> T:
    """Runs Playwright calls that are Glassbox's bookkeeping (a box to outline, the page's
    text for the model, the final HTML), not the user's steps, as Playwright runs its own
    internal calls: kept out of the trace, whose action list then reads as the workflow."""
    if ApiZone is None:
        return await call()
    zone = current_zone().with_("apiZone", ApiZone("glassbox", [], None, internal=True))
    return await zone.run_async(call)


SYSTEM_CHROMIUMS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

# Quiet flags: this machine (and many servers) has no route out; background fetches only fail.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]


def playwright_managed_chromium() -> str | None:
    """The browser `playwright install chromium` put in place, if it did."""
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            path = p.chromium.executable_path
    except Exception:
        return None
    return path if path and Path(path).exists() else None


def find_chromium(settings: RunnerSettings, *, managed: str | None = None) -> str | None:
    """None means: use Playwright's managed browser."""
    if settings.chromium:
        if not Path(settings.chromium).exists():
            raise FileNotFoundError(
                f"GLASSBOX_CHROMIUM points to a missing file: {settings.chromium}"
            )
        return settings.chromium
    if managed:
        return None
    for candidate in SYSTEM_CHROMIUMS:
        if Path(candidate).exists():
            return candidate
    found = shutil.which("chromium") or shutil.which("google-chrome")
    if found:
        return found
    raise FileNotFoundError(
        "No Chromium found: run `make setup`, `playwright install chromium`, "
        "or set GLASSBOX_CHROMIUM to a Chromium binary"
    )


async def launch(playwright: Playwright, settings: RunnerSettings) -> Browser:
    managed: str | None = None
    if not settings.chromium:
        path = playwright.chromium.executable_path
        managed = path if path and Path(path).exists() else None
    executable = find_chromium(settings, managed=managed)
    args = list(CHROMIUM_ARGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to sandbox as root
    log.info("launching %s", executable or "Playwright's Chromium")
    return await playwright.chromium.launch(
        executable_path=executable, headless=settings.headless, args=args
    )


def ensure(settings: RunnerSettings) -> int:
    """`make setup`: a browser and ffmpeg, installing Debian's packages when they are missing."""
    missing: list[str] = []
    try:
        find_chromium(settings, managed=playwright_managed_chromium())
    except FileNotFoundError:
        missing.append("chromium")
    if not shutil.which("ffmpeg") or not shutil.which("ffprobe"):
        missing.append("ffmpeg")
    if missing and shutil.which("apt-get") and os.geteuid() == 0:
        print(f"installing Debian packages: {' '.join(missing)}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env)
    elif "chromium" in missing:
        print("no system Chromium: trying `playwright install chromium`", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"], check=True)
    chromium = find_chromium(settings, managed=playwright_managed_chromium())
    ffmpeg = find_ffmpeg(settings.ffmpeg)
    print(f"chromium: {chromium or 'Playwright-managed'}; ffmpeg: {ffmpeg}", file=sys.stderr)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description="Check or install the browser and ffmpeg")
    parser.add_argument("--ensure", action="store_true")
    args = parser.parse_args()
    # The runner's own section only: this tool (`make setup`) sits below the service layer.
    settings = RunnerSettings()
    if args.ensure:
        raise SystemExit(ensure(settings))
    print(find_chromium(settings, managed=playwright_managed_chromium()) or "Playwright-managed")


if __name__ == "__main__":
    main()
