"""Parameters and templates: values resolved, typed and rendered before anything runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import ChainableUndefined, TemplateError, UndefinedError
from pydantic import BaseModel

from runner.sandbox import TemplateLimits
from runner.sandbox import compiled as compiled_template
from runner.sandbox import render as render_in_sandbox
from runner.uploads import PathRefused, is_upload_id, server_path
from runner.workflow import (
    MAX_TEXT_CHARS,
    ActionBlock,
    ExtractBlock,
    GoalBlock,
    GotoArgs,
    RunWorkflowBlock,
    UploadArgs,
    Workflow,
)
from storage.errors import ValidationFailed

__all__ = [
    "Inputs",
    "TemplateLimits",
    "check_template",
    "check_templates",
    "render_template",
    "resolve_inputs",
]

MAX_INTEGER = 2**63 - 1

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(name: str, kind: str, value: Any) -> Any:
    where = f"parameters.{name}"
    if kind == "string":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationFailed(where, f"expected a string, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationFailed(where, f"expected a string, got {value!r}")
        text = str(value)
        if len(text) > MAX_TEXT_CHARS:
            raise ValidationFailed(where, f"longer than {MAX_TEXT_CHARS} characters")
        return text
    if kind == "file":
        if not isinstance(value, str) or not is_upload_id(value.strip()):
            raise ValidationFailed(
                where, "expected an uploaded file's id (upl_…, from POST /api/v1/uploads)"
            )
        return value.strip()
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValidationFailed(where, f"expected a boolean, got {_excerpt(value)}")
    if kind == "integer":
        if isinstance(value, bool):
            raise ValidationFailed(where, f"expected an integer, got {value!r}")
        number: int | None = None
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and len(value) <= 40:
            try:
                number = int(value.strip())
            except ValueError:
                pass
        if number is None:
            raise ValidationFailed(where, f"expected an integer, got {_excerpt(value)}")
        if abs(number) > MAX_INTEGER:
            raise ValidationFailed(where, "integer out of range (at most 2**63 - 1)")
        return number
    if kind == "number":
        if isinstance(value, bool):
            raise ValidationFailed(where, f"expected a number, got {value!r}")
        real: float | None = None
        if isinstance(value, int) and abs(value) <= MAX_INTEGER:
            return value
        if isinstance(value, float):
            real = value
        elif isinstance(value, str) and len(value) <= 400:
            try:
                real = float(value.strip())
            except ValueError:
                pass
        if real is None or not math.isfinite(real):
            raise ValidationFailed(where, f"expected a finite number, got {_excerpt(value)}")
        return real
    raise ValidationFailed(where, f"unknown type {kind!r}")


def _excerpt(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
    return text if len(text) <= 60 else text[:60] + "…"


def render_template(
    template: str, scope: dict[str, Any], where: str, limits: TemplateLimits | None = None
) -> str:
    """`template` rendered over `scope` in the budgeted sandbox; any template error is refused
    naming `where`."""
    if "{" not in template:
        return template  # no template syntax: nothing to render (most step arguments)
    try:
        return render_in_sandbox(template, scope, limits or TemplateLimits())
    except UndefinedError as exc:
        raise ValidationFailed(where, f"template error: {exc.message}") from None
    except TemplateError as exc:
        raise ValidationFailed(where, f"template error: {exc}") from None
    except RecursionError:
        raise ValidationFailed(where, "template error: too much recursion") from None
    except MemoryError:
        raise ValidationFailed(where, "template error: out of memory") from None
    except Exception as exc:  # the template's own operations: 1/0, 'a' + 1, 2.0 ** 5000
        message = str(exc)[:200]
        raise ValidationFailed(where, f"template error: {type(exc).__name__}: {message}") from None


def check_template(template: str, where: str) -> None:
    """Refuses a template that does not compile (or reads files), naming `where`."""
    try:
        compiled_template(template)
    except TemplateError as exc:
        raise ValidationFailed(where, f"template error: {exc}") from None


@dataclass
class Inputs:
    """Resolved run inputs. `values` holds secrets in clear: keep it in memory only."""

    values: dict[str, Any]
    secret_names: set[str]
    url: str | None
    allowed_schemes: tuple[str, ...] = ("http", "https")
    masked: dict[str, Any] = field(default_factory=dict)
    # The run's browser options in clear, secret headers and proxy password included (they are
    # stored sealed; see runner.resources.inputs_of). None: the run's stored options.
    extra_http_headers: dict[str, Any] | None = None
    proxy: dict[str, Any] | None = None
    upload_dir: Path | None = None  # GLASSBOX_UPLOAD_DIR: server files `upload` steps may use
    limits: TemplateLimits = field(default_factory=TemplateLimits)
    # What `run_workflow` blocks have learned so far, as `runs.<label>` in templates.
    runs: dict[str, Any] = field(default_factory=dict)

    @property
    def secret_values(self) -> list[str]:
        return [str(self.values[n]) for n in self.secret_names if self.values.get(n) is not None]

    @property
    def scope(self) -> dict[str, Any]:
        return {"runs": self.runs, **self.values, "url": self.url or ""}

    def render(self, template: str, where: str) -> str:
        return render_template(template, self.scope, where, self.limits)

    def render_model(self, model: BaseModel, where: str) -> Any:
        """A copy of a step's arguments with every string field rendered."""
        updates: dict[str, Any] = {}
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, str):
                updates[name] = self.render(value, f"{where}.{name}")
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                updates[name] = [
                    self.render(v, f"{where}.{name}[{i}]") for i, v in enumerate(value)
                ]
            elif isinstance(value, BaseModel):
                updates[name] = self.render_model(value, f"{where}.{name}")
        return model.model_copy(update=updates)

    def check_url(self, url: str, where: str) -> None:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in self.allowed_schemes:
            allowed = ", ".join(self.allowed_schemes)
            raise ValidationFailed(
                where, f"URL scheme {scheme or '(none)'!r} is not allowed (allowed: {allowed})"
            )


