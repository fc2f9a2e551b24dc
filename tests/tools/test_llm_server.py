"""The scripted OpenAI-compatible server (tests/llm_server.py) against the official SDK, and the
MiniWoB++ task pages and policies (tests/miniwob_site.py) in real Chromium, without the agent."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import openai
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall
from playwright.async_api import Browser, Page, async_playwright

from runner.browser import launch
from runner.settings import RunnerSettings
from tests.llm_server import (
    JSON,
    Reply,
    ScriptedLLM,
    ToolCall,
    always,
    completion_tokens,
    elements,
    find_element,
    observation_elements,
    observation_text,
    parse_element,
    prompt_tokens,
    step_index,
    validate_request,
)
from tests.miniwob_site import (
    MINIWOB_TASKS,
    MiniWobSite,
    TaskInfo,
    episode_state,
    miniwob_policy,
    parse_reward_message,
    reward,
    start_task,
    task_names,
    watch_console_rewards,
)

# The MiniWoB tests share one browser, so they run in one event loop per module.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

MODEL = "scripted-llm"


def _tool(name: str, **properties: str) -> JSON:
    types = {"element": "integer", "seconds": "number", "data": "object"}
    schema = {
        key: {"type": types.get(key, "string"), "description": doc}
        for key, doc in properties.items()
    }
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": name.replace("_", " "),
            "parameters": {"type": "object", "properties": schema, "required": list(properties)},
        },
    }


# The agent protocol's tools (shared/DESIGN.md, "LLM agent protocol").
TOOLS: list[Any] = [
    _tool("click", element="the [N] of the element"),
    _tool("input_text", element="the [N] of the field", text="what to type"),
    _tool("select_option", element="the [N] of the select", option="the option's label"),
    _tool("check", element="the [N] of the checkbox or radio"),
    _tool("press", key="a key, e.g. Enter"),
    _tool("scroll", direction="up or down"),
    _tool("goto", url="an http(s) URL"),
    _tool("go_back"),
    _tool("wait", seconds="how long"),
    _tool("upload_file", element="the [N] of the file input", file="the file's name"),
    _tool("extract", data="what was read from the page"),
    _tool("complete", summary="what was done", extracted_information="the result"),
    _tool("terminate", reason="why the goal cannot be reached"),
]


def client(llm: ScriptedLLM, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=llm.base_url, api_key="test", **options)


def user(text: str) -> Any:
    return {"role": "user", "content": text}


def function_calls(answer: ChatCompletion) -> list[ChatCompletionMessageFunctionToolCall]:
    """The answer's tool calls, each checked to be a function call."""
    calls = answer.choices[0].message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


# --------------------------------------------------------------------------- the SDK


async def test_tool_call_round_trip_with_exact_usage() -> None:
    thought = "The Submit button is element 7."
    observation = 'Goal: press submit\n[7] <button id=go type=submit> Submit\n[8] <a href="/x"> X'
    with ScriptedLLM(always(Reply.call("click", {"element": 7}, thought=thought))) as llm:
        async with client(llm) as api:
            messages: list[Any] = [{"role": "system", "content": "You drive a browser."}]
            messages.append(user(observation))
            first = await api.chat.completions.create(
                model=MODEL, messages=messages, tools=TOOLS, tool_choice="required"
            )
            message = first.choices[0].message
            assert message.content == thought
            assert first.choices[0].finish_reason == "tool_calls"
            (call,) = function_calls(first)
            assert call.type == "function"
            assert call.id == "call_1_0"
            assert call.function.name == "click"
            assert json.loads(call.function.arguments) == {"element": 7}
            text = "You drive a browser." + observation
            assert first.usage is not None
            assert first.usage.prompt_tokens == len(text) // 4
            assert first.usage.completion_tokens == 10 + len(thought) // 4 + 20
            assert first.usage.total_tokens == len(text) // 4 + 10 + len(thought) // 4 + 20
            assert first.model == MODEL and first.id == "chatcmpl-1"

            # the next step: the assistant's call and its tool result go back into the prompt
            messages.append(message.model_dump(exclude_none=True))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "clicked"})
            second = await api.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
            assert second.usage is not None
            assert second.usage.prompt_tokens == (
                len(text + thought + "click" + call.function.arguments + "clicked") // 4
            )
            models = await api.models.list()
            assert [m.id for m in models.data] == [MODEL]

    sent = llm.requests
    assert len(sent) == 2
    assert sent[0]["tools"] == TOOLS and sent[0]["tool_choice"] == "required"
    assert sent[0]["messages"][1] == user(observation)
    assert sent[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1_0",
        "content": "clicked",
    }
    assert llm.exchanges[0].headers["authorization"] == "Bearer test"
    assert llm.usage_totals()["prompt_tokens"] == sum(prompt_tokens(r) for r in sent)
    assert llm.errors == []


