"""The step verbs, executed through Playwright: what each verb does to the page and the line
of code that does the same in the generated script. `runner.actions.perform` is the only caller:
it wraps each verb with the run's bookkeeping (card, screenshot, video offset)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from playwright.async_api import ElementHandle, Locator, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from runner import locators
from runner.browser import untraced
from runner.codegen import CodeContext, py
from runner.errors import StepFailed
from runner.recorder import RunRecorder
from runner.uploads import PathRefused, is_upload_id, server_path, upload_id_of_key
from runner.workflow import (
    AssertTextArgs,
    CheckArgs,
    ClickArgs,
    DownloadArgs,
    FillArgs,
    GoBackArgs,
    GotoArgs,
    PressArgs,
    ScrollArgs,
    SelectArgs,
    StepArgs,
    Target,
    UploadArgs,
    WaitArgs,
    WaitForArgs,
)
from storage.artifacts import list_artifacts
from storage.status import ArtifactKind

Handle = Locator | ElementHandle


@dataclass
class Located:
    """An element found by other means than a step's target (the agent's element [N]): what
    to act on, how the card names it and how the generated code finds it."""

    handle: Handle
    target: str
    code: str
    spec: dict[str, Any] | None = None  # how the action cache finds it again (runner.locators)


@dataclass
class Outcome:
    target: str | None = None
    value: str | None = None  # as shown (secrets masked)
    result: str = "ok"
    code: list[str] = field(default_factory=list)
    box_of: Handle | None = None  # the element to outline, when the page reports no action
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepEnv:
    page: Page
    recorder: RunRecorder
    code: CodeContext
    mask: Any  # Callable[[str], str]
    step_timeout_ms: int
    navigation_timeout_ms: int
    upload_dir: Path | None = None


async def _failure(handle: Handle | None, exc: Exception, timeout_ms: int) -> StepFailed:
    """Turns Playwright's error into a reason a person can act on."""
    message = str(exc).split("\n")[0]
    locator = handle if isinstance(handle, Locator) else None
    if "strict mode violation" in message:
        count = await locator.count() if locator is not None else 0
        return StepFailed(
            f"{count} elements matched; make the target more specific (for example with nth)"
        )
    if isinstance(exc, PlaywrightTimeout):
        if locator is not None:
            try:
                count = await locator.count()
            except PlaywrightError:
                count = -1
            if count == 0:
                return StepFailed(f"no element matched within {timeout_ms} ms")
            if count > 0:
                return StepFailed(
                    f"the element was found but not ready (hidden, disabled or covered) "
                    f"within {timeout_ms} ms"
                )
        return StepFailed(f"timed out after {timeout_ms} ms")
    if message.startswith(("Locator.", "Page.", "Frame.", "Keyboard.")):
        message = message.split(": ", 1)[-1]
    return StepFailed(message)


def _announce(env: StepEnv, title: str) -> int:
    """Announces an action on an element. No wait or box lookup before it: Playwright's action
    waits for the element itself, and the page reports where the action landed
    (runner.tracking) for the screenshot's outline and the video's annotation."""
    return env.recorder.announce(title, None, expect=True)


def title_of(verb: str, args: StepArgs, located: Located | None = None) -> str:
    if located is not None:
        return f"{verb} {located.target[:60]}"
    if isinstance(args, GotoArgs):
        return f"goto {args.url}"
    if isinstance(args, DownloadArgs):
        return f"download {locators.describe(args.click)}"
    if isinstance(args, Target) and (args.selector or args.role or args.text):
        return f"{verb} {locators.describe(args)}"
    if isinstance(args, PressArgs | ScrollArgs):
        return f"{verb} {getattr(args, 'key', None) or getattr(args, 'direction', '')}"
    return verb.replace("_", " ")


def target_of(args: StepArgs, located: Located | None = None) -> str | None:
    """What a step acts on, as its card names it (also when the step failed)."""
    if located is not None:
        return located.target
    if isinstance(args, GotoArgs):
        return args.url
    if isinstance(args, DownloadArgs):
        return locators.describe(args.click)
    if isinstance(args, ScrollArgs):
        return args.selector
    if isinstance(args, Target) and (args.selector or args.role or args.text):
        return locators.describe(args)
    return getattr(args, "selector", None)


def _locate(page: Page, target: Target, located: Located | None) -> Located:
    if located is not None:
        return located
    return Located(locators.locate(page, target), locators.describe(target), locators.code(target))


