"""Replay (`run_with: code`) and self-healing, in real Chromium against the demo site's
newsletter page, with the scripted LLM server counting every request: a cache hit makes no LLM
call; a renamed button heals through a fallback locator or the agent, with a divergence card,
and leaves a new version; without a goal the run fails with the explanation."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from sqlalchemy import select

from examples.site_server import SiteServer
from runner.context import RunnerEnv
from runner.resources import inputs_of
from runner.templating import resolve_inputs
from runner.workflow import parse_workflow
from services.backends import Services
from services.runs import RunOptions, continue_run, queue_run, rerun, run_now, runner_env
from storage.artifacts import list_artifacts
from storage.errors import StateGone, ValidationFailed
from storage.models import ActionRecord, utcnow
from storage.runs import drop_expired_states, get_run
from storage.status import RunSource, RunStatus
from storage.timeline import list_cards
from storage.workflows import create_workflow
from tests.conftest import Outcome, execute, reload_llm_settings
from tests.llm_server import Reply, ScriptedLLM, elements, find_element, observation_text

EMAIL = "ada@example.com"


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch, services: Services) -> Iterator[ScriptedLLM]:
    with ScriptedLLM(newsletter_policy) as server:
        monkeypatch.setenv("GLASSBOX_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("GLASSBOX_LLM_API_KEY", "test-key")
        monkeypatch.setenv("GLASSBOX_LLM_MODEL", "scripted")
        reload_llm_settings(services)
        services.runner.replay_match_timeout_ms = 1500
        yield server


@pytest_asyncio.fixture
async def env(services: Services) -> AsyncIterator[RunnerEnv]:
    """One browser for the test's runs (a worker's)."""
    async with runner_env(services) as opened:
        yield opened


def newsletter_policy(request: dict[str, Any]) -> Reply:
    """Types the email (unless typed), presses the form's button whatever its name, reports
    the confirmation."""
    text = observation_text(request)
    if "Subscribed " in text:
        line = next(line for line in text.splitlines() if "Subscribed " in line)
        confirmation = line[line.index("Subscribed ") :].strip()
        return Reply.call(
            "complete",
            {"summary": "Subscribed", "extracted_information": {"confirmation": confirmation}},
            thought="The page confirms the subscription.",
        )
    found = elements(request)
    email = find_element(found, tag="input", id="email")
    button = find_element(found, tag="button")
    assert email and button, found
    typed = any(
        '"input_text"' in json.dumps(m.get("tool_calls", ""))
        for m in request["messages"]
        if m.get("role") == "assistant"
    )
    if not typed:
        return Reply.call("input_text", {"element": email.n, "text": EMAIL}, thought="Email.")
    return Reply.call("click", {"element": button.n}, thought="Pressing the form's button.")


def newsletter(site: SiteServer, **extra: Any) -> dict[str, Any]:
    return {
        "title": "Subscribe to the newsletter",
        "url": site.url,
        "parameters": {
            "email": {"type": "string", "default": EMAIL},
            "button": {"type": "string", "default": "Subscribe"},
            "layout": {"type": "string", "default": "old"},
        },
        "blocks": [
            {
                "label": "open",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}newsletter.html?button={{ button }}&layout={{ layout }}"}
                ],
            },
            {
                "label": "subscribe",
                "type": "goal",
                "goal": "Subscribe {{ email }} to the newsletter and report the confirmation",
                "max_steps": 6,
            },
        ],
        **extra,
    }


async def save(services: Services, definition: dict[str, Any]) -> str:
    async with services.db.session() as session:
        saved = await create_workflow(
            session=session, title=definition["title"], definition=definition
        )
        await session.commit()
    return saved.id


async def run_saved(
    services: Services,
    env: RunnerEnv,
    workflow_id: str,
    definition: dict[str, Any],
    params: dict[str, Any] | None = None,
    run_with: str = "agent",
) -> Outcome:
    workflow = parse_workflow(definition)
    inputs = resolve_inputs(workflow, params or {}, allowed_schemes=services.runner.url_schemes)
    options = RunOptions(source=RunSource.api, workflow_id=workflow_id, run_with=run_with)
    run = await queue_run(services, workflow, inputs, options)
    status = await run_now(services, env, run, workflow, inputs)
    async with services.db.session() as session:
        row = await get_run(session=session, run_id=run.id)
        cards = await list_cards(session=session, run_id=run.id)
        artifacts = await list_artifacts(session=session, run_id=run.id)
    return Outcome(status, row, cards, artifacts, [], services)


async def run_queued(services: Services, env: RunnerEnv, run_id: str) -> Outcome:
    """Executes a run queued by the service layer (a rerun), as a worker would."""
    async with services.db.session() as session:
        run = await get_run(session=session, run_id=run_id)
    workflow, inputs = inputs_of(services, run)
    status = await run_now(services, env, run, workflow, inputs)
    async with services.db.session() as session:
        row = await get_run(session=session, run_id=run_id)
        cards = await list_cards(session=session, run_id=run_id)
        artifacts = await list_artifacts(session=session, run_id=run_id)
    return Outcome(status, row, cards, artifacts, [], services)


def code_of(outcome: Outcome) -> str:
    """The run's generated program, its run id (in the header comment) set aside."""
    return re.sub(r"run_[0-9a-z]{26}", "run_…", outcome.read(outcome.artifact("code")).decode())


