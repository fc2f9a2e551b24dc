"""Deterministic `extract` blocks: selectors to JSON values."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from playwright.async_api import Locator, Page
from referencing import Registry
from referencing.exceptions import Unresolvable

from runner.workflow import ExtractBlock, ExtractField

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_number(text: str | None) -> float | None:
    if text is None:
        return None
    match = _NUMBER.search(text.replace("\u00a0", " "))
    return float(match.group(0).replace(",", "")) if match else None


def _convert(value: str | None, spec: ExtractField) -> Any:
    if spec.as_ == "number":
        return parse_number(value)
    if spec.as_ == "integer":
        number = parse_number(value)
        return int(number) if number is not None else None
    if isinstance(value, str) and spec.as_ == "text":
        return value.strip()
    return value


async def _value(element: Locator, spec: ExtractField) -> str | None:
    if spec.attribute:
        return await element.get_attribute(spec.attribute)
    if spec.as_ == "html":
        return await element.inner_html()
    return await element.inner_text()


async def extract_fields(page: Page, block: ExtractBlock, timeout_ms: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, spec in block.fields.items():
        locator = page.locator(spec.selector)
        if spec.all:
            elements = await locator.all()
            result[name] = [_convert(await _value(e, spec), spec) for e in elements]
        elif await locator.count() == 0:
            result[name] = None
        else:
            result[name] = _convert(await _value(locator.first, spec), spec)
    return result


_NO_RETRIEVAL: Registry[Any] = Registry()
"""References resolve inside the schema only: a registry that retrieves nothing (no file:, no
http: — the default would fetch http references)."""


def schema_errors(data: Any, schema: dict[str, Any]) -> str | None:
    validator = jsonschema.Draft202012Validator(schema, registry=_NO_RETRIEVAL)
    try:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:
        return f"the schema refers to {str(exc.ref)[:200]!r}, which is not inside it"
    except RecursionError:
        return "the schema or the data is nested too deeply"
    if not errors:
        return None
    first = errors[0]
    path = ".".join(str(p) for p in first.absolute_path) or "(root)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {first.message}{more}"