async def test_several_calls_plain_text_and_tool_results_in_list_content() -> None:
    replies = [
        Reply.calls(
            [("input_text", {"element": 2, "text": "ann"}), ToolCall("click", {"element": 3})]
        ),
        Reply.text("I am done."),
        Reply(content="cut", finish_reason="length", completion_tokens=1),
    ]
    with ScriptedLLM(replies) as llm:
        async with client(llm) as api:
            parts = [{"type": "text", "text": "abcd" * 10}, {"type": "text", "text": "efgh"}]
            messages: list[Any] = [{"role": "user", "content": parts}]
            both = await api.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
            calls = function_calls(both)
            assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
                ("input_text", {"element": 2, "text": "ann"}),
                ("click", {"element": 3}),
            ]
            assert [c.id for c in calls] == ["call_1_0", "call_1_1"]
            assert both.choices[0].message.content is None
            assert (
                both.usage is not None
                and both.usage.prompt_tokens == len("abcd" * 10 + "\nefgh") // 4
            )
            assert both.usage.completion_tokens == 10 + 40

            plain = await api.chat.completions.create(model=MODEL, messages=messages)
            assert plain.choices[0].message.content == "I am done."
            assert plain.choices[0].message.tool_calls is None
            assert plain.choices[0].finish_reason == "stop"

            cut = await api.chat.completions.create(model=MODEL, messages=messages)
            assert cut.choices[0].finish_reason == "length"
            assert cut.usage is not None and cut.usage.completion_tokens == 1


async def test_malformed_and_unknown_tool_calls_pass_through_unchanged() -> None:
    raw = '{"element": 7, "text": "unterminated'
    replies = [
        Reply.malformed("input_text", raw, thought="typing"),
        Reply.call("teleport", {"to": "the moon"}),
        Reply.malformed("click", ""),
        Reply.call("click", {"element": 9999}),  # no such element: the agent must cope
    ]
    with ScriptedLLM(replies) as llm:
        async with client(llm) as api:
            got = []
            for _ in replies:
                answer = await api.chat.completions.create(
                    model=MODEL, messages=[user("[1] <button> A")], tools=TOOLS
                )
                (call,) = function_calls(answer)
                got.append((call.function.name, call.function.arguments))
    assert got == [
        ("input_text", raw),
        ("teleport", '{"to": "the moon"}'),
        ("click", ""),
        ("click", '{"element": 9999}'),
    ]
    with pytest.raises(json.JSONDecodeError):
        json.loads(got[0][1])


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
async def test_error_statuses_surface_as_api_status_errors(
    status: int, error: type[openai.APIStatusError]
) -> None:
    with ScriptedLLM(always(Reply.error(status, retry_after=7))) as llm:
        async with client(llm, max_retries=0) as api:
            with pytest.raises(error) as caught:
                await api.chat.completions.create(model=MODEL, messages=[user("hi")])
    assert isinstance(caught.value, openai.APIStatusError)
    assert caught.value.status_code == status
    assert caught.value.response.headers["retry-after"] == "7"
    assert f"scripted error {status}" in caught.value.message
    assert len(llm.requests) == 1


async def test_error_bodies_can_be_anything() -> None:
    replies = [
        Reply.error(502, body="<html>bad gateway</html>"),
        Reply.error(429, body={"detail": "slow"}),
    ]
    with ScriptedLLM(replies) as llm:
        async with client(llm, max_retries=0) as api:
            with pytest.raises(openai.InternalServerError) as gateway:
                await api.chat.completions.create(model=MODEL, messages=[user("hi")])
            with pytest.raises(openai.RateLimitError) as limited:
                await api.chat.completions.create(model=MODEL, messages=[user("hi")])
    assert gateway.value.response.text == "<html>bad gateway</html>"
    assert limited.value.body == {"detail": "slow"}


