"""Workflow definitions: parsing and complete validation before anything runs.

Every error is a `ValidationFailed` whose field is a dotted path into the document, e.g.
`blocks[0].steps[2].click.role`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeAlias

import jsonschema
import yaml
from jinja2 import TemplateError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from runner.sandbox import compiled as compiled_template
from storage.errors import ValidationFailed

MAX_TIMEOUT_S = 24 * 3600
MAX_TEXT_CHARS = 20_000
"""The longest string a workflow may hold anywhere (a goal, a value, a selector, a URL…)."""
MAX_LABEL_CHARS = 200
MAX_DEPTH = 64
"""How deeply a workflow document may nest (JSON Schemas included)."""
MAX_YAML_NODES = 100_000
"""How many values a YAML document may expand to, aliases counted each time they are used."""


_NUMBERS = (int, float, int | None, float | None)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_max_length=MAX_TEXT_CHARS)

    @field_validator("*", mode="before")
    @classmethod
    def _json_number(cls, value: Any, info: ValidationInfo) -> Any:
        """A number as JSON has it (the schema's): lax pydantic would take "5" or true for 5."""
        field = cls.model_fields.get(info.field_name or "")
        if (
            field is not None
            and field.annotation in _NUMBERS
            and isinstance(value, bool | str | bytes)
        ):
            kind = "integer" if field.annotation in _NUMBERS[::2] else "number"
            raise ValueError(f"Input should be a valid {kind}, not a string or a boolean")
        return value


class Target(_Model):
    """Where a step acts: a CSS selector, an ARIA role (with accessible name) or visible text."""

    selector: str | None = None
    role: str | None = None
    name: str | None = None
    text: str | None = None
    exact: StrictBool = False
    nth: int | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Target:
        ways = [w for w in ("selector", "role", "text") if getattr(self, w) is not None]
        if len(ways) != 1:
            raise ValueError("give exactly one of selector, role or text")
        if self.name is not None and self.role is None:
            raise ValueError("name is only valid together with role")
        return self


class GotoArgs(_Model):
    url: str
    timeout_ms: int | None = Field(default=None, gt=0)
    wait_until: Literal["load", "domcontentloaded", "networkidle", "commit"] = "load"


class FillArgs(Target):
    value: str
    timeout_ms: int | None = Field(default=None, gt=0)


class ClickArgs(Target):
    timeout_ms: int | None = Field(default=None, gt=0)
    button: Literal["left", "right", "middle"] = "left"
    double: StrictBool = False


class PressArgs(Target):
    key: str
    timeout_ms: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> PressArgs:  # the target is optional: no target presses on the page
        ways = [w for w in ("selector", "role", "text") if getattr(self, w) is not None]
        if len(ways) > 1:
            raise ValueError("give at most one of selector, role or text")
        return self


class SelectArgs(Target):
    value: str | None = None
    label: str | None = None
    timeout_ms: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _option(self) -> SelectArgs:
        if (self.value is None) == (self.label is None):
            raise ValueError("give exactly one of value or label")
        return self


class CheckArgs(Target):
    checked: StrictBool = True
    timeout_ms: int | None = Field(default=None, gt=0)


class WaitForArgs(Target):
    state: Literal["attached", "detached", "visible", "hidden"] = "visible"
    timeout_ms: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> WaitForArgs:
        ways = [w for w in ("selector", "role", "text") if getattr(self, w) is not None]
        if len(ways) != 1:
            raise ValueError("give exactly one of selector, role or text")
        return self


class UploadArgs(Target):
    file: str | list[str]
    timeout_ms: int | None = Field(default=None, gt=0)


class DownloadArgs(_Model):
    click: Target
    name: str | None = None
    timeout_ms: int | None = Field(default=None, gt=0)


class ScrollArgs(_Model):
    direction: Literal["down", "up", "left", "right"] = "down"
    amount: int = Field(default=600, gt=0)
    selector: str | None = None
    timeout_ms: int | None = Field(default=None, gt=0)


class AssertTextArgs(_Model):
    text: str
    selector: str | None = None
    timeout_ms: int | None = Field(default=None, gt=0)


class GoBackArgs(_Model):
    timeout_ms: int | None = Field(default=None, gt=0)


class WaitArgs(_Model):
    seconds: float = Field(ge=0, le=30)


StepArgs: TypeAlias = (
    GotoArgs
    | FillArgs
    | ClickArgs
    | PressArgs
    | SelectArgs
    | CheckArgs
    | WaitForArgs
    | UploadArgs
    | DownloadArgs
    | ScrollArgs
    | AssertTextArgs
    | GoBackArgs
    | WaitArgs
)

STEP_VERBS: dict[str, type[StepArgs]] = {
    "goto": GotoArgs,
    "fill": FillArgs,
    "click": ClickArgs,
    "press": PressArgs,
    "select": SelectArgs,
    "check": CheckArgs,
    "wait_for": WaitForArgs,
    "upload": UploadArgs,
    "download": DownloadArgs,
    "scroll": ScrollArgs,
    "assert_text": AssertTextArgs,
    "go_back": GoBackArgs,
    "wait": WaitArgs,
}


class Step(BaseModel):
    verb: str
    args: StepArgs


class ExtractField(_Model):
    selector: str
    first: StrictBool = False
    all: StrictBool = False
    as_: Literal["text", "number", "integer", "html"] = Field(default="text", alias="as")
    attribute: str | None = None

    @model_validator(mode="after")
    def _cardinality(self) -> ExtractField:
        if self.first and self.all:
            raise ValueError("first and all exclude each other")
        return self


class ActionBlock(_Model):
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    type: Literal["action"]
    steps: list[Step]


class ExtractBlock(_Model):
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    type: Literal["extract"]
    fields: dict[str, ExtractField] = Field(default_factory=dict)
    instruction: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    timeout_ms: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _something(self) -> ExtractBlock:
        if not self.fields and not self.instruction:
            raise ValueError("give fields (selectors) or an instruction")
        return self


class RunWorkflowBlock(_Model):
    """Starts another saved workflow (a child run, `source: agent`); with `wait` it waits for
    the child to end and its extracted information becomes `runs.<label>` to later blocks."""

    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    type: Literal["run_workflow"]
    workflow_id: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    wait: StrictBool = True


class GoalBlock(_Model):
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    type: Literal["goal"]
    goal: str
    max_steps: int = Field(default=10, gt=0, le=200)
    model: str | None = None


Block: TypeAlias = ActionBlock | ExtractBlock | GoalBlock | RunWorkflowBlock
_MAX_STEPS: TypeAdapter[int] = TypeAdapter(GoalBlock.model_fields["max_steps"].rebuild_annotation())
BLOCK_TYPES: dict[str, type[_Model]] = {
    "action": ActionBlock,
    "extract": ExtractBlock,
    "goal": GoalBlock,
    "run_workflow": RunWorkflowBlock,
}


class FollowUp(_Model):
    """A completed run queues its successor after `after_s`, unless `until` (a Jinja
    expression over `extracted` and the parameters) holds or `max_count` follow-ups were
    made in the chain."""

    after_s: float = Field(default=60, ge=0, le=MAX_TIMEOUT_S * 7)
    max_count: int = Field(default=10, ge=1, le=10_000)
    until: str | None = Field(default=None, max_length=2000)


ConcurrencyPolicy: TypeAlias = Literal["queue", "skip", "cancel_previous"]


class Parameter(_Model):
    type: Literal["string", "number", "integer", "boolean", "file"] = "string"
    default: Any = None
    secret: StrictBool = False
    description: str | None = None
    required: StrictBool | None = None
    # `type: file` only: what an uploaded file may be (".pdf", "application/pdf", "image/*")
    # and how large.
    accept: list[str] | None = None
    max_bytes: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _file_options(self) -> Parameter:
        if self.type != "file":
            for name in ("accept", "max_bytes"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is only valid with type: file")
        elif self.default is not None:
            raise ValueError(
                "a file parameter has no default: each run is given an uploaded file "
                "(a file of the server is a path under GLASSBOX_UPLOAD_DIR in the step itself)"
            )
        elif self.secret:
            raise ValueError("a file parameter cannot be secret")
        return self


class Workflow(_Model):
    title: str = Field(default="Untitled run", max_length=500)
    description: str | None = Field(default=None, max_length=4000)
    url: str | None = None
    timeout_s: int = Field(default=300, gt=0, le=MAX_TIMEOUT_S)
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    extraction_schema: dict[str, Any] | None = None
    model: str | None = None
    cache_key: str | None = None
    concurrency_key: str | None = Field(default=None, max_length=2000)
    concurrency_policy: ConcurrencyPolicy = "queue"
    follow_up: FollowUp | None = None
    blocks: list[Block] = Field(default_factory=list)

    @property
    def secret_names(self) -> set[str]:
        return {name for name, p in self.parameters.items() if p.secret}

    @property
    def file_names(self) -> set[str]:
        return {name for name, p in self.parameters.items() if p.type == "file"}


# --- parsing ----------------------------------------------------------------------------------


def _loc_to_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _raise_from(prefix: str, exc: ValidationError) -> None:
    error = exc.errors()[0]
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    raise ValidationFailed(_loc_to_path(prefix, loc), message) from None


def _parse_step(raw: Any, path: str) -> Step:
    if isinstance(raw, str):
        raise ValidationFailed(path, f"a step is a mapping like {{click: ...}}, got {raw!r}")
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ValidationFailed(path, "a step is a mapping with exactly one verb, e.g. {click: …}")
    verb, args = next(iter(raw.items()))
    model = STEP_VERBS.get(verb) if isinstance(verb, str) else None
    if model is None:
        known = ", ".join(STEP_VERBS)
        shown = str(verb)[:60]
        raise ValidationFailed(f"{path}.{shown}", f"unknown step verb {shown!r} (known: {known})")
    if verb == "goto" and isinstance(args, str):
        args = {"url": args}
    elif verb == "go_back" and args is None:
        args = {}
    elif verb == "wait" and isinstance(args, int | float) and not isinstance(args, bool):
        args = {"seconds": args}
    if not isinstance(args, dict):
        raise ValidationFailed(f"{path}.{verb}", "expected a mapping of arguments")
    try:
        return Step(verb=verb, args=model.model_validate(args))
    except ValidationError as exc:
        _raise_from(f"{path}.{verb}", exc)
        raise  # unreachable


def _parse_block(raw: Any, path: str) -> Block:
    if not isinstance(raw, dict):
        raise ValidationFailed(path, "a block is a mapping with label and type")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in BLOCK_TYPES:
        shown = repr(kind) if isinstance(kind, str | None) else f"a {type(kind).__name__}"
        raise ValidationFailed(
            f"{path}.type", f"unknown block type {shown[:60]} (known: {', '.join(BLOCK_TYPES)})"
        )
    data = dict(raw)
    if kind == "action":
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            raise ValidationFailed(f"{path}.steps", "a non-empty list of steps is required")
        data["steps"] = [_parse_step(s, f"{path}.steps[{i}]") for i, s in enumerate(steps)]
    try:
        return BLOCK_TYPES[kind].model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        _raise_from(path, exc)
        raise


def parse_workflow(raw: Any) -> Workflow:
    """Structure and types. Templates and parameter values are checked by `prepare_run`."""
    if not isinstance(raw, dict):
        raise ValidationFailed("workflow", "a workflow is a mapping (YAML or JSON object)")
    check_document(raw)
    data = dict(raw)
    raw_blocks = data.pop("blocks", None)
    goal = data.pop("goal", None)
    max_steps = data.pop("max_steps", None)
    if max_steps is not None:  # checked beside blocks too (the schema's type), where it is unused
        try:
            _MAX_STEPS.validate_python(max_steps)
        except ValidationError as exc:
            _raise_from("max_steps", exc)
    blocks: list[Block] = []
    if raw_blocks is not None:
        if not isinstance(raw_blocks, list):
            raise ValidationFailed("blocks", "expected a list of blocks")
        blocks = [_parse_block(b, f"blocks[{i}]") for i, b in enumerate(raw_blocks)]
        if goal is not None:
            raise ValidationFailed("goal", "give either blocks or a top-level goal, not both")
    elif goal is not None:
        block: dict[str, Any] = {"label": "goal", "type": "goal", "goal": goal}
        if max_steps is not None:
            block["max_steps"] = max_steps
        blocks = [_parse_block(block, "goal")]
    if not blocks:
        raise ValidationFailed("blocks", "a workflow needs blocks or a goal")
    labels: set[str] = set()
    for i, b in enumerate(blocks):
        if b.label in labels:
            raise ValidationFailed(f"blocks[{i}].label", f"duplicate label {b.label!r}")
        labels.add(b.label)
    try:
        workflow = Workflow.model_validate({**data, "blocks": []})
    except ValidationError as exc:
        _raise_from("", exc)
        raise
    workflow.blocks = blocks
    if workflow.extraction_schema is not None:
        check_schema(workflow.extraction_schema, "extraction_schema")
    for i, b in enumerate(blocks):
        if isinstance(b, ExtractBlock) and b.schema_ is not None:
            check_schema(b.schema_, f"blocks[{i}].schema")
    _check_self_starting(workflow)
    return workflow


def _check_template(template: str, where: str) -> None:
    try:
        compiled_template(template)
    except TemplateError as exc:
        raise ValidationFailed(where, f"template error: {exc}") from None


def _check_self_starting(workflow: Workflow) -> None:
    """The templates of concurrency_key, follow_up.until and run_workflow parameters compile."""
    if workflow.concurrency_key is not None:
        _check_template(workflow.concurrency_key, "concurrency_key")
    if workflow.follow_up is not None and workflow.follow_up.until is not None:
        _check_template("{{ " + workflow.follow_up.until + " }}", "follow_up.until")
    for i, b in enumerate(workflow.blocks):
        if isinstance(b, RunWorkflowBlock):
            for name, value in b.parameters.items():
                if isinstance(value, str):
                    _check_template(value, f"blocks[{i}].parameters.{name}")


def check_schema(schema: dict[str, Any], where: str) -> None:
    """A valid JSON Schema whose `$ref`s all point inside itself (`#…`): nothing is fetched or
    read to resolve them."""
    for path, ref in _refs(schema, where):
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ValidationFailed(
                path, "only references inside the schema (starting with '#') are allowed"
            )
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValidationFailed(where, exc.message[:300]) from None
    except RecursionError:
        raise ValidationFailed(where, "the schema is nested too deeply") from None


def _refs(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in ("$ref", "$dynamicRef"):
                yield where, item
            else:
                yield from _refs(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _refs(item, f"{path}[{i}]")


def check_document(value: Any, path: str = "", depth: int = 0) -> None:
    """Nesting, keys and numbers a workflow may hold: no deeper than MAX_DEPTH, string keys, no
    NaN or infinity, strings that are valid Unicode."""
    if depth > MAX_DEPTH:
        raise ValidationFailed(path or "workflow", f"nested too deeply (limit {MAX_DEPTH} levels)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationFailed(path or "workflow", f"keys are strings, got {key!r:.60}")
            where = f"{path}.{key[:60]}" if path else key[:60]
            _check_text(key, where)
            check_document(item, where, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_document(item, f"{path}[{i}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationFailed(path, f"{value} is not a finite number")
    elif isinstance(value, str):
        _check_text(value, path)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed(where, "not valid Unicode text (a lone surrogate)") from None


class _BoundedLoader(yaml.SafeLoader):
    """Composes the document, then refuses it before construction if it expands to more than
    MAX_YAML_NODES values (aliases counted each time: a "billion laughs" is refused in
    microseconds) or nests deeper than MAX_DEPTH."""

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node, {}, 0)
        return super().construct_document(node)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], depth: int) -> int:
    if depth > MAX_DEPTH:
        raise _TooLarge(f"nested too deeply (limit {MAX_DEPTH} levels)")
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(n, sizes, depth + 1) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            size += _expanded_size(key, sizes, depth + 1) + _expanded_size(value, sizes, depth + 1)
            if size > MAX_YAML_NODES:
                break
    if size > MAX_YAML_NODES:
        raise _TooLarge(f"expands to more than {MAX_YAML_NODES} values (aliases counted)")
    sizes[id(node)] = size
    return size


class _TooLarge(Exception):
    pass


_BRACKET = re.compile(r"[\[\]{}]")


def _flow_depth(text: str) -> int:
    """How deeply brackets nest (quotes not considered: an upper bound of the real depth)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(text):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def load_document(text: str, *, source: str = "workflow") -> Any:
    if text.lstrip().startswith(("{", "[")):
        try:  # JSON, the common machine-written case: C speed, and nesting fails fast
            return json.loads(text)
        except RecursionError:
            raise ValidationFailed(
                source, f"nested too deeply (limit {MAX_DEPTH} levels)"
            ) from None
        except ValueError:
            pass  # YAML in flow style, or broken: YAML says where
    if _flow_depth(text) > 4 * MAX_DEPTH:
        raise ValidationFailed(source, f"nested too deeply (limit {MAX_DEPTH} levels)")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader; YAML ⊃ JSON
    except _TooLarge as exc:
        raise ValidationFailed(source, f"document too large: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        line = mark.line + 1 if mark else None
        raise ValidationFailed(source, f"not valid YAML or JSON{where}", line=line) from None
    except (RecursionError, ValueError) as exc:  # nesting beyond Python's stack, huge ints
        raise ValidationFailed(source, f"not a usable document: {str(exc)[:200]}") from None


def load_workflow_file(path: Path) -> Workflow:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(
            str(path), f"cannot read the workflow file: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise ValidationFailed(str(path), "the workflow file is not UTF-8 text") from None
    return parse_workflow(load_document(text, source=str(path)))


def workflow_to_json(workflow: Workflow) -> dict[str, Any]:
    """The definition as stored: steps back in their one-verb form, secret defaults masked."""
    from runner.secrets import MASK

    data = workflow.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["blocks"] = []
    for block in workflow.blocks:
        raw = block.model_dump(mode="json", by_alias=True, exclude_none=True)
        if isinstance(block, ActionBlock):
            raw["steps"] = [
                {s.verb: s.args.model_dump(mode="json", exclude_none=True, exclude_defaults=True)}
                for s in block.steps
            ]
        data["blocks"].append(raw)
    for name, param in data.get("parameters", {}).items():
        if workflow.parameters[name].secret and param.get("default") is not None:
            param["default"] = MASK
    return data


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=False)
