"""`glassbox run` refuses hostile workflow files with exit status 2 naming the field, quickly and
without a traceback: YAML bombs, nesting, template escapes and runaway templates, numbers that
are not numbers."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.test_cli import GLASSBOX, Result, cli_env

BOMB = """\
title: laughs
url: http://127.0.0.1:9/
goal: laugh
extraction_schema:
  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _flow(value: str, **extra: object) -> str:
    definition = {
        "title": "hostile",
        "url": "http://127.0.0.1:9/",
        "parameters": {"n": {"type": "number", "default": 1}},
        "blocks": [
            {
                "label": "a",
                "type": "action",
                "steps": [{"goto": "{{ url }}"}, {"fill": {"selector": "#q", "value": value}}],
            }
        ],
        **extra,
    }
    return json.dumps(definition)


VALUE = "blocks[0].steps[1].fill.value"
CASES: dict[str, tuple[str, list[str], list[str]]] = {
    "billion laughs": (BOMB, [], ["expands to more than"]),
    "json 900 deep": (
        _flow("x", extraction_schema=json.loads('{"not": ' * 900 + "{}" + "}" * 900)),
        [],
        ["nested too deeply"],
    ),
    "file ref": (_flow("x", extraction_schema={"$ref": "file:///etc/passwd"}), [], ["$ref"]),
    "division by zero": (_flow("{{ 1/0 }}"), [], [VALUE, "division by zero"]),
    "nested loops": (
        _flow("{% for i in range(6000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
        [],
        [VALUE, "GLASSBOX_TEMPLATE_TIMEOUT_S"],
    ),
    "number inf": (_flow("x"), ["--param", "n=inf"], ["parameters.n"]),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Result, float]]:
    root = tmp_path_factory.mktemp("cli-refusals")
    data_dir = root / "data"
    processes = []
    started = time.monotonic()
    for name, (text, args, _) in CASES.items():  # all at once: each is a Python start-up
        path = root / f"{name.replace(' ', '-')}.yaml"
        path.write_text(text, encoding="utf-8")
        argv = ["run", str(path), *args]
        process = subprocess.Popen(
            [*GLASSBOX, *argv],
            env=cli_env(data_dir / name.replace(" ", "-")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        processes.append((name, argv, process))
    results: dict[str, tuple[Result, float]] = {}
    for name, argv, process in processes:
        out, err = process.communicate(timeout=400)
        result = Result(argv, process.returncode, out, err.decode("utf-8", "replace"))
        results[name] = (result, time.monotonic() - started)
    return results


@pytest.mark.timeout(600)  # six CLI starts at once, on a loaded machine
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_file_exits_2_naming_the_field(
    case: str, refusals: dict[str, tuple[Result, float]]
) -> None:
    result, elapsed = refusals[case]
    assert result.returncode == 2, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    for needle in CASES[case][2]:
        assert needle in result.stderr, result.describe()
    assert len(result.stderr) < 4000, result.describe()
    assert elapsed < 400  # a refusal is a Python start-up (seconds; minutes on a loaded host)
