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


# --- locator specs: how the action cache keeps a locator (runner.cache) -------------------------
# A spec is a dict with one of `css`, `role` (+ `name`, `exact`), `text` (+ `exact`) or `testid`,
# and optionally `first` or `nth`.


def spec_of_target(target: Target) -> dict[str, object]:
    if target.selector is not None:
        spec: dict[str, object] = {"css": target.selector}
    elif target.role is not None:
        spec = {"role": target.role, "name": target.name, "exact": target.exact}
    else:
        spec = {"text": target.text or "", "exact": target.exact}
    if target.nth is not None:
        spec["nth"] = target.nth
    return spec


def spec_locator(page: Page, spec: dict[str, object]) -> Locator:
    if "css" in spec:
        locator = page.locator(str(spec["css"]))
    elif "testid" in spec:
        locator = page.get_by_test_id(str(spec["testid"]))
    elif "role" in spec:
        name = spec.get("name")
        locator = page.get_by_role(
            str(spec["role"]),  # type: ignore[arg-type]
            name=str(name) if name is not None else None,
            exact=bool(spec.get("exact")) or None,
        )
    else:
        locator = page.get_by_text(str(spec.get("text", "")), exact=bool(spec.get("exact")) or None)
    if isinstance(spec.get("nth"), int):
        locator = locator.nth(int(spec["nth"]))  # type: ignore[call-overload]
    elif spec.get("first"):
        locator = locator.first
    return locator


def spec_describe(spec: dict[str, object]) -> str:
    if "css" in spec:
        text = str(spec["css"])
    elif "testid" in spec:
        text = f"test id {_q(str(spec['testid']))}"
    elif "role" in spec:
        name = spec.get("name")
        text = f"role={spec['role']}" + (f"[name={_q(str(name))}]" if name else "")
    else:
        text = f"text={_q(str(spec.get('text', '')))}"
    if isinstance(spec.get("nth"), int):
        text += f" >> nth={spec['nth']}"
    return text


def spec_code(spec: dict[str, object]) -> str:
    if "css" in spec:
        expr = f"page.locator({_q(str(spec['css']))})"
    elif "testid" in spec:
        expr = f"page.get_by_test_id({_q(str(spec['testid']))})"
    elif "role" in spec:
        args = [_q(str(spec["role"]))]
        if spec.get("name") is not None:
            args.append(f"name={_q(str(spec['name']))}")
        if spec.get("exact"):
            args.append("exact=True")
        expr = f"page.get_by_role({', '.join(args)})"
    else:
        extra = ", exact=True" if spec.get("exact") else ""
        expr = f"page.get_by_text({_q(str(spec.get('text', '')))}{extra})"
    if isinstance(spec.get("nth"), int):
        expr += f".nth({spec['nth']})"
    elif spec.get("first"):
        expr += ".first"
    return expr
