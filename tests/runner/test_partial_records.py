"""A run that does not complete still leaves its whole record: every kind of artifact it had
reached and every card, checked artifact by artifact (not just "some video and a trace").

Four endings, each a real Chromium run in this process on the demo site: canceled while a
`wait_for` waits, canceled while a navigation is in flight (a page that answers after a minute),
timed out (a navigation that never answers) and failed (a click on nothing). A cancel is what the
worker does: the task running the execution is canceled, at a moment a stored card marks.

Each run opens login.html first (it logs "login page ready" to the console), so every kind is
there to look for: video, trace, HAR, console, code, one screenshot per action card, and the
final HTML — also when a navigation was in flight: finishing stops the tab's loading first, so
the page that was shown (login.html) is kept.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from examples.site_server import SiteServer
from services.backends import Services
from storage.models import TimelineCard
from tests.conftest import Outcome, execute
from tests.runner.test_executor import probe

NEVER = "zq-never-on-any-page-qz"
ALWAYS = {"video", "trace", "har", "console", "code", "screenshot", "html"}


def workflow(
    site: SiteServer, second_step: dict[str, Any], *, timeout_s: int = 60
) -> dict[str, Any]:
    return {
        "title": "A run that does not complete",
        "url": site.url,
        "timeout_s": timeout_s,
        "blocks": [
            {
                "label": "visit",
                "type": "action",
                "steps": [{"goto": "{{ url }}login.html"}, second_step],
            }
        ],
    }


async def run_and_cancel(
    services: Services, definition: dict[str, Any], at: Callable[[TimelineCard], bool]
) -> Outcome:
    """Runs `definition` and cancels its task a moment after the first card `at` accepts is
    stored (the step that follows it is then under way)."""
    reached = asyncio.Event()

    def on_card(card: TimelineCard) -> None:
        if at(card):
            reached.set()

    task = asyncio.ensure_future(execute(services, definition, listeners=[on_card]))
    waiting = asyncio.ensure_future(reached.wait())
    await asyncio.wait({task, waiting}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    assert reached.is_set(), "the run never got to the moment of the cancel"
    await asyncio.sleep(1.0)
    assert not task.done(), "the run ended before it was canceled"
    task.cancel()
    return await task


def check_whole_record(
    outcome: Outcome,
    tmp_path: Path,
    *,
    status: str,
    verbs: list[str],
) -> None:
    """Every artifact kind the run reached is stored, readable and what it should be; every
    card is there: the block's started and finished cards, the action cards of the steps that
    ran (the one the ending cut short included), each with its screenshot, and the final
    narration."""
    run = outcome.run
    assert outcome.status == status, run.failure_reason
    assert outcome.history == ["created", "queued", "running", status]
    assert run.failure_reason
    assert run.record_missing is None  # nothing the run reached is missing from its record

    kinds = {a.kind for a in outcome.artifacts}
    expected = ALWAYS
    assert kinds == expected, f"missing {expected - kinds}, unexpected {kinds - expected}"
    for artifact in outcome.artifacts:
        assert len(outcome.read(artifact)) == artifact.size, artifact.name

    # The video plays: H.264 with a duration.
    video = tmp_path / "recording.mp4"
    video.write_bytes(outcome.read(outcome.artifact("video")))
    info = probe(video)
    assert info["streams"][0]["codec_name"] == "h264"
    assert float(info["format"]["duration"]) > 0.5

    # The trace opens and holds the block and the first page.
    with zipfile.ZipFile(io.BytesIO(outcome.read(outcome.artifact("trace")))) as trace:
        assert trace.testzip() is None
        events = [json.loads(line) for line in trace.read("trace.trace").splitlines() if line]
    groups = [e["title"] for e in events if e.get("method") == "tracingGroup"]
    assert groups == ["visit (action)"]
    assert any("login.html" in json.dumps(e) for e in events if e.get("type") == "before")

    # The HAR is valid JSON with the first page's request answered.
    har = json.loads(outcome.read(outcome.artifact("har")))
    pages = [e for e in har["log"]["entries"] if e["request"]["url"].endswith("/login.html")]
    assert pages and pages[0]["response"]["status"] == 200

    # The console log has the page's own message.
    lines = [json.loads(x) for x in outcome.read(outcome.artifact("console")).splitlines()]
    assert any(e["type"] == "log" and e["text"] == "login page ready" for e in lines), lines

    # The code replays what ran and is Python.
    code = outcome.read(outcome.artifact("code")).decode()
    compile(code, "replay.py", "exec")
    assert "login.html" in code

    assert "Sign in" in outcome.read(outcome.artifact("html")).decode()

    # Cards: in order, no gap.
    cards = outcome.cards
    assert [c.seq for c in cards] == list(range(1, len(cards) + 1))
    blocks = [c for c in cards if c.kind == "block"]
    assert [(c.data["event"], c.status) for c in blocks] == [
        ("started", "running"),
        ("finished", status),
    ]
    assert blocks[-1].data["error"]
    actions = outcome.actions()
    assert [c.data["verb"] for c in actions] == verbs
    assert run.action_count == len(actions)
    # The step that failed, or that the ending cut short, has its card, saying how it ended.
    assert (actions[-1].status, actions[-1].data["result"]) == (status, status)
    if status != "failed":
        assert actions[-1].data["error"] == run.failure_reason
    # One stored screenshot per action card, the one the card points at.
    shots = {a.id: a for a in outcome.artifacts if a.kind == "screenshot"}
    assert len(shots) == len(actions)
    for card in actions:
        assert card.screenshot_artifact_id in shots, card.data
        assert outcome.read(shots[card.screenshot_artifact_id])[:3] == b"\xff\xd8\xff"
    # The last card narrates the ending, after the block's end.
    assert cards[-1].kind == "thought"
    assert cards[-1].data["text"] == f"Run {status}: {run.failure_reason}"
    assert cards.index(blocks[-1]) < len(cards) - 1


async def test_canceled_while_waiting_keeps_the_whole_record(
    services: Services, site: SiteServer, tmp_path: Path
) -> None:
    outcome = await run_and_cancel(
        services,
        workflow(site, {"wait_for": {"text": NEVER, "timeout_ms": 60_000}}),
        at=lambda card: card.kind == "action",  # the goto is done: the wait_for waits
    )
    check_whole_record(outcome, tmp_path, status="canceled", verbs=["goto", "wait_for"])
    assert outcome.run.failure_reason == "canceled by a user"


async def test_canceled_during_a_navigation_keeps_the_whole_record(
    services: Services, site: SiteServer, tmp_path: Path
) -> None:
    outcome = await run_and_cancel(
        services,
        workflow(site, {"goto": "{{ url }}slow?ms=60000"}),
        at=lambda card: "slow?ms=60000" in card.data.get("text", ""),  # "Opening …/slow…"
    )
    check_whole_record(outcome, tmp_path, status="canceled", verbs=["goto", "goto"])
    # The narration of the navigation that was cut short is kept.
    narrated = [c.data["text"] for c in outcome.cards if c.kind == "thought"]
    assert any(t.endswith("/slow?ms=60000") for t in narrated), narrated


async def test_timed_out_keeps_the_whole_record(
    services: Services, site: SiteServer, tmp_path: Path
) -> None:
    outcome = await execute(services, workflow(site, {"goto": "{{ url }}hang"}, timeout_s=4))
    check_whole_record(outcome, tmp_path, status="timed_out", verbs=["goto", "goto"])
    assert outcome.run.failure_reason == "the run exceeded its time limit of 4 s"


async def test_failed_step_keeps_the_whole_record(
    services: Services, site: SiteServer, tmp_path: Path
) -> None:
    outcome = await execute(
        services, workflow(site, {"click": {"selector": "#nothing", "timeout_ms": 700}})
    )
    check_whole_record(outcome, tmp_path, status="failed", verbs=["goto", "click"])
    failed = outcome.actions()[-1]
    assert failed.status == "failed"
    assert failed.data["error"] == "no element matched within 700 ms"
