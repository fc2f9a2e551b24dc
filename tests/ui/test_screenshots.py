"""Screenshots of every page and tab at a phone's width (390 px) and a laptop's (1280 px), kept
as test output for a person to look at: the workflow list, the launch form, the history, a
running run, a failed run, and each tab of a completed one. Saved under UI_SHOTS when
set, else `ui-shots/` in pytest's base temporary directory. Each page must fit its width (no
horizontal scrolling), show no broken image and log no error."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from examples.site_server import SiteServer
from tests.api.conftest import (
    Service,
    create_run,
    shop_workflow,
    wait_status,
    waiting_workflow,
)
from tests.ui.conftest import Runs

WIDTHS = (390, 1280)
TABS = ["overview", "output", "parameters", "recording", "code", "trace"]
WIDE_ELEMENTS = """() => {
  const limit = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter((e) => {
    const box = e.getBoundingClientRect();
    return box.width > 0 && box.right > limit + 1 && e.offsetParent !== null;
  });
  // The outermost ones: those whose parent fits.
  return wide.filter((e) => !wide.includes(e.parentElement)).slice(0, 5)
    .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${[...e.classList].join('.')}`);
}"""
BROKEN_IMAGES = """() => [...document.images]
  .filter((i) => i.offsetParent !== null && i.getAttribute('src') && i.complete && !i.naturalWidth)
  .map((i) => i.src)"""


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("UI_SHOTS")
    directory = Path(given) if given else tmp_path_factory.getbasetemp() / "ui-shots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass
class Camera:
    """Pages at one width; each shot is checked for overflow and broken images."""

    page: Page
    width: int
    directory: Path
    base_url: str
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    taken: list[Path] = field(default_factory=list)

    async def shoot(self, name: str) -> None:
        """Saves the page; what does not fit is kept in `problems` (asserted at the end, so
        every shot is there to look at)."""
        with contextlib.suppress(PlaywrightTimeout):  # the trace viewer may keep polling
            await self.page.wait_for_load_state("networkidle", timeout=5000)
        path = self.directory / f"{self.width:04d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        overflow = await self.page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 0:
            wide = await self.page.evaluate(WIDE_ELEMENTS)
            self.problems.append(
                f"{name} at {self.width} px scrolls sideways by {overflow} px: {wide}"
            )
        broken = await self.page.evaluate(BROKEN_IMAGES)
        if broken:
            self.problems.append(f"{name}: broken images {broken}")


@pytest_asyncio.fixture(params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
async def camera(
    request: pytest.FixtureRequest, browser: Browser, sqlite_service: Service, shots: Path
) -> AsyncIterator[Camera]:
    width: int = request.param
    context = await browser.new_context(viewport={"width": width, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(15_000)
    cam = Camera(page=page, width=width, directory=shots, base_url=sqlite_service.base_url)
    page.on("console", lambda m: cam.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: cam.errors.append(f"page error: {e}"))
    try:
        yield cam
    finally:
        await context.close()
    assert cam.problems == []
    assert cam.errors == []
    assert all(p.stat().st_size > 0 for p in cam.taken)


@pytest.fixture(scope="module")
def subjects(api: httpx.Client, site: SiteServer, runs: Runs) -> dict[str, Any]:
    """A saved workflow, a failed run (with a long reason), tags and metadata on the
    completed one."""
    definition = shop_workflow(site, title="Find the cheapest lamp")
    definition["description"] = "Searches the demo shop and keeps the cheapest lamp."
    saved = api.post("/workflows", json={"definition": definition})
    assert saved.status_code == 201, saved.text
    failing = waiting_workflow(site, timeout_ms=1500, title="Wait for a text that never comes")
    failed = wait_status(api, create_run(api, failing)["id"])
    assert failed["status"] == "failed"
    tagged = create_run(
        api,
        shop_workflow(site, title="Find the cheapest lamp, tagged"),
        tags=["nightly", "team:shop", "region:eu-west-1"],
        metadata={"customer": "ACME Lighting Ltd", "ticket": {"id": 4711, "priority": "high"}},
    )
    done = wait_status(api, tagged["id"])
    assert done["status"] == "completed", done["failure_reason"]
    return {"workflow": saved.json(), "failed": failed, "completed": done}


async def test_pages_and_tabs_fit_and_are_kept_as_screenshots(
    camera: Camera, api: httpx.Client, site: SiteServer, subjects: dict[str, Any]
) -> None:
    page, base = camera.page, camera.base_url
    workflow = subjects["workflow"]
    await page.goto(f"{base}/workflows")
    await expect(page.locator(".workflow-item").first).to_be_visible()
    await camera.shoot("workflows")
    await page.goto(f"{base}/workflows/{workflow['id']}#run")
    await expect(page.locator("#launch")).to_be_visible()
    await camera.shoot("launch-form")
    await page.goto(f"{base}/runs")
    await expect(page.locator("tbody tr").first).to_be_visible()
    await camera.shoot("history")

    failed = subjects["failed"]
    await page.goto(f"{base}/runs/{failed['id']}")
    await expect(page.locator("#failure")).to_be_visible()
    await expect(page.locator("#browser-image")).to_be_visible()
    await camera.shoot("run-failed")

    completed = subjects["completed"]
    await page.goto(f"{base}/runs/{completed['id']}")
    await expect(page.locator("#relations")).to_be_visible()
    await expect(page.locator("#browser-image")).to_be_visible()
    for tab in TABS:
        await page.locator(f"#tab-{tab}").click()
        await expect(page.locator(f"#panel-{tab}")).to_be_visible()
        if tab == "parameters":  # the last card's block, as the workflow defines it
            await expect(page.locator('#block-config [data-block="products"]')).to_be_visible()
        if tab == "recording":
            await expect(page.locator("#video-markers .marker").first).to_be_attached()
        if tab == "code":
            await expect(page.locator("#code .hl")).to_be_visible()
        if tab == "trace":
            await expect(page.locator("#trace-frame")).to_be_visible()
        await camera.shoot(f"run-{tab}")

    # A running run: the live view, cards arriving.
    running = create_run(api, waiting_workflow(site, title="Waits on the home page"))
    try:
        wait_status(api, running["id"], {"running"})
        await page.goto(f"{base}/runs/{running['id']}")
        await expect(page.locator("#browser-mode")).to_contain_text("Live")
        await expect(page.locator("#browser-image")).to_be_visible()
        await expect(page.locator('#timeline .card[data-kind="action"]')).not_to_have_count(0)
        await camera.shoot("run-running")
    finally:
        api.post(f"/runs/{running['id']}/cancel")
        wait_status(api, running["id"])
