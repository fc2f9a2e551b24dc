"""What the action cache keeps of a run, and how it is kept: each completed block's resolved
actions (verb, the locator that worked and its fallbacks, the value as a template over the
parameters, the page URL, the lines of generated code around it), recorded by the step engine
as the run goes (`ActionLog`). `runner.replay` plays them back.

Secrets never enter it: a value that contains a secret parameter's value is stored as a template
naming the parameter (`{{ password }}`), and the whole entry is masked once more before it is
stored."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from runner.templating import Inputs
from runner.workflow import Block, Workflow

# The fields of a step's arguments that say where it acts: kept as locator specs instead.
TARGET_FIELDS = frozenset({"selector", "role", "name", "text", "exact", "nth"})
# Verbs that act on an element found from a target (or the agent's [N]): replayed through
# their locator and its fallbacks.
ELEMENT_VERBS = frozenset({"fill", "click", "press", "select", "check", "upload"})

DESCRIBE_ELEMENT = """(el) => {
  const tag = el.tagName.toLowerCase();
  const attr = (n) => el.getAttribute(n);
  const squash = (s) => (s || '').trim().replace(/\\s+/g, ' ');
  const text = squash(el.innerText || '').slice(0, 80);
  let role = attr('role');
  if (!role) {
    if (tag === 'input') {
      const t = (attr('type') || 'text').toLowerCase();
      role = {checkbox: 'checkbox', radio: 'radio', submit: 'button', button: 'button',
              reset: 'button', image: 'button', search: 'searchbox', number: 'spinbutton',
              range: 'slider', text: 'textbox', email: 'textbox', tel: 'textbox',
              url: 'textbox'}[t] || null;
    } else {
      role = {button: 'button', select: 'combobox', textarea: 'textbox',
              a: el.hasAttribute('href') ? 'link' : null}[tag] || null;
    }
  }
  let name = attr('aria-label') || '';
  if (!name && el.labels && el.labels.length) name = squash(el.labels[0].innerText);
  if (!name && (role === 'button' || role === 'link')) name = text || squash(el.value);
  if (!name) name = attr('placeholder') || attr('title') || '';
  const path = [];
  let node = el;
  while (node && node.nodeType === 1 && node !== document.documentElement) {
    if (node.id && /^[A-Za-z][\\w-]*$/.test(node.id)) { path.unshift('#' + node.id); break; }
    let step = node.tagName.toLowerCase();
    const parent = node.parentElement;
    if (parent) {
      const same = [...parent.children].filter((c) => c.tagName === node.tagName);
      if (same.length > 1) step += ':nth-of-type(' + (same.indexOf(node) + 1) + ')';
    }
    path.unshift(step);
    node = parent;
  }
  return {tag, testid: attr('data-testid'), role, name: squash(name).slice(0, 120),
          text: tag === 'input' || tag === 'select' || tag === 'textarea' ? '' : text,
          css: path.join(' > ')};
}"""


# Where the values a model extracted are shown: for each key, the CSS path of the deepest element
# whose whole text is the value (null if a value is not shown as such, or not unique by path).
FIND_VALUES = """(values) => {
  const path = (el) => {
    const steps = [];
    let node = el;
    while (node && node.nodeType === 1 && node !== document.documentElement) {
      if (node.id && /^[A-Za-z][\\w-]*$/.test(node.id)) { steps.unshift('#' + node.id); break; }
      let step = node.tagName.toLowerCase();
      const parent = node.parentElement;
      if (parent) {
        const same = [...parent.children].filter((c) => c.tagName === node.tagName);
        if (same.length > 1) step += ':nth-of-type(' + (same.indexOf(node) + 1) + ')';
      }
      steps.unshift(step);
      node = parent;
    }
    return steps.join(' > ');
  };
  const text = (el) => (el.innerText || '').trim();
  const out = {};
  for (const [key, value] of Object.entries(values)) {
    const want = String(value).trim();
    if (!want) return null;
    const found = [...document.body.querySelectorAll('*')].find(
      (el) => text(el) === want && ![...el.children].some((c) => text(c) === want));
    if (!found) return null;
    const css = path(found);
    if (document.querySelector(css) !== found) return null;
    out[key] = css;
  }
  return out;
}"""


def fallbacks(described: dict[str, Any] | None, primary: dict[str, Any]) -> list[dict[str, Any]]:
    """The other ways to find an element, as the page showed it: test id, role and name,
    text, CSS — without the primary locator itself."""
    if not described:
        return []
    found: list[dict[str, Any]] = []
    if described.get("testid"):
        found.append({"testid": described["testid"]})
    if described.get("role") and described.get("name"):
        found.append({"role": described["role"], "name": described["name"], "first": True})
    if described.get("text"):
        found.append({"text": described["text"], "first": True})
    if described.get("css"):
        found.append({"css": described["css"], "first": True})
    same = {k: v for k, v in primary.items() if k not in ("first", "exact", "nth")}
    return [spec for spec in found if {k: v for k, v in spec.items() if k != "first"} != same]


def fingerprint(block: Block) -> str:
    """Changes when the block's definition does: a cached entry is then not used."""
    data = json.dumps(block.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def cache_key_of(workflow: Workflow, inputs: Inputs) -> str:
    """The workflow's `cache_key` template over the parameters; default the start URL's host."""
    if workflow.cache_key:
        key = inputs.render(workflow.cache_key, "cache_key").strip()
    else:
        key = urlsplit(inputs.url or "").netloc
    return (key or "default")[:200]


def _escape(text: str) -> str | None:
    """A literal as a template that renders to itself (None: it cannot be)."""
    if not any(mark in text for mark in ("{{", "{%", "{#")):
        return text
    if "endraw" in text:
        return None
    return "{% raw %}" + text + "{% endraw %}"


@dataclass
class Templater:
    """Values as templates over the run's parameters, secrets never in clear."""

    values: dict[str, Any]
    secret_names: set[str]

    @property
    def secrets(self) -> list[tuple[str, str]]:
        found = [
            (name, str(self.values[name]))
            for name in self.secret_names
            if self.values.get(name) not in (None, "")
        ]
        return sorted(found, key=lambda kv: -len(kv[1]))

    def from_template(self, template: str) -> str:
        """A workflow's own template, a secret typed into it literally named instead."""
        for name, secret in self.secrets:
            template = template.replace(secret, "{{ " + name + " }}")
        return template

    def from_literal(self, value: str) -> str | None:
        """A value the agent chose: a parameter's whole value becomes that parameter, a secret
        inside it the secret's template; the rest stays literal. None: not storable."""
        for name, param in self.values.items():
            plain = isinstance(param, str | int | float) and not isinstance(param, bool)
            if name not in self.secret_names and plain and value and str(param) == value:
                return "{{ " + name + " }}"
        pieces: list[str] = [value]
        for name, secret in self.secrets:
            split: list[str] = []
            for piece in pieces:
                if piece.startswith("\0"):
                    split.append(piece)
                    continue
                for i, part in enumerate(piece.split(secret)):
                    if i:
                        split.append("\0{{ " + name + " }}")
                    split.append(part)
            pieces = split
        out = []
        for piece in pieces:
            if piece.startswith("\0"):
                out.append(piece[1:])
            elif piece:
                escaped = _escape(piece)
                if escaped is None:
                    return None
                out.append(escaped)
        return "".join(out)


def args_templates(
    args: BaseModel, raw: BaseModel | None, templater: Templater, *, located: bool
) -> dict[str, Any] | None:
    """A step's arguments, every string a template, without its target when it is `located`
    (kept as locator specs). None: not storable."""
    out: dict[str, Any] = {}
    for name in type(args).model_fields:
        if located and name in TARGET_FIELDS:
            continue
        value = getattr(args, name, None)
        template = getattr(raw, name, None) if raw is not None else None
        if isinstance(value, str):
            made = (
                templater.from_template(template)
                if isinstance(template, str)
                else templater.from_literal(value)
            )
            if made is None:
                return None
            out[name] = made
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = (
                [templater.from_template(t) for t in template]
                if isinstance(template, list)
                else [templater.from_literal(v) for v in value]
            )
            if any(item is None for item in items):
                return None
            out[name] = items
        elif isinstance(value, BaseModel):
            out[name] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
            if raw is not None and isinstance(template, BaseModel):
                out[name] = template.model_dump(mode="json", by_alias=True, exclude_none=True)
        elif value is not None:
            out[name] = value
    return out


@dataclass
class ActionLog:
    """The run's resolved actions as they happen, block by block (`blocks`: the completed
    ones), and the code lines between them (`pre` of an action, `post` of a block), so a
    replay writes the same program."""

    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)  # label → replayed / healed / live
    current: dict[str, Any] | None = None
    mark: int = 0
    storable: bool = True

    def begin(self, label: str, kind: str, print_: str, code_len: int) -> None:
        self.current = {"label": label, "type": kind, "fingerprint": print_, "actions": []}
        self.mark = code_len
        self.storable = True

    def pre(self, code: list[str]) -> list[str]:
        return list(code[self.mark :])

    def add(self, entry: dict[str, Any] | None, code_len: int) -> None:
        self.mark = code_len
        if self.current is None:
            return
        if entry is None:
            self.storable = False
        else:
            self.current["actions"].append(entry)

    def end(self, code: list[str], extracted: dict[str, Any], summary: str | None) -> None:
        block, self.current = self.current, None
        if block is None or not self.storable:
            return
        block["post"] = list(code[self.mark :])
        block["extracted"] = extracted
        block["summary"] = summary
        self.blocks[block["label"]] = block

    def abandon(self) -> None:
        self.current = None