async def test_retries_honour_retry_after_then_succeed() -> None:
    replies = [
        Reply.error(429, retry_after=0.3),
        Reply.error(503, retry_after=0.05),
        Reply.call("complete", {"summary": "ok", "extracted_information": {}}),
    ]
    with ScriptedLLM(replies) as llm:
        async with client(llm, max_retries=2) as api:
            started = time.monotonic()
            answer = await api.chat.completions.create(
                model=MODEL, messages=[user("go")], tools=TOOLS
            )
            elapsed = time.monotonic() - started
    assert function_calls(answer)[0].function.name == "complete"
    assert elapsed >= 0.35
    assert [e.status for e in llm.exchanges] == [429, 503, 200]
    assert [e.headers.get("x-stainless-retry-count") for e in llm.exchanges] == ["0", "1", "2"]
    # only the answered call counts towards usage
    assert llm.usage_totals()["calls"] == 1
    assert answer.usage is not None and answer.usage.prompt_tokens == len("go") // 4


async def test_a_slow_reply_times_out_and_a_dropped_connection_fails() -> None:
    replies = [Reply.call("wait", {"seconds": 1}).delayed(5), Reply.disconnect()]
    with ScriptedLLM(replies) as llm:
        async with client(llm, max_retries=0, timeout=0.3) as api:
            started = time.monotonic()
            with pytest.raises(openai.APITimeoutError):
                await api.chat.completions.create(model=MODEL, messages=[user("hi")])
            assert time.monotonic() - started < 2
            with pytest.raises(openai.APIConnectionError) as dropped:
                await api.chat.completions.create(model=MODEL, messages=[user("hi")])
            assert not isinstance(dropped.value, openai.APITimeoutError)
        started = time.monotonic()
    # stopping does not wait out the delayed reply
    assert time.monotonic() - started < 2
    assert len(llm.requests) == 2


async def test_two_clients_at_once() -> None:
    def echo(request: JSON) -> Reply:
        said = observation_text(request)
        return Reply.call("extract", {"data": {"echo": said}}, thought=said).delayed(2.0)

    with ScriptedLLM(echo) as llm:
        async with client(llm) as first, client(llm) as second:
            started = time.monotonic()
            one, two = await asyncio.gather(
                first.chat.completions.create(model=MODEL, messages=[user("one")], tools=TOOLS),
                second.chat.completions.create(model=MODEL, messages=[user("two")], tools=TOOLS),
            )
            elapsed = time.monotonic() - started
    assert elapsed < 2 * 2.0, "the two requests were served one after the other"
    assert one.choices[0].message.content == "one"
    assert two.choices[0].message.content == "two"
    assert sorted(r["messages"][0]["content"] for r in llm.requests) == ["one", "two"]


async def test_streaming_assembles_tool_calls_and_usage() -> None:
    reply = Reply.call("goto", {"url": "http://127.0.0.1/"}, thought="Opening the page")
    with ScriptedLLM(always(reply)) as llm:
        async with client(llm) as api:
            stream = await api.chat.completions.create(
                model=MODEL,
                messages=[user("open it")],
                tools=TOOLS,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].content == "Opening the page"
    assert deltas[0].tool_calls is not None
    assert deltas[0].tool_calls[0].function is not None
    assert deltas[0].tool_calls[0].function.name == "goto"
    assert chunks[1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == completion_tokens(reply)


async def test_requests_openai_would_refuse_get_a_400() -> None:
    dangling = [
        user("hi"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "click", "arguments": "{}"},
                }
            ],
        },
        user("and now?"),
    ]
    with ScriptedLLM(always(Reply.text("never"))) as llm:
        async with client(llm, max_retries=0) as api:
            with pytest.raises(openai.BadRequestError) as refused:
                await api.chat.completions.create(model=MODEL, messages=dangling)
            assert "tool_call_id" in refused.value.message
            with pytest.raises(openai.BadRequestError):
                await api.chat.completions.create(
                    model=MODEL,
                    messages=[user("hi")],
                    tools=TOOLS,
                    tool_choice=cast(Any, "sometimes"),
                )
    assert validate_request({"model": "m", "messages": [user("hi")]}) is None
    assert validate_request({"model": "m", "messages": []}) is not None


