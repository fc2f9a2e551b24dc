"""The Jinja2 sandbox templates render in, with a time and a size budget.

Jinja's immutable sandbox keeps templates away from Python internals; this one also keeps them
from stalling or exhausting the process that renders them:

- No other templates: `include`, `import` and `extends` are refused when the template is parsed.
- Time: a Python thread cannot be killed, so the template stops itself. While it renders, a trace
  function watches only the template's own frames and raises once its thread has spent the budget
  of CPU time (every loop iteration executes a traced line); calls, filters and `range` check
  the deadline too.
- Size: no operator, filter, method or global makes a string or list longer than the budget
  (checked before the allocation where the size is known in advance: `*`, `**`, widths,
  `range`); macro and block buffers, `~` and namespaces are bounded the same way; the output is
  counted as it is produced.

Every refusal is a `TemplateBudgetExceeded`, a `TemplateError` the caller turns into a field error.
"""

from __future__ import annotations

import contextvars
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from types import FrameType
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

MAX_POWER_BITS = 4096
"""`a ** b` may make an integer of at most this many bits (about 1200 digits)."""
MAX_RANGE = 100_000
_WIDTH = re.compile(r"%[-+ #0]*(\d+)|\{[^{}]*?:[^{}]*?(\d+)")


class TemplateBudgetExceeded(TemplateError):
    pass


@dataclass(frozen=True)
class TemplateLimits:
    """The budget of one rendering: `timeout_s` of CPU time, strings and output of at most
    `max_bytes` characters."""

    timeout_s: float = 2.0
    max_bytes: int = 1_000_000

    @classmethod
    def of(cls, settings: Any) -> TemplateLimits:
        """From a settings section with `template_timeout_s` and `template_max_bytes`."""
        return cls(timeout_s=settings.template_timeout_s, max_bytes=settings.template_max_bytes)


@dataclass
class _Budget:
    deadline: float
    max_bytes: int
    timeout_s: float

    def check_time(self) -> None:
        if time.thread_time() > self.deadline:
            raise TemplateBudgetExceeded(
                f"took longer than {self.timeout_s:g} s (GLASSBOX_TEMPLATE_TIMEOUT_S)"
            )

    def check_size(self, size: int, what: str = "a value") -> None:
        if size > self.max_bytes:
            raise TemplateBudgetExceeded(
                f"{what} would be longer than {self.max_bytes} characters "
                "(GLASSBOX_TEMPLATE_MAX_BYTES)"
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "template_budget", default=None
)


def _budget() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # rendering outside `render` (never in Glassbox): the defaults
        limits = TemplateLimits()
        budget = _Budget(time.thread_time() + limits.timeout_s, limits.max_bytes, limits.timeout_s)
    return budget


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


def _check_result(value: Any) -> Any:
    _budget().check_size(_size(value))
    return value


def _check_widths(text: str) -> None:
    for match in _WIDTH.finditer(text):
        width = match.group(1) or match.group(2)
        if width and len(width) > 7:
            raise TemplateBudgetExceeded("a format width is too large")
        if width:
            _budget().check_size(int(width), "a formatted value")


SIZED_FILTERS = frozenset({"do_center", "do_indent", "do_wordwrap", "do_truncate", "do_batch"})
"""Filters whose numbers are widths or counts: they make a string or list that long."""
SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _check_args(args: Iterable[Any], *, counts: bool) -> None:
    """Deadline; arguments no longer than the budget; with `counts`, numbers (widths, counts)
    no larger than the budget either."""
    budget = _budget()
    budget.check_time()
    for arg in args:
        if counts and _is_int(arg) and abs(arg) > budget.max_bytes:
            raise TemplateBudgetExceeded(f"the number {_short_int(arg)} is too large here")
        budget.check_size(_size(arg), "an argument")


def _short_int(value: int) -> str:
    return str(value) if value.bit_length() < 64 else f"of {value.bit_length()} bits"


