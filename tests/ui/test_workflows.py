"""Workflows in the Web UI: write one in the editor (a mistake shown at its line first), see it
listed, launch it from the form built from its parameters (an inline refusal first), and follow
the run live to its end."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import expect

from examples.site_server import SiteServer
from tests.ui.conftest import Watched


def shop_source(site: SiteServer, *, extra_step: str = "") -> str:
    return (
        "title: Cheapest by search\n"
        "description: Searches the demo shop and keeps the cheapest result.\n"
        f"url: {site.url}shop/\n"
        "parameters:\n"
        "  query:\n"
        "    type: string\n"
        "    description: What to search for\n"
        "  pages:\n"
        "    type: integer\n"
        "    default: 1\n"
        "  token:\n"
        "    type: string\n"
        "    secret: true\n"
        "    required: false\n"
        "blocks:\n"
        "  - label: search\n"
        "    type: action\n"
        "    steps:\n"
        '      - goto: "{{ url }}search.html"\n'
        '      - fill: {selector: "#q", value: "{{ query }}"}\n'
        f"{extra_step}"
        "      - click: {role: button, name: Search}\n"
        '      - wait_for: {selector: ".result", state: visible}\n'
        "  - label: products\n"
        "    type: extract\n"
        "    fields:\n"
        '      cheapest: {selector: ".result .name", first: true}\n'
    )


async def test_write_a_workflow_launch_it_from_its_form_and_follow_the_run(
    ui: Watched, api: httpx.Client, site: SiteServer
) -> None:
    page = ui.page
    ui.allowed_errors.append("422")  # the browser logs each refused request
    await page.goto(f"{ui.base_url}/workflows")
    await page.locator("#new-workflow").click()
    await expect(page).to_have_url(f"{ui.base_url}/workflows/new")
    editor = page.locator("#source")
    await expect(editor).not_to_have_value("")  # a template to start from

    # A step with no verb: refused at its line, which the gutter marks and the editor selects.
    await editor.fill(shop_source(site, extra_step="      - {}\n"))
    await page.locator("#save").click()
    error = page.locator("#source-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("Line 21")
    await expect(error).to_contain_text("steps[2]")
    await expect(page.locator("#gutter mark")).to_have_text("21")
    await expect(editor).to_have_attribute("aria-invalid", "true")
    selected = await editor.evaluate("t => t.value.slice(t.selectionStart, t.selectionEnd)")
    assert selected == "      - {}"

    await editor.fill(shop_source(site))
    await page.locator("#save").click()
    await page.wait_for_url(f"{ui.base_url}/workflows/wf_*")
    workflow_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("h1#title")).to_have_text("Cheapest by search")
    await expect(page.locator("#description")).to_have_text(
        "Searches the demo shop and keeps the cheapest result."
    )
    await expect(page.locator("#definition")).to_contain_text("label: search")

    # The form follows the parameters: types, defaults, descriptions, the secret as a password.
    await expect(page.locator("#param-query")).to_have_attribute("type", "text")
    await expect(page.locator("#param-query-help")).to_have_text("What to search for")
    await expect(page.locator("#param-pages")).to_have_attribute("type", "number")
    await expect(page.locator("#param-pages")).to_have_value("1")
    await expect(page.locator("#param-token")).to_have_attribute("type", "password")

    # Nothing typed for the required query: the API's refusal appears at that field.
    await page.locator("#start").click()
    field_error = page.locator('[data-error-for="parameters.query"]')
    await expect(field_error).to_be_visible()
    await expect(field_error).to_contain_text("required")
    await expect(page.locator("#param-query")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#param-query")).to_be_focused()

    await page.locator("#param-query").fill("lamp")
    await page.locator("#start").click()
    await page.wait_for_url(f"{ui.base_url}/runs/run_*")
    run_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#status .badge")).to_have_text("completed", timeout=45_000)
    record = api.get(f"/runs/{run_id}").json()
    assert record["workflow_id"] == workflow_id
    assert record["parameters"]["query"] == "lamp"
    assert "lamp" in record["extracted_information"]["cheapest"].lower()

    # Back on the list: the workflow, its parameters and its last run.
    await page.goto(f"{ui.base_url}/workflows")
    item = page.locator(f'[data-workflow-id="{workflow_id}"]')
    await expect(item.locator(".wf-title")).to_have_text("Cheapest by search")
    await expect(item.locator(".param-chip")).to_have_count(3)
    await expect(item.locator(".last-run .badge")).to_have_text("completed")
    await expect(item.locator(".last-run time")).to_have_text("just now")
    await expect(item.locator(".last-run time")).to_have_attribute("title", re.compile(r"\d:\d\d"))
    # ... and on its page, the run among its runs.
    await page.goto(f"{ui.base_url}/workflows/{workflow_id}")
    await expect(page.locator(f'#wf-runs tr[data-run-id="{run_id}"]')).to_be_visible()


async def test_an_unknown_workflow_says_so(ui: Watched) -> None:
    ui.allowed_errors.append("404")
    await ui.page.goto(f"{ui.base_url}/workflows/wf_nope")
    await expect(ui.page.locator("#error")).to_have_text("Workflow not found.")
    await expect(ui.page.locator("#launch")).to_be_hidden()


async def test_schedule_a_workflow_from_its_page_and_see_its_runs(
    ui: Watched, api: httpx.Client, site: SiteServer
) -> None:
    page = ui.page
    ui.allowed_errors.append("422")
    saved = api.post(
        "/workflows",
        json={"source": shop_source(site).replace("Cheapest by search", "Scheduled search")},
    ).json()
    await page.goto(f"{ui.base_url}/workflows/{saved['id']}")
    await expect(page.locator("#no-schedules")).to_be_visible()

    # A cron expression that is not one: refused, naming the field, nothing saved.
    await page.locator("#schedule-kind").select_option("cron")
    await page.locator("#schedule-value").fill("every morning")
    await page.locator("#add-schedule").click()
    await expect(page.locator("#schedule-error")).to_contain_text("cron")
    assert api.get(f"/workflows/{saved['id']}/schedules").json()["items"] == []

    # Every 2 s, with the query typed in the launch form.
    await page.locator("#param-query").fill("desk")
    await page.locator("#schedule-kind").select_option("interval_s")
    await page.locator("#schedule-value").fill("2")
    await page.locator("#add-schedule").click()
    item = page.locator(".schedule-item")
    await expect(item).to_have_count(1)
    await expect(item.locator(".when")).to_have_text("every 2 s")
    await expect(item.locator(".next time")).to_be_visible()
    schedule = api.get(f"/workflows/{saved['id']}/schedules").json()["items"][0]
    assert schedule["parameters"] == {"query": "desk", "pages": 1}

    # Its runs appear among the workflow's runs, with source schedule.
    first = page.locator("#wf-runs tbody tr").first
    await expect(first).to_be_visible(timeout=20_000)
    run_id = await first.get_attribute("data-run-id")
    record = api.get(f"/runs/{run_id}").json()
    assert record["source"] == "schedule" and record["schedule_id"] == schedule["id"]
    assert record["parameters"]["query"] == "desk"

    await item.locator("button.toggle").click()
    await expect(item).to_have_class(re.compile(r"\bdisabled\b"))
    await expect(item.locator("button.toggle")).to_have_text("Enable")
    assert api.get(f"/schedules/{schedule['id']}").json()["enabled"] is False
    page.on("dialog", lambda dialog: dialog.accept())
    await item.locator("button.remove").click()
    await expect(page.locator(".schedule-item")).to_have_count(0)
    assert api.get(f"/schedules/{schedule['id']}").status_code == 404
