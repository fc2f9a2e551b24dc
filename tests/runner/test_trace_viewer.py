"""The run's trace.zip opens in Playwright's own trace viewer (the one the Trace tab serves).

The viewer ships inside the installed playwright package. It is served here, with the trace,
by a small stdlib HTTP server on 127.0.0.1 and opened in a real headless Chromium. The viewer
registers a service worker (sw.bundle.js) that fetches and unpacks the trace; the page waits
for that worker to take control before loading, so no reload is needed.
"""

from __future__ import annotations

import functools
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import playwright
import pytest
from playwright.async_api import async_playwright

from examples.site_server import SiteServer
from runner.browser import launch
from runner.settings import RunnerSettings
from tests.test_cli import only_artifact, recorded_runs

VIEWER = Path(playwright.__file__).parent / "driver" / "package" / "lib" / "vite" / "traceViewer"
GROUPS = ["search (action)", "products (extract)"]


@pytest.fixture(scope="module")
def trace_zip(site: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    shop = recorded_runs(site, tmp_path_factory, "shop")["shop"]
    assert shop.result.returncode == 0, shop.result.describe()
    assert only_artifact(shop.record, "trace")["content_type"] == "application/zip"
    return shop.artifact_bytes("trace")


class _ViewerHandler(SimpleHTTPRequestHandler):
    trace: bytes = b""

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/trace.zip":
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(self.trace)))
            self.end_headers()
            self.wfile.write(self.trace)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def viewer_url(trace_zip: bytes) -> Iterator[str]:
    assert (VIEWER / "index.html").is_file() and (VIEWER / "sw.bundle.js").is_file()
    handler = type("Handler", (_ViewerHandler,), {"trace": trace_zip})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=VIEWER))
    thread = threading.Thread(target=server.serve_forever, name="trace-viewer", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield f"{base}/index.html?trace={base}/trace.zip"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_trace_holds_the_screencast_frames(trace_zip: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(trace_zip)) as trace:
        assert trace.testzip() is None
        names = set(trace.namelist())
        events = [
            json.loads(line)
            for name in names
            if name.endswith(".trace")
            for line in trace.read(name).splitlines()
            if line.strip()
        ]
        frames = [e for e in events if e.get("type") == "screencast-frame"]
        assert len(frames) >= 5, "a filmstrip needs frames"
        for frame in frames:
            # Playwright >= 1.5x keeps them under screencast/ ("file"), older under resources/.
            member = frame.get("file") or f"resources/{frame['sha1']}"
            assert member in names, member
            assert member.endswith((".jpeg", ".jpg"))
            assert trace.read(member)[:3] == b"\xff\xd8\xff", f"{member} is not a JPEG"
        assert {(f["width"], f["height"]) for f in frames} == {(1280, 720)}
    groups = [e["title"] for e in events if e.get("method") == "tracingGroup"]
    assert groups == GROUPS
    # DOM snapshots are there too (the viewer's Before / Action / After panes).
    assert sum(1 for e in events if e.get("type") == "frame-snapshot") > 10


# Glassbox's own calls (a box to outline, the final HTML, the screencast, a pause before a
# screenshot): none of them is a step of the user's workflow.
BOOKKEEPING = {
    "boundingBox",
    "content",
    "evaluateExpression",
    "querySelector",
    "querySelectorAll",
    "screencastStart",
    "screencastStop",
    "waitForTimeout",
}


def test_trace_actions_are_the_workflow_steps(trace_zip: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(trace_zip)) as trace:
        events = [
            json.loads(line)
            for name in trace.namelist()
            if name.endswith(".trace")
            for line in trace.read(name).splitlines()
            if line.strip()
        ]
    calls = [e for e in events if e.get("type") == "before"]
    methods = [e["method"] for e in calls]
    assert not BOOKKEEPING & set(methods), methods
    # The run completed: no call in its action list failed.
    assert [e for e in events if e.get("type") == "after" and e.get("error")] == []
    # What remains reads as examples/shop.yaml: its steps in order, then the extraction.
    steps = [m for m in methods if m in {"goto", "fill", "selectOption", "check", "click"}]
    assert steps == ["goto", "fill", "selectOption", "check", "click", "click"]


async def test_trace_viewer_loads_the_trace(viewer_url: str) -> None:
    async with async_playwright() as p:
        browser = await launch(p, RunnerSettings())
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page_errors: list[str] = []
            console_errors: list[str] = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on(
                "console",
                lambda m: console_errors.append(m.text) if m.type == "error" else None,
            )
            await page.goto(viewer_url)

            search = page.get_by_role("treeitem", name=GROUPS[0])
            problem = page.locator(".processing-error")
            await search.or_(problem).first.wait_for(state="visible", timeout=30_000)
            assert await problem.count() == 0, await problem.inner_text()

            # The action list: the two block groups, then the actions inside the first.
            titles = page.locator(".action-title-method")
            assert (await titles.all_inner_texts())[:2] == GROUPS
            assert await page.get_by_text("Find the cheapest lamp").count() >= 1
            await search.click()
            await page.keyboard.press("ArrowRight")  # expand the group
            await titles.filter(has_text="Select option").wait_for()
            shown = await titles.all_inner_texts()
            for action in ("Navigate", 'Fill "lamp"', "Select option", "Check", "Click"):
                assert action in shown, shown

            # Selecting an action renders its DOM snapshot (served by the service worker).
            await titles.filter(has_text="Select option").first.click()
            snapshot = page.frame_locator("iframe.snapshot-visible")
            await snapshot.get_by_text("Find your light").wait_for(timeout=15_000)

            # The filmstrip shows the screencast frames, and they load as images.
            strip = page.locator(".film-strip-frame")
            assert await strip.count() > 3
            image_url = await strip.first.evaluate(
                "e => getComputedStyle(e).backgroundImage.slice(5, -2)"
            )
            size = await page.evaluate(
                """u => new Promise(done => {
                    const image = new Image();
                    image.onload = () => done([image.naturalWidth, image.naturalHeight]);
                    image.onerror = () => done(null);
                    image.src = u;
                })""",
                image_url,
            )
            assert size == list(RunnerSettings().video_size), image_url

            assert await page.locator(".processing-error, .error-message").count() == 0
            assert page_errors == []
            assert console_errors == []
        finally:
            await browser.close()
