"""Replay: the same goal run three ways, in one sitting, on one Chromium.

    .venv/bin/python benchmarks/replay.py [--rounds N] [--model-latency-ms MS]

The demo site's newsletter page (type an email, press Subscribe, read the confirmation), as a
saved workflow with one `goal` block:

* agent  -- Glassbox with the LLM agent, answered by the scripted OpenAI-compatible server of
  tests/llm_server.py (3 model calls: type, click, complete). Its answers are instant unless
  --model-latency-ms delays each one (a hosted model takes about a second per call).
* replay -- the same workflow with `run_with: code`: the cached actions, no model call.
* bare   -- the same three actions written with Playwright's async API, no recording.

Glassbox runs are timed from run_now to its return (the run ended and its record stored: video,
trace, HAR, code); bare from new_context to the context closed. One warm-up round, then rounds
alternating the order. Printed: each round, the medians, and the ratios replay/agent and
replay/bare (medians of per-round ratios). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # examples/ and tests/ are not installed packages

for _name in ("GLASSBOX_DATA_DIR", "GLASSBOX_DATABASE_URL", "GLASSBOX_STORAGE_URL"):
    os.environ.pop(_name, None)

from examples.site_server import SiteServer  # noqa: E402
from runner.templating import resolve_inputs  # noqa: E402
from runner.workflow import parse_workflow  # noqa: E402
from services.backends import Services, open_services  # noqa: E402
from services.runs import RunOptions, queue_run, run_now, runner_env  # noqa: E402
from services.settings import Settings  # noqa: E402
from storage.settings import StorageSettings  # noqa: E402
from storage.status import RunSource, RunStatus  # noqa: E402
from storage.workflows import create_workflow  # noqa: E402
from tests.llm_server import Reply, ScriptedLLM, elements, find_element  # noqa: E402

EMAIL = "ada@example.com"


def policy(latency_s: float) -> Any:
    def answer(request: dict[str, Any]) -> Reply:
        found = elements(request)
        calls = [m for m in request["messages"] if m.get("role") == "assistant"]
        if len(calls) >= 2:
            reply = Reply.call(
                "complete",
                {"summary": "ok", "extracted_information": {"confirmation": f"Subscribed {EMAIL}"}},
            )
        elif calls:
            button = find_element(found, tag="button")
            assert button is not None
            reply = Reply.call("click", {"element": button.n}, thought="Subscribe.")
        else:
            email = find_element(found, tag="input", id="email")
            assert email is not None
            reply = Reply.call("input_text", {"element": email.n, "text": EMAIL}, thought="Email.")
        return reply.delayed(latency_s) if latency_s else reply

    return answer


def definition(site: SiteServer) -> dict[str, Any]:
    return {
        "title": "Subscribe",
        "url": site.url,
        "blocks": [
            {"label": "open", "type": "action", "steps": [{"goto": "{{ url }}newsletter.html"}]},
            {"label": "subscribe", "type": "goal", "goal": f"Subscribe {EMAIL}", "max_steps": 5},
        ],
    }


async def glassbox_run(
    services: Services, env: Any, workflow_id: str, doc: dict[str, Any], run_with: str
) -> float:
    workflow = parse_workflow(doc)
    inputs = resolve_inputs(workflow, {}, allowed_schemes=services.runner.url_schemes)
    options = RunOptions(source=RunSource.api, workflow_id=workflow_id, run_with=run_with)
    run = await queue_run(services, workflow, inputs, options)
    started = time.perf_counter()
    status = await run_now(services, env, run, workflow, inputs)
    elapsed = time.perf_counter() - started
    if status is not RunStatus.completed:
        raise SystemExit(f"the {run_with} run ended {status.value}")
    return elapsed


async def bare_run(env: Any, site: SiteServer) -> float:
    started = time.perf_counter()
    context = await env.browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    await page.goto(f"{site.url}newsletter.html")
    await page.locator("#email").fill(EMAIL)
    await page.get_by_role("button", name="Subscribe").first.click()
    await page.get_by_text(f"Subscribed {EMAIL}").wait_for()
    await context.close()
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model-latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    site = SiteServer().start()
    with (
        tempfile.TemporaryDirectory() as tmp,
        ScriptedLLM(policy(args.model_latency_ms / 1000)) as llm,
    ):
        os.environ.update(
            {
                "GLASSBOX_LLM_BASE_URL": llm.base_url,
                "GLASSBOX_LLM_API_KEY": "benchmark",
                "GLASSBOX_LLM_MODEL": "scripted",
            }
        )
        settings = Settings.load(storage=StorageSettings(data_dir=Path(tmp) / "data"))
        services = open_services(settings)
        doc = definition(site)
        async with services.db.session() as session:
            saved = await create_workflow(session=session, title="Subscribe", definition=doc)
            await session.commit()
        times: dict[str, list[float]] = {"agent": [], "replay": [], "bare": []}
        try:
            async with runner_env(services) as env:
                order = ["agent", "replay", "bare"]

                async def one(kind: str) -> float:
                    if kind == "bare":
                        return await bare_run(env, site)
                    how = "agent" if kind == "agent" else "code"
                    return await glassbox_run(services, env, saved.id, doc, how)

                for kind in order:  # warm-up (the agent run also fills the cache)
                    await one(kind)
                calls_before = len(llm.requests)
                for round_ in range(args.rounds):
                    shown = []
                    for kind in order[round_ % 3 :] + order[: round_ % 3]:
                        times[kind].append(await one(kind))
                        shown.append(f"{kind} {times[kind][-1]:.2f} s")
                    load = os.getloadavg()[0]
                    print(f"round {round_ + 1}: " + ", ".join(shown) + f" (load {load:.2f})")
                model_calls = len(llm.requests) - calls_before
        finally:
            await services.close()
            site.stop()
    medians = {k: statistics.median(v) for k, v in times.items()}
    per_agent = statistics.median(
        r / a for r, a in zip(times["replay"], times["agent"], strict=True)
    )
    per_bare = statistics.median(r / b for r, b in zip(times["replay"], times["bare"], strict=True))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores")
    print(f"model latency: {args.model_latency_ms:g} ms per call (scripted server)")
    print(f"model calls in the timed rounds: {model_calls} ({3 * args.rounds} by the agent runs)")
    for kind, value in medians.items():
        print(f"median {kind:6}: {value:.3f} s")
    print(f"replay / agent: {per_agent:.2f}  (median of per-round ratios)")
    print(f"replay / bare:  {per_bare:.2f}  (median of per-round ratios)")


if __name__ == "__main__":
    asyncio.run(main())