def _bounded(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter or test that checks its arguments before and its result after."""

    offset = 2 if hasattr(func, "jinja_pass_arg") else 1  # the context, then the value

    def call(*args: Any, **kwargs: Any) -> Any:
        _check_args([*args[offset:], *kwargs.values()], counts=func.__name__ in SIZED_FILTERS)
        if func.__name__ == "do_format" and args and isinstance(args[0], str):
            _check_widths(args[0])
        return _check_result(func(*args, **kwargs))

    call.__name__ = func.__name__
    for marker in ("jinja_pass_arg",):
        if hasattr(func, marker):
            setattr(call, marker, getattr(func, marker))
    return call


def _range(*args: int) -> Iterator[int]:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateBudgetExceeded(f"range() of more than {MAX_RANGE} numbers")
    budget = _budget()
    for i, number in enumerate(numbers):
        if i % 1024 == 0:
            budget.check_time()
        yield number


class _Buffer(list[str]):
    """A macro's or block's output as it accumulates: bounded like the template's output."""

    size = 0

    def append(self, item: str) -> None:
        self.size += len(item)
        _budget().check_size(self.size, "a macro's or block's output")
        super().append(item)

    def extend(self, items: Iterable[str]) -> None:
        for item in items:
            self.append(item)


class _Namespace(Namespace):
    def __setitem__(self, name: str, value: Any) -> None:
        _check_result(value)
        super().__setitem__(name, value)


def _joined(items: Iterable[Any]) -> str:
    parts = [str(item) for item in items]
    _budget().check_size(sum(len(p) for p in parts), "a joined string")
    return "".join(parts)


_BUFFER = re.compile(r"^(\s*)(t_\d+) = \[\]$", re.MULTILINE)


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        self.filters = {name: _bounded(f) for name, f in self.filters.items()}
        self.tests = {name: _bounded(t) for name, t in self.tests.items()}  # type: ignore[arg-type]
        self.globals.update(range=_range, namespace=_Namespace)
        self.globals.pop("lipsum", None)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        code = super()._generate(source, name, filename, defer_init)
        code = _BUFFER.sub(r"\1\2 = environment.buffer()", code)
        return code.replace("str_join((", "environment.joined((").replace(
            "markup_join((", "environment.joined(("
        )

    @staticmethod
    def buffer() -> list[str]:
        return _Buffer()

    @staticmethod
    def joined(items: Iterable[Any]) -> str:
        return _joined(items)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.check_time()
        if (
            operator == "**"
            and _is_int(left)
            and _is_int(right)
            and abs(left) > 1
            and right * math.log2(abs(left)) > MAX_POWER_BITS
        ):
            raise TemplateBudgetExceeded(f"{operator}: the result would be too large")
        if operator == "*":
            count, seq = (right, left) if _is_int(right) else (left, right)
            if _is_int(count) and _size(seq) and count > 0:
                budget.check_size(_size(seq) * count, "a repeated value")
            if (
                _is_int(left)
                and _is_int(right)
                and (left.bit_length() + right.bit_length()) > (MAX_POWER_BITS)
            ):
                raise TemplateBudgetExceeded("*: the result would be too large")
        if operator == "+" and _size(left) and _size(right):
            budget.check_size(_size(left) + _size(right), "a concatenated value")
        if operator == "%" and isinstance(left, str):
            _check_widths(left)
        return _check_result(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_widths(owner)
        return super().wrap_str_format(value)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        counts = isinstance(owner, str | list) and name in SIZED_METHODS
        _check_args([*args, *kwargs.values()], counts=counts)
        if isinstance(owner, str):
            if name == "replace" and len(args) >= 2:
                new = str(args[1])
                _budget().check_size(len(owner) + (len(owner) + 1) * len(new), "a replaced string")
            elif name == "join":
                items = list(args[0]) if args else []
                _budget().check_size(
                    len(owner) * len(items) + sum(_size(i) for i in items), "a joined string"
                )
                args = (items, *args[1:])
        return _check_result(super().call(__context, __obj, *args, **kwargs))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


ENV = BudgetedEnvironment()
_REFUSED = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


@lru_cache(maxsize=1024)
def compiled(template: str) -> Template:
    """Compiling is the costly part of rendering; a run renders the same strings again."""
    parsed = ENV.parse(template)
    for node in parsed.find_all(_REFUSED):
        kind = {"Include": "include", "Extends": "extend"}.get(type(node).__name__, "import")
        raise TemplateBudgetExceeded(f"templates cannot {kind} other templates")
    return ENV.from_string(parsed)


def render(template: str, scope: dict[str, Any], limits: TemplateLimits) -> str:
    """`template` rendered within `limits`; raises TemplateError (budget included), or another
    exception the template's own operations raised (ZeroDivisionError, RecursionError…)."""
    # CPU time of this thread, not wall time: a busy machine (or other threads holding the
    # GIL) must not fail a template that does little.
    start = time.thread_time()
    budget = _Budget(start + limits.timeout_s, limits.max_bytes, limits.timeout_s)
    token = _BUDGET.set(budget)
    previous = sys.gettrace()
    sys.settrace(_tracer(budget))
    try:
        size = 0
        parts: list[str] = []
        for chunk in compiled(template).generate(scope):
            size += len(chunk)
            budget.check_size(size, "the rendered text")
            parts.append(chunk)
        return "".join(parts)
    finally:
        sys.settrace(previous)
        _BUDGET.reset(token)


def _tracer(budget: _Budget) -> Callable[[FrameType, str, Any], Any]:
    """Traces only frames of template code ('<template>'), checking the deadline every 256
    lines; other code runs untraced."""
    counter = 0

    def line(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal counter
        counter += 1
        if counter & 255 == 0:
            budget.check_time()
        return line

    def call(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code.co_filename == "<template>":
            budget.check_time()
            return line
        return None

    return call
