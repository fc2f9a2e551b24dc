"""What a user sees in the Web UI: the run history, one run and its tabs, live cancel, rerun."""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from playwright.async_api import expect

from examples.site_server import SiteServer
from tests.api.conftest import (
    create_run,
    timeline,
    visit_workflow,
    wait_status,
    waiting_workflow,
)
from tests.ui.conftest import Runs, Watched


async def test_history_lists_runs_and_keeps_filters_in_the_url(ui: Watched, runs: Runs) -> None:
    page = ui.page
    await page.goto(ui.base_url + "/")
    assert page.url == ui.base_url + "/runs"
    shop = page.locator(f'tr[data-run-id="{runs.shop["id"]}"]')
    visit = page.locator(f'tr[data-run-id="{runs.visit["id"]}"]')
    await expect(shop).to_be_visible()
    await expect(visit).to_be_visible()
    # Newest first; not opened yet, so unread (bold).
    ids = await page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.runId)")
    assert ids.index(runs.visit["id"]) < ids.index(runs.shop["id"])
    await expect(shop.locator(".badge")).to_have_text("completed")
    await expect(shop).to_have_class(re.compile(r"\bunread\b"))
    weight = await shop.locator("td.title a").evaluate("a => getComputedStyle(a).fontWeight")
    assert int(weight) >= 700
    await expect(shop.locator("td.title")).to_have_text(re.compile("Find the cheapest lamp"))

    # A status chip filters, with its count, and the filter is in the URL.
    completed = page.locator('.chip[data-status="completed"]')
    await expect(completed.locator(".count")).to_have_text(re.compile(r"^\d+$"))
    await completed.click()
    await expect(page).to_have_url(re.compile(r"\?status=completed$"))
    await expect(completed).to_have_attribute("aria-pressed", "true")
    await page.locator('.chip[data-status="all"]').click()
    await expect(page).to_have_url(ui.base_url + "/runs")

    # Search: typing updates the URL and the table; a reload keeps both.
    await page.locator("#q").fill("lamp")
    await expect(page).to_have_url(re.compile(r"\?q=lamp$"))
    await expect(visit).to_have_count(0)
    await expect(shop).to_be_visible()
    await page.reload()
    await expect(page.locator("#q")).to_have_value("lamp")
    await expect(shop).to_be_visible()
    await expect(visit).to_have_count(0)

    await page.goto(ui.base_url + "/runs?status=failed&q=lamp")
    await expect(page.locator('.chip[data-status="failed"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(page.locator("#empty")).to_be_visible()
    await expect(page.locator("tbody tr")).to_have_count(0)

    await page.goto(ui.base_url + "/runs")
    await shop.locator("td.title a").click()
    await expect(page).to_have_url(f"{ui.base_url}/runs/{runs.shop['id']}")


async def test_run_page_overview_recording_output_and_code(
    ui: Watched, runs: Runs, api: httpx.Client
) -> None:
    page = ui.page
    run = runs.shop
    await page.goto(f"{ui.base_url}/runs/{run['id']}")
    await expect(page.locator("h1#title")).to_have_text("Find the cheapest lamp")
    await expect(page.locator("#status .badge")).to_have_text("completed")
    await expect(page.locator("#run-id")).to_have_text(run["id"])
    await expect(page.locator("#rerun")).to_be_visible()
    await expect(page.locator("#cancel")).to_be_hidden()
    await expect(page.locator("#extracted")).to_contain_text("Glow Reading Lamp")

    # The timeline: every card of the API, in order, with kind, block and verb/target.
    cards = timeline(api, run["id"])
    shown = page.locator("#timeline .card")
    await expect(shown).to_have_count(len(cards))
    seqs = await shown.evaluate_all("cs => cs.map(c => Number(c.dataset.seq))")
    assert seqs == [c["seq"] for c in cards]
    kinds = await shown.evaluate_all("cs => cs.map(c => c.dataset.kind)")
    assert kinds == [c["kind"] for c in cards]
    fill = next(c for c in cards if c.get("verb") == "fill")
    fill_card = page.locator(f'.card[data-seq="{fill["seq"]}"]')
    await expect(fill_card.locator(".verb")).to_have_text("fill")
    await expect(fill_card.locator(".target")).to_have_text(fill["target"])
    await expect(fill_card.locator(".block")).to_have_text([fill["block_label"], re.compile("ms")])
    thought = next(c for c in cards if c["kind"] == "thought")
    await expect(page.locator(f'.card[data-seq="{thought["seq"]}"] .body')).to_have_text(
        thought["text"]
    )

    # The read mark is set by opening the page.
    wait_status_read = wait_for_read(api, run["id"])
    assert wait_status_read

    # Clicking an action card shows its screenshot, loaded.
    await fill_card.click()
    await expect(fill_card).to_have_class(re.compile(r"\bselected\b"))
    image = page.locator("#browser-image")
    await expect(image).to_have_attribute("src", re.compile(fill["screenshot_artifact_id"]))
    await page.wait_for_function(
        "() => { const i = document.getElementById('browser-image');"
        " return i.complete && i.naturalWidth > 0; }"
    )

    # The Recording tab: a playable video, seeked to the selected card.
    await page.locator("#tab-recording").click()
    video = page.locator("#video")
    await expect(video).to_be_visible()
    await page.wait_for_function("() => document.getElementById('video').readyState >= 1")
    state = await video.evaluate("v => ({duration: v.duration, time: v.currentTime})")
    assert state["duration"] > 0, state
    assert abs(state["time"] - fill["video_ms"] / 1000) < 0.5, (state, fill["video_ms"])

    # Output: the extracted JSON, pretty-printed, and the downloaded CSV.
    await page.locator("#tab-output").click()
    await expect(page.locator("#output-json pre.json")).to_contain_text('"cheapest"')
    await expect(page.locator("#output-json pre.json")).to_contain_text("Glow Reading Lamp")
    link = page.locator("#downloads a", has_text="results.csv")
    await expect(link).to_be_visible()
    href = await link.get_attribute("href")
    assert href is not None
    csv = await page.request.get(ui.base_url + href)
    assert csv.ok and "Glow Reading Lamp" in await csv.text()

    # Parameters: the inputs as recorded.
    await page.locator("#tab-parameters").click()
    await expect(page.locator("#inputs dl")).to_contain_text("query")
    await expect(page.locator("#inputs dl")).to_contain_text("lamp")
    await expect(page.locator("#settings")).to_contain_text("Webhook URL")

    # Code: the generated script; the tab is kept in the URL.
    await page.locator("#tab-code").click()
    await expect(page.locator("#code")).to_contain_text("page.goto")
    await expect(page).to_have_url(re.compile("#code$"))
    await page.reload()
    await expect(page.locator("#panel-code")).to_be_visible()
    await expect(page.locator("#code")).to_contain_text("page.goto")


def wait_for_read(api: httpx.Client, run_id: str) -> bool:
    from tests.api.conftest import get_record, wait_until

    return bool(wait_until(lambda: get_record(api, run_id)["read"], timeout=10, what="read"))


async def test_trace_tab_opens_the_trace_viewer_on_the_run(ui: Watched, runs: Runs) -> None:
    page = ui.page
    await page.goto(f"{ui.base_url}/runs/{runs.shop['id']}#trace")
    frame = page.frame_locator("#trace-frame")
    search = frame.get_by_role("treeitem", name="search (action)")
    problem = frame.locator(".processing-error")
    await search.or_(problem).first.wait_for(state="visible", timeout=30_000)
    assert await problem.count() == 0, await problem.inner_text()
    await expect(frame.get_by_role("treeitem", name="products (extract)")).to_be_visible()
    await search.click()
    await page.keyboard.press("ArrowRight")
    titles = frame.locator(".action-title-method")
    await titles.filter(has_text="Navigate").first.wait_for()


async def test_live_run_can_be_canceled(ui: Watched, api: httpx.Client, site: SiteServer) -> None:
    page = ui.page
    run = create_run(api, waiting_workflow(site, timeout_ms=60_000, title="Wait for nothing"))
    wait_status(api, run["id"], {"running"}, timeout=30)
    await page.goto(f"{ui.base_url}/runs/{run['id']}")
    await expect(page.locator("#status .badge")).to_have_text("running")
    # Live: the goto card arrives through the events stream, frames through the WebSocket.
    await expect(page.locator('#timeline .card[data-kind="action"]').first).to_be_visible()
    await expect(page.locator("#browser-mode")).to_have_text("● Live", timeout=15_000)
    await page.wait_for_function(
        "() => { const i = document.getElementById('browser-image');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    await expect(page.locator("#rerun")).to_be_hidden()
    await page.locator("#cancel").click()
    await expect(page.locator("#status .badge")).to_have_text("canceled", timeout=20_000)
    await expect(page.locator("#cancel")).to_be_hidden()
    await expect(page.locator("#rerun")).to_be_visible()
    assert wait_status(api, run["id"])["status"] == "canceled"


async def test_rerun_opens_the_new_run(ui: Watched, runs: Runs, api: httpx.Client) -> None:
    page = ui.page
    await page.goto(f"{ui.base_url}/runs/{runs.visit['id']}")
    await expect(page.locator("#status .badge")).to_have_text("completed")
    old_url = page.url  # before the click: the new page can load before the click returns
    await page.locator("#rerun").click()
    await expect(page).not_to_have_url(old_url)
    await expect(page.locator("#error")).to_be_hidden()
    new_id = page.url.rsplit("/", 1)[1]
    assert new_id != runs.visit["id"]
    await expect(page.locator("h1#title")).to_have_text("Visit the shop")
    await expect(page.locator("#status .badge")).to_have_text("completed", timeout=30_000)
    await expect(page.locator("#video")).to_have_count(1)
    assert wait_status(api, new_id)["parent_run_id"] == runs.visit["id"]


async def test_an_unknown_run_says_so(ui: Watched) -> None:
    page = ui.page
    ui.allowed_errors.append("status of 404")  # the browser logs the API's 404
    await page.goto(f"{ui.base_url}/runs/run_does_not_exist")
    await expect(page.locator("#error")).to_contain_text("There is no run run_does_not_exist")


async def test_api_and_webhooks_shows_the_snippets_and_the_deliveries(
    ui: Watched, runs: Runs, api: httpx.Client, site: SiteServer
) -> None:
    received: list[bytes] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
        run = create_run(api, visit_workflow(site, title="Hooked"), webhook_url=hook)
        assert wait_status(api, run["id"])["status"] == "completed"
        for _ in range(100):
            if api.get(f"/runs/{run['id']}/webhook-deliveries").json()["items"]:
                break
            time.sleep(0.1)
        page = ui.page
        await page.goto(f"{ui.base_url}/runs/{run['id']}")
        await expect(page.locator("#status .badge")).to_have_text("completed")
        await page.get_by_role("button", name="API & Webhooks").click()
        snippet = page.locator("#snippet")
        await expect(snippet).to_contain_text("curl")
        await expect(snippet).to_contain_text("/api/v1/runs")
        await page.locator('#snippet-tabs button[data-kind="python"]').click()
        await expect(snippet).to_contain_text("httpx")
        await expect(page.locator("#webhook")).to_contain_text(hook)
        await expect(page.locator("#deliveries tbody tr")).to_have_count(1)
        await expect(page.locator("#deliveries tbody tr").first).to_contain_text("204")
        await page.locator("#resend").click()
        await expect(page.locator("#deliveries tbody tr")).to_have_count(2)
        await expect(page.locator("#deliveries")).to_contain_text("sent again")
        assert len(received) == 2

        # A run without a webhook says so.
        await page.goto(f"{ui.base_url}/runs/{runs.visit['id']}")
        await page.get_by_role("button", name="API & Webhooks").click()
        await expect(page.locator("#webhook")).to_contain_text("no webhook_url")
    finally:
        server.shutdown()
        server.server_close()
