"""MiniWoB++ task pages (from the `miniwob` PyPI package) served on loopback, and policies that
solve some of them through the LLM agent protocol.

What the package ships (miniwob 1.1.0): `miniwob/html/` with
- `miniwob/<task>.html`: the 130 task pages (click-button.html, login-user.html, ...),
- `core/`: core.js (the episode API), core.css, d3, jQuery UI, record.js,
- `common/`: ui_utils.js, shapes.js and `special/<task>/` assets,
- `flight/`: the flight-booking pages (those run through `flight/<site>/wrapper.html`).

The episode API (core.js), as MiniWoB's own Python env (selenium_instance.py) drives it:
- on load each page calls `core.startEpisode()`, which only shows a "START" cover
  (`#sync-task-cover`);
- the env then runs `Math.seedrandom(seed)`, `core.setDataMode(mode)` and
  `core.startEpisodeReal()` (generates the problem, hides the cover, starts the
  `core.EPISODE_MAX_TIME` timer: 10000 ms by default, -1 reward "timed out" when it fires), and
  polls `WOB_TASK_READY` until true;
- the instruction is `core.getUtterance()` (the `#query` text, whitespace squashed);
- the task calls `core.endEpisode(reward, time_proportional, reason)`, which sets
  `WOB_DONE_GLOBAL = true`, `WOB_RAW_REWARD_GLOBAL` (the task's reward, in [-1, 1]),
  `WOB_REWARD_GLOBAL` (the same, scaled by the time left when time_proportional),
  `WOB_REWARD_REASON`, increments `WOB_EPISODE_ID`, logs
  `console.log('reward: ' + WOB_REWARD_GLOBAL + ' (raw: ' + WOB_RAW_REWARD_GLOBAL + ')')`
  (e.g. `reward: 0.9997 (raw: 1)`, `reward: -1 (raw: -1)`) and shows the START cover again.
  Only the first endEpisode of an episode counts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from types import TracebackType
from typing import Any, Self

from playwright.async_api import ConsoleMessage, Page

from tests.llm_server import (
    JSON,
    Element,
    Policy,
    Reply,
    elements,
    find_elements,
    step_index,
    texts_newest_first,
)

# An hour: long enough for any test, short enough to show as "3600 / 3600sec" on the page.
# (Above 2**31 - 1 ms, setTimeout fires at once.)
LONG_EPISODE_MS = 3_600_000


def html_dir() -> Path:
    """The package's html/ folder (has miniwob/, core/, common/, flight/)."""
    import miniwob

    return Path(miniwob.__file__).parent / "html"


def task_names() -> list[str]:
    return sorted(path.stem for path in (html_dir() / "miniwob").glob("*.html"))


