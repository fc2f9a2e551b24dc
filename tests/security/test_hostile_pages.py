"""A visited page that attacks whoever looks at its record, in real Chromium.

The run visits `hostile.html` (script in its title, text, console and body) and downloads an
HTML and an SVG file carrying the same script. Were any of them rendered on Glassbox's origin,
the script would show a dialog, load `/api/v1/xss-marker` and archive every run. Opening the
artifacts' URLs and the run page (Output tab, where the saved page is shown) must do none of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Error, Page

from tests.api.conftest import create_run, wait_status
from tests.security.conftest import Target
from tests.security.hostile_site import HostileSite

SHOWN_INLINE = ("image/", "video/", "application/json", "application/x-ndjson", "text/plain")


def _hostile_workflow(site: HostileSite) -> dict[str, Any]:
    return {
        "title": "Visit a hostile page",
        "url": f"{site.url}hostile.html",
        "blocks": [
            {
                "label": "visit",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}"},
                    {"download": {"click": {"selector": "#html"}}},
                    {"download": {"click": {"selector": "#svg"}}},
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def hostile_run(target: Target, hostile_site: HostileSite) -> dict[str, Any]:
    with httpx.Client(base_url=target.service.api, timeout=30) as http:
        run = wait_status(http, create_run(http, _hostile_workflow(hostile_site))["id"])
    assert run["status"] == "completed", run["failure_reason"]
    return run


class Watch:
    def __init__(self) -> None:
        self.dialogs: list[str] = []
        self.requests: list[str] = []

    def attach(self, page: Page) -> None:
        page.on(
            "dialog", lambda d: (self.dialogs.append(d.message), asyncio.ensure_future(d.dismiss()))
        )
        page.context.on("request", lambda r: self.requests.append(f"{r.method} {r.url}"))

    def attacks(self) -> list[str]:
        return [r for r in self.requests if "xss-marker" in r or "/archive" in r]


def _archived(target: Target) -> list[str]:
    with httpx.Client(base_url=target.service.api, timeout=30) as http:
        items = http.get("/runs", params={"archived": True, "limit": 500}).json()["items"]
    return [r["id"] for r in items]


def test_artifacts_are_served_as_hostile_content(
    hostile_run: dict[str, Any], target: Target
) -> None:
    kinds = {a["kind"] for a in hostile_run["artifacts"]}
    assert {"html", "download"} <= kinds, kinds
    names = {a["name"] for a in hostile_run["artifacts"] if a["kind"] == "download"}
    assert {"evil.html", "evil.svg"} <= names
    with httpx.Client(base_url=target.service.base_url, timeout=30) as http:
        for item in hostile_run["artifacts"]:
            for headers in ({}, {"Range": "bytes=0-9"}):
                answer = http.get(item["url"], headers=headers)
                assert answer.status_code in (200, 206), item
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert answer.headers["content-security-policy"] == "sandbox"
                disposition = answer.headers["content-disposition"]
                kind = item["content_type"]
                inline = kind.startswith(SHOWN_INLINE) and kind != "image/svg+xml"
                assert disposition.startswith("inline" if inline else "attachment"), item
            if item["kind"] == "html" or item["name"].endswith((".html", ".svg")):
                assert answer.headers["content-disposition"].startswith("attachment"), item
        code = http.get(f"/api/v1/runs/{hostile_run['id']}/code")
        assert code.status_code == 200
        assert code.headers["x-content-type-options"] == "nosniff"
        assert code.headers["content-security-policy"] == "sandbox"


async def test_opening_artifacts_and_the_run_page_runs_no_script(
    browser: Browser, hostile_run: dict[str, Any], target: Target
) -> None:
    base = target.service.base_url
    watch = Watch()
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    watch.attach(page)
    hostile = [
        a
        for a in hostile_run["artifacts"]
        if a["kind"] == "html" or a["name"].endswith((".html", ".svg"))
    ]
    assert len(hostile) == 3
    for item in hostile:
        for url in (base + item["url"], base + item["url"] + "?download=false"):
            async with page.expect_download(timeout=10_000) as download:
                try:
                    await page.goto(url)
                except Error as exc:  # a download is not a navigation
                    assert "Download is starting" in str(exc) or "ERR_ABORTED" in str(exc)
            assert (await download.value).suggested_filename == item["name"]
            await asyncio.sleep(0.3)

    await page.goto(f"{base}/runs/{hostile_run['id']}")
    await page.locator("#tab-output").click()
    await page.locator("#saved-page-show").click(timeout=15_000)
    frame = page.locator("#saved-page-frame")
    await frame.wait_for(state="attached", timeout=15_000)
    assert await frame.get_attribute("sandbox") == ""
    inside = page.frame_locator("#saved-page-frame")
    assert "Nothing to see" in await inside.locator("#heading").inner_text(timeout=15_000)
    await asyncio.sleep(1.0)
    await page.locator("#saved-page-source").click()  # as text: the source, shown, not run
    assert "alert(" in await page.locator("#saved-page-text").inner_text(timeout=15_000)
    await asyncio.sleep(1.0)
    await context.close()

    assert watch.dialogs == []
    assert watch.attacks() == []
    assert _archived(target) == []
