"""Recorded runs end to end: real Chromium, real ffmpeg, the local test site."""

from __future__ import annotations

import io
import json
import subprocess
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageChops, ImageStat
from playwright.async_api import Browser

from examples.site_server import SiteServer
from runner.settings import RunnerSettings
from services.backends import Services
from tests.conftest import Outcome
from tests.media import find_ffprobe

EXAMPLE = Path(__file__).parents[2] / "examples" / "shop.yaml"


def shop(site: SiteServer) -> dict[str, Any]:
    definition = yaml.safe_load(EXAMPLE.read_text())
    definition["url"] = site.url + "shop/"
    return definition


def probe(path: Path) -> dict[str, Any]:
    ffprobe = find_ffprobe()
    assert ffprobe, "ffprobe is needed to check videos"
    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
    )
    return json.loads(out.stdout)


def write(outcome: Outcome, kind: str, target: Path) -> Path:
    target.write_bytes(outcome.read(outcome.artifact(kind)))
    return target


async def test_example_workflow_leaves_a_complete_record(
    run_workflow: Any, site: SiteServer, tmp_path: Path
) -> None:
    outcome: Outcome = await run_workflow(shop(site))
    assert outcome.status == "completed", outcome.run.failure_reason
    assert outcome.history == ["created", "queued", "running", "completed"]
    assert outcome.run.extracted_information == {
        "cheapest": "Glow Reading Lamp",
        "prices": [24.99, 34.5, 49.99, 89.0],
    }
    kinds = {a.kind for a in outcome.artifacts}
    assert {"video", "trace", "har", "console", "download", "code", "html", "screenshot"} <= kinds

    # One action card per step, each with its screenshot and its moment in the video.
    actions = outcome.actions()
    verbs = "goto fill select check click wait_for assert_text download extract"
    assert [c.data["verb"] for c in actions] == verbs.split()
    assert outcome.run.action_count == len(actions)
    shots = {a.id: a for a in outcome.artifacts if a.kind == "screenshot"}
    assert all(c.screenshot_artifact_id in shots for c in actions)
    offsets = [c.video_ms for c in actions]
    assert offsets == sorted(offsets) and offsets[-1] > offsets[0]
    click = next(c for c in actions if c.data["verb"] == "click")
    assert click.data["target"] == 'role=button[name="Search"]'
    assert click.data["code"] == ['page.get_by_role("button", name="Search").click()']

    # The video: H.264, faststart, plays for the whole run, cards fall inside it.
    video = write(outcome, "video", tmp_path / "recording.mp4")
    info = probe(video)
    stream = info["streams"][0]
    assert (stream["codec_name"], stream["pix_fmt"]) == ("h264", "yuv420p")
    duration_ms = float(info["format"]["duration"]) * 1000
    assert offsets[-1] < duration_ms
    data = video.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "moov atom must come first (+faststart)"

    # The download, the HAR and the trace open in the tools a user would use.
    download = outcome.artifact("download")
    assert download.name == "results.csv"
    assert b"Glow Reading Lamp" in outcome.read(download)
    har = json.loads(outcome.read(outcome.artifact("har")))
    urls = [e["request"]["url"] for e in har["log"]["entries"]]
    assert any(u.endswith("/shop/search.html") for u in urls)
    assert all(e["response"]["status"] == 200 for e in har["log"]["entries"])
    with zipfile.ZipFile(io.BytesIO(outcome.read(outcome.artifact("trace")))) as trace:
        assert trace.testzip() is None
        events = [json.loads(line) for line in trace.read("trace.trace").splitlines() if line]
    groups = [e["title"] for e in events if e.get("method") == "tracingGroup"]
    assert groups == ["search (action)", "products (extract)"]
    html = outcome.read(outcome.artifact("html")).decode()
    assert "Glow Reading Lamp" in html

    # Stored artifacts match their rows.
    for artifact in outcome.artifacts:
        assert len(outcome.read(artifact)) == artifact.size