# --------------------------------------------------------------------------- serving


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class MiniWobSite:
    """The package's html/ folder over HTTP on 127.0.0.1 (a free port), in a thread.

    `base_url` has no trailing slash; a task is at `{base_url}/miniwob/{name}.html`.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or html_dir()
        self._server: ThreadingHTTPServer | None = None
        self._thread: Thread | None = None

    def start(self) -> Self:
        handler = functools.partial(_QuietHandler, directory=str(self.directory))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the site is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def task_url(self, name: str) -> str:
        return task_url(self.base_url, name)


def task_url(base_url: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/miniwob/{name}.html"


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class TaskInfo:
    name: str
    url: str
    seed: int | str
    utterance: str  # the instruction, `core.getUtterance()` (the #query text)


@dataclass(frozen=True)
class EpisodeState:
    """MiniWoB's globals: `done` WOB_DONE_GLOBAL, `reward` WOB_REWARD_GLOBAL (time-scaled),
    `raw_reward` WOB_RAW_REWARD_GLOBAL, `reason` WOB_REWARD_REASON, `episode_id` WOB_EPISODE_ID."""

    done: bool
    reward: float
    raw_reward: float
    reason: Any
    episode_id: int


async def start_task(
    page: Page,
    base_url: str,
    name: str,
    seed: int | str = 0,
    *,
    max_time_ms: int = LONG_EPISODE_MS,
    mode: str = "train",
    timeout_ms: float = 10_000,
    reload: bool = False,
) -> TaskInfo:
    """Start an episode of task `name` as MiniWoB's env does: seed, data mode,
    `core.startEpisodeReal()`, wait for `WOB_TASK_READY`; with `core.EPISODE_MAX_TIME` set to
    `max_time_ms` first. Returns the instruction. Same seed, same problem.

    The page is loaded unless it already shows that task (MiniWoB's env also starts episode
    after episode on one load); `reload=True` always loads it. An episode still running is
    dropped silently (no reward, no console line)."""
    url = task_url(base_url, name)
    if reload or page.url.split("?")[0] != url:
        await page.goto(url)
    # window.onload runs core.startEpisode(), which adds the START cover
    await page.wait_for_function(
        "() => typeof core !== 'undefined' && core.cover_div != null", timeout=timeout_ms
    )
    await page.evaluate(
        """([seed, mode, maxTime]) => {
            if (core.EP_TIMER !== null) { clearTimeout(core.EP_TIMER); core.EP_TIMER = null; }
            Math.seedrandom(seed);
            core.setDataMode(mode);
            core.EPISODE_MAX_TIME = maxTime;
            core.startEpisodeReal();
        }""",
        [seed, mode, max_time_ms],
    )
    await page.wait_for_function("() => WOB_TASK_READY === true", timeout=timeout_ms)
    utterance = await page.evaluate("() => core.getUtterance()")
    return TaskInfo(name=name, url=url, seed=seed, utterance=str(utterance))


async def episode_state(page: Page) -> EpisodeState:
    state = await page.evaluate(
        """() => ({done: WOB_DONE_GLOBAL, reward: WOB_REWARD_GLOBAL,
                   raw: WOB_RAW_REWARD_GLOBAL, reason: WOB_REWARD_REASON,
                   episode: WOB_EPISODE_ID})"""
    )
    return EpisodeState(
        done=bool(state["done"]),
        reward=float(state["reward"]),
        raw_reward=float(state["raw"]),
        reason=state["reason"],
        episode_id=int(state["episode"]),
    )


async def reward(page: Page, *, raw: bool = True) -> float:
    """The episode's reward: 0.0 until the task ends it, then in [-1, 1]. `raw` (default) is
    the task's own verdict (1.0 = solved); `raw=False` is MiniWoB's time-scaled reward
    (a success just under 1.0)."""
    state = await episode_state(page)
    if not state.done:
        return 0.0
    return state.raw_reward if raw else state.reward


_REWARD_MESSAGE = re.compile(r"^reward: (\S+) \(raw: (\S+)\)$")


@dataclass(frozen=True)
class ConsoleReward:
    reward: float
    raw_reward: float
    text: str


def parse_reward_message(text: str) -> ConsoleReward | None:
    """`reward: 0.99 (raw: 1)` -> ConsoleReward(0.99, 1.0); anything else -> None."""
    match = _REWARD_MESSAGE.match(text.strip())
    if not match:
        return None
    try:
        return ConsoleReward(float(match.group(1)), float(match.group(2)), text)
    except ValueError:
        return None


class ConsoleRewards:
    """The `reward: ...` console lines a page logs, collected as they come, until `close()`
    (or the end of a `with` block)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.rewards: list[ConsoleReward] = []
        self._arrived = asyncio.Event()
        page.on("console", self._on_console)

    def _on_console(self, message: ConsoleMessage) -> None:
        parsed = parse_reward_message(message.text)
        if parsed is not None:
            self.rewards.append(parsed)
            self._arrived.set()

    async def next(self, count: int = 1, timeout: float = 5.0) -> ConsoleReward:
        """Wait until at least `count` reward lines arrived; return the `count`-th."""
        async with asyncio.timeout(timeout):
            while len(self.rewards) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.rewards[count - 1]

    def close(self) -> None:
        self.page.remove_listener("console", self._on_console)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def watch_console_rewards(page: Page) -> ConsoleRewards:
    """Start collecting the page's `reward: X (raw: Y)` console lines (attach before acting)."""
    return ConsoleRewards(page)


# --------------------------------------------------------------------------- policies

Finder = Callable[[list[Element]], Element | None]


@dataclass(frozen=True)
class Step:
    """One planned action: `tool` on the element `find` picks, with `args` besides `element`.
    For `check` on something that is not a checkbox or radio (e.g. its label), `click` is sent."""

    tool: str
    what: str  # for thoughts and terminate reasons: "the Submit button"
    find: Finder
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    pattern: re.Pattern[str]
    plan: Callable[[re.Match[str]], list[Step]]


def _first(found: Sequence[Element]) -> Element | None:
    return found[0] if found else None


def _button(text: str) -> Finder:
    def find(listed: list[Element]) -> Element | None:
        buttons = [
            e
            for e in listed
            if e.tag == "button"
            or e.get("role") == "button"
            or (e.tag == "input" and e.get("type") in ("submit", "button"))
        ]
        labelled = [e for e in buttons if e.text == text or e.get("value") == text]
        if labelled:
            return labelled[0]
        return _first(find_elements(buttons, text=text, exact=False))

    return find


