"""The hostile-input corpus against a real `glassbox serve` over real HTTP.

Each case is one request an attacker (or a careless script) sends. Every one must be refused
with the 4xx it deserves, never a 500; the refusal names the field (or header) at fault, stays
small whatever the input's size, and nothing stored changes (runs, their statuses, saved
workflows).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.security.conftest import Target

MAX_ANSWER_BYTES = 4096
BIG = 2 * 1024 * 1024  # over the default GLASSBOX_MAX_BODY_BYTES (1 MiB)


@dataclass
class Case:
    id: str
    method: str
    path: str
    status: int
    names: str  # must appear in the answer: the field, header or setting at fault
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    within_s: float = 15.0
    raw: bool = False  # sent with http.client: headers exactly as given, body maybe short
    chunked: bool = False  # the body streamed without Content-Length


def _workflow(**changes: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "title": "hostile",
        "url": "http://127.0.0.1:9/",
        "parameters": {"query": {"type": "string", "default": "lamp"}},
        "blocks": [
            {
                "label": "search",
                "type": "action",
                "steps": [{"goto": "{{ url }}"}, {"fill": {"selector": "#q", "value": "x"}}],
            }
        ],
    }
    definition.update(changes)
    return definition


def _with_value(template: str) -> dict[str, Any]:
    definition = _workflow()
    definition["blocks"][0]["steps"][1]["fill"]["value"] = template
    return definition


def _with_schema(schema: Any) -> dict[str, Any]:
    return _workflow(extraction_schema=schema)


def _raw(body: str) -> bytes:
    return body.encode("utf-8", "surrogatepass")


JSON = {"Content-Type": "application/json"}
VALUE = "workflow.blocks[0].steps[1].fill.value"

TEMPLATES = {
    "division by zero": "{{ 1/0 }}",
    "huge power": "{{ 10**5000 }}",
    "include": "{% include '/etc/passwd' %}",
    "import": "{% import 'x.html' as x %}",
    "from import": "{% from 'x.html' import y %}",
    "extends": "{% extends 'base.html' %}",
    "str plus int": "{{ 'a' + 1 }}",
    "truncate -1": "{{ 'abc'|truncate(-1) }}",
    "recursive macro": "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "gigabyte string": "{{ ('a'*10**9)|length }}",
    "range of a billion": "{{ range(10**9)|list|length }}",
    "nested loops": (
        "{% for i in range(6000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "loop output": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "center a billion": "{{ 'a'|center(10**9) }}",
    "format width": "{{ '%999999999d'|format(1) }}",
    "str.format width": "{{ '{:>999999999}'.format(1) }}",
    "namespace doubling": (
        "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}"
    ),
    "macro doubling": (
        "{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ f('a', 64) }}"
    ),
    "replace blow-up": "{{ ('a'*100000).replace('', 'b'*100000)|length }}",
    "python internals": "{{ query.__class__.__mro__ }}",
    "undefined": "{{ nothing_here }}",
    "syntax": "{{ 'unclosed ",
}


def corpus() -> Iterator[Case]:
    for name, template in TEMPLATES.items():
        yield Case(
            f"template: {name}",
            "POST",
            "/api/v1/runs",
            422,
            VALUE,
            json={"workflow": _with_value(template)},
            within_s=8.0,  # the default budget is 2 s
        )
    yield Case(
        "template in a goal",
        "POST",
        "/api/v1/runs",
        422,
        "workflow.blocks[0].goal",
        json={"workflow": _workflow(blocks=[{"label": "g", "type": "goal", "goal": "{{ 1/0 }}"}])},
    )
    # JSON Schema references outside the document
    for name, schema, where in (
        ("file ref", {"$ref": "file:///etc/passwd"}, "workflow.extraction_schema.$ref"),
        ("http ref", {"$ref": "http://127.0.0.1:9/schema.json"}, "workflow.extraction_schema.$ref"),
        (
            "nested ref",
            {"properties": {"a": {"$ref": "https://example.com/s#/x"}}},
            "workflow.extraction_schema.properties.a.$ref",
        ),
        ("relative ref", {"$ref": "other.json"}, "workflow.extraction_schema.$ref"),
        (
            "dynamic ref",
            {"$dynamicRef": "file:///etc/hosts"},
            "workflow.extraction_schema.$dynamicRef",
        ),
        ("ref not a string", {"$ref": 5}, "workflow.extraction_schema.$ref"),
    ):
        yield Case(
            f"schema: {name}",
            "POST",
            "/api/v1/runs",
            422,
            where,
            json={"workflow": _with_schema(schema)},
        )
    yield Case(
        "block schema: file ref",
        "POST",
        "/api/v1/runs",
        422,
        "workflow.blocks[1].schema.$ref",
        json={
            "workflow": _workflow(
                blocks=[
                    _workflow()["blocks"][0],
                    {
                        "label": "x",
                        "type": "extract",
                        "fields": {"a": {"selector": "h1"}},
                        "schema": {"$ref": "file:///etc/passwd"},
                    },
                ]
            )
        },
    )
    # wrong types and shapes
    for name, changes, where in (
        (
            "block type a list",
            {"blocks": [{"label": "a", "type": ["action"]}]},
            "workflow.blocks[0].type",
        ),
        (
            "block type an object",
            {"blocks": [{"label": "a", "type": {"a": 1}}]},
            "workflow.blocks[0].type",
        ),
        (
            "steps an object",
            {"blocks": [{"label": "a", "type": "action", "steps": {"a": 1}}]},
            "workflow.blocks[0].steps",
        ),
        (
            "verb a number",
            {"blocks": [{"label": "a", "type": "action", "steps": [{"1": {}}]}]},
            "workflow.blocks[0].steps[0]",
        ),
        ("timeout a string", {"timeout_s": "soon"}, "workflow.timeout_s"),
        ("parameters a list", {"parameters": ["a"]}, "parameters"),
        (
            "parameter type unknown",
            {"parameters": {"a": {"type": "file[]"}}},
            "parameters.a.type",
        ),
        ("title 600 characters", {"title": "t" * 600}, "workflow.title"),
        (
            "label 300 characters",
            {"blocks": [{**_workflow()["blocks"][0], "label": "l" * 300}]},
            "workflow.blocks[0].label",
        ),
        ("url 30000 characters", {"url": "http://x/" + "a" * 30000}, "workflow.url"),
    ):
        yield Case(
            f"workflow: {name}",
            "POST",
            "/api/v1/runs",
            422,
            where,
            json={"workflow": _workflow(**changes)},
        )
    selector = _workflow()
    selector["blocks"][0]["steps"][1]["fill"]["selector"] = "#" * 30000
    yield Case(
        "workflow: selector 30000 characters",
        "POST",
        "/api/v1/runs",
        422,
        "fill.selector",
        json={"workflow": selector},
    )
    # numbers JSON does not have, text that is not Unicode, nesting beyond reason
    good = json.dumps({"workflow": _workflow()})
    for name, body, where in (
        ("timeout_s NaN", good[:-1] + ', "timeout_s": NaN}', '"field":"timeout_s"'),
        ("timeout_s Infinity", good[:-1] + ', "timeout_s": Infinity}', '"field":"timeout_s"'),
        ("timeout_s -Infinity", good[:-1] + ', "timeout_s": -Infinity}', '"field":"timeout_s"'),
        ("timeout_s 1e999", good[:-1] + ', "timeout_s": 1e999}', '"field":"timeout_s"'),
        (
            "workflow timeout NaN",
            good.replace('"title"', '"timeout_s": NaN, "title"'),
            '"field":"workflow.timeout_s"',
        ),
        ("lone surrogate in title", good[:-1] + ', "title": "a\\ud800b"}', '"field":"title"'),
        ("lone low surrogate", good[:-1] + ', "title": "\\udc00"}', '"field":"title"'),
        (
            "lone surrogate in a parameter",
            good[:-1] + ', "parameters": {"query": "\\ud800"}}',
            '"field":"parameters.query"',
        ),
        (
            "lone surrogate in a key",
            good[:-1] + ', "parameters": {"\\ud800": "x"}}',
            '"field":"parameters"',
        ),
        ("integer of 5000 digits", good[:-1] + ', "timeout_s": ' + "9" * 5000 + "}", "body"),
        ("arrays 100000 deep", "[" * 100_000 + "]" * 100_000, "body"),
        ("objects 900 deep", '{"a":' * 900 + "1" + "}" * 900, "nested too deeply"),
        ("not JSON", "{", "body"),
    ):
        yield Case(
            f"json: {name}", "POST", "/api/v1/runs", 422, where, content=_raw(body), headers=JSON
        )
    deep = json.dumps({"workflow": _workflow()})[:-2] + ', "extraction_schema": '
    deep += '{"properties": {"a": ' * 900 + "{}" + "}}" * 900 + "}}"
    yield Case(
        "json: schema 900 deep",
        "POST",
        "/api/v1/runs",
        422,
        "nested too deeply",
        content=deep.encode(),
        headers=JSON,
    )
    yield Case(
        "json: not UTF-8",
        "POST",
        "/api/v1/runs",
        422,
        "UTF-8",
        content=b'{"title": "\xff"}',
        headers=JSON,
    )
    # run options
    for name, options, where in (
        ("proxy server a number", {"proxy": {"server": 123}}, "proxy.server"),
        ("proxy a string", {"proxy": "http://p:3128"}, "proxy"),
        ("proxy unknown field", {"proxy": {"server": "http://p:1", "sneaky": 1}}, "proxy.sneaky"),
        (
            "header value with CR LF",
            {"extra_http_headers": {"X-A": "a\r\nX-Injected: 1"}},
            "extra_http_headers",
        ),
        ("header value with NUL", {"extra_http_headers": {"X-A": "a\u0000"}}, "extra_http_headers"),
        (
            "header name with a space",
            {"extra_http_headers": {"Bad Header": "1"}},
            "extra_http_headers",
        ),
        ("header name with a colon", {"extra_http_headers": {"X-A:": "1"}}, "extra_http_headers"),
        ("header name empty", {"extra_http_headers": {"": "1"}}, "extra_http_headers"),
        ("header value a number", {"extra_http_headers": {"X-A": 1}}, "extra_http_headers.X-A"),
        (
            "60 headers",
            {"extra_http_headers": {f"X-{i}": "1" for i in range(60)}},
            "extra_http_headers",
        ),
        (
            "header value 10000 characters",
            {"extra_http_headers": {"X-A": "v" * 10000}},
            "extra_http_headers",
        ),
        ("title 600 characters", {"title": "t" * 600}, "title"),
        ("timeout_s 10**25", {"timeout_s": 10**25}, "timeout_s"),
        ("webhook_url 3000 characters", {"webhook_url": "http://x/" + "a" * 3000}, "webhook_url"),
        ("parameter named 300 characters", {"parameters": {"p" * 300: 1}}, "parameters"),
        ("number parameter inf", {"parameters": {"n": "inf"}}, "parameters.n"),
        ("number parameter nan", {"parameters": {"n": "nan"}}, "parameters.n"),
        ("number parameter 1e999", {"parameters": {"n": "1e999"}}, "parameters.n"),
        ("number parameter -Infinity", {"parameters": {"n": "-Infinity"}}, "parameters.n"),
        ("integer parameter 25 digits", {"parameters": {"i": "9" * 25}}, "parameters.i"),
        ("integer parameter 10**25", {"parameters": {"i": 10**25}}, "parameters.i"),
        ("boolean parameter maybe", {"parameters": {"b": "maybe"}}, "parameters.b"),
        (
            "string parameter 30000 characters",
            {"parameters": {"query": "q" * 30000}},
            "parameters.query",
        ),
        ("string parameter an object", {"parameters": {"query": {"a": 1}}}, "parameters.query"),
    ):
        typed = _workflow(
            parameters={
                "query": {"type": "string", "default": "lamp"},
                "n": {"type": "number", "default": 1},
                "i": {"type": "integer", "default": 1},
                "b": {"type": "boolean", "default": True},
            }
        )
        yield Case(
            f"options: {name}",
            "POST",
            "/api/v1/runs",
            422,
            where,
            json={"workflow": typed, **options},
        )
    # query parameters and headers of reads
    for name, path, headers, status, where in (
        ("after_seq 1e23", "/api/v1/runs/{run}/timeline?after_seq=1e23", {}, 422, "after_seq"),
        (
            "after_seq 25 digits",
            "/api/v1/runs/{run}/timeline?after_seq=" + "9" * 25,
            {},
            422,
            "after_seq",
        ),
        (
            "after_seq 5000 digits",
            "/api/v1/runs/{run}/timeline?after_seq=" + "9" * 5000,
            {},
            422,
            "after_seq",
        ),
        ("after_seq negative", "/api/v1/runs/{run}/timeline?after_seq=-1", {}, 422, "after_seq"),
        (
            "events after_seq 25 digits",
            "/api/v1/runs/{run}/events?after_seq=" + "9" * 25,
            {},
            422,
            "after_seq",
        ),
        (
            "Last-Event-ID 5000 digits",
            "/api/v1/runs/{run}/events",
            {"Last-Event-ID": "9" * 5000},
            422,
            "Last-Event-ID",
        ),
        (
            "Last-Event-ID superscript digits",
            "/api/v1/runs/{run}/events",
            {"Last-Event-ID": "\u00b2\u00b3"},
            422,
            "Last-Event-ID",
        ),
        (
            "Last-Event-ID negative",
            "/api/v1/runs/{run}/events",
            {"Last-Event-ID": "-5"},
            422,
            "Last-Event-ID",
        ),
        (
            "Range 5000 digits",
            "/api/v1/artifacts/{artifact}/content",
            {"Range": "bytes=" + "9" * 5000 + "-"},
            416,
            "Range",
        ),
        (
            "Range superscript digits",
            "/api/v1/artifacts/{artifact}/content",
            {"Range": "bytes=\u00b2-\u00b3"},
            416,
            "Range",
        ),
        (
            "Range of another unit",
            "/api/v1/artifacts/{artifact}/content",
            {"Range": "items=0-1"},
            416,
            "Range",
        ),
        ("list limit 10**6", "/api/v1/runs?limit=1000000", {}, 422, "limit"),
        ("list q 1000 characters", "/api/v1/runs?q=" + "q" * 1000, {}, 422, "q"),
        ("list cursor 1000 characters", "/api/v1/runs?cursor=" + "c" * 1000, {}, 422, "cursor"),
    ):
        yield Case(f"read: {name}", "GET", path, status, where, headers=headers)
    # cross-site and DNS rebinding
    body = json.dumps({"workflow": _workflow()}).encode()
    for name, method, path, headers, status, where in (
        (
            "Host of a rebinding name",
            "GET",
            "/api/v1/runs",
            {"Host": "attacker.example"},
            400,
            "Host",
        ),
        (
            "Host of a rebinding name, POST",
            "POST",
            "/api/v1/runs/{run}/archive",
            {"Host": "rebind.attacker.example:8000"},
            400,
            "Host",
        ),
        ("Host of a rebinding name, UI", "GET", "/runs", {"Host": "attacker.example"}, 400, "Host"),
        (
            "Origin of another site",
            "POST",
            "/api/v1/runs/{run}/archive",
            {"Origin": "http://attacker.example"},
            403,
            "Origin",
        ),
        (
            "Origin of another loopback port",
            "POST",
            "/api/v1/runs/{run}/rerun",
            {"Origin": "http://127.0.0.1:1"},
            403,
            "Origin",
        ),
        ("Origin null", "POST", "/api/v1/runs/{run}/archive", {"Origin": "null"}, 403, "Origin"),
        (
            "Origin on DELETE",
            "DELETE",
            "/api/v1/workflows/{workflow}",
            {"Origin": "http://attacker.example"},
            403,
            "Origin",
        ),
        (
            "text/plain body",
            "POST",
            "/api/v1/runs/{run}/archive",
            {"Content-Type": "text/plain"},
            415,
            "Content-Type",
        ),
        (
            "form body",
            "POST",
            "/api/v1/runs/{run}/rerun",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "Content-Type",
        ),
        (
            "multipart body",
            "POST",
            "/api/v1/runs",
            {"Content-Type": "multipart/form-data; boundary=x"},
            415,
            "Content-Type",
        ),
        (
            "text/plain run",
            "POST",
            "/api/v1/runs",
            {"Content-Type": "text/plain"},
            415,
            "Content-Type",
        ),
        (
            "text/plain saved workflow",
            "PUT",
            "/api/v1/workflows/{workflow}",
            {"Content-Type": "text/plain"},
            415,
            "Content-Type",
        ),
    ):
        yield Case(
            f"cross-site: {name}", method, path, status, where, content=body, headers=headers
        )
    yield Case(
        "size: 2 MiB title",
        "POST",
        "/api/v1/runs",
        413,
        "GLASSBOX_MAX_BODY_BYTES",
        json={"workflow": _workflow(title="t" * BIG)},
    )
    yield Case(
        "size: 2 MiB saved workflow",
        "PUT",
        "/api/v1/workflows/{workflow}",
        413,
        "GLASSBOX_MAX_BODY_BYTES",
        json={"definition": _workflow(title="t" * BIG)},
    )
    yield Case(
        "size: 8 MiB streamed without Content-Length",
        "POST",
        "/api/v1/runs",
        413,
        "GLASSBOX_MAX_BODY_BYTES",
        content=b"[" + b'"xxxxxxxxxxxxxx",' * (512 * 1024) + b"1]",
        headers=JSON,
        chunked=True,
    )
    yield Case(
        "size: declared 50 MB, nothing sent",
        "POST",
        "/api/v1/runs",
        413,
        "GLASSBOX_MAX_BODY_BYTES",
        content=b"",
        headers={**JSON, "Content-Length": str(50 * 1024 * 1024)},
        raw=True,
    )
    yield Case(
        "size: Content-Length not a number",
        "POST",
        "/api/v1/runs",
        400,
        "Invalid HTTP request",  # refused by the HTTP server (uvicorn) before Glassbox sees it
        content=b"{}",
        headers={**JSON, "Content-Length": "\u00b2"},
        raw=True,
    )
    # saved workflows sent as YAML text (the editor's `source`)
    laughs = "title: lol\ngoal: laugh\nx0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, 9):
        laughs += f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]\n"
    block_deep = "title: deep\ngoal: g\nextraction_schema:\n" + "".join(
        "  " * (i + 1) + "a:\n" for i in range(200)
    )
    for name, source, where in (
        ("source: billion laughs", laughs, "expands to more than"),
        ("source: 900 flow levels", "title: t\ngoal: g\nx: " + "[" * 900 + "]" * 900, "nested"),
        ("source: 200 block levels", block_deep, "nested too deeply"),
        ("source: 30000 flow levels", "x: " + "{a: " * 30_000 + "}" * 30_000, "nested"),
    ):
        yield Case(name, "POST", "/api/v1/workflows", 422, where, json={"source": source})
    # saved workflows and duplicates refuse the same way
    yield Case(
        "saved: block type a list",
        "PUT",
        "/api/v1/workflows/{workflow}",
        422,
        "definition.blocks[0].type",
        json={"definition": _workflow(blocks=[{"label": "a", "type": ["x"]}])},
    )
    yield Case(
        "saved: file ref",
        "PUT",
        "/api/v1/workflows/{workflow}",
        422,
        "definition.extraction_schema.$ref",
        json={"definition": _with_schema({"$ref": "file:///etc/passwd"})},
    )
    yield Case(
        "saved: title 600 characters",
        "POST",
        "/api/v1/workflows",
        422,
        "title",
        json={"definition": _workflow(), "title": "t" * 600},
    )
    yield Case(
        "duplicate: parameter 30000 characters",
        "POST",
        "/api/v1/runs/{run}/duplicate",
        422,
        "parameters",
        json={"parameters": {"query": "q" * 30000}},
    )


CASES = list(corpus())


def _stored(api: httpx.Client) -> Any:
    runs = api.get("/runs", params={"limit": 500}).json()["items"]
    archived = api.get("/runs", params={"limit": 500, "archived": True}).json()["items"]
    workflows = api.get("/workflows").json()["items"]
    return (
        sorted((r["id"], r["status"]) for r in runs),
        sorted(r["id"] for r in archived),
        sorted(
            (w["id"], w["updated_at"], json.dumps(w["definition"], sort_keys=True))
            for w in workflows
        ),
    )


@pytest.fixture(scope="module")
def api(target: Target) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=target.service.api, timeout=60) as client:
        yield client


def _send(target: Target, case: Case) -> httpx.Response:
    url = target.service.base_url + target.fill(case.path)
    if case.raw:
        return _send_raw(url, case)
    with httpx.Client(timeout=60) as client:
        # Headers exactly as given: Latin-1, not only ASCII.
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in case.headers.items()]
        if case.chunked:
            assert case.content is not None
            body = case.content
            chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
            try:
                return client.request(case.method, url, content=chunks, headers=raw)
            except httpx.WriteError:  # the service answered and closed before the upload ended
                pytest.fail("the connection closed without an answer")
        return client.request(case.method, url, json=case.json, content=case.content, headers=raw)


def _send_raw(url: str, case: Case) -> httpx.Response:
    """A request whose headers lie (a Content-Length the body does not have)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=60)
    try:
        connection.putrequest(case.method, parts.path, skip_accept_encoding=True)
        for name, value in case.headers.items():
            connection.putheader(name, value)
        connection.endheaders(case.content or b"")
        answer = connection.getresponse()
        return httpx.Response(answer.status, content=answer.read())
    finally:
        connection.close()


def test_the_corpus_is_large_and_its_ids_unique() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_cleanly(case: Case, target: Target, api: httpx.Client) -> None:
    before = _stored(api)
    started = time.monotonic()
    answer = _send(target, case)
    elapsed = time.monotonic() - started
    assert answer.status_code == case.status, answer.text[:2000]
    assert len(answer.content) <= MAX_ANSWER_BYTES, answer.text[:500]
    assert case.names in answer.text, answer.text[:2000]
    if (
        case.status == 422
        and "detail" in answer.json()
        and isinstance(answer.json()["detail"], list)
    ):
        assert all("field" in d for d in answer.json()["detail"]), answer.text
    assert elapsed < case.within_s, f"took {elapsed:.1f} s"
    assert _stored(api) == before
    assert target.service.alive()