def resolve_inputs(
    workflow: Workflow,
    overrides: dict[str, Any],
    *,
    allowed_schemes: tuple[str, ...] = ("http", "https"),
    upload_dir: Path | None = None,
    limits: TemplateLimits | None = None,
) -> Inputs:
    """Types, defaults and required parameters; then every template is rendered once."""
    from runner.secrets import MASK

    values: dict[str, Any] = {}
    url = workflow.url
    for name in overrides:
        if name not in workflow.parameters and name != "url":
            raise ValidationFailed(f"parameters.{name}", "unknown parameter")
    if "url" in overrides and "url" not in workflow.parameters:
        url = str(overrides["url"])
    for name, spec in workflow.parameters.items():
        if name in overrides and overrides[name] is not None:
            values[name] = _coerce(name, spec.type, overrides[name])
        elif spec.default is not None:
            values[name] = _coerce(name, spec.type, spec.default)
        elif spec.required is False:
            values[name] = None
        else:
            raise ValidationFailed(f"parameters.{name}", "required (no default and no value given)")
    secret_names = workflow.secret_names
    inputs = Inputs(
        values=values,
        secret_names=secret_names,
        url=url,
        allowed_schemes=allowed_schemes,
        upload_dir=upload_dir,
        limits=limits or TemplateLimits(),
        masked={k: (MASK if k in secret_names and v is not None else v) for k, v in values.items()},
    )
    if url is not None:
        inputs.check_url(url, "url")
    # A child run's results are not known yet: `runs.<label>…` renders empty while checking.
    inputs.runs = {
        b.label: ChainableUndefined(name=b.label)
        for b in workflow.blocks
        if isinstance(b, RunWorkflowBlock)
    }
    check_templates(workflow, inputs)
    inputs.runs = {}
    return inputs


def check_upload_files(workflow: Workflow, inputs: Inputs, args: UploadArgs, where: str) -> None:
    """An upload step's files, rendered: a file parameter's upload, or a path inside the
    upload directory (its existence is checked when the step runs, on the worker)."""
    files = [args.file] if isinstance(args.file, str) else list(args.file)
    uploads = {inputs.values.get(name) for name in workflow.file_names}
    for i, file in enumerate(files):
        at = where if isinstance(args.file, str) else f"{where}[{i}]"
        if file in uploads:
            continue
        if is_upload_id(file):
            raise ValidationFailed(at, f"{file} is not the value of a file parameter of this run")
        try:
            server_path(file, inputs.upload_dir)
        except PathRefused as exc:
            raise ValidationFailed(at, str(exc)) from None


def check_templates(workflow: Workflow, inputs: Inputs) -> None:
    for i, block in enumerate(workflow.blocks):
        where = f"blocks[{i}]"
        if isinstance(block, ActionBlock):
            for j, step in enumerate(block.steps):
                at = f"{where}.steps[{j}].{step.verb}"
                rendered = inputs.render_model(step.args, at)
                if isinstance(rendered, GotoArgs):
                    inputs.check_url(rendered.url, f"{at}.url")
                elif isinstance(rendered, UploadArgs):
                    check_upload_files(workflow, inputs, rendered, f"{at}.file")
        elif isinstance(block, GoalBlock):
            inputs.render(block.goal, f"{where}.goal")
        elif isinstance(block, ExtractBlock) and block.instruction:
            inputs.render(block.instruction, f"{where}.instruction")
