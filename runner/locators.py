"""Targets to Playwright locators, to readable descriptions and to generated code."""

from __future__ import annotations

import json

from playwright.async_api import Locator, Page

from runner.workflow import Target


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def locate(page: Page, target: Target) -> Locator:
    if target.selector is not None:
        locator = page.locator(target.selector)
    elif target.role is not None:
        locator = page.get_by_role(
            target.role,  # type: ignore[arg-type]
            name=target.name,
            exact=target.exact or None,
        )
    else:
        locator = page.get_by_text(target.text or "", exact=target.exact or None)
    if target.nth is not None:
        locator = locator.nth(target.nth)
    return locator


def describe(target: Target) -> str:
    if target.selector is not None:
        text = target.selector
    elif target.role is not None:
        text = f"role={target.role}" + (f"[name={_q(target.name)}]" if target.name else "")
    else:
        text = f"text={_q(target.text or '')}"
    if target.nth is not None:
        text += f" >> nth={target.nth}"
    return text


def code(target: Target) -> str:
    if target.selector is not None:
        expr = f"page.locator({_q(target.selector)})"
    elif target.role is not None:
        args = [_q(target.role)]
        if target.name is not None:
            args.append(f"name={_q(target.name)}")
        if target.exact:
            args.append("exact=True")
        expr = f"page.get_by_role({', '.join(args)})"
    else:
        extra = ", exact=True" if target.exact else ""
        expr = f"page.get_by_text({_q(target.text or '')}{extra})"
    if target.nth is not None:
        expr += f".nth({target.nth})"
    return expr