def divergences(outcome: Outcome) -> list[dict[str, Any]]:
    return [c.data | {"status": c.status} for c in outcome.cards if c.kind == "divergence"]


async def versions(services: Services, workflow_id: str) -> list[ActionRecord]:
    async with services.db.session() as session:
        rows = await session.scalars(
            select(ActionRecord)
            .where(ActionRecord.workflow_id == workflow_id, ActionRecord.cached.is_(True))
            .order_by(ActionRecord.created_at)
        )
        return list(rows)


async def test_a_cached_goal_replays_with_no_llm_call_and_the_same_output_and_code(
    services: Services, site: SiteServer, llm: ScriptedLLM, env: RunnerEnv
) -> None:
    definition = newsletter(site)
    workflow_id = await save(services, definition)
    first = await run_saved(services, env, workflow_id, definition)
    assert first.status is RunStatus.completed, first.run.failure_reason
    calls = len(llm.requests)
    assert calls == 3 and first.run.metrics["llm_calls"] == 3

    again = await run_saved(services, env, workflow_id, definition, run_with="code")
    assert again.status is RunStatus.completed, again.run.failure_reason
    assert len(llm.requests) == calls  # not one request reached the model
    assert again.run.metrics["llm_calls"] == 0
    assert again.run.extracted_information == first.run.extracted_information
    assert again.run.extracted_information == {"confirmation": f"Subscribed {EMAIL}"}
    assert code_of(again) == code_of(first)
    assert again.run.replay is not None
    assert again.run.replay["blocks"] == {"open": "replayed", "subscribe": "replayed"}
    assert not divergences(again)
    # The replay's actions are the page's own: the confirmation is on the final screenshot's
    # page, typed by the replay (the action cards say what they typed).
    typed = [c.data for c in again.actions() if c.data["verb"] == "fill"]
    assert typed and typed[0]["value"] == EMAIL
    assert len(await versions(services, workflow_id)) == 1  # nothing new to keep


