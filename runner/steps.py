"""Deterministic step verbs, executed through Playwright."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from runner import locators
from runner.codegen import CodeContext, py
from runner.recorder import Box, RunRecorder
from runner.workflow import (
    AssertTextArgs,
    CheckArgs,
    ClickArgs,
    DownloadArgs,
    FillArgs,
    GotoArgs,
    PressArgs,
    ScrollArgs,
    SelectArgs,
    StepArgs,
    Target,
    UploadArgs,
    WaitForArgs,
)


class StepFailed(Exception):
    """A step could not be done; `reason` says why in a user's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Outcome:
    target: str | None = None
    value: str | None = None  # as shown (secrets masked)
    result: str = "ok"
    code: list[str] = field(default_factory=list)
    box: Box | None = None
    box_of: Locator | None = None  # the element to outline, when the page reports no action
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


async def _failure(locator: Locator | None, exc: Exception, timeout_ms: int) -> StepFailed:
    """Turns Playwright's error into a reason a person can act on."""
    message = str(exc).split("\n")[0]
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


def title_of(verb: str, args: StepArgs) -> str:
    if isinstance(args, GotoArgs):
        return f"goto {args.url}"
    if isinstance(args, DownloadArgs):
        return f"download {locators.describe(args.click)}"
    if isinstance(args, Target) and (args.selector or args.role or args.text):
        return f"{verb} {locators.describe(args)}"
    if isinstance(args, PressArgs | ScrollArgs):
        return f"{verb} {getattr(args, 'key', None) or getattr(args, 'direction', '')}"
    return verb


async def run_step(verb: str, args: StepArgs, raw: StepArgs, env: StepEnv) -> Outcome:
    """`args` are rendered; `raw` holds the templates (for code that reuses parameters)."""
    page = env.page
    default_timeout = env.navigation_timeout_ms if verb == "goto" else env.step_timeout_ms
    timeout = args.timeout_ms or default_timeout
    locator: Locator | None = None
    title = env.mask(title_of(verb, args))
    try:
        if isinstance(args, GotoArgs):
            expr = env.code.value_expr(getattr(raw, "url", None), args.url)
            env.recorder.announce(title, None)
            response = await page.goto(args.url, timeout=timeout, wait_until=args.wait_until)
            status = response.status if response else None
            if status is not None and status >= 400:
                result = f"HTTP {status}"
            else:
                result = "ok"
            return Outcome(
                target=env.mask(args.url),
                result=result,
                code=[f"page.goto({expr}, wait_until={py(args.wait_until)})"],
                extra={"http_status": status},
            )
        if isinstance(args, FillArgs):
            locator = locators.locate(page, args)
            _announce(env, title)
            await locator.fill(args.value, timeout=timeout)
            expr = env.code.value_expr(getattr(raw, "value", None), args.value)
            return Outcome(
                target=locators.describe(args),
                value=env.mask(args.value),
                code=[f"{locators.code(args)}.fill({expr})"],
            )
        if isinstance(args, ClickArgs):
            locator = locators.locate(page, args)
            seq = _announce(env, title)
            call = "dblclick" if args.double else "click"
            pages_before = len(page.context.pages)
            await getattr(locator, call)(timeout=timeout, button=args.button)
            acted = await env.recorder.acted(seq)
            if acted is not None and acted.opens_tab and len(page.context.pages) == pages_before:
                # The link or form targets another tab, whose page event can come well after
                # the click returns: wait for it here. A named target may reuse an open tab,
                # so no new tab is not an error.
                try:
                    await page.context.wait_for_event("page", timeout=min(timeout, 5000))
                except PlaywrightTimeout:
                    pass
            button = f"button={py(args.button)}" if args.button != "left" else ""
            return Outcome(
                target=locators.describe(args),
                code=[f"{locators.code(args)}.{call}({button})"],
            )
        if isinstance(args, PressArgs):
            if args.selector or args.role or args.text:
                target = Target(
                    selector=args.selector,
                    role=args.role,
                    name=args.name,
                    text=args.text,
                    exact=args.exact,
                    nth=args.nth,
                )
                locator = locators.locate(page, target)
                _announce(env, title)
                await locator.press(args.key, timeout=timeout)
                return Outcome(
                    target=locators.describe(target),
                    value=args.key,
                    code=[f"{locators.code(target)}.press({py(args.key)})"],
                )
            env.recorder.announce(title, None)
            await page.keyboard.press(args.key)
            return Outcome(value=args.key, code=[f"page.keyboard.press({py(args.key)})"])
        if isinstance(args, SelectArgs):
            locator = locators.locate(page, args)
            _announce(env, title)
            if args.value is not None:
                chosen = await locator.select_option(value=args.value, timeout=timeout)
                option = f"value={py(args.value)}"
            else:
                chosen = await locator.select_option(label=args.label, timeout=timeout)
                option = f"label={py(args.label)}"
            return Outcome(
                target=locators.describe(args),
                value=env.mask(args.value or args.label or ""),
                code=[f"{locators.code(args)}.select_option({option})"],
                extra={"selected": chosen},
            )
        if isinstance(args, CheckArgs):
            locator = locators.locate(page, args)
            _announce(env, title)
            await locator.set_checked(args.checked, timeout=timeout)
            return Outcome(
                target=locators.describe(args),
                value="checked" if args.checked else "unchecked",
                code=[f"{locators.code(args)}.set_checked({args.checked})"],
            )
        if isinstance(args, WaitForArgs):
            locator = locators.locate(page, args)
            await locator.first.wait_for(state=args.state, timeout=timeout)
            return Outcome(
                target=locators.describe(args),
                value=args.state,
                code=[f"{locators.code(args)}.first.wait_for(state={py(args.state)})"],
                box_of=locator.first if args.state == "visible" else None,
            )
        if isinstance(args, UploadArgs):
            locator = locators.locate(page, args)
            files = [args.file] if isinstance(args.file, str) else list(args.file)
            paths = [_upload_path(f, env.upload_dir) for f in files]
            await locator.set_input_files(paths, timeout=timeout)
            names = ", ".join(Path(p).name for p in paths)
            return Outcome(
                target=locators.describe(args),
                value=env.mask(names),
                code=[f"{locators.code(args)}.set_input_files({py([str(p) for p in paths])})"],
                box_of=locator,
            )
        if isinstance(args, DownloadArgs):
            locator = locators.locate(page, args.click)
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
                await locator.scroll_into_view_if_needed(timeout=timeout)
                return Outcome(
                    target=args.selector,
                    code=[f"page.locator({py(args.selector)}).scroll_into_view_if_needed()"],
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
            await page.wait_for_timeout(100)  # let the scroll land before the screenshot
            return Outcome(
                value=f"{args.direction} {args.amount}px",
                code=[f"page.mouse.wheel({dx}, {dy})"],
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
        raise await _failure(locator, exc, timeout) from None
    raise StepFailed(f"unsupported step {verb!r}")


def _upload_path(file: str, base: Path | None) -> str:
    path = Path(file).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise StepFailed(f"file to upload not found: {file}")
    return str(path.resolve())