async def run_step(
    verb: str, args: StepArgs, raw: StepArgs | None, env: StepEnv, located: Located | None = None
) -> Outcome:
    """`args` are rendered; `raw` holds the templates (for code that reuses parameters);
    `located`: the element to act on, when not found from the step's target."""
    page = env.page
    default_timeout = (
        env.navigation_timeout_ms if verb in ("goto", "go_back") else env.step_timeout_ms
    )
    timeout = getattr(args, "timeout_ms", None) or default_timeout
    handle: Handle | None = None
    title = env.mask(title_of(verb, args, located))
    try:
        if isinstance(args, GotoArgs):
            expr = env.code.value_expr(getattr(raw, "url", None), args.url)
            env.recorder.announce(title, None)
            response = await page.goto(args.url, timeout=timeout, wait_until=args.wait_until)
            status = response.status if response else None
            return Outcome(
                target=env.mask(args.url),
                result=f"HTTP {status}" if status is not None and status >= 400 else "ok",
                code=[f"page.goto({expr}, wait_until={py(args.wait_until)})"],
                extra={"http_status": status},
            )
        if isinstance(args, GoBackArgs):
            env.recorder.announce(title, None)
            await page.go_back(timeout=timeout)
            return Outcome(code=["page.go_back()"])
        if isinstance(args, WaitArgs):
            await asyncio.sleep(args.seconds)
            return Outcome(
                value=f"{args.seconds:g} s",
                code=[f"page.wait_for_timeout({int(args.seconds * 1000)})"],
            )
        if isinstance(args, FillArgs):
            found = _locate(page, args, located)
            handle = found.handle
            _announce(env, title)
            await handle.fill(args.value, timeout=timeout)
            expr = env.code.value_expr(getattr(raw, "value", None), args.value)
            return Outcome(
                target=found.target,
                value=env.mask(args.value),
                code=[f"{found.code}.fill({expr})"],
            )
        if isinstance(args, ClickArgs):
            found = _locate(page, args, located)
            handle = found.handle
            seq = _announce(env, title)
            call = "dblclick" if args.double else "click"
            pages_before = len(page.context.pages)
            await getattr(handle, call)(timeout=timeout, button=args.button)
            acted = await env.recorder.acted(seq)
            if acted is not None and acted.opens_tab and len(page.context.pages) == pages_before:
                # The link or form targets another tab, whose page event can come well after
                # the click returns: wait for it here. A named target may reuse an open tab,
                # so no new tab is not an error.
                try:
                    await untraced(
                        lambda: page.context.wait_for_event("page", timeout=min(timeout, 5000))
                    )
                except PlaywrightTimeout:
                    pass
            button = f"button={py(args.button)}" if args.button != "left" else ""
            return Outcome(target=found.target, code=[f"{found.code}.{call}({button})"])
        if isinstance(args, PressArgs):
            if located is not None or args.selector or args.role or args.text:
                found = _locate(page, args, located)  # PressArgs is a Target with its key
                handle = found.handle
                _announce(env, title)
                await handle.press(args.key, timeout=timeout)
                return Outcome(
                    target=found.target,
                    value=args.key,
                    code=[f"{found.code}.press({py(args.key)})"],
                )
            env.recorder.announce(title, None)
            await page.keyboard.press(args.key)
            return Outcome(value=args.key, code=[f"page.keyboard.press({py(args.key)})"])
        if isinstance(args, SelectArgs):
            found = _locate(page, args, located)
            handle = found.handle
            _announce(env, title)
            if args.value is not None:
                # A value matches an option's value or, failing that, its label (Playwright).
                chosen = await handle.select_option(value=args.value, timeout=timeout)
                option = f"value={py(args.value)}"
            else:
                chosen = await handle.select_option(label=args.label, timeout=timeout)
                option = f"label={py(args.label)}"
            return Outcome(
                target=found.target,
                value=env.mask(args.value or args.label or ""),
                code=[f"{found.code}.select_option({option})"],
                extra={"selected": chosen},
            )
        if isinstance(args, CheckArgs):
            found = _locate(page, args, located)
            handle = found.handle
            _announce(env, title)
            await handle.set_checked(args.checked, timeout=timeout)
            return Outcome(
                target=found.target,
                value="checked" if args.checked else "unchecked",
                code=[f"{found.code}.set_checked({args.checked})"],
            )
        if isinstance(args, WaitForArgs):
            locator = locators.locate(page, args)
            handle = locator
            await locator.first.wait_for(state=args.state, timeout=timeout)
            return Outcome(
                target=locators.describe(args),
                value=args.state,
                code=[f"{locators.code(args)}.first.wait_for(state={py(args.state)})"],
                box_of=locator.first if args.state == "visible" else None,
            )
        if isinstance(args, UploadArgs):
            found = _locate(page, args, located)
            handle = found.handle
            files = [args.file] if isinstance(args.file, str) else list(args.file)
            paths = [await _upload_path(f, env) for f in files]
            await handle.set_input_files(paths, timeout=timeout)
            names = ", ".join(Path(p).name for p in paths)
            # A run's uploaded input is a file of the same name beside the script.
            pairs = zip(files, paths, strict=True)
            shown = [Path(p).name if is_upload_id(f) else p for f, p in pairs]
            return Outcome(
                target=found.target,
                value=env.mask(names),
                code=[f"{found.code}.set_input_files({py(shown)})"],
                box_of=handle,
            )
        if isinstance(args, DownloadArgs):
            locator = locators.locate(page, args.click)
            handle = locator
            _announce(env, title)
            async with page.expect_download(timeout=timeout) as info:
                await locator.click(timeout=timeout)
            download = await info.value
            artifact = await env.recorder.download_artifact(download)
            return Outcome(
                target=locators.describe(args.click),
                value=artifact.name,
                result=f"saved {artifact.name} ({artifact.size} bytes)",
                code=[
                    "with page.expect_download() as download_info:",
                    f"    {locators.code(args.click)}.click()",
                    "download = download_info.value",
                    "download.save_as(os.path.join(DOWNLOAD_DIR, download.suggested_filename))",
                ],
                extra={"artifact_id": artifact.id, "size": artifact.size},
            )
        if isinstance(args, ScrollArgs):
            if args.selector:
                locator = page.locator(args.selector)
                handle = locator
                await locator.scroll_into_view_if_needed(timeout=timeout)
                await _let_scroll_land(page)
                return Outcome(
                    target=args.selector,
                    code=[
                        f"page.locator({py(args.selector)}).scroll_into_view_if_needed()",
                        SCROLL_LANDS,
                    ],
                    box_of=locator,
                )
            dx, dy = {
                "down": (0, args.amount),
                "up": (0, -args.amount),
                "right": (args.amount, 0),
                "left": (-args.amount, 0),
            }[args.direction]
            env.recorder.announce(title, None)
            await page.mouse.wheel(dx, dy)
            await _let_scroll_land(page)
            return Outcome(
                value=f"{args.direction} {args.amount}px",
                code=[f"page.mouse.wheel({dx}, {dy})", SCROLL_LANDS],
            )
        if isinstance(args, AssertTextArgs):
            scope = page.locator(args.selector) if args.selector else page.locator("body")
            locator = scope.get_by_text(args.text).first
            try:
                await locator.wait_for(state="visible", timeout=timeout)
            except PlaywrightTimeout:
                where = f" in {args.selector}" if args.selector else " on the page"
                raise StepFailed(
                    f"text {args.text!r} not found{where} within {timeout} ms"
                ) from None
            scope_code = f"page.locator({py(args.selector)})" if args.selector else "page"
            return Outcome(
                target=args.selector or "page",
                value=env.mask(args.text),
                code=[f'{scope_code}.get_by_text({py(args.text)}).first.wait_for(state="visible")'],
                box_of=locator,
            )
    except StepFailed:
        raise
    except PlaywrightError as exc:
        failure = _failure(handle, exc, timeout)  # counts the matches: not a step of the run
        raise await untraced(lambda: failure) from None
    raise StepFailed(f"unsupported step {verb!r}")