async def test_a_failing_policy_answers_500_and_is_recorded() -> None:
    with ScriptedLLM([]) as llm:
        async with client(llm, max_retries=0) as api:
            with pytest.raises(openai.InternalServerError):
                await api.chat.completions.create(model=MODEL, messages=[user("hi")])
    assert llm.errors == ["LookupError: the script of 0 replies is used up"]
    with ScriptedLLM(always(Reply.call("click", {"element": object()}))) as broken:
        async with client(broken, max_retries=0) as api:
            with pytest.raises(openai.InternalServerError):
                await api.chat.completions.create(model=MODEL, messages=[user("hi")])
    assert broken.errors and broken.errors[0].startswith("TypeError")


def test_observation_helpers_parse_element_lines() -> None:
    observation = "\n".join(
        [
            "Goal: log in",
            "URL: http://127.0.0.1/login",
            "[1] <a href=/home> Home",
            '[7] <input type=text id=username name=user placeholder="Your name">',
            "  [12] <button role=button aria-label='Sign in' data-x=\"a > b\">Sign in</button>",
            "[3] plain text, no tag",
            "not [4] an element",
        ]
    )
    request = {"messages": [user("[99] <button> stale"), {"role": "tool", "content": observation}]}
    assert observation_elements(request) == [
        (1, "[1] <a href=/home> Home"),
        (7, '[7] <input type=text id=username name=user placeholder="Your name">'),
        (12, "[12] <button role=button aria-label='Sign in' data-x=\"a > b\">Sign in</button>"),
        (3, "[3] plain text, no tag"),
    ]
    found = elements(request)
    assert found[1].tag == "input"
    assert found[1].attrs == {
        "type": "text",
        "id": "username",
        "name": "user",
        "placeholder": "Your name",
    }
    assert found[1].text == ""
    assert (found[2].tag, found[2].text, found[2].get("aria-label")) == (
        "button",
        "Sign in",
        "Sign in",
    )
    assert found[2].get("data-x") == "a > b"
    assert found[3].tag == "" and found[3].text == "plain text, no tag"
    assert find_element(found, tag="input", name="user") == found[1]
    assert find_element(found, aria_label="Sign in") == found[2]
    assert find_element(found, text="home") is None
    assert find_element(found, text="home", exact=False) == found[0]
    assert parse_element(5, "[5] <input type=checkbox checked> Remember me").attrs == {
        "type": "checkbox",
        "checked": "",
    }
    calls = {"id": "c", "type": "function", "function": {"name": "click", "arguments": "{}"}}
    assert step_index({"messages": [user("x"), {"role": "assistant", "tool_calls": [calls]}]}) == 1


# --------------------------------------------------------------------------- MiniWoB

# What the agent shows the model, mimicked: the interactive elements, numbered, one per line.
LIST_ELEMENTS_JS = r"""(start) => {
  const roles = ['button', 'link', 'tab', 'checkbox', 'radio', 'menuitem', 'option', 'textbox',
                 'combobox', 'switch'];
  const controls = 'a[href], button, input, select, textarea, summary, [onclick]';
  const hidden = '#reward-display, #sync-task-cover, #query, #click-canvas';
  const pointer = el => getComputedStyle(el).cursor === 'pointer';
  const quote = v => /^[^\s"'=<>`]+$/.test(v) ? v : JSON.stringify(v);
  document.querySelectorAll('[data-gb]').forEach(el => el.removeAttribute('data-gb'));
  const lines = [];
  let n = start;
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest(hidden)) continue;
    const role = el.getAttribute('role');
    const listed = el.matches(controls) || roles.includes(role) ||
      (pointer(el) && !(el.parentElement && pointer(el.parentElement)));
    if (!listed) continue;
    const box = el.getBoundingClientRect();
    const shown = box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== 'hidden';
    if (!shown) continue;
    el.setAttribute('data-gb', String(n));
    const attrs = [el.tagName.toLowerCase()];
    for (const name of ['role', 'type', 'id', 'name', 'placeholder', 'aria-label']) {
      const value = el.getAttribute(name);
      if (value) attrs.push(name + '=' + quote(value));
    }
    let text;
    if (el.labels && el.labels.length) {
      text = Array.from(el.labels).map(l => l.innerText).join(' ');
    } else if (el.tagName === 'SELECT') {
      text = Array.from(el.options).map(o => o.text).join(' | ');
    } else {
      text = el.innerText || el.value || '';
    }
    text = text.replace(/\s+/g, ' ').trim().slice(0, 80);
    lines.push('[' + n + '] <' + attrs.join(' ') + '>' + (text ? ' ' + text : ''));
    n += 1;
  }
  return lines;
}"""