async def test_action_screenshot_outlines_the_element(run_workflow: Any, site: SiteServer) -> None:
    outcome = await run_workflow(
        {
            "url": site.url,
            "blocks": [
                {
                    "label": "search",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}shop/search.html"},
                        {"click": {"role": "button", "name": "Search"}},
                    ],
                }
            ],
        }
    )
    assert outcome.status == "completed", outcome.run.failure_reason
    click = outcome.actions()[-1]
    shot = next(a for a in outcome.artifacts if a.id == click.screenshot_artifact_id)
    image = Image.open(io.BytesIO(outcome.read(shot))).convert("RGB")
    assert image.size == RunnerSettings().video_size
    red = sum(
        1
        for x in range(0, image.width, 2)
        for y in range(0, image.height, 2)
        if (lambda p: p[0] > 200 and p[1] < 90 and p[2] < 90)(image.getpixel((x, y)))
    )
    assert red > 40, "the clicked button should be outlined in red"


async def test_failed_step_names_block_step_and_target_and_keeps_the_record(
    run_workflow: Any, site: SiteServer
) -> None:
    outcome = await run_workflow(
        {
            "url": site.url,
            "blocks": [
                {
                    "label": "search",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}shop/search.html"},
                        {"fill": {"selector": "#q", "value": "lamp"}},
                        {"click": {"selector": "#buy-now", "timeout_ms": 700}},
                    ],
                }
            ],
        }
    )
    assert outcome.status == "failed"
    assert outcome.run.failure_reason == (
        'block "search", step 3 click #buy-now: no element matched within 700 ms'
    )
    failed = outcome.actions()[-1]
    assert failed.status == "failed" and failed.data["error"]
    blocks = [c for c in outcome.cards if c.kind == "block"]
    assert blocks[-1].status == "failed"
    kinds = {a.kind for a in outcome.artifacts}
    assert {"video", "trace", "har", "console", "code", "screenshot"} <= kinds


async def test_run_timeout_ends_promptly_when_the_page_never_answers(
    run_workflow: Any, site: SiteServer
) -> None:
    started = time.monotonic()
    outcome = await run_workflow(
        {
            "url": site.url,
            "timeout_s": 3,
            "blocks": [
                {
                    "label": "wait",
                    "type": "action",
                    "steps": [{"goto": "{{ url }}shop/search.html"}, {"goto": "{{ url }}hang"}],
                }
            ],
        }
    )
    elapsed = time.monotonic() - started
    assert outcome.status == "timed_out"
    assert "3 s" in (outcome.run.failure_reason or "")
    # Ended at its limit, not at the page's (/hang never answers): the 3 s, then the record.
    run = outcome.run
    assert run.started_at is not None and run.finished_at is not None
    assert (run.finished_at - run.started_at).total_seconds() < 3 + 15, elapsed
    assert {"video", "trace", "har"} <= {a.kind for a in outcome.artifacts}


async def test_video_has_the_right_duration_on_a_static_page(
    run_workflow: Any, site: SiteServer, tmp_path: Path
) -> None:
    outcome = await run_workflow(
        {
            "url": site.url,
            "blocks": [
                {
                    "label": "idle",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}shop/index.html"},
                        # Nothing on the page changes while this waits 2.5 s for a missing text.
                        {
                            "wait_for": {
                                "text": "never shown",
                                "state": "attached",
                                "timeout_ms": 2500,
                            }
                        },
                    ],
                }
            ],
        }
    )
    assert outcome.status == "failed"
    started, finished = outcome.run.started_at, outcome.run.finished_at
    assert started and finished
    video = write(outcome, "video", tmp_path / "v.mp4")
    duration = float(probe(video)["format"]["duration"])
    assert duration >= 2.5
    assert duration <= (finished - started).total_seconds() + 0.5


