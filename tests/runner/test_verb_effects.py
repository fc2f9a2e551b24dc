"""Each step verb is checked by its effect on the page, as the page's own server saw it
(tests/probe_site.py), not by the status Glassbox gives the step; then the run's generated
`code` artifact is executed and must print the run's extracted information.

A step that "succeeds" without doing anything (a select that picks the wrong option, an Enter
that does not submit, a scroll that does not move) passes a status check; it does not pass these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from services.backends import Services
from tests.conftest import Outcome, reload_llm_settings
from tests.llm_server import (
    Reply,
    ScriptedLLM,
    elements,
    find_element,
    previous_tool_calls,
    step_index,
)
from tests.probe_site import Hit, ProbeSite
from tests.runner.test_codegen import last_json_line, run_script

UPLOADED = b"glassbox upload probe \x00\x01\x02 bytes\n"


@pytest.fixture(autouse=True)
def upload_dir(services: Services, tmp_path: Path) -> Path:
    """The tests' files to upload live in tmp_path: the run may upload from there only
    (GLASSBOX_UPLOAD_DIR)."""
    runner = services.settings.runner.model_copy(update={"upload_dir": tmp_path})
    services.settings = replace(services.settings, runner=runner)
    return tmp_path


@pytest.fixture
def probe() -> Iterator[ProbeSite]:
    with ProbeSite() as site:
        yield site


def form_steps() -> list[dict[str, Any]]:
    """Fill, select by label, check, then Enter in the text box (which submits the form)."""
    return [
        {"goto": "{{ url }}form.html"},
        {"fill": {"selector": "#q", "value": "{{ lamp }}"}},
        {"select": {"selector": "#size", "label": "Large lamp"}},
        {"check": {"selector": "#gift"}},
        {"press": {"selector": "#q", "key": "Enter"}},
        {"wait_for": {"selector": "#got-q"}},
    ]


def effects_workflow(probe: ProbeSite, attachment: Path) -> dict[str, Any]:
    return {
        "title": "Every verb, checked by its effect",
        "url": probe.url,
        "timeout_s": 90,
        "parameters": {
            "lamp": {"type": "string", "default": "Glow Reading Lamp"},
            "attachment": {"type": "string", "default": str(attachment)},
        },
        "blocks": [
            {"label": "order", "type": "action", "steps": form_steps()},
            {
                "label": "ordered",
                "type": "extract",
                "fields": {
                    "q": {"selector": "#got-q", "first": True},
                    "size": {"selector": "#got-size", "first": True},
                    "gift": {"selector": "#got-gift", "first": True},
                },
            },
            {
                "label": "upload",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}upload.html"},
                    {"upload": {"selector": "#file", "file": "{{ attachment }}"}},
                    {"click": {"role": "button", "name": "Upload"}},
                    {"wait_for": {"selector": "#received"}},
                ],
            },
            {
                "label": "uploaded",
                "type": "extract",
                "fields": {
                    "received": {"selector": "#received", "first": True},
                    "sha256": {"selector": "#sha256", "first": True},
                },
            },
            {
                "label": "scroll",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}long.html"},
                    {"scroll": {"direction": "down", "amount": 1500}},
                ],
            },
            {
                "label": "scrolled",
                "type": "extract",
                "fields": {"scroll_y": {"selector": "#scroll-y", "first": True, "as": "integer"}},
            },
            {
                "label": "to the bottom",
                "type": "action",
                "steps": [{"scroll": {"selector": "#bottom"}}],
            },
            {
                "label": "at the bottom",
                "type": "extract",
                "fields": {"bottom_seen": {"selector": "#bottom-seen", "first": True}},
            },
        ],
    }


def scroll_reports(hits: list[Hit]) -> list[dict[str, Any]]:
    return [h.json() for h in hits if h.method == "POST"]


def check_form_effects(probe: ProbeSite, since: int, lamp: str) -> None:
    """The form reached the server once, submitted by Enter, with the chosen option and box."""
    submitted = probe.hits("/submitted", since=since)
    assert len(submitted) == 1, [h.query for h in submitted]
    query = submitted[0].query
    assert query["q"] == [lamp]
    assert query["size"] == ["l"], "select by label must choose the option labelled so"
    assert query["gift"] == ["yes"], "the checkbox was not checked when the form was sent"


async def test_each_verb_has_its_effect_on_the_page(
    run_workflow: Any, probe: ProbeSite, tmp_path: Path
) -> None:
    attachment = tmp_path / "notes.bin"
    attachment.write_bytes(UPLOADED)
    outcome: Outcome = await run_workflow(effects_workflow(probe, attachment))
    assert outcome.status == "completed", outcome.run.failure_reason

    # press Enter submitted the form; select and check had changed it before.
    check_form_effects(probe, 0, "Glow Reading Lamp")
    # upload: the server received the file's exact bytes under its name.
    uploads = probe.hits("/upload")
    assert len(uploads) == 1
    [sent] = uploads[0].files
    assert (sent.name, sent.filename, sent.data) == ("file", "notes.bin", UPLOADED)
    # scroll: the page reported the new window.scrollY, then the bottom in view.
    reports = scroll_reports(probe.hits("/event"))
    assert any(r["y"] == 1500 for r in reports), reports
    assert reports[-1]["bottom_in_view"] is True, reports
    assert reports[-1]["y"] > 1500, reports

    assert outcome.run.extracted_information == {
        "q": "Glow Reading Lamp",
        "size": "l",
        "gift": "yes",
        "received": f"Received notes.bin ({len(UPLOADED)} bytes)",
        "sha256": hashlib.sha256(UPLOADED).hexdigest(),
        "scroll_y": 1500,
        "bottom_seen": "yes",
    }

    # The generated script does the same to the page and prints the same information (read
    # from the page: its last scroll report may not leave before the script closes the browser).
    since = probe.mark()
    proc = run_script(outcome.read(outcome.artifact("code")), tmp_path / "replay")
    assert last_json_line(proc) == outcome.run.extracted_information
    check_form_effects(probe, since, "Glow Reading Lamp")
    [replayed] = probe.hits("/upload", since=since)
    assert replayed.files[0].data == UPLOADED


# --- goal blocks' runs, replayed by their script -------------------------------------------


def agent_policy(attachment: Path) -> Any:
    """Acts the way a model would, element numbers from the observation: fills and sends the
    form (Enter), uploads the file, scrolls the long page; then completes."""

    def policy(request: dict[str, Any]) -> Reply:
        found = elements(request)
        text = json.dumps(request["messages"][-1])
        done = Reply.call(
            "complete",
            {"summary": "Done", "extracted_information": {"agent_done": True}},
            thought="Done here.",
        )
        calls = [name for name, _ in previous_tool_calls(request)]
        if "Order received" in text or "Received " in text:
            return done
        if "form.html" in text:
            q = find_element(found, tag="input", id="q")
            size = find_element(found, tag="select", id="size")
            gift = find_element(found, tag="input", id="gift")
            assert q and size and gift, found
            plan = [
                Reply.call("input_text", {"element": q.n, "text": "Desk Lamp"}, thought="Name."),
                Reply.call("select_option", {"element": size.n, "option": "Large lamp"}),
                Reply.call("check", {"element": gift.n}, thought="Gift wrap."),
                Reply.call("press", {"key": "Enter"}, thought="Sending the form with Enter."),
            ]
            return plan[min(step_index(request), len(plan) - 1)]
        if "upload.html" in text:
            file = find_element(found, tag="input", id="file")
            button = find_element(found, tag="button", text="Upload")
            assert file and button, found
            if "upload_file" not in calls:
                return Reply.call("upload_file", {"element": file.n, "file": str(attachment)})
            return Reply.call("click", {"element": button.n}, thought="Sending it.")
        if "long.html" in text:
            return (
                done if calls.count("scroll") >= 2 else Reply.call("scroll", {"direction": "down"})
            )
        raise AssertionError(f"unexpected page: {text[:300]}")

    return policy


@pytest.fixture
def llm_env(monkeypatch: pytest.MonkeyPatch, services: Services) -> Iterator[Any]:
    def use(llm: ScriptedLLM) -> None:
        monkeypatch.setenv("GLASSBOX_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("GLASSBOX_LLM_API_KEY", "test-key")
        monkeypatch.setenv("GLASSBOX_LLM_MODEL", "scripted")
        monkeypatch.setenv("GLASSBOX_LLM_MAX_RETRIES", "2")
        reload_llm_settings(services)

    yield use


def goal(label: str, page: str, text: str, extract: dict[str, str]) -> list[dict[str, Any]]:
    """Open a page, let the agent act on it, extract from where it left the page."""
    return [
        {"label": f"open {label}", "type": "action", "steps": [{"goto": f"{{{{ url }}}}{page}"}]},
        {"label": label, "type": "goal", "goal": text, "max_steps": 8},
        {
            "label": f"after {label}",
            "type": "extract",
            "fields": {name: {"selector": sel, "first": True} for name, sel in extract.items()},
        },
    ]


async def test_goal_block_runs_replay_from_their_script(
    run_workflow: Any, probe: ProbeSite, llm_env: Any, tmp_path: Path
) -> None:
    attachment = tmp_path / "room.bin"
    attachment.write_bytes(UPLOADED)
    workflow = {
        "title": "The agent orders, uploads and scrolls",
        "url": probe.url,
        "timeout_s": 120,
        "blocks": [
            *goal(
                "order",
                "form.html",
                "Order a large Desk Lamp, gift wrapped",
                {"q": "#got-q", "size": "#got-size", "gift": "#got-gift"},
            ),
            *goal("upload", "upload.html", "Upload the photo", {"received": "#received"}),
            *goal("scroll", "long.html", "Scroll down twice", {"scroll_y": "#scroll-y"}),
        ],
    }
    with ScriptedLLM(agent_policy(attachment)) as llm:
        llm_env(llm)
        outcome: Outcome = await run_workflow(workflow)
    assert outcome.status == "completed", outcome.run.failure_reason
    check_form_effects(probe, 0, "Desk Lamp")
    [upload] = probe.hits("/upload")
    assert upload.files[0].data == UPLOADED
    assert outcome.run.extracted_information == {
        "agent_done": True,
        "q": "Desk Lamp",
        "size": "l",
        "gift": "yes",
        "received": f"Received room.bin ({len(UPLOADED)} bytes)",
        "scroll_y": "1200",
    }

    since = probe.mark()
    proc = run_script(outcome.read(outcome.artifact("code")), tmp_path / "replay")
    assert last_json_line(proc) == outcome.run.extracted_information
    check_form_effects(probe, since, "Desk Lamp")
    [replayed] = probe.hits("/upload", since=since)
    assert replayed.files[0].data == UPLOADED