async def test_a_renamed_button_heals_by_fallback_then_by_the_agent_and_the_next_replay_uses_it(
    services: Services, site: SiteServer, llm: ScriptedLLM, env: RunnerEnv
) -> None:
    definition = newsletter(site)
    workflow_id = await save(services, definition)
    first = await run_saved(services, env, workflow_id, definition)
    assert first.status is RunStatus.completed, first.run.failure_reason
    calls = len(llm.requests)

    # Renamed, same place: the CSS fallback finds it; no LLM call, a divergence card.
    renamed = await run_saved(services, env, workflow_id, definition, {"button": "Join"}, "code")
    assert renamed.status is RunStatus.completed, renamed.run.failure_reason
    assert len(llm.requests) == calls
    [card] = divergences(renamed)
    assert card["status"] == "healed" and card["verb"] == "click"
    assert card["expected"] == 'role=button[name="Subscribe"]'
    assert "fallback" in card["instead"] and "Join" in card["found"]
    assert renamed.run.extracted_information == {"confirmation": f"Subscribed {EMAIL}"}
    assert len(await versions(services, workflow_id)) == 2
    # The same program as the source run's, but for the healed step's locator (and the
    # parameter that renamed the button, in its constant and the URL it opens).
    before = code_of(first).replace("button=Subscribe&", "button=Join&").splitlines()
    after = code_of(renamed).replace('BUTTON = "Join"', 'BUTTON = "Subscribe"').splitlines()
    changed = [
        line[0] + line[1:].strip()
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == [
        '-page.get_by_role("button", name="Subscribe").first.click()',
        '+page.locator("#slot > button").first.click()',
    ]

    # Renamed and moved: no fallback matches; the agent takes over the goal from the click.
    moved = await run_saved(
        services, env, workflow_id, definition, {"button": "Sign up", "layout": "new"}, "code"
    )
    assert moved.status is RunStatus.completed, moved.run.failure_reason
    [card] = divergences(moved)
    assert card["status"] == "agent" and "agent takes over" in card["instead"]
    assert "Sign up" in card["found"]
    healing_calls = len(llm.requests) - calls
    assert healing_calls == 3  # a conversation of its own: the email, the click, complete
    told = observation_text(llm.requests[calls])  # the agent is told what the replay did
    assert "A replay of recorded actions already did, on this page: fill #email." in told
    # (the version healed by the fallback is the current one: its locator is the CSS path)
    assert "Its next action, click #slot > button, no longer matches the page" in told
    assert moved.run.replay["blocks"]["subscribe"] == "healed"
    assert len(await versions(services, workflow_id)) == 3

    # The next replay of the new page uses the new version: no call, no divergence.
    calls = len(llm.requests)
    next_replay = await run_saved(
        services, env, workflow_id, definition, {"button": "Sign up", "layout": "new"}, "code"
    )
    assert next_replay.status is RunStatus.completed, next_replay.run.failure_reason
    assert len(llm.requests) == calls
    assert not divergences(next_replay)
    assert next_replay.run.extracted_information == {"confirmation": f"Subscribed {EMAIL}"}


async def test_without_a_goal_a_diverged_replay_fails_with_the_explanation(
    services: Services, site: SiteServer, llm: ScriptedLLM, env: RunnerEnv
) -> None:
    definition = newsletter(site)
    definition["blocks"][1] = {
        "label": "subscribe",
        "type": "action",
        "steps": [
            {"fill": {"selector": "#email", "value": "{{ email }}"}},
            {"click": {"role": "button", "name": "Subscribe"}},
            {"assert_text": {"text": "Subscribed"}},
        ],
    }
    workflow_id = await save(services, definition)
    first = await run_saved(services, env, workflow_id, definition)
    assert first.status is RunStatus.completed, first.run.failure_reason
    moved = await run_saved(
        services, env, workflow_id, definition, {"button": "Sign up", "layout": "new"}, "code"
    )
    assert moved.status is RunStatus.failed
    reason = moved.run.failure_reason or ""
    assert reason.startswith(
        'block "subscribe", replayed action 2 click role=button[name="Subscribe"]'
    )
    assert "no longer matches the page" in reason and "Sign up" in reason
    [card] = divergences(moved)
    assert card["status"] == "failed" and "no goal" in card["instead"]
    assert len(llm.requests) == 0


SECRET = "hunter2-secret"


def login_policy(request: dict[str, Any]) -> Reply:
    found = elements(request)
    text = observation_text(request)
    if "Welcome" in text:
        return Reply.call("complete", {"summary": "Signed in", "extracted_information": {}})
    done = [
        json.dumps(m.get("tool_calls", ""))
        for m in request["messages"]
        if m.get("role") == "assistant"
    ]
    username = find_element(found, tag="input", id="username")
    password = find_element(found, tag="input", id="password")
    button = find_element(found, tag="button", text="Sign in")
    assert username and password and button, found
    if not done:
        return Reply.call("input_text", {"element": username.n, "text": "ada"})
    if len(done) == 1:
        return Reply.call("input_text", {"element": password.n, "text": "{{secret:password}}"})
    return Reply.call("click", {"element": button.n})


async def test_a_secret_never_enters_the_cache_and_replays_from_its_parameter(
    services: Services, site: SiteServer, llm: ScriptedLLM, env: RunnerEnv
) -> None:
    llm.policy = login_policy
    definition = {
        "title": "Log in twice",
        "url": site.url,
        "parameters": {"password": {"type": "string", "secret": True}},
        "blocks": [
            {
                "label": "typed",  # a literal equal to the secret, typed by the workflow itself
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}login.html"},
                    {"fill": {"selector": "#password", "value": SECRET}},
                ],
            },
            {"label": "login", "type": "goal", "goal": "Sign in as ada with {{ password }}"},
        ],
    }
    workflow_id = await save(services, definition)
    first = await run_saved(services, env, workflow_id, definition, {"password": SECRET})
    assert first.status is RunStatus.completed, first.run.failure_reason
    calls = len(llm.requests)
    async with services.db.session() as session:
        rows = list(await session.scalars(select(ActionRecord)))
    stored = json.dumps([row.blocks for row in rows])
    assert rows and SECRET not in stored
    assert stored.count("{{ password }}") == 2  # the literal and the agent's placeholder
    # The replay types the secret from the run's parameter: the login succeeds, no LLM call.
    again = await run_saved(services, env, workflow_id, definition, {"password": SECRET}, "code")
    assert again.status is RunStatus.completed, again.run.failure_reason
    assert len(llm.requests) == calls
    assert "Welcome, ada" in again.read(again.artifact("html")).decode()
    assert SECRET not in code_of(again)


