"""The template sandbox on its own: ordinary templates render as before; runaway ones stop
themselves within the time budget, big ones are refused before they are built, and every
refusal names the field."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from runner.templating import Inputs, TemplateLimits
from storage.errors import ValidationFailed

WHERE = "blocks[0].steps[1].fill.value"


def _inputs(timeout_s: float = 0.5, max_bytes: int = 100_000) -> Inputs:
    return Inputs(
        values={"query": "desk lamp", "count": 3, "price": 12.5},
        secret_names=set(),
        url="http://127.0.0.1:8080/shop/",
        limits=TemplateLimits(timeout_s=timeout_s, max_bytes=max_bytes),
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{{ url }}search.html?q={{ query|urlencode }}",
            "http://127.0.0.1:8080/shop/search.html?q=desk%20lamp",
        ),
        ("{{ query|upper }}-{{ count * 2 }}-{{ '%.1f'|format(price) }}", "DESK LAMP-6-12.5"),
        ("{% for i in range(count) %}{{ loop.index }}{% endfor %}", "123"),
        ("{{ 'ab' * 3 }}{{ [1, 2] + [3] }}{{ 2 ** 10 }}", "ababab[1, 2, 3]1024"),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "10",
        ),
        ("{% macro tag(x) %}<{{ x }}>{% endmacro %}{{ tag(query) ~ tag('b') }}", "<desk lamp><b>"),
        (
            "{{ '{} {}'.format(query, count) }} {{ query.replace('desk', 'floor') }}",
            "desk lamp 3 floor lamp",
        ),
        (
            "{{ ', '.join(['a', 'b']) }}|{{ query|truncate(9, True, '') }}|{{ 'x'|center(3) }}",
            "a, b|desk lamp| x ",
        ),
        (
            "{{ '%d'|format(5000000) }} {{ '{}'.format(10**7) }} {{ (2500000 / 1000)|int }}",
            "5000000 10000000 2500",
        ),
    ],
)
def test_ordinary_templates_render_as_before(template: str, expected: str) -> None:
    assert _inputs().render(template, WHERE) == expected
    assert sys.gettrace() is None


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "GLASSBOX_TEMPLATE_TIMEOUT_S",
        ),
        (
            "{% for x in [1] * 90000 %}{% for y in [1] * 90000 %}{% endfor %}{% endfor %}",
            "GLASSBOX_TEMPLATE_TIMEOUT_S",
        ),
        (
            "{% macro f(n) %}{% for i in range(1000) %}{{ f(n) if n else '' }}{% endfor %}"
            "{% endmacro %}{{ f(1) }}",
            "",
        ),
        ("{{ 'a' * 200000 }}", "GLASSBOX_TEMPLATE_MAX_BYTES"),
        ("{% for i in range(100000) %}{{ 'abcdef' }}{% endfor %}", "GLASSBOX_TEMPLATE_MAX_BYTES"),
        ("{{ query|indent(10**6) }}", "too large"),
        ("{{ range(200000)|list }}", "range()"),
    ],
)
def test_runaway_templates_stop_within_the_budget(template: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(ValidationFailed) as refused:
        _inputs(timeout_s=0.5).render(template, WHERE)
    assert time.monotonic() - started < 5.0  # 0.5 s budget; slack for a loaded machine
    assert refused.value.field == WHERE
    assert reason in refused.value.message
    assert sys.gettrace() is None


def test_a_runaway_template_does_not_stall_other_threads() -> None:
    ticks: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        with pytest.raises(ValidationFailed):
            _inputs(timeout_s=1.0).render(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                WHERE,
            )
    finally:
        stop.set()
        ticker.join()
    assert len(ticks) > 20  # the other thread kept running while the template spun
