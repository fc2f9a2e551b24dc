"""With an API key on the service, the UI asks for it once (after a 401), keeps it, and sends it
with every request: headers for fetch, `?api_key=` for images (screenshots)."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Dialog, expect

from examples.site_server import SiteServer
from tests.api.conftest import Service, create_key, visit_workflow
from tests.ui.conftest import Watched


async def test_the_ui_asks_for_the_key_once_and_uses_it(
    ui: Watched, sqlite_service: Service, site: SiteServer
) -> None:
    key = create_key(sqlite_service, "ui-test")
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=sqlite_service.api, timeout=30, headers=headers) as api:
        assert api.get("/runs", headers={"X-API-Key": ""}).status_code == 401
        run = api.post("/runs", json={"workflow": visit_workflow(site)}).json()

    asked: list[str] = []

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept(key)

    ui.page.on("dialog", answer)
    ui.allowed_errors.append("status of 401")  # the browser logs the first, refused, call
    page = ui.page
    await page.goto(f"{sqlite_service.base_url}/runs")
    row = page.locator(f'tr[data-run-id="{run["id"]}"]')
    await expect(row).to_be_visible()
    assert len(asked) == 1 and "API key" in asked[0]
    assert await page.evaluate("localStorage.getItem('glassbox.apiKey')") == key

    # Kept: the run page needs no second prompt; its screenshot URL carries the key.
    await row.locator("td.title a").click()
    await expect(page.locator("#status .badge")).to_have_text("completed", timeout=30_000)
    await page.locator('.card[data-kind="action"]').first.click()
    await expect(page.locator("#browser-image")).to_have_attribute("src", re.compile("api_key="))
    await page.wait_for_function(
        "() => { const i = document.getElementById('browser-image');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    assert len(asked) == 1