async def observe(page: Page, goal: str, step: int) -> str:
    # numbering starts elsewhere at each step, so a policy must re-read the elements
    listed = await page.evaluate(LIST_ELEMENTS_JS, 1 + 10 * step)
    text = await page.evaluate("() => document.body.innerText")
    return "\n".join(
        [
            f"Goal: {goal}",
            f"URL: {page.url}",
            f"Title: {await page.title()}",
            "Page text:",
            " ".join(text.split())[:2000],
            "Interactive elements:",
            *listed,
        ]
    )


async def act(page: Page, name: str, args: dict[str, Any]) -> str:
    target = page.locator(f'[data-gb="{args.get("element")}"]')
    if name == "click":
        await target.click()
    elif name == "input_text":
        await target.fill(str(args["text"]))
    elif name == "select_option":
        await target.select_option(label=str(args["option"]))
    elif name == "check":
        await target.check()
    else:
        raise AssertionError(f"the policy asked for {name}({args})")
    return f"{name} done"


Decide = Callable[[JSON], Awaitable[tuple[str, dict[str, Any], str | None]]]


def direct(task: str) -> Decide:
    policy = miniwob_policy(task)

    async def decide(request: JSON) -> tuple[str, dict[str, Any], str | None]:
        reply = policy(request)
        (call,) = reply.tool_calls
        assert not isinstance(call.arguments, str)
        return call.name, dict(call.arguments), reply.content

    return decide


def through_sdk(api: openai.AsyncOpenAI) -> Decide:
    async def decide(request: JSON) -> tuple[str, dict[str, Any], str | None]:
        answer = await api.chat.completions.create(
            model=MODEL, messages=request["messages"], tools=TOOLS, tool_choice="required"
        )
        (call,) = function_calls(answer)
        return (
            call.function.name,
            json.loads(call.function.arguments),
            answer.choices[0].message.content,
        )

    return decide


@dataclass
class Episode:
    actions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    final: tuple[str, dict[str, Any]] | None = None
    requests: list[JSON] = field(default_factory=list)


async def drive(page: Page, decide: Decide, goal: str, max_steps: int = 10) -> Episode:
    """A stand-in for the agent loop: observation, model decision, action, repeat."""
    episode = Episode()
    messages: list[JSON] = [
        {"role": "system", "content": "You operate a web browser with the given tools."},
        user(await observe(page, goal, 0)),
    ]
    for step in range(max_steps):
        request = {"model": MODEL, "messages": [dict(m) for m in messages], "tools": TOOLS}
        episode.requests.append(request)
        name, args, thought = await decide(request)
        if name in ("complete", "terminate"):
            episode.final = (name, args)
            return episode
        episode.actions.append((name, args))
        result = await act(page, name, args)
        call_id = f"call_{step}"
        arguments = json.dumps(args)
        function = {"name": name, "arguments": arguments}
        call = {"id": call_id, "type": "function", "function": function}
        messages.append({"role": "assistant", "content": thought, "tool_calls": [call]})
        observation = await observe(page, goal, step + 1)
        messages.append(
            {"role": "tool", "tool_call_id": call_id, "content": f"{result}\n{observation}"}
        )
    return episode


@pytest.fixture(scope="module")
def miniwob() -> Iterator[MiniWobSite]:
    with MiniWobSite() as site:
        yield site


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        opened = await launch(playwright, RunnerSettings())
        yield opened
        await opened.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """One tab for all: start_task starts each episode afresh, reloading only for a new task."""
    context = await browser.new_context(viewport={"width": 800, "height": 600})
    yield await context.new_page()
    await context.close()


