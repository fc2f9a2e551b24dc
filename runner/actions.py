"""The step engine: every browser action of a run — a workflow step or an agent's tool call —
goes through `perform`, which acts (runner.steps) and keeps the record of it: the action card
with its video offset and the screenshot of its effect, and its lines of generated code."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Locator

from runner import locators
from runner.browser import untraced
from runner.cache import DESCRIBE_ELEMENT, ELEMENT_VERBS, Templater, args_templates, fallbacks
from runner.context import RunContext
from runner.errors import step_failure
from runner.steps import Located, Outcome, StepEnv, run_step, target_of
from runner.workflow import StepArgs, Target


@dataclass
class StepCall:
    """One action to perform: `args` rendered; `raw` with the templates, for the code;
    `located` when the element was found otherwise than by a target (the agent's [N])."""

    block: str
    number: int
    verb: str
    args: StepArgs
    raw: StepArgs | None = None
    located: Located | None = None
    tool: str | None = None  # the agent's tool call this action carries out
    cached: dict[str, Any] | None = None  # the action cache's entry this call replays


async def perform(ctx: RunContext, call: StepCall) -> Outcome:
    """Performs one action and records it. Raises `StepFailed` (the card says failed) with the
    reason alone; the caller says where it happened. An action cut short by the run's time
    limit or a cancel keeps its card too (status `timed_out` / `canceled`)."""
    action = await ctx.begin_action(call.block, call.verb, call.number)
    assert ctx.page is not None
    pre = ctx.actions.pre(ctx.code_body)
    primary = _primary(call)
    described = None
    if primary is not None and call.cached is None:
        described = await _describe(ctx, call)
    env = StepEnv(
        page=ctx.page,
        recorder=ctx.recorder,
        code=ctx.code,
        mask=ctx.masker.mask_text,
        step_timeout_ms=ctx.settings.step_timeout_ms,
        navigation_timeout_ms=ctx.settings.navigation_timeout_ms,
        upload_dir=ctx.settings.upload_dir,
    )
    try:
        outcome = await run_step(call.verb, call.args, call.raw, env, call.located)
    except Exception as error:
        exc = step_failure(error)  # a full disk or storage outage is named, at its step
        target = target_of(call.args, call.located)
        await ctx.action_card(
            action,
            target=ctx.masker.mask_text(target) if target else None,
            result="failed",
            error=exc.reason,
            url=action.url,
            extra={"tool": call.tool} if call.tool else None,
        )
        raise exc from error if exc is not error else None
    except asyncio.CancelledError:
        stopped, why = ctx.why_stopped()
        target = target_of(call.args, call.located)
        await asyncio.shield(
            ctx.action_card(
                action,
                target=ctx.masker.mask_text(target) if target else None,
                result=stopped.value,
                error=why,
                url=action.url,
                status=stopped.value,
                extra={"tool": call.tool} if call.tool else None,
            )
        )
        raise
    lines = list(outcome.code)
    ctx.add_code(lines)
    if call.cached is not None:
        entry: dict[str, Any] | None = {**call.cached, "pre": pre, "url": action.url}
    else:
        entry = _entry(ctx, call, primary, described, pre, action.url)
    ctx.actions.add(ctx.masker.mask_obj(entry) if entry is not None else None, len(ctx.code_body))
    await ctx.settle_tabs()
    await ctx.action_card(
        action,
        target=outcome.target,
        value=outcome.value,
        result=outcome.result,
        code=lines,
        box_of=outcome.box_of,
        extra={**outcome.extra, **({"tool": call.tool} if call.tool else {})},
        url=ctx.url or action.url,
    )
    return outcome


def _primary(call: StepCall) -> dict[str, Any] | None:
    """The locator the action is found by, as the cache keeps it (None: it acts on no
    element of its own)."""
    if call.verb not in ELEMENT_VERBS:
        return None
    if call.located is not None:
        return call.located.spec
    args = call.args
    if isinstance(args, Target) and (args.selector or args.role or args.text):
        return locators.spec_of_target(args)
    return None


async def _describe(ctx: RunContext, call: StepCall) -> dict[str, Any] | None:
    """The element as the page shows it, before the action (for the cache's fallbacks): only
    when already there — the action's own wait is not anticipated."""
    assert ctx.page is not None
    try:
        if call.located is not None:
            handle: Any = call.located.handle
        else:
            assert isinstance(call.args, Target)
            found: Locator = locators.locate(ctx.page, call.args)
            if await untraced(found.count) == 0:
                return None
            handle = found.first
        described = await untraced(lambda: handle.evaluate(DESCRIBE_ELEMENT))
    except Exception:
        return None
    return described if isinstance(described, dict) else None


def _entry(
    ctx: RunContext,
    call: StepCall,
    primary: dict[str, Any] | None,
    described: dict[str, Any] | None,
    pre: list[str],
    url: str | None,
) -> dict[str, Any] | None:
    templater = Templater(ctx.inputs.values, ctx.inputs.secret_names)
    args = args_templates(call.args, call.raw, templater, located=primary is not None)
    if args is None:
        return None
    entry: dict[str, Any] = {
        "verb": call.verb,
        "args": args,
        "raw": call.raw is not None,
        "url": url,
        "pre": pre,
    }
    if primary is not None:
        code = call.located.code if call.located is not None else None
        if code is None and isinstance(call.args, Target):
            code = locators.code(call.args)
        entry["locators"] = [primary, *fallbacks(described, primary)]
        entry["code"] = code
    elif call.located is not None:
        return None  # an element found otherwise than by a locator cannot be found again
    return entry