async def test_console_messages_and_page_errors_are_logged(
    run_workflow: Any, site: SiteServer
) -> None:
    outcome = await run_workflow(
        {
            "url": site.url,
            "blocks": [
                {
                    "label": "errors",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}login.html"},
                        {"click": {"selector": "#page-error"}},
                    ],
                }
            ],
        }
    )
    assert outcome.status == "completed", outcome.run.failure_reason
    lines = [json.loads(x) for x in outcome.read(outcome.artifact("console")).splitlines()]
    assert any(e["type"] == "log" and "login page ready" in e["text"] for e in lines)
    assert any(e["type"] == "pageerror" for e in lines)
    assert all(isinstance(e["video_ms"], int) for e in lines)


async def test_every_verb_against_the_site(
    run_workflow: Any, site: SiteServer, tmp_path: Path, services: Services
) -> None:
    upload = tmp_path / "notes.txt"
    upload.write_text("twelve bytes")
    # Server files may be uploaded from GLASSBOX_UPLOAD_DIR only.
    runner = services.settings.runner.model_copy(update={"upload_dir": tmp_path})
    services.settings = replace(services.settings, runner=runner)
    outcome = await run_workflow(
        {
            "url": site.url,
            "parameters": {"attachment": {"type": "string", "default": str(upload)}},
            "blocks": [
                {
                    "label": "upload",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}upload.html"},
                        {"upload": {"selector": "#file", "file": "{{ attachment }}"}},
                        {"click": {"role": "button", "name": "Upload"}},
                        {"assert_text": {"text": "Received notes.txt (12 bytes)"}},
                    ],
                },
                {
                    "label": "scroll",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}scroll.html"},
                        {"scroll": {"direction": "down", "amount": 1500}},
                        {"scroll": {"selector": "#bottom"}},
                        {"assert_text": {"text": "You reached the bottom"}},
                    ],
                },
                {
                    "label": "search",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}shop/search.html"},
                        {"fill": {"selector": "#q", "value": "bulb"}},
                        {"press": {"selector": "#q", "key": "Enter"}},
                        {"select": {"selector": "#sort", "label": "Name: A to Z"}},
                        {"wait_for": {"text": "results for", "timeout_ms": 3000}},
                    ],
                },
            ],
        }
    )
    assert outcome.status == "completed", outcome.run.failure_reason
    assert len(outcome.actions()) == 13


async def test_recording_follows_a_new_tab(run_workflow: Any, site: SiteServer) -> None:
    outcome = await run_workflow(
        {
            "url": site.url,
            "blocks": [
                {
                    "label": "tabs",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}popup.html"},
                        {"click": {"selector": "#open-shop"}},
                        {"click": {"role": "link", "name": "Search", "exact": True}},
                        {"wait_for": {"selector": "#q"}},
                    ],
                }
            ],
        }
    )
    assert outcome.status == "completed", outcome.run.failure_reason
    actions = outcome.actions()
    assert actions[1].data["url"].endswith("/shop/index.html"), "the new tab is active"
    assert actions[2].data["url"].endswith("/shop/search.html")
    code = outcome.read(outcome.artifact("code")).decode()
    assert "with context.expect_page() as new_tab:" in code