async def test_a_rerun_from_a_block_replays_the_blocks_before_it_with_edited_parameters(
    services: Services, site: SiteServer, llm: ScriptedLLM, env: RunnerEnv
) -> None:
    definition = newsletter(site)
    definition["blocks"].append(
        {"label": "read", "type": "extract", "fields": {"result": {"selector": "#result"}}}
    )
    workflow_id = await save(services, definition)
    first = await run_saved(services, env, workflow_id, definition)
    assert first.status is RunStatus.completed, first.run.failure_reason
    assert first.run.extracted_information == {
        "confirmation": f"Subscribed {EMAIL}",
        "result": f"Subscribed {EMAIL}",
    }
    calls = len(llm.requests)

    with pytest.raises(ValidationFailed) as refused:
        await rerun(services, first.run.id, from_block="nope")
    assert refused.value.field == "from_block"

    queued = await rerun(
        services, first.run.id, parameters={"email": "bob@example.com"}, from_block="read"
    )
    again = await run_queued(services, env, queued.id)
    assert again.status is RunStatus.completed, again.run.failure_reason
    assert len(llm.requests) == calls  # the goal block was replayed, not asked again
    assert again.run.parent_run_id == first.run.id and again.run.source == "rerun"
    assert again.run.replay == {
        "from_run_id": first.run.id,
        "from_block": "read",
        "cache_key": urlsplit(site.url).netloc,
        "blocks": {"open": "replayed", "subscribe": "replayed", "read": "live"},
    }
    # The replay typed the edited parameter; the goal's reported data is the earlier run's.
    assert again.run.extracted_information == {
        "confirmation": f"Subscribed {EMAIL}",
        "result": "Subscribed bob@example.com",
    }


