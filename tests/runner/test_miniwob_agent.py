"""The agent plays third-party MiniWoB++ tasks (pages from the `miniwob` package, served
locally), driven by a scripted OpenAI-compatible server; each run is judged by the page's own
reward, which MiniWoB writes to the console and Glassbox records in the run's console log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from services.backends import Services
from tests.conftest import Outcome, reload_llm_settings
from tests.llm_server import ScriptedLLM
from tests.miniwob_site import MiniWobSite, miniwob_policy, parse_reward_message

TASKS = [
    "click-button",
    "click-link",
    "enter-text",
    "login-user",
    "click-checkboxes",
    "choose-list",
]


@pytest.fixture(scope="module")
def miniwob() -> Iterator[MiniWobSite]:
    with MiniWobSite() as site:
        yield site


def task_workflow(site: MiniWobSite, task: str) -> dict[str, Any]:
    return {
        "title": f"MiniWoB {task}",
        "url": site.task_url(task),
        "blocks": [
            {
                "label": "start",
                "type": "action",
                # MiniWoB's own start: the cover starts the episode when clicked.
                "steps": [{"goto": "{{ url }}"}, {"click": {"selector": "#sync-task-cover"}}],
            },
            {
                "label": "solve",
                "type": "goal",
                "goal": "Do what the task on the page asks.",
                "max_steps": 8,
            },
        ],
    }


def console_rewards(outcome: Outcome) -> list[float]:
    rewards = []
    for line in outcome.read(outcome.artifact("console")).splitlines():
        entry = json.loads(line)
        parsed = parse_reward_message(entry.get("text", ""))
        if parsed is not None:
            rewards.append(parsed.raw_reward)
    return rewards


@pytest.mark.parametrize("task", TASKS)
async def test_agent_solves_miniwob_task(
    task: str,
    miniwob: MiniWobSite,
    run_workflow: Any,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with ScriptedLLM(miniwob_policy(task)) as llm:
        monkeypatch.setenv("GLASSBOX_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("GLASSBOX_LLM_API_KEY", "test")
        reload_llm_settings(services)
        outcome: Outcome = await run_workflow(task_workflow(miniwob, task))
        assert not llm.errors
    assert outcome.status == "completed", outcome.run.failure_reason
    assert console_rewards(outcome) == [1.0], "MiniWoB's own reward says the task was solved"
    actions = [c for c in outcome.actions() if c.block_label == "solve"]
    assert actions and all(c.screenshot_artifact_id for c in actions)
    assert outcome.run.metrics["llm_calls"] >= 2
