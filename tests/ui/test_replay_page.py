"""The run page's replay controls in real Chromium against `glassbox serve`: a healed replay's
divergence card, the Code tab's cache key and version switch, Rerun from a block and
Continue."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.async_api import expect

from examples.site_server import SiteServer
from tests.api.conftest import wait_status
from tests.api.test_action_cache import subscribe_workflow
from tests.ui.conftest import Watched


def run(api: httpx.Client, workflow_id: str, **body: Any) -> dict[str, Any]:
    answer = api.post("/runs", json={"workflow_id": workflow_id, **body})
    assert answer.status_code == 201, answer.text
    record = wait_status(api, answer.json()["id"], timeout=90)
    assert record["status"] == "completed", record["failure_reason"]
    return record


async def test_divergence_cache_versions_rerun_from_a_block_and_continue(
    ui: Watched, api: httpx.Client, site: SiteServer
) -> None:
    saved = api.post("/workflows", json={"definition": subscribe_workflow(site)}).json()
    first = run(api, saved["id"])
    healed = run(api, saved["id"], run_with="code", parameters={"button": "Join"})
    page = ui.page

    await page.goto(f"{ui.base_url}/runs/{healed['id']}")
    card = page.locator("#timeline li.divergence")
    await expect(card).to_have_count(1)
    await expect(card).to_contain_text('expected role=button[name="Subscribe"]')
    await expect(card).to_contain_text("Instead: used the fallback locator")

    await page.locator("#tab-code").click()
    await expect(page.locator("#cache-key")).to_have_text(urlsplit(site.url).netloc)
    options = page.locator("#cache-version option")
    await expect(options).to_have_count(2)
    await expect(page.locator("#cache-version")).to_contain_text("this run")
    first_version = next(
        v["id"]
        for v in api.get(f"/workflows/{saved['id']}/cache").json()["items"]
        if v["run_id"] == first["id"]
    )
    await page.locator("#cache-version").select_option(first_version)
    await page.locator("#cache-use").click()
    await expect(page.locator("#cache-unpin")).to_be_visible()
    shown = api.get(f"/workflows/{saved['id']}/cache/{first_version}").json()
    assert shown["pinned"] and shown["current"]

    await page.locator("#rerun-from").click()
    dialog = page.locator("#duplicate-dialog")
    await expect(dialog.locator("#duplicate-title")).to_have_text("Rerun from a block")
    await dialog.locator("#from-block").select_option("read")
    await dialog.locator("#dup-email").fill("bob@example.com")
    old_url = page.url
    await dialog.get_by_role("button", name="Start run").click()
    await expect(page).not_to_have_url(old_url)
    again = wait_status(api, page.url.rsplit("/", 1)[1], timeout=90)
    assert again["status"] == "completed", again["failure_reason"]
    assert again["parent_run_id"] == healed["id"]
    assert again["replay"]["blocks"] == {"subscribe": "replayed", "read": "live"}
    assert again["extracted_information"] == {"result": "Subscribed bob@example.com"}

    await page.locator("#continue").click()
    await page.locator("#continue-goal").fill("Report the greeting")
    old_url = page.url
    await page.locator("#continue-start").click()
    await expect(page).not_to_have_url(old_url)
    child = api.get(f"/runs/{page.url.rsplit('/', 1)[1]}").json()
    assert child["parent_run_id"] == again["id"]
    assert child["replay"] == {"continue_from": again["id"]}
    wait_status(api, child["id"], timeout=90)  # no LLM here: it ends, whatever its status
