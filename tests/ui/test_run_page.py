"""The run page as a user reads it, in real Chromium against a real `glassbox serve`: the cards
of the timeline (mouse and keyboard) with the requests and console lines of their time, the
header's copy, duplicate, edit, cancel and API dialog, the tabs (WAI-ARIA keys and the URL hash),
the recording's markers, the code, and a hostile Markdown summary that runs nothing."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from examples.site_server import SiteServer
from tests.api.conftest import (
    Service,
    create_run,
    login_workflow,
    timeline,
    wait_status,
    wait_until,
    waiting_workflow,
)
from tests.ui.conftest import Watched

TABS = ["overview", "output", "parameters", "recording", "code", "trace"]


def report_workflow(site: SiteServer) -> dict[str, Any]:
    """Opens the demo site's report page (its fetch answers 404 and it logs a console error),
    then the home page: a failed request and a console line inside one card's time."""
    return {
        "title": "Read the report",
        "url": site.url,
        "timeout_s": 60,
        "parameters": {
            "token": {"type": "string", "default": "abc", "description": "Report token"}
        },
        "blocks": [
            {
                "label": "report",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}report-error.html?token={{ token }}"},
                    {"wait_for": {"text": "No report", "timeout_ms": 10_000}},
                    {"goto": "{{ url }}"},
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def report(api: httpx.Client, site: SiteServer) -> dict[str, Any]:
    run = wait_status(api, create_run(api, report_workflow(site))["id"])
    assert run["status"] == "completed", run["failure_reason"]
    return run


def window_of(cards: list[dict[str, Any]], video_ms: int) -> dict[str, Any]:
    """The card whose time window (its video_ms up to the next card's) holds `video_ms`."""
    timed = [c for c in cards if c.get("video_ms") is not None]
    found = [c for c in timed if c["video_ms"] <= video_ms]
    return found[-1]


async def shoot(page: Page, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


async def test_cards_show_their_screenshot_requests_and_console(
    ui: Watched, api: httpx.Client, report: dict[str, Any], tmp_path: Path
) -> None:
    page = ui.page
    cards = timeline(api, report["id"])
    found = api.get(f"/runs/{report['id']}/activity").json()
    failed = [r for r in found["requests"] if r["failed"] and "missing-report.json" in r["url"]]
    assert failed, found["requests"]
    logged = [c for c in found["console"] if "report not loaded" in c["text"]]
    assert logged, found["console"]
    target = window_of(cards, failed[0]["video_ms"])

    await page.goto(f"{ui.base_url}/runs/{report['id']}")
    await expect(page.locator("#status .badge")).to_have_text("completed")
    # The default selection: the last card, highlighted, named by the browser panel's label.
    last = cards[-1]
    selected = page.locator("#timeline .card.selected")
    await expect(selected).to_have_count(1)
    await expect(selected).to_have_attribute("data-seq", str(last["seq"]))
    await expect(page.locator("#browser-mode")).to_contain_text(f"#{last['seq']}")
    await expect(page.locator("#browser-mode")).to_contain_text("last card")
    await page.wait_for_function(
        "() => { const i = document.getElementById('browser-image');"
        " return !i.hidden && i.complete && i.naturalWidth > 0; }"
    )
    # Counters, with icons and colours per state on the cards.
    counters = page.locator("#counters")
    actions = [c for c in cards if c["kind"] == "action"]
    await expect(counters.locator('[data-counter="actions"] .value')).to_have_text(
        str(len(actions))
    )
    await expect(counters.locator('[data-counter="steps"] .value')).to_have_text(
        str(report["step_count"])
    )
    for name in ("blocks", "thoughts", "tokens", "cost"):
        await expect(counters.locator(f'[data-counter="{name}"]')).to_be_visible()
    ok_action = page.locator(f'.card[data-seq="{actions[0]["seq"]}"]')
    await expect(ok_action).to_have_attribute("data-state", "ok")
    assert await ok_action.locator(".card-icon svg").count() == 1
    assert await ok_action.locator(".state-icon.ok svg").count() == 1

    # Mouse: the card whose window holds the failed request shows it, highlighted, and the
    # page's console error; its screenshot (or the nearest earlier one) is shown.
    card = page.locator(f'.card[data-seq="{target["seq"]}"]')
    await card.click()
    await expect(card).to_have_class(re.compile(r"\bselected\b"))
    row = page.locator("#card-requests-table tr.failed", has_text="missing-report.json")
    await expect(row).to_be_visible()
    await expect(row.locator(".status")).to_have_text("404")
    background = await row.locator("td").first.evaluate(
        "td => getComputedStyle(td).backgroundColor"
    )
    assert background != "rgba(0, 0, 0, 0)", background  # highlighted
    await expect(page.locator("#card-console-lines")).to_contain_text("report not loaded")
    await expect(page.locator("#browser-image")).to_be_visible()
    await expect(page.locator("#activity-title")).to_contain_text(f"#{target['seq']}")
    await shoot(page, tmp_path, "run-overview-1280")

    # Keyboard: from the first card, arrows move the focus, Enter/Space select.
    first = page.locator("#timeline .card").first
    await first.click()
    await expect(first).to_have_class(re.compile(r"\bselected\b"))
    index = next(i for i, c in enumerate(cards) if c["seq"] == target["seq"])
    for _ in range(index):
        await page.keyboard.press("ArrowDown")
    focused = await page.evaluate("document.activeElement.dataset.seq")
    assert focused == str(target["seq"])
    await expect(first).to_have_class(re.compile(r"\bselected\b"))  # moved, not yet selected
    await page.keyboard.press("Space" if index % 2 else "Enter")
    await expect(card).to_have_class(re.compile(r"\bselected\b"))
    await expect(row).to_be_visible()
    await page.keyboard.press("End")
    await page.keyboard.press("Enter")
    await expect(page.locator(f'.card[data-seq="{last["seq"]}"]')).to_have_class(
        re.compile(r"\bselected\b")
    )
    await expect(page.locator("#card-requests-table tr.failed")).to_have_count(0)

    # Output: the whole HAR as a table (failed rows highlighted), the console log, files.
    await page.locator("#tab-output").click()
    await expect(
        page.locator("#har-table tr.failed", has_text="missing-report.json")
    ).to_be_visible()
    await expect(
        page.locator("#console-table .console-line.error", has_text="report not loaded")
    ).to_be_visible()
    await expect(page.locator("#file-table")).to_contain_text("video/mp4")
    await expect(page.locator("#file-table .size").first).to_have_text(re.compile(r"\d (B|KB|MB)$"))
    await shoot(page, tmp_path, "run-output-1280")

    # Parameters: inputs and limits.
    await page.locator("#tab-parameters").click()
    await expect(page.locator("#inputs")).to_contain_text("token")
    await expect(page.locator("#limits")).to_contain_text("60 s")
    await shoot(page, tmp_path, "run-parameters-1280")

    # Code: highlighted by the server, copied as plain text.
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.locator("#tab-code").click()
    await expect(page.locator("#code .hl .linenos").first).to_be_visible()
    await expect(page.locator("#code")).to_contain_text("page.goto")
    assert await page.locator("#code .hl span.kn").count() > 0  # `import` highlighted
    await page.locator("#copy").click()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == api.get(f"/runs/{report['id']}/code").text
    refused = api.get(f"/runs/{report['id']}/code", params={"format": "pdf"})
    assert refused.status_code == 422 and "format" in refused.text, refused.text
    async with page.expect_download() as download:
        await page.locator("#download-code").click()
    assert (await download.value).suggested_filename == f"{report['id']}.py"
    await shoot(page, tmp_path, "run-code-1280")

    # Narrow: the same page at 390 px, nothing wider than the screen.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.locator("#tab-overview").click()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    await shoot(page, tmp_path, "run-overview-390")


async def test_tabs_follow_the_aria_pattern_and_the_url_hash(
    ui: Watched, report: dict[str, Any]
) -> None:
    page = ui.page
    await page.goto(f"{ui.base_url}/runs/{report['id']}#parameters")
    await expect(page.locator("#panel-parameters")).to_be_visible()

    async def selected() -> str:
        return str(
            await page.locator('[role=tab][aria-selected="true"]').get_attribute("id")
        ).removeprefix("tab-")

    async def check(name: str) -> None:
        assert await selected() == name
        assert await page.evaluate("document.activeElement.id") == f"tab-{name}"
        tabindexes = await page.locator("[role=tab]").evaluate_all("ts => ts.map(t => t.tabIndex)")
        assert tabindexes == [0 if t == name else -1 for t in TABS]
        await expect(page.locator(f"#panel-{name}")).to_be_visible()
        assert await page.locator("[role=tabpanel]:visible").count() == 1
        hash_ = await page.evaluate("location.hash")
        assert hash_ == ("" if name == "overview" else f"#{name}")

    await page.locator("#tab-parameters").focus()
    await page.keyboard.press("ArrowRight")
    await check("recording")
    await page.keyboard.press("ArrowLeft")
    await page.keyboard.press("ArrowLeft")
    await check("output")
    await page.keyboard.press("End")
    await check("trace")
    await page.keyboard.press("ArrowRight")  # wraps around
    await check("overview")
    await page.keyboard.press("ArrowLeft")
    await check("trace")
    await page.keyboard.press("Home")
    await check("overview")
    # Tab moves into the panel, not along the tabs (roving tabindex).
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "panel-overview"

    # The hash drives the tab too: a link or the address bar.
    await page.evaluate("location.hash = '#code'")
    await expect(page.locator("#panel-code")).to_be_visible()
    assert await selected() == "code"
    await page.go_back()
    await expect(page.locator("#panel-overview")).to_be_visible()


async def test_recording_has_a_marker_per_card_that_seeks(
    ui: Watched, api: httpx.Client, report: dict[str, Any], tmp_path: Path
) -> None:
    page = ui.page
    cards = [c for c in timeline(api, report["id"]) if c.get("video_ms") is not None]
    await page.goto(f"{ui.base_url}/runs/{report['id']}#recording")
    await page.wait_for_function(
        "() => { const v = document.getElementById('video'); return v && v.readyState >= 1; }"
    )
    markers = page.locator("#video-markers .marker")
    await expect(markers).to_have_count(len(cards))
    duration = await page.locator("#video").evaluate("v => v.duration")
    goto = next(c for c in cards if c.get("verb") == "goto" and c["video_ms"] > 0)
    marker = page.locator(f'#video-markers .marker[data-seq="{goto["seq"]}"]')
    left = await marker.evaluate("m => parseFloat(m.style.left)")
    assert abs(left - goto["video_ms"] / 1000 / duration * 100) < 0.5
    await marker.click()
    await page.wait_for_function(
        f"() => Math.abs(document.getElementById('video').currentTime - {goto['video_ms'] / 1000})"
        " < 0.3"
    )
    # The click selected that card too (seen on the Overview).
    await page.locator("#tab-overview").click()
    await expect(page.locator(f'.card[data-seq="{goto["seq"]}"]')).to_have_class(
        re.compile(r"\bselected\b")
    )
    await page.locator("#tab-recording").click()
    await shoot(page, tmp_path, "run-recording-1280")


async def test_duplicate_an_inline_run_with_an_edited_parameter(
    ui: Watched, api: httpx.Client, report: dict[str, Any], tmp_path: Path
) -> None:
    page = ui.page
    await page.goto(f"{ui.base_url}/runs/{report['id']}")
    await expect(page.locator("#status .badge")).to_have_text("completed")
    await expect(page.locator("#edit")).to_be_hidden()  # an inline workflow: nothing to edit
    await page.locator("#duplicate").click()
    dialog = page.locator("#duplicate-dialog")
    await expect(dialog).to_be_visible()
    field = dialog.locator("#dup-token")
    await expect(field).to_have_value("abc")
    await expect(dialog).to_contain_text("Report token")
    await shoot(page, tmp_path, "run-duplicate-1280")
    await field.fill("edited-42")
    old_url = page.url
    await dialog.get_by_role("button", name="Start run").click()
    await expect(page).not_to_have_url(old_url)
    new_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("h1#title")).to_have_text("Read the report")
    new = wait_status(api, new_id)
    assert new["parameters"]["token"] == "edited-42"
    assert new["parent_run_id"] == report["id"]
    assert new["status"] == "completed", new["failure_reason"]


async def test_a_saved_workflows_run_duplicates_and_edits_on_its_workflow_page(
    ui: Watched, api: httpx.Client, site: SiteServer
) -> None:
    answer = api.post("/workflows", json={"definition": report_workflow(site)})
    assert answer.status_code == 201, answer.text
    workflow_id = answer.json()["id"]
    answer = api.post("/runs", json={"workflow_id": workflow_id, "parameters": {"token": "t-7"}})
    assert answer.status_code == 201, answer.text
    run = wait_status(api, answer.json()["id"])
    page = ui.page
    await page.goto(f"{ui.base_url}/runs/{run['id']}")
    await expect(page.locator("#edit")).to_have_attribute("href", f"/workflows/{workflow_id}/edit")
    await page.locator("#duplicate-link").click()
    await expect(page).to_have_url(re.compile(rf"/workflows/{workflow_id}\?from={run['id']}"))
    await expect(page.locator("#param-token")).to_have_value("t-7")


async def test_api_dialog_closes_with_escape_and_copies(
    ui: Watched, report: dict[str, Any], tmp_path: Path
) -> None:
    page = ui.page
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.goto(f"{ui.base_url}/runs/{report['id']}")
    await expect(page.locator("#status .badge")).to_have_text("completed")
    await page.locator("#copy-id").click()
    assert await page.evaluate("navigator.clipboard.readText()") == report["id"]
    await expect(page.locator("#copy-id")).to_have_text("Copied")

    button = page.get_by_role("button", name="API & Webhooks")
    await button.click()
    dialog = page.locator("#api-dialog")
    await expect(dialog).to_be_visible()
    assert await dialog.evaluate("d => d.open && d.matches(':modal')")
    await expect(page.locator("#snippet")).to_contain_text("curl")
    await page.locator("#copy-snippet").click()
    assert "/api/v1/runs" in await page.evaluate("navigator.clipboard.readText()")
    await page.locator("#payload-details summary").click()
    await expect(page.locator("#payload pre.json")).to_contain_text(report["id"])
    await shoot(page, tmp_path, "run-api-dialog-1280")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert await page.evaluate("document.activeElement.id") == "api-button"


async def test_a_hostile_markdown_summary_is_formatted_and_runs_nothing(
    ui: Watched, api: httpx.Client, sqlite_service: Service, site: SiteServer
) -> None:
    run = wait_status(api, create_run(api, report_workflow(site))["id"])
    hostile = (
        "Found **3 lamps** and `one code`.\n\n"
        "- [the shop](https://example.com/shop)\n"
        "- [click me](javascript:window.__pwned=1)\n\n"
        "<script>window.__pwned=1</script>\n"
        '<img src=x onerror="window.__pwned=1">\n\n'
        "![tracker](http://203.0.113.9/pixel.png)"
    )
    with sqlite3.connect(sqlite_service.data_dir / "glassbox.db") as db:
        db.execute("UPDATE runs SET summary = ? WHERE id = ?", (hostile, run["id"]))
    record = api.get(f"/runs/{run['id']}").json()
    assert record["summary"] == hostile
    assert "<script" not in record["summary_html"] and "<img" not in record["summary_html"]

    page = ui.page
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await page.goto(f"{ui.base_url}/runs/{run['id']}")
    summary = page.locator("#summary")
    await expect(summary.locator("strong")).to_have_text("3 lamps")
    await expect(summary.locator("code")).to_have_text("one code")
    await expect(summary.locator("li")).to_have_count(2)
    await expect(summary.locator("a")).to_have_count(1)
    await expect(summary.locator("a")).to_have_attribute("href", "https://example.com/shop")
    await expect(summary).to_contain_text("<script>window.__pwned=1</script>")  # shown as text
    assert await summary.locator("script, img, iframe").count() == 0
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__pwned") is None
    assert dialogs == []


async def test_a_cancel_that_races_the_end_shows_the_final_state(
    ui: Watched, api: httpx.Client, site: SiteServer, tmp_path: Path
) -> None:
    page = ui.page
    run = create_run(api, waiting_workflow(site, timeout_ms=5_000, title="Ends by itself"))
    wait_status(api, run["id"], {"running"}, timeout=30)
    wait_until(
        lambda: any(c["kind"] == "action" for c in timeline(api, run["id"])),
        timeout=15,
        what="the first action card",
    )
    # A run queued behind it (one worker), canceled before it starts: nothing to show, said so.
    queued = create_run(api, waiting_workflow(site, timeout_ms=1_000, title="Never started"))
    answer = api.post(f"/runs/{queued['id']}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "canceled", answer.text

    # The page loses its event stream, so it still believes the run is running when it ends.
    await page.route("**/events?*", lambda route: route.abort())
    ui.allowed_errors += ["ERR_FAILED", "409"]
    await page.goto(f"{ui.base_url}/runs/{run['id']}")
    await expect(page.locator("#status .badge")).to_have_text("running")
    # Its steps are counted as they go, not only once the run has ended.
    await expect(page.locator('#counters [data-counter="steps"] .value')).not_to_have_text("0")
    # While it runs: a card shows its moment, "Back to live" returns to the live frames.
    mode = page.locator("#browser-mode")
    await expect(mode).to_have_text("● Live", timeout=15_000)
    await page.locator('#timeline .card[data-kind="action"]').first.click()
    await expect(mode).to_contain_text("goto")
    await page.locator("#back-to-live").click()
    await expect(mode).to_have_text("● Live")
    await expect(page.locator("#timeline .card.selected")).to_have_count(0)
    ended = wait_status(api, run["id"], timeout=30)
    assert ended["status"] == "failed"
    await page.locator("#cancel").click()
    await expect(page.locator("#status .badge")).to_have_text("failed")
    await expect(page.locator("#error")).to_be_hidden()
    await expect(page.locator("#cancel")).to_be_hidden()
    await expect(page.locator("#rerun")).to_be_visible()
    await expect(page.locator("#failure strong")).to_have_text("Failure reason")
    await expect(page.locator("#timeline .card.selected")).to_have_count(1)
    await shoot(page, tmp_path, "run-failed-1280")

    await page.unroute("**/events?*")
    await page.goto(f"{ui.base_url}/runs/{queued['id']}")
    await expect(page.locator("#status .badge")).to_have_text("canceled")
    await expect(page.locator("#canceled strong")).to_have_text("Canceled by a user")
    await expect(page.locator("#failure")).to_have_count(0)
    await expect(page.locator("#browser-image")).to_be_hidden()
    await expect(page.locator("#placeholder-text")).to_have_text(
        "Canceled before it started: no browser was opened."
    )
    await expect(page.locator("#timeline .empty-cards")).to_contain_text("no cards")
    await page.locator("#tab-recording").click()
    await expect(page.locator("#no-recording")).to_contain_text("No recording available")
    await shoot(page, tmp_path, "run-canceled-queued-1280")
    assert json.dumps(wait_status(api, queued["id"])["started_at"]) == "null"


async def test_rerunning_a_run_with_a_secret_asks_for_it_again(
    ui: Watched, api: httpx.Client, site: SiteServer
) -> None:
    run = create_run(api, login_workflow(site), parameters={"password": "hunter2-secret"})
    run = wait_status(api, run["id"])
    assert run["status"] == "completed", run["failure_reason"]
    page = ui.page
    ui.allowed_errors.append("422")  # the browser logs the refused rerun
    await page.goto(f"{ui.base_url}/runs/{run['id']}")
    await expect(page.locator("#status .badge")).to_have_text("completed")
    # The secret is not kept: Rerun opens the duplicate form with the refusal at the field.
    await page.locator("#rerun").click()
    dialog = page.locator("#duplicate-dialog")
    await expect(dialog).to_be_visible()
    error = dialog.locator('[data-error-for="parameters.password"]')
    await expect(error).to_contain_text("give them again")
    password = dialog.locator("#dup-password")
    await expect(password).to_have_attribute("type", "password")
    await expect(password).to_have_value("")
    await expect(password).to_be_focused()
    await expect(dialog.locator("#dup-username")).to_have_value("ada")
    await password.fill("hunter2-secret")
    old_url = page.url
    await dialog.get_by_role("button", name="Start run").click()
    await expect(page).not_to_have_url(old_url)
    new = wait_status(api, page.url.rsplit("/", 1)[1])
    assert new["status"] == "completed", new["failure_reason"]
    assert new["parameters"]["password"] == "********"
    assert new["parent_run_id"] == run["id"]
