"""One step engine: the same actions done by workflow steps and by the agent's tool calls leave
the same cards (verb, value, result, screenshot) and the same generated code."""

from __future__ import annotations

import json
from typing import Any

from examples.site_server import SiteServer
from tests.conftest import Outcome
from tests.llm_server import Reply, ScriptedLLM, elements, find_element, step_index
from tests.runner.test_agent import llm_env  # noqa: F401  (fixture)

PASSWORD = "hunter2-secret"
PARAMETERS = {"password": {"type": "string", "secret": True}}


def by_steps(site: SiteServer) -> dict[str, Any]:
    return {
        "url": site.url,
        "parameters": PARAMETERS,
        "blocks": [
            {"label": "open", "type": "action", "steps": [{"goto": "{{ url }}login.html"}]},
            {
                "label": "login",
                "type": "action",
                "steps": [
                    {"fill": {"selector": "#username", "value": "ada"}},
                    {"fill": {"selector": "#password", "value": "{{ password }}"}},
                    {"click": {"role": "button", "name": "Sign in"}},
                    {"wait_for": {"text": "Welcome"}},
                ],
            },
        ],
    }


def by_agent(site: SiteServer) -> dict[str, Any]:
    return {
        "url": site.url,
        "parameters": PARAMETERS,
        "blocks": [
            {"label": "open", "type": "action", "steps": [{"goto": "{{ url }}login.html"}]},
            {"label": "login", "type": "goal", "goal": "Sign in as ada", "max_steps": 6},
        ],
    }


def policy(request: dict[str, Any]) -> Reply:
    found = elements(request)
    if "Welcome" in json.dumps(request["messages"][-1]):
        return Reply.call("complete", {"summary": "Signed in"})
    step = step_index(request) + 1
    if step == 1:
        username = find_element(found, tag="input", id="username")
        return Reply.call("input_text", {"element": username.n, "text": "ada"})
    if step == 2:
        password = find_element(found, tag="input", id="password")
        return Reply.call("input_text", {"element": password.n, "text": "{{secret:password}}"})
    button = find_element(found, tag="button", text="Sign in")
    return Reply.call("click", {"element": button.n})


def login_actions(outcome: Outcome) -> list[Any]:
    return [
        c for c in outcome.actions() if c.block_label == "login" and c.data["verb"] != "wait_for"
    ]


async def test_a_step_and_a_tool_call_leave_the_same_record(
    run_workflow: Any,
    site: SiteServer,
    llm_env: Any,  # noqa: F811
) -> None:
    steps = await run_workflow(by_steps(site), {"password": PASSWORD})
    with ScriptedLLM(policy) as llm:
        llm_env(llm)
        agent = await run_workflow(by_agent(site), {"password": PASSWORD})
    assert steps.status == "completed", steps.run.failure_reason
    assert agent.status == "completed", agent.run.failure_reason

    done_by_steps, done_by_agent = login_actions(steps), login_actions(agent)
    assert len(done_by_steps) == len(done_by_agent) == 3

    def shape(card: Any) -> tuple[Any, ...]:
        data = card.data
        return (card.status, data["verb"], data["value"], data["result"], data["error"])

    assert [shape(c) for c in done_by_steps] == [shape(c) for c in done_by_agent]
    assert [c.data["value"] for c in done_by_agent] == ["ada", "********", None]
    # The fields have ids: both ways find them the same way, and write the same code.
    assert [c.data["code"] for c in done_by_steps[:2]] == [
        c.data["code"] for c in done_by_agent[:2]
    ]
    assert done_by_agent[1].data["code"] == ['page.locator("#password").fill(PASSWORD)']
    for card in (*done_by_steps, *done_by_agent):
        assert card.screenshot_artifact_id in {a.id for a in (steps.artifacts + agent.artifacts)}
        assert card.video_ms is not None and card.video_ms >= 0
    assert done_by_steps[2].data["code"][0].endswith(".click()")
    assert done_by_agent[2].data["code"][0].endswith(".click()")
    assert [c.data.get("tool") for c in done_by_agent] == ["input_text", "input_text", "click"]

    # Both generated scripts carry the same lines for the same actions.
    for outcome in (steps, agent):
        script = outcome.read(outcome.artifact("code")).decode()
        assert 'page.locator("#username").fill("ada")' in script
        assert 'page.locator("#password").fill(PASSWORD)' in script
        assert PASSWORD not in script
