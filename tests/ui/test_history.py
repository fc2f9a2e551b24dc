"""The run history keeps up and manages runs: a run created through the API appears without a
reload and goes live to its end, a running run is stopped from its row, several runs are
archived at once and found in the archived view, filters sit in the URL, and the table fits an
800 px window."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import expect

from examples.site_server import SiteServer
from tests.api.conftest import create_run, visit_workflow, wait_status, waiting_workflow
from tests.ui.conftest import Runs, Watched


async def test_the_list_picks_up_new_runs_and_stops_one_from_its_row(
    ui: Watched, api: httpx.Client, site: SiteServer, runs: Runs
) -> None:
    page = ui.page
    await page.goto(ui.base_url + "/runs")
    await expect(page.locator(f'tr[data-run-id="{runs.shop["id"]}"]')).to_be_visible()

    # Created elsewhere while the page is open: it appears, running, without a reload.
    run = create_run(api, waiting_workflow(site, title="Appears by itself"))
    row = page.locator(f'tr[data-run-id="{run["id"]}"]')
    await expect(row).to_be_visible(timeout=15_000)
    await expect(row.locator(".badge")).to_have_text(re.compile("queued|running"))
    await expect(row.locator(".badge")).to_have_text("running", timeout=20_000)
    await expect(row.locator("td.started time")).to_have_text("just now")
    assert await page.locator("tbody tr").first.get_attribute("data-run-id") == run["id"]

    # Stop from the row; the row follows to the final status and offers a rerun.
    await row.locator("button.stop").click()
    await expect(row.locator(".badge")).to_have_text("canceled", timeout=20_000)
    await expect(row.locator("button.rerun")).to_be_visible()
    assert wait_status(api, run["id"])["status"] == "canceled"
    # A canceled run says why under its title.
    await expect(row.locator(".short-error")).to_contain_text("cancel")


async def test_bulk_archive_the_archived_view_and_unarchive(
    ui: Watched, api: httpx.Client, site: SiteServer
) -> None:
    page = ui.page
    first = create_run(api, visit_workflow(site, title="Bulk one"))
    second = create_run(api, visit_workflow(site, title="Bulk two"))
    for run in (first, second):
        assert wait_status(api, run["id"])["status"] == "completed"
    await page.goto(ui.base_url + "/runs?q=Bulk")
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator("#bulk")).to_be_hidden()
    await page.locator("#select-all").check()
    await expect(page.locator("#selected-count")).to_have_text("2 selected")
    await page.locator("#bulk-archive").click()
    await expect(rows).to_have_count(0)
    await expect(page.locator("#empty")).to_be_visible()
    assert all(api.get(f"/runs/{r['id']}").json()["archived"] for r in (first, second))

    await page.locator("#archived-view").click()
    await expect(page).to_have_url(re.compile(r"archived=true"))
    await expect(page.locator("h1#heading")).to_have_text("Archived runs")
    await page.goto(ui.base_url + "/runs?archived=true&q=Bulk")
    await expect(rows).to_have_count(2)
    await page.locator(f'tr[data-run-id="{first["id"]}"] input.pick-run').check()
    await expect(page.locator("#bulk-archive")).to_be_hidden()
    await page.locator("#bulk-unarchive").click()
    await expect(rows).to_have_count(1)
    assert api.get(f"/runs/{first['id']}").json()["archived"] is False
    assert api.get(f"/runs/{second['id']}").json()["archived"] is True


async def test_filters_by_workflow_and_source_live_in_the_url(
    ui: Watched, api: httpx.Client, site: SiteServer, runs: Runs
) -> None:
    page = ui.page
    saved = api.post(
        "/workflows", json={"definition": visit_workflow(site, title="Filtered workflow")}
    ).json()
    started = api.post("/runs", json={"workflow_id": saved["id"]}).json()
    wait_status(api, started["id"])
    await page.goto(ui.base_url + "/runs")
    await page.locator("#workflow").select_option(saved["id"])
    await expect(page).to_have_url(re.compile(rf"workflow_id={saved['id']}"))
    await expect(page.locator("tbody tr")).to_have_count(1)
    row = page.locator(f'tr[data-run-id="{started["id"]}"]')
    await expect(row.locator("td.col-workflow a")).to_have_text("Filtered workflow")
    await page.reload()
    await expect(page.locator("#workflow")).to_have_value(saved["id"])
    await expect(page.locator("tbody tr")).to_have_count(1)

    await page.goto(ui.base_url + "/runs?source=cli")
    await expect(page.locator("#source")).to_have_value("cli")
    await expect(page.locator("#empty")).to_be_visible()  # every run here came through the API
    await page.locator("#source").select_option("api")
    await expect(page).to_have_url(re.compile(r"source=api"))
    await expect(page.locator(f'tr[data-run-id="{runs.shop["id"]}"]')).to_be_visible()


async def test_the_history_fits_an_800_px_window(ui: Watched, runs: Runs) -> None:
    page = ui.page
    await page.set_viewport_size({"width": 800, "height": 700})
    await page.goto(ui.base_url + "/runs")
    await expect(page.locator(f'tr[data-run-id="{runs.shop["id"]}"]')).to_be_visible()
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    # One line per date, not four.
    cell = page.locator(f'tr[data-run-id="{runs.shop["id"]}"] td.started')
    height = await cell.evaluate("c => c.getBoundingClientRect().height")
    line = await cell.evaluate("c => parseFloat(getComputedStyle(c).lineHeight) || 20")
    assert height < 2.5 * line + 16
