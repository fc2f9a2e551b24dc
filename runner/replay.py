"""Replay: blocks played back from recorded actions with no LLM call — from the workflow's action
cache (`run_with: code`) or from an earlier run (a rerun from a block) — and self-healing that
explains itself.

A cached action's locator is looked for first; if the page no longer shows it, its fallbacks
(test id, role and name, text, CSS) are tried. Either way a `divergence` card says which action,
what was expected, what the page showed and what was done instead: a fallback that matched, the
agent taking over a `goal` block from that action, or — without a goal — the run failing with
that explanation. A run that healed a block or ran one live leaves a new version of the cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator

from runner import locators
from runner.actions import StepCall, perform
from runner.agent import extract_with_model, run_goal
from runner.browser import untraced
from runner.cache import cache_key_of, fingerprint
from runner.context import RunContext
from runner.errors import StepFailed
from runner.extract import extract_fields
from runner.observe import observe
from runner.steps import Located
from runner.workflow import (
    STEP_VERBS,
    ActionBlock,
    Block,
    ExtractBlock,
    ExtractField,
    GoalBlock,
    GotoArgs,
)
from storage.action_cache import current_version, prune_versions, record_of_run, save_record
from storage.errors import ValidationFailed
from storage.status import CardKind

log = logging.getLogger(__name__)

MAX_VERSIONS = 20  # per cache key (a pinned version besides)
GRACE_MS = 500  # how long the cached locator is given before a fallback that matches is used


def cacheable(block: Block) -> bool:
    """Blocks whose actions the cache keeps and replays (an extract block with fields and a
    run_workflow block always run as they are: they make no LLM call)."""
    if isinstance(block, ExtractBlock):
        return not block.fields
    return isinstance(block, ActionBlock | GoalBlock)


async def prepare(ctx: RunContext) -> None:
    """What the run replays: the earlier run's own actions for the blocks before `from_block`
    (a rerun from a block), else the cache's current version of its key (`run_with: code`)."""
    run, workflow = ctx.run, ctx.workflow
    info: dict[str, Any] = dict(run.replay or {})
    if run.workflow_id is not None:
        try:
            info["cache_key"] = await asyncio.to_thread(cache_key_of, workflow, ctx.inputs)
        except ValidationFailed as exc:
            raise StepFailed(f"cache_key: {exc.message}") from None
    labels = [block.label for block in workflow.blocks]
    wanted: list[str] = []
    record = None
    async with ctx.env.db.session() as session:
        if info.get("from_run_id"):
            record = await record_of_run(session=session, run_id=info["from_run_id"])
            upto = info.get("from_block")
            wanted = labels[: labels.index(upto)] if upto in labels else []
        elif run.run_with == "code" and run.workflow_id is not None:
            record = await current_version(
                session=session, workflow_id=run.workflow_id, cache_key=info["cache_key"]
            )
            wanted = labels
            info["cache_version_id"] = record.id if record is not None else None
    if record is not None:
        ctx.replayed = {label: record.blocks[label] for label in wanted if label in record.blocks}
    if info or run.run_with == "code":
        info["blocks"] = {}
        ctx.replay = info


async def resume(ctx: RunContext) -> None:
    """A continuation opens the page its parent ended on (the parent's cookies and local
    storage are already in its browser context)."""
    url = ctx.parent_state().get("url")
    if not url or not url.startswith(("http://", "https://")):
        return
    parent = (ctx.run.replay or {}).get("continue_from")
    await ctx.narrate(f"Continuing from run {parent} on {url}", "continue")
    ctx.code_body.append(f"# continuing from run {parent}: its cookies and local storage")
    try:
        await perform(ctx, StepCall("continue", 1, "goto", GotoArgs(url=url)))
    except StepFailed as exc:
        raise StepFailed(f"continuing from run {parent}, goto {url}: {exc.reason}") from None


def entry_for(ctx: RunContext, block: Block) -> dict[str, Any] | None:
    """The recorded block to replay, if any and still of the same definition."""
    entry = ctx.replayed.get(block.label)
    if entry is None or not cacheable(block):
        return None
    if entry.get("type") != block.type or entry.get("fingerprint") != fingerprint(block):
        return None
    if isinstance(block, ExtractBlock) and not entry.get("fields"):
        return None  # the model's values were not found on the page: it reads it again
    return entry