def test_the_package_ships_the_tasks() -> None:
    names = task_names()
    assert len(names) >= 100
    assert set(MINIWOB_TASKS) <= set(names)
    assert parse_reward_message("reward: 0.9996 (raw: 1)") is not None
    assert parse_reward_message("reward: -1 (raw: -1)") == parse_reward_message(
        "reward: -1 (raw: -1)"
    )
    assert parse_reward_message("rewarded") is None


# Three problems where the page's layout varies with the seed, one where only the words do.
SEEDS = {
    task: (0, 1, 2) if task in ("click-checkboxes", "click-option", "choose-list") else (0, 1)
    for task in MINIWOB_TASKS
}


@in_module_loop
@pytest.mark.parametrize("task", sorted(MINIWOB_TASKS))
async def test_policy_solves_the_task(task: str, miniwob: MiniWobSite, page: Page) -> None:
    with watch_console_rewards(page) as rewards:
        for number, seed in enumerate(SEEDS[task], start=1):
            info = await start_task(page, miniwob.base_url, task, seed=seed)
            assert info.utterance and info.url.endswith(f"/miniwob/{task}.html")
            assert await reward(page) == 0.0
            episode = await drive(page, direct(task), goal="Do what the page asks.")
            assert episode.final is not None and episode.final[0] == "complete", (info, episode)
            assert episode.final[1]["extracted_information"]["instruction"] in info.utterance
            state = await episode_state(page)
            assert state.done and state.raw_reward == 1.0, (info, state, episode.actions)
            assert await reward(page) == 1.0
            assert (
                0.99 < await reward(page, raw=False) <= 1.0
            )  # time-scaled over a one-hour episode
            logged = await rewards.next(number)
            assert logged.raw_reward == 1.0 and logged.reward == state.reward
            assert logged.text.startswith("reward: ")


@in_module_loop
async def test_same_seed_same_problem(miniwob: MiniWobSite, page: Page) -> None:
    first = await start_task(page, miniwob.base_url, "login-user", seed=42)
    again = await start_task(page, miniwob.base_url, "login-user", seed=42)
    other = await start_task(page, miniwob.base_url, "login-user", seed=43)
    assert first.utterance == again.utterance != other.utterance


@in_module_loop
async def test_policy_through_the_sdk_and_server(miniwob: MiniWobSite, page: Page) -> None:
    for task, seed in (("login-user", 5), ("click-checkboxes", 3)):
        with ScriptedLLM(miniwob_policy(task)) as llm:
            async with client(llm, max_retries=0) as api:
                info = await start_task(page, miniwob.base_url, task, seed=seed)
                episode = await drive(page, through_sdk(api), goal="Do what the page asks.")
        assert llm.errors == []
        assert episode.final is not None and episode.final[0] == "complete"
        assert await reward(page) == 1.0, (info, episode.actions)
        assert len(llm.requests) == len(episode.actions) + 1
        # the observation of each step reached the policy: the tool message carries it
        assert llm.requests[-1]["messages"][-1]["role"] == "tool"
        assert observation_elements(llm.requests[-1])


async def test_policy_terminates_without_an_instruction_or_an_element() -> None:
    policy = miniwob_policy("click-button")
    lost = policy({"messages": [user("Nothing to see.\n[1] <button> Ok")]})
    assert lost.tool_calls[0].name == "terminate"
    missing = policy({"messages": [user('Click on the "Ok" button.\n[1] <button> Cancel')]})
    assert missing.tool_calls[0].name == "terminate"
    assert "Ok" in str(missing.tool_calls[0].arguments)
    found = policy(
        {"messages": [user('Click on the "ok" button.\n[4] <button> Ok\n[5] <button> ok')]}
    )
    assert found.tool_calls[0].arguments == {"element": 5}


# Wrong actions, done directly with Playwright: each must end the episode with reward <= 0.


async def _first_seed(
    page: Page, base: str, task: str, fits: Callable[[TaskInfo], Awaitable[bool]]
) -> TaskInfo:
    for seed in range(20):
        info = await start_task(page, base, task, seed=seed)
        if await fits(info):
            return info
    raise AssertionError(f"no seed of {task} fits")


def _quoted(info: TaskInfo, index: int = 0) -> str:
    return info.utterance.split('"')[1 + 2 * index]