async def test_a_continuation_starts_in_its_parents_browser_state_and_page(
    services: Services, site: SiteServer, env: RunnerEnv
) -> None:
    parent = await execute(
        services,
        {
            "title": "Subscribe",
            "url": site.url,
            "blocks": [
                {
                    "label": "subscribe",
                    "type": "action",
                    "steps": [
                        {"goto": "{{ url }}newsletter.html"},
                        {"fill": {"selector": "#email", "value": EMAIL}},
                        {"click": {"role": "button", "name": "Subscribe"}},
                    ],
                }
            ],
        },
    )
    assert parent.status is RunStatus.completed, parent.run.failure_reason
    sealed = parent.run.sealed_state or ""
    assert sealed and "subscriber" not in sealed and "ada" not in sealed  # sealed, not clear
    queued = await continue_run(
        services,
        parent.run.id,
        blocks=[{"label": "read", "type": "extract", "fields": {"seen": {"selector": "#result"}}}],
    )
    assert queued.parent_run_id == parent.run.id
    child = await run_queued(services, env, queued.id)
    assert child.status is RunStatus.completed, child.run.failure_reason
    # The page it opened is its parent's last one, and it sees the parent's cookie.
    assert child.run.extracted_information == {"seen": f"Welcome back, {EMAIL}"}
    assert child.run.replay == {"continue_from": parent.run.id, "blocks": {"read": "live"}}
    [goto] = [c.data for c in child.actions() if c.data["verb"] == "goto"]
    assert goto["target"] == f"{site.url}newsletter.html"

    # Not once the state is dropped (GLASSBOX_CONTINUE_TTL_S after the run ended).
    async with services.db.session() as session:
        dropped = await drop_expired_states(session=session, ended_before=utcnow())
        await session.commit()
    assert dropped == 2  # the parent's and the child's
    with pytest.raises(StateGone):
        await continue_run(services, parent.run.id, goal="Look around")
    with pytest.raises(ValidationFailed) as refused:
        await continue_run(services, child.run.id, goal="Look around", blocks=[{"label": "x"}])
    assert refused.value.field == "workflow"


async def test_an_extract_instruction_replays_as_field_selectors_reading_fresh_data(
    services: Services, site: SiteServer, llm: ScriptedLLM, env: RunnerEnv
) -> None:
    def read_policy(request: dict[str, Any]) -> Reply:
        text = observation_text(request)
        line = next(line for line in text.splitlines() if "Subscribed " in line)
        value = line[line.index("Subscribed ") :].strip()
        return Reply.call("record", {"data": {"confirmation": value}})

    llm.policy = read_policy
    definition = newsletter(site)
    definition["blocks"][1] = {
        "label": "subscribe",
        "type": "action",
        "steps": [
            {"fill": {"selector": "#email", "value": "{{ email }}"}},
            {"click": {"role": "button", "name": "{{ button }}"}},
        ],
    }
    definition["blocks"].append(
        {"label": "read", "type": "extract", "instruction": "Report the confirmation"}
    )
    workflow_id = await save(services, definition)
    first = await run_saved(services, env, workflow_id, definition)
    assert first.status is RunStatus.completed, first.run.failure_reason
    assert first.run.extracted_information == {"confirmation": f"Subscribed {EMAIL}"}
    assert len(llm.requests) == 1
    [version] = await versions(services, workflow_id)
    assert version.blocks["read"]["fields"] == {
        "confirmation": {"selector": "#result", "first": True, "as": "text"}
    }

    again = await run_saved(
        services, env, workflow_id, definition, {"email": "bob@example.com"}, run_with="code"
    )
    assert again.status is RunStatus.completed, again.run.failure_reason
    assert len(llm.requests) == 1  # read from the page at the recorded selector
    assert again.run.extracted_information == {"confirmation": "Subscribed bob@example.com"}
    assert again.run.replay["blocks"] == {
        "open": "replayed",
        "subscribe": "replayed",
        "read": "replayed",
    }
