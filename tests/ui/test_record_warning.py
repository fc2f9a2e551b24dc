"""The run page warns when a run's record is incomplete (`record.complete` false), listing what
is missing; a complete record shows no warning."""

from __future__ import annotations

import json
import sqlite3

import httpx
from playwright.async_api import expect

from examples.site_server import SiteServer
from tests.api.conftest import Service, create_run, visit_workflow, wait_status
from tests.ui.conftest import Watched

MISSING = [
    "video recording.mp4: storage unavailable: connection refused; kept on the worker for a "
    "later retry",
    "har network.har: lost with its worker",
]


async def test_an_incomplete_record_is_a_warning_on_the_run_page(
    ui: Watched, api: httpx.Client, site: SiteServer, sqlite_service: Service
) -> None:
    complete = wait_status(api, create_run(api, visit_workflow(site))["id"])
    incomplete = wait_status(api, create_run(api, visit_workflow(site))["id"])
    assert complete["record"] == incomplete["record"] == {"complete": True, "missing": []}
    # What a storage outage leaves in the database (the outage itself: tests/faults/).
    with sqlite3.connect(sqlite_service.data_dir / "glassbox.db") as db:
        db.execute(
            "UPDATE runs SET record_missing = ? WHERE id = ?",
            (json.dumps(MISSING), incomplete["id"]),
        )
    record = api.get(f"/runs/{incomplete['id']}").json()["record"]
    assert record == {"complete": False, "missing": MISSING}

    page = ui.page
    await page.goto(f"{ui.base_url}/runs/{incomplete['id']}")
    warning = page.locator("#record-incomplete")
    await expect(warning).to_be_visible()
    await expect(warning.locator("strong")).to_contain_text("Incomplete record")
    await expect(warning.locator("li")).to_have_text(MISSING)
    await expect(page.locator("#status .badge")).to_have_text("completed")

    await page.goto(f"{ui.base_url}/runs/{complete['id']}")
    await expect(page.locator("#status .badge")).to_have_text("completed")
    await expect(page.locator("#record-incomplete")).to_have_count(0)