def _exactly(text: str) -> re.Pattern[str]:
    return re.compile(f"^{re.escape(text)}$")


async def wrong_click_button(page: Page, base: str) -> None:
    async def another_button(info: TaskInfo) -> bool:
        others = page.locator("#area button").filter(has_not_text=_exactly(_quoted(info)))
        return await others.count() > 0

    info = await _first_seed(page, base, "click-button", another_button)
    await page.locator("#area button").filter(has_not_text=_exactly(_quoted(info))).first.click()


async def wrong_click_link(page: Page, base: str) -> None:
    async def another_link(info: TaskInfo) -> bool:
        return await page.locator(".alink").filter(has_not_text=_exactly(_quoted(info))).count() > 0

    info = await _first_seed(page, base, "click-link", another_link)
    await page.locator(".alink").filter(has_not_text=_exactly(_quoted(info))).first.click()


async def wrong_enter_text(page: Page, base: str) -> None:
    info = await start_task(page, base, "enter-text")
    await page.fill("#tt", _quoted(info) + "x")
    await page.click("#subbtn")


async def wrong_login_user(page: Page, base: str) -> None:
    info = await start_task(page, base, "login-user")
    await page.fill("#username", _quoted(info, 0))
    await page.fill("#password", _quoted(info, 1) + "x")
    await page.click("#subbtn")


async def wrong_enter_password(page: Page, base: str) -> None:
    info = await start_task(page, base, "enter-password")
    await page.fill("#password", _quoted(info))
    await page.fill("#verify", _quoted(info)[::-1] + "x")
    await page.click("#subbtn")


async def wrong_click_checkboxes(page: Page, base: str) -> None:
    await start_task(page, base, "click-checkboxes")
    for box in await page.locator("#boxes input").all():
        await box.click()  # every box the opposite of what was asked
    await page.click("#subbtn")


async def wrong_click_option(page: Page, base: str) -> None:
    info = await start_task(page, base, "click-option")
    wanted = info.utterance.removeprefix("Select ").removesuffix(" and click Submit.")
    await page.locator("#boxes label").filter(has_not_text=_exactly(wanted)).first.click()
    await page.click("#subbtn")


async def wrong_choose_list(page: Page, base: str) -> None:
    info = await start_task(page, base, "choose-list")
    wanted = info.utterance.removeprefix("Select ").removesuffix(" from the list and click Submit.")
    options = await page.locator("#options option").all_inner_texts()
    await page.select_option("#options", label=next(o for o in options if o != wanted))
    await page.click("#area button")


async def wrong_click_tab(page: Page, base: str) -> None:
    info = await start_task(page, base, "click-tab")
    wanted = info.utterance.removeprefix("Click on ").removesuffix(".")
    await page.locator("#area ul a").filter(has_not_text=_exactly(wanted)).first.click()


def times_out(task: str) -> Callable[[Page, str], Awaitable[None]]:
    async def run(page: Page, base: str) -> None:
        await start_task(page, base, task, max_time_ms=300)
        await page.wait_for_function("() => WOB_DONE_GLOBAL", timeout=5_000)

    return run


WRONG: dict[str, Callable[[Page, str], Awaitable[None]]] = {
    "click-button": wrong_click_button,
    "click-link": wrong_click_link,
    "enter-text": wrong_enter_text,
    "login-user": wrong_login_user,
    "enter-password": wrong_enter_password,
    "click-checkboxes": wrong_click_checkboxes,
    "click-option": wrong_click_option,
    "choose-list": wrong_choose_list,
    "click-tab": wrong_click_tab,
}


@in_module_loop
@pytest.mark.parametrize("task", sorted(MINIWOB_TASKS))
async def test_a_wrong_action_earns_no_reward(task: str, miniwob: MiniWobSite, page: Page) -> None:
    run = WRONG.get(task) or times_out(task)  # focus-text, click-dialog: let the time run out
    with watch_console_rewards(page) as rewards:
        await run(page, miniwob.base_url)
        logged = await rewards.next(1)
    state = await episode_state(page)
    assert state.done
    assert await reward(page) <= 0 and state.reward <= 0
    assert logged.raw_reward == state.raw_reward and logged.reward <= 0
    if task not in WRONG:
        assert state.reason == "timed out" and state.raw_reward == -1
