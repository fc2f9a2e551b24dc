"""The LLM agent of goal blocks, against a scripted OpenAI-compatible server on loopback (the
official SDK talks real HTTP to it) and the local demo site, in real Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from examples.site_server import SiteServer
from services.backends import Services
from tests.conftest import Outcome, reload_llm_settings
from tests.llm_server import Reply, ScriptedLLM, elements, find_element, step_index

SECRET = "hunter2-secret"


@pytest.fixture
def llm_env(monkeypatch: pytest.MonkeyPatch, services: Services) -> Iterator[Any]:
    def use(llm: ScriptedLLM | str, **extra: str) -> None:
        base = llm if isinstance(llm, str) else llm.base_url
        monkeypatch.setenv("GLASSBOX_LLM_BASE_URL", base)
        monkeypatch.setenv("GLASSBOX_LLM_API_KEY", "test-key")
        monkeypatch.setenv("GLASSBOX_LLM_MODEL", "scripted")
        monkeypatch.setenv("GLASSBOX_LLM_MAX_RETRIES", "2")
        for key, value in extra.items():
            monkeypatch.setenv(key, value)
        reload_llm_settings(services)

    yield use


def login_goal(site: SiteServer, **extra: Any) -> dict[str, Any]:
    return {
        "title": "Log in",
        "url": site.url,
        "parameters": {"password": {"type": "string", "secret": True}},
        "extraction_schema": {
            "type": "object",
            "properties": {"greeting": {"type": "string"}},
            "required": ["greeting"],
        },
        "blocks": [
            {
                "label": "open",
                "type": "action",
                "steps": [{"goto": "{{ url }}login.html"}],
            },
            {
                "label": "login",
                "type": "goal",
                "goal": "Sign in as ada with the password {{ password }} and report the greeting",
                "max_steps": 8,
                **extra,
            },
        ],
    }


def login_policy(request: dict[str, Any]) -> Reply:
    found = elements(request)
    text = json.dumps(request["messages"][-1])
    if "Welcome" in text:
        return Reply.call(
            "complete",
            {"summary": "Signed in", "extracted_information": {"greeting": "Welcome, ada"}},
            thought="The page greets ada: done.",
        )
    username = find_element(found, tag="input", id="username")
    password = find_element(found, tag="input", id="password")
    button = find_element(found, tag="button", text="Sign in")
    assert username and password and button, found
    step = step_index(request) + 1
    if step == 1:
        return Reply.call(
            "input_text", {"element": username.n, "text": "ada"}, thought="Typing the user name."
        )
    if step == 2:
        return Reply.call(
            "input_text",
            {"element": password.n, "text": "{{secret:password}}"},
            thought="Typing the password placeholder.",
        )
    return Reply.call("click", {"element": button.n}, thought="Signing in.")


async def test_goal_block_completes_through_the_protocol(
    run_workflow: Any, site: SiteServer, llm_env: Any
) -> None:
    with ScriptedLLM(login_policy) as llm:
        llm_env(llm)
        outcome: Outcome = await run_workflow(login_goal(site), {"password": SECRET})
        requests = [e.request for e in llm.exchanges]
    assert outcome.status == "completed", outcome.run.failure_reason
    assert outcome.run.extracted_information == {"greeting": "Welcome, ada"}
    assert outcome.run.summary == "Signed in"

    # Every step is on the timeline: a thought per LLM call, an action per tool call.
    thoughts = [c for c in outcome.cards if c.kind == "thought" and c.data.get("llm")]
    assert [c.data["text"] for c in thoughts] == [
        "Typing the user name.",
        "Typing the password placeholder.",
        "Signing in.",
        "The page greets ada: done.",
    ]
    actions = [c for c in outcome.actions() if c.block_label == "login"]
    # One step engine: the tool calls are the workflow verbs they perform, the tool named too.
    assert [c.data["verb"] for c in actions] == ["fill", "fill", "click"]
    assert [c.data["tool"] for c in actions] == ["input_text", "input_text", "click"]
    assert actions[1].data["value"] == "********"
    assert all(c.screenshot_artifact_id for c in actions)
    assert actions[0].data["target"].startswith("[") and "username" in actions[0].data["target"]

    # Accounting: exactly what the provider reported, summed.
    metrics = outcome.run.metrics
    assert metrics["llm_calls"] == 4 == len(requests)
    assert metrics["prompt_tokens"] == sum(t.data["llm"]["prompt_tokens"] for t in thoughts)
    assert metrics["completion_tokens"] == sum(t.data["llm"]["completion_tokens"] for t in thoughts)
    assert {a.kind for a in outcome.artifacts} >= {"llm_prompt", "llm_response"}
    assert len([a for a in outcome.artifacts if a.kind == "llm_prompt"]) == 4

    # The protocol: observation in the newest user message, history as tool calls and results,
    # page text as untrusted data; the secret never reaches the provider.
    last = requests[-1]
    roles = [m["role"] for m in last["messages"]]
    assert roles[0] == "system" and roles[-1] == "user"
    assert roles.count("tool") == 3 and roles.count("assistant") == 3
    assert "<page_text" in json.dumps(last["messages"][-1])
    assert {t["function"]["name"] for t in last["tools"]} >= {"click", "complete", "terminate"}
    assert all(SECRET not in json.dumps(r) for r in requests)
    for artifact in outcome.artifacts:
        assert SECRET.encode() not in outcome.read(artifact), artifact.name


async def test_terminate_ends_the_run_terminated(
    run_workflow: Any, site: SiteServer, llm_env: Any
) -> None:
    prices = {"scripted": {"prompt": 3.0, "completion": 15.0}}  # USD per 1M tokens
    with ScriptedLLM([Reply.call("terminate", {"reason": "no account for ada"})]) as llm:
        llm_env(llm, GLASSBOX_LLM_PRICES=json.dumps(prices))
        outcome = await run_workflow(login_goal(site), {"password": SECRET})
        usage = llm.exchanges[0].response["usage"]
    assert outcome.status == "terminated"
    assert "no account for ada" in (outcome.run.failure_reason or "")
    metrics = outcome.run.metrics
    assert metrics["prompt_tokens"] == usage["prompt_tokens"]
    assert metrics["completion_tokens"] == usage["completion_tokens"]
    expected = (usage["prompt_tokens"] * 3.0 + usage["completion_tokens"] * 15.0) / 1_000_000
    assert metrics["cost_usd"] == pytest.approx(expected)


async def test_max_steps_fails_saying_so(run_workflow: Any, site: SiteServer, llm_env: Any) -> None:
    replies = [Reply.call("scroll", {"direction": d}) for d in ("down", "up", "down")]
    with ScriptedLLM(replies) as llm:
        llm_env(llm)
        outcome = await run_workflow(login_goal(site, max_steps=3), {"password": SECRET})
    assert outcome.status == "failed"
    assert outcome.run.failure_reason == (
        'block "login": reached max_steps (3) without completing the goal'
    )


async def test_a_loop_is_detected(run_workflow: Any, site: SiteServer, llm_env: Any) -> None:
    def policy(request: dict[str, Any]) -> Reply:
        button = find_element(elements(request), tag="button", text="Sign in")
        assert button is not None
        return Reply.call("click", {"element": button.n})

    with ScriptedLLM(policy) as llm:
        llm_env(llm)
        outcome = await run_workflow(login_goal(site), {"password": SECRET})
    assert outcome.status == "failed"
    assert "looping" in (outcome.run.failure_reason or "")
    assert outcome.run.metrics["llm_calls"] == 3


async def test_bad_tool_calls_are_told_to_the_model(
    run_workflow: Any, site: SiteServer, llm_env: Any
) -> None:
    replies = [
        Reply.malformed("click", "{not json"),
        Reply.call("click", {"element": 999}),
        Reply.call("fly", {"to": "moon"}),
        Reply.text("I am thinking."),
        Reply.call("complete", {"summary": "ok", "extracted_information": {"greeting": "hi"}}),
    ]
    with ScriptedLLM(replies) as llm:
        llm_env(llm)
        outcome = await run_workflow(login_goal(site), {"password": SECRET})
        requests = [e.request for e in llm.exchanges]
    assert outcome.status == "completed", outcome.run.failure_reason
    told = [m["content"] for m in requests[-1]["messages"] if m["role"] == "tool"]
    assert any("not a JSON object" in t for t in told)
    assert any("no element [999]" in t for t in told)
    assert any("unknown tool 'fly'" in t for t in told)


async def test_provider_errors_are_retried_then_reported(
    run_workflow: Any, site: SiteServer, llm_env: Any
) -> None:
    replies = [
        Reply.error(429, retry_after=0.1),
        Reply.error(503),
        Reply.call("complete", {"summary": "ok", "extracted_information": {"greeting": "hi"}}),
    ]
    with ScriptedLLM(replies) as llm:
        llm_env(llm)
        outcome = await run_workflow(login_goal(site), {"password": SECRET})
        assert len(llm.exchanges) == 3
    assert outcome.status == "completed", outcome.run.failure_reason
    assert outcome.run.metrics["llm_calls"] == 1

    with ScriptedLLM([Reply.error(401)] * 3) as llm:
        llm_env(llm)
        outcome = await run_workflow(login_goal(site), {"password": SECRET})
    assert outcome.status == "failed"
    assert "GLASSBOX_LLM_API_KEY" in (outcome.run.failure_reason or "")


async def test_unreachable_provider_fails_with_a_clear_reason(
    run_workflow: Any, site: SiteServer, llm_env: Any
) -> None:
    llm = ScriptedLLM([]).start()
    base = llm.base_url
    llm.stop()  # nothing listens there any more
    llm_env(base, GLASSBOX_LLM_MAX_RETRIES="0")
    outcome = await run_workflow(login_goal(site), {"password": SECRET})
    assert outcome.status == "failed"
    assert "cannot reach the LLM" in (outcome.run.failure_reason or "")
    assert base.split("/v1")[0] in (outcome.run.failure_reason or "")


def extract_workflow(site: SiteServer) -> dict[str, Any]:
    return {
        "url": site.url,
        "blocks": [
            {
                "label": "search",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}shop/search.html?q=lamp&sort=price&in_stock=1"},
                    {"wait_for": {"selector": ".result"}},
                ],
            },
            {
                "label": "products",
                "type": "extract",
                "instruction": "List the names and prices of the products shown",
                "schema": {
                    "type": "object",
                    "properties": {
                        "products": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "price": {"type": "number"},
                                },
                                "required": ["name", "price"],
                            },
                        }
                    },
                    "required": ["products"],
                },
            },
        ],
    }


async def test_extract_block_with_an_instruction(
    run_workflow: Any, site: SiteServer, llm_env: Any
) -> None:
    seen: list[str] = []

    def policy(request: dict[str, Any]) -> Reply:
        text = json.dumps(request["messages"])
        seen.append(text)
        if len(seen) == 1:  # first answer does not match the schema: the model is told
            return Reply.call("record", {"data": {"products": [{"name": "x"}]}})
        return Reply.call(
            "record", {"data": {"products": [{"name": "Glow Reading Lamp", "price": 24.99}]}}
        )

    with ScriptedLLM(policy) as llm:
        llm_env(llm)
        outcome = await run_workflow(extract_workflow(site))
    assert outcome.status == "completed", outcome.run.failure_reason
    assert outcome.run.extracted_information == {
        "products": [{"name": "Glow Reading Lamp", "price": 24.99}]
    }
    assert "Glow Reading Lamp" in seen[0], "the page text reaches the model"
    assert "List the names and prices" in seen[0]
    assert "'price' is a required property" in seen[1]
    assert outcome.run.metrics["llm_calls"] == 2

    with ScriptedLLM([Reply.text("no idea")] * 2) as llm:
        llm_env(llm)
        outcome = await run_workflow(extract_workflow(site))
    assert outcome.status == "failed"
    assert 'block "products"' in (outcome.run.failure_reason or "")