def _by_text(text: str, *, prefer: Sequence[str] = ()) -> Finder:
    """An element whose text is `text`: exact case first, `prefer`red tags first."""

    def find(listed: list[Element]) -> Element | None:
        for exact in (True, False):
            hits = find_elements(listed, text=text, exact=exact)
            hits.sort(key=lambda e: 0 if e.tag in prefer else 1)
            if hits:
                return hits[0]
        return None

    return find


def _is_text_field(e: Element) -> bool:
    if e.tag == "textarea":
        return True
    return e.tag == "input" and e.get("type") in (None, "", "text", "email", "search")


def _text_field(hint: str = "") -> Finder:
    """A text input; one whose id/name/placeholder/aria-label/text mentions `hint` first."""

    def find(listed: list[Element]) -> Element | None:
        fields = [e for e in listed if _is_text_field(e)]
        if hint:
            named = [e for e in fields if hint in _naming(e)]
            if named:
                return named[0]
        return _first(fields)

    return find


def _password_field(index: int = 0) -> Finder:
    def find(listed: list[Element]) -> Element | None:
        fields = [e for e in listed if e.tag == "input" and e.get("type") == "password"]
        return fields[index] if index < len(fields) else None

    return find


def _naming(e: Element) -> str:
    keys = ("id", "name", "placeholder", "aria-label")
    return " ".join([*(e.attrs.get(k, "") for k in keys), e.text]).lower()


def _toggle(kind: str, name: str) -> Finder:
    """The checkbox/radio labelled `name`, else the label (or other element) with that text."""

    def find(listed: list[Element]) -> Element | None:
        boxes = [e for e in listed if e.tag == "input" and e.get("type") == kind]
        hit = _first(find_elements(boxes, text=name)) or _first(
            [e for e in boxes if e.get("aria-label") == name]
        )
        return hit or _by_text(name, prefer=("label",))(listed)

    return find


def _select() -> Finder:
    return lambda listed: _first([e for e in listed if e.tag == "select"])


def _plan_click_button(m: re.Match[str]) -> list[Step]:
    return [Step("click", f'the "{m[1]}" button', _button(m[1]))]


def _plan_click_link(m: re.Match[str]) -> list[Step]:
    return [Step("click", f'the link "{m[1]}"', _by_text(m[1], prefer=("a", "span")))]


def _plan_enter_text(m: re.Match[str]) -> list[Step]:
    return [
        Step("input_text", "the text field", _text_field(), {"text": m[1]}),
        Step("click", "the Submit button", _button("Submit")),
    ]


def _plan_login_user(m: re.Match[str]) -> list[Step]:
    return [
        Step("input_text", "the username field", _text_field("user"), {"text": m[1]}),
        Step("input_text", "the password field", _password_field(), {"text": m[2]}),
        Step("click", "the Login button", _button("Login")),
    ]


def _plan_enter_password(m: re.Match[str]) -> list[Step]:
    return [
        Step("input_text", "the password field", _password_field(0), {"text": m[1]}),
        Step("input_text", "the verify password field", _password_field(1), {"text": m[1]}),
        Step("click", "the Submit button", _button("Submit")),
    ]


def _plan_focus_text(m: re.Match[str]) -> list[Step]:
    return [Step("click", "the textbox", _text_field())]


def _plan_click_checkboxes(m: re.Match[str]) -> list[Step]:
    names = [] if m[1] == "nothing" else [n.strip() for n in m[1].split(",") if n.strip()]
    steps = [Step("check", f"the {n} checkbox", _toggle("checkbox", n)) for n in names]
    return [*steps, Step("click", "the Submit button", _button("Submit"))]


def _plan_click_option(m: re.Match[str]) -> list[Step]:
    return [
        Step("check", f"the {m[1]} option", _toggle("radio", m[1])),
        Step("click", "the Submit button", _button("Submit")),
    ]


def _plan_choose_list(m: re.Match[str]) -> list[Step]:
    return [
        Step("select_option", "the list", _select(), {"option": m[1]}),
        Step("click", "the Submit button", _button("Submit")),
    ]


def _plan_click_tab(m: re.Match[str]) -> list[Step]:
    name = f"Tab #{m[1]}"
    return [Step("click", name, _by_text(name, prefer=("a",)))]