def _render(ctx: RunContext, value: Any, where: str) -> Any:
    if isinstance(value, str):
        return ctx.inputs.render(value, where)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [ctx.inputs.render(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


async def replay_block(ctx: RunContext, block: Block, entry: dict[str, Any]) -> str:
    """Plays the block's recorded actions back; returns "replayed", or "healed" when an action
    no longer matched and a fallback or the agent took over."""
    source = "the earlier run" if ctx.replay.get("from_run_id") else "the action cache"
    if isinstance(block, ExtractBlock):
        return await _replay_extract(ctx, block, entry, source)
    actions = entry.get("actions") or []
    await ctx.narrate(
        f"Replaying {len(actions)} recorded action{'s' * (len(actions) != 1)} from {source} "
        "(no LLM call)",
        block.label,
    )
    healed = False
    for number, cached in enumerate(actions, start=1):
        ctx.code_body.extend(cached.get("pre") or [])
        verb = cached["verb"]
        kind = STEP_VERBS[verb]
        where = f"{block.label}.actions[{number - 1}]"
        given = cached.get("args") or {}
        rendered = {k: _render(ctx, v, f"{where}.{k}") for k, v in given.items()}
        args = kind.model_construct(**rendered)
        raw = kind.model_construct(**given) if cached.get("raw") else None
        if verb == "goto":
            await ctx.narrate(f"Opening {rendered.get('url', '')}", block.label)
        ctx.step_count += 1
        located: Located | None = None
        record = cached
        specs: list[dict[str, Any]] = cached.get("locators") or []
        if specs:
            await ctx.settle_tabs()
            timeout = getattr(args, "timeout_ms", None) or ctx.settings.replay_match_timeout_ms
            found = await _find(ctx, specs, timeout)
            if found is None:
                return await _diverged(ctx, block, number, cached, "no locator matched")
            index, locator = found
            spec = specs[index]
            if index == 0:
                located = Located(locator, locators.spec_describe(spec), cached["code"], spec)
            else:
                code = locators.spec_code(spec)
                located = Located(locator, locators.spec_describe(spec), code, spec)
                record = {**cached, "locators": [spec, *specs[:index], *specs[index + 1 :]]}
                record["code"] = code
                await _divergence_card(
                    ctx,
                    block,
                    number,
                    cached,
                    status="healed",
                    instead=f"used the fallback locator {locators.spec_describe(spec)}",
                )
                healed = True
        try:
            await perform(
                ctx, StepCall(block.label, number, verb, args, raw, located, cached=record)
            )
        except StepFailed as exc:
            return await _diverged(ctx, block, number, cached, exc.reason)
    ctx.code_body.extend(entry.get("post") or [])
    ctx.extracted.update(entry.get("extracted") or {})
    if entry.get("summary"):
        ctx.summary = entry["summary"]
    return "healed" if healed else "replayed"


async def _replay_extract(
    ctx: RunContext, block: ExtractBlock, entry: dict[str, Any], source: str
) -> str:
    """An extract block with an instruction reads the fields where the model's values were,
    with no model call; a field the page no longer shows diverges, and the model reads the
    page again."""
    fields = {name: ExtractField.model_validate(spec) for name, spec in entry["fields"].items()}
    await ctx.narrate(
        f"Reading {', '.join(fields)} where {source} found them (no LLM call)", block.label
    )
    page = ctx.page
    assert page is not None
    await ctx.settle_tabs()
    first = next(iter(fields.values()))
    try:
        await page.locator(first.selector).first.wait_for(
            state="attached", timeout=ctx.settings.replay_match_timeout_ms
        )
    except PlaywrightError:
        pass
    ctx.step_count += 1
    action = await ctx.begin_action(block.label, "extract", 1)
    reading = ExtractBlock.model_construct(label=block.label, type="extract", fields=fields)
    data = await extract_fields(page, reading, ctx.settings.step_timeout_ms)
    missing = [name for name, value in data.items() if value in (None, "")]
    if missing:
        cached = {"verb": "extract", "args": {"selector": fields[missing[0]].selector}}
        await _divergence_card(
            ctx,
            block,
            1,
            cached,
            status="agent",
            reason=f"{', '.join(missing)}: no element at the recorded selector",
            instead="the model reads the page again",
        )
        await extract_with_model(ctx, block)
        return "healed"
    ctx.extracted.update(data)
    await ctx.action_card(
        action,
        target=", ".join(f.selector for f in fields.values()),
        value=json.dumps(data, ensure_ascii=False)[:2000],
        result="ok",
        url=page.url,
        extra={"extracted": data, "replayed": True},
    )
    ctx.code_body.extend(entry.get("post") or [])
    ctx.actions.current = {**(ctx.actions.current or {}), "fields": entry["fields"]}
    return "replayed"


async def _find(
    ctx: RunContext, specs: list[dict[str, Any]], timeout_ms: int
) -> tuple[int, Locator] | None:
    """The first locator that matches: the cached one as soon as it does, a fallback once the
    cached one had GRACE_MS to appear; None when nothing matched within `timeout_ms`."""
    start = time.monotonic()
    while True:
        page = ctx.page
        assert page is not None
        elapsed = (time.monotonic() - start) * 1000
        for index, spec in enumerate(specs):
            locator = locators.spec_locator(page, spec)
            try:
                count = await untraced(locator.count)
            except PlaywrightError:
                count = 0
            if count and (index == 0 or elapsed >= min(GRACE_MS, timeout_ms)):
                return index, locator
        if elapsed >= timeout_ms:
            return None
        await asyncio.sleep(0.1)


def _expected(cached: dict[str, Any]) -> str:
    specs = cached.get("locators") or []
    if specs:
        return locators.spec_describe(specs[0])
    args = cached.get("args") or {}
    return str(args.get("url") or args.get("selector") or args.get("text") or args.get("key") or "")


async def _excerpt(ctx: RunContext) -> str:
    """What the page showed: its title and URL, the start of its text and its first
    interactive elements (as the agent sees them)."""
    page = ctx.page
    if page is None or page.is_closed():
        return "(no page)"
    try:
        seen = await observe(page, text_budget=400, max_elements=12)
    except Exception as exc:
        return f"(the page could not be observed: {exc})"
    lines = [f"{seen.title} — {seen.url}", seen.text[:400].strip()]
    lines += [element.line() for element in seen.elements[:12]]
    return "\n".join(line for line in lines if line)


async def _divergence_card(
    ctx: RunContext,
    block: Block,
    number: int,
    cached: dict[str, Any],
    *,
    status: str,
    instead: str,
    reason: str | None = None,
    excerpt: str | None = None,
) -> str:
    found = excerpt if excerpt is not None else await _excerpt(ctx)
    specs = cached.get("locators") or []
    await ctx.emit(
        CardKind.divergence,
        block_label=block.label,
        status=status,
        data={
            "step": number,
            "verb": cached["verb"],
            "expected": _expected(cached),
            "fallbacks": [locators.spec_describe(s) for s in specs[1:]],
            "reason": reason,
            "found": found,
            "instead": instead,
            "url": ctx.url,
            "recorded_url": cached.get("url"),
        },
    )
    return found


async def _diverged(
    ctx: RunContext, block: Block, number: int, cached: dict[str, Any], reason: str
) -> str:
    """A replayed action no longer matched and no fallback did: the agent takes over a goal
    block from here; any other block fails the run, with the explanation."""
    expected = f"{cached['verb']} {_expected(cached)}".strip()
    if isinstance(block, GoalBlock):
        await _divergence_card(
            ctx,
            block,
            number,
            cached,
            status="agent",
            reason=reason,
            instead="the agent takes over the block's goal from this action",
        )
        done = [
            f"{a['verb']} {_expected(a)}".strip()
            for a in (ctx.replayed.get(block.label) or {}).get("actions", [])[: number - 1]
        ]
        note = (
            "(A replay of recorded actions already did, on this page: "
            + ("; ".join(done) if done else "nothing")
            + f". Its next action, {expected}, no longer matches the page: continue from here.)"
        )
        await run_goal(ctx, block, resumed=True, note=note)
        return "healed"
    found = await _divergence_card(
        ctx,
        block,
        number,
        cached,
        status="failed",
        reason=reason,
        instead="nothing: the block has no goal to fall back on, so the run fails",
    )
    tried = [locators.spec_describe(s) for s in (cached.get("locators") or [])[1:]]
    tried_text = f"; fallbacks tried: {', '.join(tried)}" if tried else ""
    shown = " ".join(found.split())[:300]
    raise StepFailed(
        f'block "{block.label}", replayed action {number} {expected}: the recorded action no '
        f"longer matches the page ({reason}{tried_text}); the page showed: {shown}"
    )


def new_blocks(ctx: RunContext) -> list[str]:
    """Blocks this run did not replay as recorded (run live, or healed)."""
    by_label = {block.label: block for block in ctx.workflow.blocks}
    return [
        label
        for label, how in ctx.actions.statuses.items()
        if how in ("live", "healed") and label in by_label and cacheable(by_label[label])
    ]


async def save(ctx: RunContext) -> None:
    """Keeps the run's actions; a saved workflow's run that ran or healed a block makes a new
    version of the cache (the blocks it did not get to are the previous version's)."""
    keep = {block.label for block in ctx.workflow.blocks if cacheable(block)}
    blocks = {label: b for label, b in ctx.actions.blocks.items() if label in keep}
    if not blocks:
        return
    run = ctx.run
    key = ctx.replay.get("cache_key")
    changed = new_blocks(ctx)
    cached = run.workflow_id is not None and key is not None and bool(changed)
    async with ctx.env.db.session() as session:
        kept = dict(blocks)
        note = None
        if cached:
            assert run.workflow_id is not None and key is not None
            previous = await current_version(
                session=session, workflow_id=run.workflow_id, cache_key=key
            )
            if previous is not None:
                kept = {**previous.blocks, **blocks}
            healed = [b for b in changed if ctx.actions.statuses.get(b) == "healed"]
            note = f"healed {', '.join(healed)}" if healed else f"recorded {', '.join(changed)}"
        record = await save_record(
            session=session,
            run_id=run.id,
            blocks=ctx.masker.mask_obj(kept),
            workflow_id=run.workflow_id,
            cache_key=key,
            cached=cached,
            note=note,
        )
        if cached:
            assert run.workflow_id is not None and key is not None
            await prune_versions(
                session=session, workflow_id=run.workflow_id, cache_key=key, keep=MAX_VERSIONS
            )
        await session.commit()
    if cached and ctx.replay:
        ctx.replay["new_version_id"] = record.id