def red_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box of the outline's red pixels (the outline colour, nothing on the site)."""
    rgb = image.convert("RGB")
    width = rgb.width
    xs, ys = [], []
    data = rgb.tobytes()
    for i in range(0, len(data) // 3):
        r, g, b = data[3 * i], data[3 * i + 1], data[3 * i + 2]
        if r > 200 and g < 90 and b < 90:
            xs.append(i % width)
            ys.append(i // width)
    if len(xs) < 40:
        return None
    return min(xs), min(ys), max(xs), max(ys)


async def element_boxes(
    browser: Browser, url: str, selectors: list[str]
) -> dict[str, tuple[float, float, float, float]]:
    """Where each element is, measured in a plain Playwright page at the run's viewport."""
    settings = RunnerSettings()
    page = await browser.new_page(
        viewport={"width": settings.viewport_width, "height": settings.viewport_height}
    )
    try:
        await page.goto(url)
        boxes = {}
        for selector in selectors:
            frame_selector, _, inner = selector.rpartition(" >>> ")
            scope = page.frame_locator(frame_selector) if frame_selector else page
            box = await scope.locator(inner).bounding_box()
            assert box is not None, selector
            boxes[selector] = (box["x"], box["y"], box["width"], box["height"])
        return boxes
    finally:
        await page.close()


async def test_each_action_screenshot_outlines_the_element_it_acted_on(
    run_workflow: Any, site: SiteServer, browser: Browser
) -> None:
    """The outline comes from where the page saw the action land (runner.tracking): checked
    per verb against the element's box measured independently, also inside a same-origin
    iframe (offset by the frame's position)."""
    steps = [
        ("fill", "#q", {"fill": {"selector": "#q", "value": "lamp"}}),
        ("select", "#sort", {"select": {"selector": "#sort", "value": "name"}}),
        ("check", "#in-stock", {"check": {"selector": "#in-stock"}}),
        ("press", "#q", {"press": {"selector": "#q", "key": "End"}}),
        ("click", "button[type=submit]", {"click": {"role": "button", "name": "Search"}}),
    ]
    in_frame = "#shop-frame >> internal:control=enter-frame >> #q"
    outcome = await run_workflow(
        {
            "url": site.url,
            "blocks": [
                {
                    "label": "search",
                    "type": "action",
                    "steps": [{"goto": "{{ url }}shop/search.html"}] + [s for _, _, s in steps],
                },
                {
                    "label": "framed",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}frame.html"},
                        {"fill": {"selector": in_frame, "value": "mug"}},
                    ],
                },
            ],
        }
    )
    assert outcome.status == "completed", outcome.run.failure_reason
    expected = await element_boxes(browser, site.url + "shop/search.html", [s for _, s, _ in steps])
    expected |= await element_boxes(browser, site.url + "frame.html", ["#shop-frame >>> #q"])
    checks = [(verb, selector) for verb, selector, _ in steps] + [("fill", "#shop-frame >>> #q")]
    actions = [a for a in outcome.actions() if a.data["verb"] != "goto"]
    assert [a.data["verb"] for a in actions] == [verb for verb, _ in checks]
    previous: Image.Image | None = None
    for card, (verb, selector) in zip(actions, checks, strict=True):
        shot = next(a for a in outcome.artifacts if a.id == card.screenshot_artifact_id)
        image = Image.open(io.BytesIO(outcome.read(shot)))
        found = red_box(image)
        assert found is not None, f"{verb}: no outline in its screenshot"
        scale = image.width / RunnerSettings().viewport_width
        x, y, w, h = (v * scale for v in expected[selector])
        # The outline is drawn 3 px outside the box, 3 px wide.
        for got, want in zip(found, (x - 3, y - 3, x + w + 3, y + h + 3), strict=True):
            assert abs(got - want) <= 4, (
                f"{verb} {selector}: outline {found}, element at {x, y, w, h}"
            )
        # The screenshot shows the action's effect, even when the next action follows at once:
        # inside the element, it differs from the previous action's screenshot.
        if verb in ("select", "check"):
            # Well inside the border, where a focus ring is not: the text, the check mark.
            pad_x, pad_y = max(2, int(w * 0.15)), max(2, int(h * 0.25))
            inside = (int(x) + pad_x, int(y) + pad_y, int(x + w) - pad_x, int(y + h) - pad_y)
            assert previous is not None
            before = previous.convert("RGB").crop(inside)
            after = image.convert("RGB").crop(inside)
            change = sum(ImageStat.Stat(ImageChops.difference(before, after)).mean) / 3
            assert change > 4, f"{verb}: its screenshot still shows the element as before"
        previous = image