def _plan_click_dialog(m: re.Match[str]) -> list[Step]:
    def find(listed: list[Element]) -> Element | None:
        closers = [
            e
            for e in listed
            if (e.tag == "button" or e.get("role") == "button")
            and (
                e.text.lower() in ("close", "x", "×")
                or (e.get("title") or e.get("aria-label") or "").lower() == "close"
            )
        ]
        return _first(closers)

    return [Step("click", "the dialog's close button", find)]


MINIWOB_TASKS: dict[str, TaskSpec] = {
    "click-button": TaskSpec(re.compile(r'Click on the "([^"]+)" button\.'), _plan_click_button),
    "click-link": TaskSpec(re.compile(r'Click on the link "([^"]+)"\.'), _plan_click_link),
    "enter-text": TaskSpec(
        re.compile(r'Enter "([^"]+)" into the text field and press Submit\.'), _plan_enter_text
    ),
    "login-user": TaskSpec(
        re.compile(
            r'Enter the username "([^"]*)" and the password "([^"]*)" into the text fields '
            r"and press login\."
        ),
        _plan_login_user,
    ),
    "enter-password": TaskSpec(
        re.compile(r'Enter the password "([^"]+)" into both text fields and press submit\.'),
        _plan_enter_password,
    ),
    "focus-text": TaskSpec(re.compile(r"Focus into the textbox\."), _plan_focus_text),
    "click-checkboxes": TaskSpec(
        re.compile(r"Select ([^\n]*?) and click Submit\."), _plan_click_checkboxes
    ),
    "click-option": TaskSpec(re.compile(r"Select (\S+) and click Submit\."), _plan_click_option),
    "choose-list": TaskSpec(
        re.compile(r"Select ([^\n]+?) from the list and click Submit\."), _plan_choose_list
    ),
    "click-tab": TaskSpec(re.compile(r"Click on Tab #(\d+)\."), _plan_click_tab),
    "click-dialog": TaskSpec(
        re.compile(r'Close the dialog box by clicking the "x"\.'), _plan_click_dialog
    ),
}


def find_instruction(request: JSON, pattern: re.Pattern[str]) -> re.Match[str] | None:
    """The task's instruction in the conversation: the newest message's text first."""
    for text in texts_newest_first(request):
        match = pattern.search(text)
        if match:
            return match
    return None


def plan_for(task: str, request: JSON) -> tuple[re.Match[str], list[Step]] | None:
    spec = MINIWOB_TASKS[task]
    match = find_instruction(request, spec.pattern)
    return (match, spec.plan(match)) if match else None


def resolve(step: Step, listed: list[Element]) -> Reply | None:
    """The tool call for `step` against the current elements, or None if nothing fits."""
    target = step.find(listed)
    if target is None:
        return None
    tool = step.tool
    if tool == "check" and not (
        target.tag == "input" and target.get("type") in ("checkbox", "radio")
    ):
        tool = "click"
    thought = f"{tool.replace('_', ' ').capitalize()} {step.what}: element [{target.n}]."
    return Reply.call(tool, {"element": target.n, **step.args}, thought=thought)


def miniwob_policy(task: str) -> Policy:
    """A policy playing one MiniWoB task through the agent protocol.

    Each call reads the instruction from the conversation (newest message first), plans the
    task's steps, takes step k (k = tool calls the assistant already made), picks its element
    from the newest observation's `[N] <tag attrs> text` lines, and answers that tool call;
    after the last step it calls `complete` (extracted_information: task and instruction).
    It calls `terminate` when it finds no instruction or no fitting element.
    """
    if task not in MINIWOB_TASKS:
        raise KeyError(f"no policy for {task}; have {', '.join(MINIWOB_TASKS)}")

    def policy(request: JSON) -> Reply:
        planned = plan_for(task, request)
        if planned is None:
            reason = f"no {task} instruction in the observation"
            return Reply.call("terminate", {"reason": reason}, thought=reason)
        match, steps = planned
        k = step_index(request)
        if k >= len(steps):
            summary = f"Did what the page asked: {match[0]}"
            info = {"task": task, "instruction": match[0]}
            args = {"summary": summary, "extracted_information": info}
            return Reply.call("complete", args, thought="The task is done.")
        reply = resolve(steps[k], elements(request))
        if reply is None:
            reason = f"found no element for {steps[k].what}"
            return Reply.call("terminate", {"reason": reason}, thought=reason)
        return reply

    return policy


def tool_arguments(reply: Reply) -> tuple[str, dict[str, Any]]:
    """(name, arguments) of a reply's first tool call (for tests that run a policy directly)."""
    call = reply.tool_calls[0]
    args = call.arguments if isinstance(call.arguments, str) else dict(call.arguments)
    return call.name, json.loads(args) if isinstance(args, str) else args