SCROLL_LANDS = "page.wait_for_timeout(100)"


async def _let_scroll_land(page: Page) -> None:
    """A scroll's effects (scroll events, lazy content) come a frame or more later: the step
    waits for them, and so does the generated script (`SCROLL_LANDS`). Not in the trace."""
    await untraced(lambda: page.wait_for_timeout(100))


async def _upload_path(file: str, env: StepEnv) -> str:
    """The local file an upload step gives the page: the run's copy of an uploaded input
    (fetched from the store into the run's spool), or a file inside the upload directory —
    checked again here, after rendering, whatever was validated before."""
    if is_upload_id(file):
        return str(await _input_file(file, env.recorder))
    try:
        return str(server_path(file, env.upload_dir, must_exist=True))
    except PathRefused as exc:
        raise StepFailed(str(exc)) from None


async def _input_file(upload_id: str, recorder: RunRecorder) -> Path:
    sink = recorder.sink
    async with sink.db.session() as session:
        inputs = [
            a
            for a in await list_artifacts(session=session, run_id=sink.run_id)
            if a.kind == ArtifactKind.input and upload_id_of_key(a.key) == upload_id
        ]
    if not inputs:
        raise StepFailed(f"{upload_id} is not a file input of this run")
    artifact = inputs[0]
    target = recorder.spool / "inputs" / upload_id / PurePath(artifact.name).name
    if not target.is_file():

        def fetch() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                for chunk in sink.store.open(artifact.key):
                    out.write(chunk)

        await asyncio.to_thread(fetch)
    return target
