"""`GET /runs/{id}/activity`: the run's requests (from its HAR) and console lines on the video's
clock, so a card's time window shows what the page did — failed requests flagged."""

from __future__ import annotations

import httpx

from examples.site_server import SiteServer
from tests.api.conftest import create_run, timeline, wait_status


def test_activity_lists_requests_and_console_lines_on_the_video_clock(
    client: httpx.Client, site: SiteServer
) -> None:
    workflow = {
        "title": "A page that fails a request",
        "url": site.url,
        "blocks": [
            {
                "label": "report",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}report-error.html?day=3"},
                    {"wait_for": {"text": "No report", "timeout_ms": 10_000}},
                    {"goto": "{{ url }}shop/"},
                ],
            }
        ],
    }
    run = wait_status(client, create_run(client, workflow)["id"])
    assert run["status"] == "completed", run["failure_reason"]
    answer = client.get(f"/runs/{run['id']}/activity")
    assert answer.status_code == 200, answer.text
    activity = answer.json()
    assert activity["missing"] == [] and activity["truncated"] is False

    requests = activity["requests"]
    report = [r for r in requests if "report-error.html" in r["url"]]
    missing = [r for r in requests if "missing-report.json" in r["url"]]
    shop = [r for r in requests if r["url"].rstrip("/").endswith("/shop")]
    assert report and report[0]["status"] == 200 and not report[0]["failed"]
    assert missing and missing[0]["status"] == 404 and missing[0]["failed"]
    assert shop and shop[0]["method"] == "GET"
    assert all(r["video_ms"] is not None and r["video_ms"] >= 0 for r in requests)
    # On the video's clock, in the order of the steps that made them.
    assert report[0]["video_ms"] <= missing[0]["video_ms"] <= shop[0]["video_ms"]
    cards = [c for c in timeline(client, run["id"]) if c["kind"] == "action"]
    last_goto = [c for c in cards if c["verb"] == "goto"][-1]
    assert shop[0]["video_ms"] >= last_goto["video_ms"] - 500

    errors = [c for c in activity["console"] if "report not loaded (HTTP 404)" in c["text"]]
    assert errors and errors[0]["type"] == "error"
    assert report[0]["video_ms"] <= errors[0]["video_ms"] <= shop[0]["video_ms"]

    assert client.get("/runs/run_nope/activity").status_code == 404
