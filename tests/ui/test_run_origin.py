"""What a run page tells beyond its timeline, in real Chromium against a real `glassbox serve`:
where the run came from (a trigger, with its tags and metadata as a small table), the run it
started (a follow-up) and the one before it, the history's tag filter and source column, the
selected block's configuration on the Parameters tab, the card of the step a time limit or a
cancel cut short, and a run canceled while queued (no duration, no browser)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import Page, expect

from examples.site_server import SiteServer
from tests.api.conftest import (
    LOGIN_PASSWORD,
    create_run,
    login_workflow,
    timeline,
    visit_workflow,
    wait_status,
    wait_until,
    waiting_workflow,
)
from tests.ui.conftest import Runs, Watched


def triggered_chain(
    api: httpx.Client, base_url: str, site: SiteServer
) -> tuple[dict[str, Any], ...]:
    """A saved workflow with one follow-up, fired through a trigger with tags and metadata:
    (the trigger, its run, the follow-up)."""
    definition = visit_workflow(site, title="Nightly visit")
    definition["follow_up"] = {"after_s": 0, "max_count": 1}
    saved = api.post("/workflows", json={"definition": definition})
    assert saved.status_code == 201, saved.text
    trigger = api.post(
        f"/workflows/{saved.json()['id']}/triggers",
        json={
            "name": "from the CRM",
            "tags": ["nightly", "team:shop"],
            "metadata": {"customer": "ACME", "order": {"id": 42, "lines": [3, 4]}},
        },
    ).json()
    answer = httpx.post(
        base_url + trigger["url"], json={}, headers={"X-Glassbox-Token": trigger["token"]}
    )
    assert answer.status_code == 201, answer.text
    first = wait_status(api, answer.json()["id"])
    assert first["status"] == "completed", first["failure_reason"]

    def follow_up() -> dict[str, Any] | None:
        items = api.get(f"/runs/{first['id']}/follow-ups").json()["items"]
        return items[0] if items else None

    second = wait_status(api, wait_until(follow_up, timeout=30, what="the follow-up")["id"])
    return trigger, first, second


async def test_a_run_shows_its_origin_tags_metadata_and_the_runs_it_started(
    ui: Watched, api: httpx.Client, site: SiteServer
) -> None:
    page = ui.page
    trigger, first, second = triggered_chain(api, ui.base_url, site)
    await page.goto(f"{ui.base_url}/runs/{first['id']}")
    relations = page.locator("#relations")
    await expect(relations).to_be_visible()
    tags = page.locator("#run-tags a.tag")
    await expect(tags).to_have_text(["nightly", "team:shop"])
    assert await tags.first.get_attribute("href") == "/runs?tag=nightly"
    # Metadata as a key/value table: nested values readable, not raw JSON.
    rows = page.locator("#metadata-table tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator('#metadata-table tr[data-key="customer"] td')).to_have_text("ACME")
    order = page.locator('#metadata-table tr[data-key="order"] td')
    await expect(order).to_have_text("id: 42, lines: 3, 4")
    origin = page.locator("#run-origin")
    await expect(origin).to_contain_text("Trigger")
    await expect(origin.locator("[data-origin=triggers]")).to_have_text(
        f"from the CRM ({trigger['id']})"
    )
    assert await origin.locator("[data-origin=triggers]").get_attribute("href") == (
        f"/workflows/{trigger['workflow_id']}"
    )
    await expect(page.locator("#source")).to_have_text("Source trigger URL")
    child = page.locator(f'#run-children .child[data-run-id="{second["id"]}"]')
    await expect(child).to_be_visible()
    await expect(child).to_contain_text("follow-up")
    await expect(child.locator(".badge")).to_have_text("completed")

    # The follow-up points back at the run before it.
    await child.locator("a").click()
    await expect(page).to_have_url(f"{ui.base_url}/runs/{second['id']}")
    parent = page.locator("#run-parent a")
    await expect(parent).to_have_text(first["id"])
    await expect(page.locator("#relations dt").filter(has_text="Follows")).to_be_visible()

    # "its runs": the history scoped to the trigger, the scope shown and removable.
    await page.goto(f"{ui.base_url}/runs/{first['id']}")
    await origin.get_by_role("link", name="its runs").click()
    await expect(page).to_have_url(re.compile(rf"/runs\?trigger_id={trigger['id']}$"))
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator('.scope-chip[data-scope="trigger_id"]')).to_contain_text(
        trigger["id"]
    )


async def test_the_history_filters_by_tag_and_names_each_source(
    ui: Watched, api: httpx.Client, site: SiteServer, runs: Runs
) -> None:
    page = ui.page
    tagged = create_run(api, visit_workflow(site, title="Tagged visit"), tags=["blue", "wave:7"])
    assert wait_status(api, tagged["id"])["status"] == "completed"
    await page.goto(ui.base_url + "/runs")
    row = page.locator(f'tr[data-run-id="{tagged["id"]}"]')
    await expect(row.locator(".tags .tag")).to_have_text(["blue", "wave:7"])
    await expect(row.locator("td.col-source")).to_have_text("API")
    shop = page.locator(f'tr[data-run-id="{runs.shop["id"]}"]')
    await expect(shop).to_be_visible()

    # A tag in a row filters by it, kept in the URL; a reload keeps it.
    await row.locator(".tags .tag", has_text="wave:7").click()
    await expect(page).to_have_url(re.compile(r"/runs\?tag=wave%3A7$"))
    await expect(page.locator("#tag")).to_have_value("wave:7")
    await expect(page.locator("tbody tr")).to_have_count(1)
    await page.reload()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("#tag")).to_have_value("wave:7")
    # Typing another tag; clearing it shows everything again.
    await page.locator("#tag").fill("no-such-tag")
    await expect(page.locator("#empty")).to_be_visible()
    await page.locator("#tag").fill("")
    await expect(shop).to_be_visible()
    await expect(page).to_have_url(f"{ui.base_url}/runs")

    # Runs that started themselves say how, in words.
    for value, label in (("upload", "Upload"), ("agent", "Started by a run")):
        await expect(page.locator(f'#source option[value="{value}"]')).to_have_text(label)


async def test_the_parameters_tab_shows_the_selected_block_with_secrets_masked(
    ui: Watched, api: httpx.Client, site: SiteServer, runs: Runs
) -> None:
    page = ui.page
    cards = timeline(api, runs.shop["id"])
    search = next(c for c in cards if c["kind"] == "action" and c["block_label"] == "search")
    products = next(c for c in cards if c["block_label"] == "products")
    await page.goto(f"{ui.base_url}/runs/{runs.shop['id']}#parameters")
    # The run ended: its last card is selected, so a block is shown at once.
    await expect(page.locator("#block-config .block-config")).to_be_visible()

    await page.locator("#tab-overview").click()
    await page.locator(f'#timeline .card[data-seq="{search["seq"]}"]').click()
    await page.locator("#tab-parameters").click()
    config = page.locator('#block-config .block-config[data-block="search"]')
    await expect(config).to_be_visible()
    await expect(config.locator(".block-head .tag")).to_have_text("action")
    steps = config.locator("#block-steps li")
    verbs = [await s.get_attribute("data-verb") for s in await steps.all()]
    assert verbs[:2] == ["goto", "fill"] and "download" in verbs, verbs
    await expect(steps.nth(1)).to_contain_text("{{ query }}")
    assert "{" not in (await steps.nth(1).inner_text()).replace("{{ query }}", "")

    await page.locator("#tab-overview").click()
    await page.locator(f'#timeline .card[data-seq="{products["seq"]}"]').click()
    await page.locator("#tab-parameters").click()
    fields = page.locator('#block-config .block-config[data-block="products"] #block-fields tr')
    await expect(fields).to_have_count(2)
    await expect(fields.first).to_contain_text("cheapest")

    # A secret parameter's block: the template, never the value.
    login = create_run(api, login_workflow(site), parameters={"password": LOGIN_PASSWORD})
    assert wait_status(api, login["id"])["status"] == "completed"
    typed = next(c for c in timeline(api, login["id"]) if c.get("target") == "#password")
    await page.goto(f"{ui.base_url}/runs/{login['id']}")
    await page.locator(f'#timeline .card[data-seq="{typed["seq"]}"]').click()
    await page.locator("#tab-parameters").click()
    await expect(page.locator('#block-config .block-config[data-block="login"]')).to_be_visible()
    await expect(page.locator("#block-config")).to_contain_text("{{ password }}")
    assert LOGIN_PASSWORD not in await page.locator("#panel-parameters").inner_text()


async def test_the_step_cut_short_keeps_its_card_and_a_run_canceled_while_queued_never_started(
    ui: Watched, api: httpx.Client, site: SiteServer
) -> None:
    page = ui.page
    # A step the time limit cuts short: its card says timed out, with the nearest frame.
    slow = waiting_workflow(site, title="Too slow")
    slow["timeout_s"] = 4
    timed = wait_status(api, create_run(api, slow)["id"])
    assert timed["status"] == "timed_out"
    last = [c for c in timeline(api, timed["id"]) if c["kind"] == "action"][-1]
    assert (last["verb"], last["status"]) == ("wait_for", "timed_out"), last
    assert "time limit" in last["error"]
    await page.goto(f"{ui.base_url}/runs/{timed['id']}")
    card = page.locator(f'#timeline .card[data-seq="{last["seq"]}"]')
    await expect(card).to_have_attribute("data-state", "bad")
    await expect(card).to_contain_text("wait_for")
    await card.click()
    image = page.locator("#browser-image")
    await expect(image).to_be_visible()
    await expect(page.locator("#browser-mode")).to_contain_text(f"#{last['seq']}")
    await loaded(page)
    await expect(page.locator('[data-counter="failed"]')).to_have_count(0)

    # The worker busy with a long wait, a second run stays queued; cancel it from its page.
    busy = create_run(api, waiting_workflow(site, title="Keeps the worker busy"))
    wait_status(api, busy["id"], {"running"})
    queued = create_run(api, visit_workflow(site, title="Never started"))
    await page.goto(f"{ui.base_url}/runs/{queued['id']}")
    await expect(page.locator("#status .badge")).to_have_text("queued")
    await expect(page.locator("#placeholder-text")).to_contain_text("Queued")
    await page.locator("#cancel").click()
    await expect(page.locator("#status .badge")).to_have_text("canceled")
    await expect(page.locator("#duration")).to_have_text("Duration —")
    await expect(page.locator("#placeholder-text")).to_have_text(
        "Canceled before it started: no browser was opened."
    )
    await expect(page.locator("#browser-image")).to_be_hidden()
    assert await page.locator("#browser-image").get_attribute("src") is None
    assert "Waiting for the browser" not in await page.locator("main").inner_text()
    await page.reload()
    await expect(page.locator("#duration")).to_have_text("Duration —")
    await expect(page.locator("#placeholder-text")).to_contain_text("Canceled before it started")
    await expect(page.locator("#browser-image")).to_be_hidden()

    # The busy run, canceled in its wait: that step's card says canceled.
    assert api.post(f"/runs/{busy['id']}/cancel").status_code == 200
    assert wait_status(api, busy["id"])["status"] == "canceled"
    cut = [c for c in timeline(api, busy["id"]) if c["kind"] == "action"][-1]
    assert (cut["verb"], cut["status"]) == ("wait_for", "canceled"), cut
    await page.goto(f"{ui.base_url}/runs/{busy['id']}")
    await expect(page.locator(f'#timeline .card[data-seq="{cut["seq"]}"]')).to_have_attribute(
        "data-state", "stopped"
    )


async def loaded(page: Page) -> None:
    """The browser panel shows a decoded image (not a broken one)."""
    await page.wait_for_function(
        "() => { const i = document.getElementById('browser-image');"
        " return !i.hidden && i.complete && i.naturalWidth > 0; }"
    )


async def test_a_run_started_by_an_uploaded_file_says_so_and_lists_the_file(
    ui: Watched, api: httpx.Client, site: SiteServer
) -> None:
    page = ui.page
    definition = {
        "title": "File a photo",
        "url": site.url,
        "timeout_s": 60,
        "parameters": {"photo": {"type": "file"}},
        "blocks": [
            {
                "label": "send",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}upload.html"},
                    {"upload": {"selector": "#file", "file": "{{ photo }}"}},
                    {"click": {"role": "button", "name": "Upload"}},
                    {"assert_text": {"text": "Received room.txt"}},
                ],
            }
        ],
    }
    saved = api.post("/workflows", json={"definition": definition}).json()
    # Made on the workflow's page: its token shown once, with a call that uses it.
    await page.goto(f"{ui.base_url}/workflows/{saved['id']}")
    await expect(page.locator("#no-triggers")).to_be_visible()
    await page.locator("#trigger-kind").select_option("upload")
    await expect(page.locator("#trigger-help")).to_contain_text("each file starts a run")
    await page.locator("#trigger-name").fill("photo inbox")
    await page.locator("#add-trigger").click()
    token = await page.locator("#trigger-token").inner_text()
    assert token.startswith("gbt_")
    await expect(page.locator("#trigger-call")).to_contain_text("-F file=@")
    item = page.locator("#trigger-list li[data-kind=upload]")
    await expect(item).to_contain_text("photo inbox")
    await expect(item).to_contain_text("a run per uploaded file → photo")
    trigger = api.get(f"/workflows/{saved['id']}/triggers").json()["items"][0]
    assert (
        trigger["kind"] == "upload"
        and await item.get_attribute("data-trigger-id") == (trigger["id"])
    )
    answer = httpx.post(
        ui.base_url + trigger["url"],
        files=[("file", ("room.txt", b"a bright room\n", "text/plain"))],
        headers={"X-Glassbox-Token": token},
    )
    assert answer.status_code == 201, answer.text
    run = wait_status(api, answer.json()["items"][0]["id"])
    assert run["status"] == "completed", run["failure_reason"]

    await page.goto(f"{ui.base_url}/runs?source=upload")
    row = page.locator(f'tr[data-run-id="{run["id"]}"]')
    await expect(row.locator("td.col-source")).to_have_text("Upload")
    await expect(page.locator("#source")).to_have_value("upload")
    await row.locator("td.title a").click()
    await expect(page.locator("#source")).to_have_text("Source upload trigger")
    origin = page.locator("#run-origin")
    await expect(origin).to_contain_text("Upload trigger")
    await expect(origin.locator("[data-origin=triggers]")).to_contain_text("photo inbox")
    await page.locator("#tab-output").click()
    given = page.locator("#file-table tr", has_text="room.txt")
    await expect(given.locator("td").nth(1)).to_have_text("input")
