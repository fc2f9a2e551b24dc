"""The `code` artifact: a standalone Playwright (sync API) script that replays a run.

Each action card carries the line(s) of code for what it did, written with the locator that
worked; this module puts them together with the parameters as constants (secrets read from the
environment) and the extraction, and prints the extracted information as JSON on its last line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from runner.workflow import ExtractBlock

_SINGLE_PARAM = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


def constant_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name).upper()
    return cleaned if cleaned and not cleaned[0].isdigit() else f"P_{cleaned}"


def py(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


@dataclass
class CodeContext:
    """Parameters as the script sees them: constants, and secrets from the environment."""

    values: dict[str, Any]
    secret_names: set[str]
    secret_values: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.secret_values = {
            name: str(self.values[name])
            for name in self.secret_names
            if self.values.get(name) not in (None, "")
        }

    def value_expr(self, template: str | None, rendered: str) -> str:
        """A Python expression for a step value: the parameter's constant where the template is
        just that parameter, secrets spliced in from their environment variables, else a literal."""
        if template is not None:
            match = _SINGLE_PARAM.match(template)
            if match and match.group(1) in self.values:
                name = match.group(1)
                if str(self.values[name]) == rendered:
                    return (
                        constant_name(name)
                        if name in self.secret_names
                        else (
                            f"str({constant_name(name)})"
                            if not isinstance(self.values[name], str)
                            else constant_name(name)
                        )
                    )
        pieces: list[str] = [rendered]
        exprs: list[str] = []
        # Longest secrets first, so a secret containing another is replaced whole.
        for name, secret in sorted(self.secret_values.items(), key=lambda kv: -len(kv[1])):
            new_pieces: list[str] = []
            for piece in pieces:
                if piece.startswith("\0"):
                    new_pieces.append(piece)
                    continue
                parts = piece.split(secret)
                for i, part in enumerate(parts):
                    if i:
                        new_pieces.append(f"\0{constant_name(name)}")
                    new_pieces.append(part)
            pieces = new_pieces
        for piece in pieces:
            if piece.startswith("\0"):
                exprs.append(piece[1:])
            elif piece:
                exprs.append(py(piece))
        if not exprs:
            return '""'
        return " + ".join(exprs)

    def header(self) -> list[str]:
        lines: list[str] = []
        for name, value in self.values.items():
            const = constant_name(name)
            if name in self.secret_names:
                lines.append(f"{const} = os.environ[{py(const)}]  # secret parameter {name!r}")
            else:
                lines.append(f"{const} = {py(value)}")
        return lines


def extract_code(block: ExtractBlock) -> list[str]:
    lines = [f"# block {block.label!r}: extract"]
    for name, spec in block.fields.items():
        call = f"page.locator({py(spec.selector)})"
        conv = {"number": "number", "integer": "integer"}.get(spec.as_, "text")
        getter = (
            f"attribute={py(spec.attribute)}"
            if spec.attribute
            else ("html=True" if spec.as_ == "html" else "")
        )
        args = f"{call}, {getter}" if getter else call
        if spec.all:
            lines.append(f"extracted[{py(name)}] = [{conv}(v) for v in all_values({args})]")
        else:
            lines.append(f"extracted[{py(name)}] = {conv}(first_value({args}))")
    return lines


_PRELUDE = '''\
def launch(playwright):
    """A Playwright-managed Chromium if installed, else CHROMIUM_PATH or the system one."""
    path = os.environ.get("CHROMIUM_PATH") or os.environ.get("GLASSBOX_CHROMIUM")
    if not path and not os.path.exists(playwright.chromium.executable_path):
        for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
            if os.path.exists(candidate):
                path = candidate
                break
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=path or None, headless=HEADLESS, args=args)


def first_value(locator, attribute=None, html=False):
    if locator.count() == 0:
        return None
    element = locator.first
    if attribute:
        return element.get_attribute(attribute)
    return element.inner_html() if html else element.inner_text()


def all_values(locator, attribute=None, html=False):
    if attribute:
        return [element.get_attribute(attribute) for element in locator.all()]
    return locator.all_inner_texts() if not html else [e.inner_html() for e in locator.all()]


def text(value):
    return value.strip() if isinstance(value, str) else value


def number(value):
    if value is None:
        return None
    match = re.search(r"-?\\d[\\d,]*(?:\\.\\d+)?", value.replace("\\u00a0", " "))
    return float(match.group(0).replace(",", "")) if match else None


def integer(value):
    parsed = number(value)
    return int(parsed) if parsed is not None else None
'''


def generate(
    *,
    run_id: str,
    title: str,
    context: CodeContext,
    body: list[str],
    viewport: tuple[int, int],
) -> str:
    """`body`: lines at the indentation of `main()`'s page scope (blocks' actions and extracts)."""
    doc = (
        f'"""Generated by Glassbox from run {run_id}: {title}\n\n'
        "Replays the run with the locators that worked and prints the extracted information\n"
        "as JSON on its last line. Needs `pip install playwright` and a Chromium\n"
        "(`playwright install chromium`, or CHROMIUM_PATH=/path/to/chromium)."
    )
    secret_env = sorted(constant_name(n) for n in context.secret_values)
    if secret_env:
        doc += f"\nSecrets are read from the environment: {', '.join(secret_env)}."
    doc += '\n"""'
    out = [
        "#!/usr/bin/env python3",
        doc.replace("\\", "\\\\"),
        "import json",
        "import os",
        "import re",
        "import sys",
        "",
        "from playwright.sync_api import sync_playwright",
        "",
        *context.header(),
        'HEADLESS = os.environ.get("HEADLESS", "1") != "0"',
        'DOWNLOAD_DIR = os.environ.get("DOWNLOAD_DIR", "downloads")',
        "",
        "",
        _PRELUDE,
        "",
        "def main():",
        "    extracted = {}",
        "    with sync_playwright() as playwright:",
        "        browser = launch(playwright)",
        "        context = browser.new_context(",
        f'            viewport={{"width": {viewport[0]}, "height": {viewport[1]}}},'
        " accept_downloads=True",
        "        )",
        "        page = context.new_page()",
    ]
    out += [f"        {line}" if line else "" for line in body]
    out += [
        "        context.close()",
        "        browser.close()",
        "    print(json.dumps(extracted, ensure_ascii=False))",
        "",
        "",
        'if __name__ == "__main__":',
        "    sys.exit(main())",
        "",
    ]
    return "\n".join(out)
