"""Tests of runner.secrets: unit tests, then a real Chromium run whose HAR and trace get masked."""

from __future__ import annotations

import asyncio
import base64
import gzip
import html
import io
import json
import os
import re
import stat
import threading
import urllib.parse
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from runner.secrets import (
    MASK,
    SecretMasker,
    base64_fragments,
    encoded_variants,
)

# Special characters so that URL, form, JSON and HTML encodings all differ from the raw value.
SECRET = "s3cr3t-P@ss w/rd&x=1"
USER = "alice"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def clear_forms(secret: str) -> dict[str, bytes]:
    """How a secret shows up in clear, computed independently of the module under test."""
    forms = {
        "raw": secret,
        "quote": urllib.parse.quote(secret, safe=""),
        "quote_slash": urllib.parse.quote(secret),
        "quote_plus": urllib.parse.quote_plus(secret),
        "encodeURIComponent": urllib.parse.quote(secret, safe="!~*'()"),
        "json": json.dumps(secret)[1:-1],
        "json_unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
        "html": html.escape(secret),
        "html_noquote": html.escape(secret, quote=False),
        "html_39": html.escape(secret).replace("&#x27;", "&#39;"),
    }
    out = {name: value.encode() for name, value in forms.items()}
    out["base64"] = base64.b64encode(secret.encode())
    out["basic_auth"] = base64.b64encode(f"{USER}:{secret}".encode())
    return out


FORMS = clear_forms(SECRET)


def leaks(data: bytes) -> set[str]:
    return {name for name, form in FORMS.items() if form in data}


# ---------------------------------------------------------------------------- unit tests


@pytest.mark.parametrize("name", sorted(n for n in FORMS if not n.startswith(("base64", "basic"))))
def test_mask_text_every_encoding(name: str) -> None:
    masker = SecretMasker([SECRET])
    variant = FORMS[name].decode()
    assert masker.mask_text(f"a={variant};b") == f"a={MASK};b"
    assert (
        masker.mask_bytes(b"\xff\x00" + FORMS[name] + b"\xfe")
        == b"\xff\x00" + MASK.encode() + b"\xfe"
    )
    assert not leaks(masker.mask_bytes(FORMS[name]))


def test_encoded_variants_lists_raw_first_and_all_masked() -> None:
    variants = encoded_variants(SECRET)
    assert variants[0] == SECRET
    assert {FORMS["quote"].decode(), FORMS["quote_plus"].decode(), FORMS["html"].decode()} <= set(
        variants
    )
    masker = SecretMasker([SECRET])
    assert all(masker.mask_text(v) == MASK for v in variants)


@pytest.mark.parametrize(
    "variant",
    [
        "s3cr3t-P%40ss%20w%2frd%26x%3d1",  # lowercase hex
        "s3cr3t-P@ss+w%2Frd&amp;x=1",  # a mix of encodings
        "s3cr3t-P&#64;ss w&#x2F;rd&#38;x&equals;1",  # numeric and named references
        "s3cr3t-P\\u0040ss w\\/rd\\u0026x=1",  # JSON escapes of any character
        "s3cr3t-P\\x40ss w/rd\\x26x=1",  # JS / Python escapes
        "s3cr3t-P%2540ss%2520w%252Frd%2526x%253D1",  # double URL encoding
        "s3cr3t-P@ss w/rd&amp;amp;x=1",  # double HTML escaping
    ],
)
def test_mask_text_mixed_and_nested_encodings(variant: str) -> None:
    assert SecretMasker([SECRET]).mask_text(f"<{variant}>") == f"<{MASK}>"


def test_quotes_backslashes_and_non_ascii_two_layers_deep() -> None:
    secret = "q\"uo\\te'/é😀"
    masker = SecretMasker([secret])
    as_json = json.dumps(secret)  # with the surrounding quotes
    layered = [
        json.dumps(as_json),  # JSON inside JSON
        urllib.parse.quote(as_json, safe=""),  # JSON in a query string
        html.escape(as_json),  # JSON in an HTML attribute
        json.dumps(secret, ensure_ascii=False),
        repr(secret),
    ]
    for text in layered:
        masked = masker.mask_text(text)
        assert MASK in masked, text
        for form in clear_forms(secret).values():
            assert form.decode() not in masked


@pytest.mark.parametrize("secret", ["]^-x", "-abc", "\\start", "^caret", "é-accent", "😀emoji"])
def test_regex_special_first_characters(secret: str) -> None:
    masker = SecretMasker([secret])
    assert masker.mask_text(f"a {secret} b") == f"a {MASK} b"
    assert masker.mask_bytes(f"a {secret} b".encode()) == f"a {MASK} b".encode()
    assert masker.mask_text(f"a {urllib.parse.quote(secret)} b") == f"a {MASK} b"
    assert masker.mask_text("a ]^-y b") == "a ]^-y b"


def test_overlapping_secrets_longest_first() -> None:
    masker = SecretMasker(["abc", "abcdef"])
    assert masker.mask_text("xabcdefx abc") == f"x{MASK}x {MASK}"
    overlapping = SecretMasker(["pass1234", "1234word"])
    masked = overlapping.mask_text("pass1234word and 1234word")
    assert "pass1234" not in masked
    assert "1234word" not in masked
    assert masked.endswith(f"and {MASK}")


def test_empty_values_are_ignored_and_repr_hides_values() -> None:
    empty = SecretMasker(["", ""])
    assert not empty
    assert empty.mask_text("anything") == "anything"
    assert empty.mask_bytes(b"anything") == b"anything"
    assert empty.mask_obj({"a": ["b"]}) == {"a": ["b"]}
    masker = SecretMasker(["", SECRET, SECRET])
    assert masker
    assert len(masker) == 1
    assert SECRET not in repr(masker)


def test_short_secret_is_still_masked() -> None:
    masker = SecretMasker(["42"])
    assert masker.mask_text("pin=42&x=%34%32") == f"pin={MASK}&x={MASK}"


def test_mask_bytes_utf8_secret_inside_binary() -> None:
    secret = "pässwörd"
    masker = SecretMasker([secret])
    blob = b"\x00\xff" + secret.encode() + b"\x80" + urllib.parse.quote(secret).encode()
    assert masker.mask_bytes(blob) == b"\x00\xff" + MASK.encode() + b"\x80" + MASK.encode()


def test_mask_obj_keys_values_nesting_and_numbers() -> None:
    masker = SecretMasker([SECRET, "4821"])
    obj: dict[str, Any] = {
        SECRET: "key",
        "list": [f"pre {SECRET} post", ("tuple", FORMS["quote"].decode())],
        "nested": {"deep": [{"x": FORMS["json"].decode()}]},
        "pin": 4821,
        "time": 14821.5,
        "flag": True,
        "none": None,
    }
    masked = masker.mask_obj(obj)
    assert masked == {
        MASK: "key",
        "list": [f"pre {MASK} post", ("tuple", MASK)],
        "nested": {"deep": [{"x": MASK}]},
        "pin": MASK,
        "time": 14821.5,  # numbers that merely contain the digits are left alone
        "flag": True,
        "none": None,
    }
    assert obj[SECRET] == "key"  # the input is not modified


def test_mask_obj_base64_whole_tokens_decoded_when_asked_fragments_always() -> None:
    masker = SecretMasker([SECRET])
    basic = "Basic " + FORMS["basic_auth"].decode()
    whole = FORMS["base64"].decode()
    data_url = "data:text/plain;base64," + base64.b64encode(b"pw=" + SECRET.encode()).decode()
    jwt_part = base64.urlsafe_b64encode(json.dumps({"p": SECRET}).encode()).decode().rstrip("=")
    obj = {"auth": basic, "blob": whole, "url": data_url, "jwt": f"eyJhbGciOiJub25lIn0.{jwt_part}."}
    # Without decoding, the value's base64 is still cut out of every token (not re-encoded).
    plain = masker.mask_obj(obj)
    for key, value in plain.items():
        assert MASK in value, key
        assert not any(f in value for f in base64_fragments(SECRET)), key
    masked = masker.mask_obj(obj, decode_base64=True)
    assert base64.b64decode(masked["auth"].split()[1]) == f"{USER}:{MASK}".encode()
    assert base64.b64decode(masked["blob"]) == MASK.encode()
    assert base64.b64decode(masked["url"].split(",")[1]) == b"pw=" + MASK.encode()
    part = masked["jwt"].split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) == {"p": MASK}
    assert not masked["jwt"].split(".")[1].endswith("=")  # padding style preserved


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 500])
def test_mask_file_catches_secrets_across_chunk_boundaries(tmp_path: Path, chunk_size: int) -> None:
    masker = SecretMasker([SECRET])
    encoded = FORMS["quote_plus"]
    # Slide the secrets over every alignment with respect to the chunk boundaries.
    for offset in range(chunk_size + 2 * len(encoded) + 2):
        path = tmp_path / f"log-{chunk_size}-{offset}.txt"
        prefix = b"x" * offset
        path.write_bytes(prefix + SECRET.encode() + b"|" + encoded + b"\n" + prefix)
        path.chmod(0o640)
        masker.mask_file(path, chunk_size=chunk_size)
        assert path.read_bytes() == prefix + MASK.encode() + b"|" + MASK.encode() + b"\n" + prefix
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_mask_file_big_file_many_occurrences(tmp_path: Path) -> None:
    masker = SecretMasker([SECRET, "other-secret"])
    line = b"%b filler %b padding other-secret\n" % (SECRET.encode(), FORMS["json"])
    path = tmp_path / "console.log"
    path.write_bytes(line * 50_000)
    masker.mask_file(path, chunk_size=1000)
    masked_line = b"%b filler %b padding %b\n" % (MASK.encode(), MASK.encode(), MASK.encode())
    assert path.read_bytes() == masked_line * 50_000


def test_file_methods_are_noops_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"content")
    before = path.stat().st_mtime_ns
    SecretMasker([]).mask_file(path)
    SecretMasker([]).mask_zip(path)  # not even opened
    assert path.stat().st_mtime_ns == before


def test_mask_har_base64_body_and_size(tmp_path: Path) -> None:
    body = b"\x00\x01" + SECRET.encode() + b"\xff"
    har = {
        "log": {
            "entries": [
                {
                    "request": {
                        "url": f"http://h/?p={FORMS['quote'].decode()}",
                        "headers": [
                            {
                                "name": "Authorization",
                                "value": "Basic " + FORMS["basic_auth"].decode(),
                            }
                        ],
                        "postData": {"mimeType": "text/plain", "text": SECRET},
                    },
                    "response": {
                        "content": {
                            "size": len(body),
                            "encoding": "base64",
                            "text": base64.b64encode(body).decode(),
                        }
                    },
                }
            ]
        }
    }
    path = tmp_path / "run.har"
    path.write_text(json.dumps(har))
    SecretMasker([SECRET]).mask_har(path)
    masked = json.loads(path.read_bytes())
    assert not leaks(path.read_bytes())
    entry = masked["log"]["entries"][0]
    content = entry["response"]["content"]
    decoded = base64.b64decode(content["text"])
    assert decoded == b"\x00\x01" + MASK.encode() + b"\xff"
    assert content["size"] == len(decoded)
    assert entry["request"]["postData"]["text"] == MASK
    auth = entry["request"]["headers"][0]["value"]
    assert base64.b64decode(auth.split()[1]) == f"{USER}:{MASK}".encode()


def test_mask_har_truncated_file_is_masked_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "crashed.har"
    path.write_text('{"log":{"entries":[{"request":{"url":"http://h/?p=' + FORMS["quote"].decode())
    SecretMasker([SECRET]).mask_har(path)
    assert path.read_text() == '{"log":{"entries":[{"request":{"url":"http://h/?p=' + MASK


def _zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def test_mask_zip_members_nested_and_json_lines(tmp_path: Path) -> None:
    untouched_line = b'{"type":"before","startTime":1.5,"params":{"selector":"#user"}}\n'
    trace = (
        untouched_line
        + json.dumps({"type": "log", "message": f'  fill("{SECRET}")'}).encode()
        + b"\n"
        + json.dumps({"type": "x", "b64": FORMS["base64"].decode()}).encode()
        + b"\nnot json "
        + SECRET.encode()
        + b"\n"
    )
    nested = _zip_bytes([("inner/body.txt", b"in zip " + SECRET.encode())])
    members = [
        ("trace.trace", trace),
        ("resources/", b""),
        ("resources/abc.dat", b"username=alice&password=" + FORMS["quote_plus"]),
        ("resources/blob.bin", os.urandom(5000) + SECRET.encode() + os.urandom(5000)),
        ("resources/page.html.gz", gzip.compress(f"<p>{html.escape(SECRET)}</p>".encode())),
        ("nested.zip", nested),
        ("har.har", json.dumps({"log": {"entries": [{"u": SECRET}]}}).encode()),
    ]
    path = tmp_path / "trace.zip"
    path.write_bytes(_zip_bytes(members))
    SecretMasker([SECRET]).mask_zip(path)

    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == [name for name, _ in members]
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist() if not i.is_dir())
        contents = {i.filename: zf.read(i) for i in zf.infolist()}
    for name, data in contents.items():
        assert not leaks(data), name
    lines = contents["trace.trace"].splitlines(keepends=True)
    assert lines[0] == untouched_line  # byte-identical when nothing to mask
    assert json.loads(lines[1]) == {"type": "log", "message": f'  fill("{MASK}")'}
    assert base64.b64decode(json.loads(lines[2])["b64"]) == MASK.encode()
    assert lines[3] == b"not json " + MASK.encode() + b"\n"
    assert gzip.decompress(contents["resources/page.html.gz"]) == f"<p>{MASK}</p>".encode()
    with zipfile.ZipFile(io.BytesIO(contents["nested.zip"])) as inner:
        assert inner.read("inner/body.txt") == b"in zip " + MASK.encode()
    assert json.loads(contents["har.har"]) == {"log": {"entries": [{"u": MASK}]}}


# ---------------------------------------------------------------------------- real Chromium

LOGIN_PAGE = """<!doctype html>
<html><head><title>Login</title></head><body>
<form id="login" method="post" action="/login">
  <input name="username" type="text" id="user">
  <input name="password" type="password" id="pw">
  <button id="submit" type="submit">Log in</button>
</form>
<button id="go" type="button" onclick="go()">Check</button>
<div id="out"></div>
<input id="echo" type="text">
<script>
async function go() {
  const v = document.getElementById('pw').value;
  const u = document.getElementById('user').value;
  console.log('typed secret: ' + v);
  const r = await fetch('/api?token=' + encodeURIComponent(v), {
    method: 'POST',
    headers: {'Content-Type': 'application/json', 'X-Token': v,
              'Authorization': 'Basic ' + btoa(u + ':' + v)},
    body: JSON.stringify({password: v}),
  });
  const j = await r.json();
  document.getElementById('out').textContent = 'server says ' + j.echo;
  document.getElementById('echo').value = j.echo;
  await fetch('/bin?p=' + encodeURIComponent(v));
  document.title = 'checked';
}
</script>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, ctype: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/bin":
            value = urllib.parse.parse_qs(url.query)["p"][0]
            self._send("application/octet-stream", b"\x00\x01\xff" + value.encode() + b"\xfe")
        else:
            self._send("text/html; charset=utf-8", LOGIN_PAGE.encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith("/api"):
            password = json.loads(body)["password"]
            cookie = ("Set-Cookie", f"session={urllib.parse.quote(password)}; Path=/")
            self._send("application/json", json.dumps({"echo": password}).encode(), (cookie,))
        else:
            password = urllib.parse.parse_qs(body.decode())["password"][0]
            page = f'<p>Welcome {html.escape(password)}</p><input value="{html.escape(password)}">'
            self._send("text/html; charset=utf-8", page.encode())


@pytest.fixture
def login_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _har_base64_bodies(har: dict[str, Any]) -> list[bytes]:
    return [
        base64.b64decode(e["response"]["content"]["text"])
        for e in har["log"]["entries"]
        if e["response"]["content"].get("encoding") == "base64"
    ]


async def _check_in_trace_viewer(browser: Browser, trace_path: Path) -> None:
    """Open the masked trace in Playwright's own trace viewer, headless, and look at it.

    ``playwright show-trace --port 0`` only serves the viewer (no window is opened when
    ``PWTEST_UNDER_TEST`` is set); the page is then loaded in the headless browser.
    """
    from playwright._impl._driver import compute_driver_executable, get_driver_env

    node, cli = compute_driver_executable()
    env = get_driver_env() | {"PWTEST_UNDER_TEST": "1"}
    args = ["show-trace", "--host", "127.0.0.1", "--port", "0", str(trace_path)]
    proc = await asyncio.create_subprocess_exec(
        node, cli, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    assert proc.stdout is not None
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "show-trace exited"
            found = re.search(r"Listening on (http://\S+)", line)
            url = found.group(1) if found else None
        page = await browser.new_page()
        page.set_default_timeout(30_000)
        await page.goto(url)
        typed = page.get_by_text(f'Type "{MASK}"')  # the press_sequentially action
        await typed.click()
        await page.get_by_role("tab", name="Network").click()
        await page.get_by_text(f"api?token={MASK}").wait_for()
        await page.get_by_role("tab", name="Console").click()
        await page.get_by_text(f"typed secret: {MASK}").wait_for()
        for frame in page.frames:  # the viewer and its rendered DOM snapshots
            text = await frame.locator("body").inner_text()
            assert not leaks(text.encode()), frame.url
        await page.close()
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
async def test_real_chromium_har_and_trace_are_masked(tmp_path: Path, login_server: str) -> None:
    har_path = tmp_path / "run.har"
    trace_path = tmp_path / "trace.zip"
    console_path = tmp_path / "console.log"
    html_path = tmp_path / "final.html"
    console: list[str] = []

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                record_har_path=str(har_path), record_har_content="embed"
            )
            await context.tracing.start(screenshots=True, snapshots=True, sources=True)
            page = await context.new_page()
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            await page.goto(login_server + "/")
            await page.fill("#user", USER)
            await page.locator("#pw").press_sequentially(SECRET)
            async with page.expect_response(lambda r: "/bin?" in r.url) as binary:
                await page.click("#go")
            await (await binary.value).body()  # the HAR keeps the body once it was read
            await page.wait_for_function("document.title === 'checked'")
            html_path.write_text(await page.content())
            await page.click("#submit")
            await page.wait_for_selector("text=Welcome")
            await context.tracing.stop(path=str(trace_path))
            await context.close()  # writes the HAR
            console_path.write_text("\n".join(console) + "\n")
            members_before = _check_recorded_and_mask(har_path, trace_path, console_path, html_path)
            _check_masked(har_path, trace_path, console_path, html_path, members_before)
            await _check_in_trace_viewer(browser, trace_path)
        finally:
            await browser.close()


def _check_recorded_and_mask(
    har_path: Path, trace_path: Path, console_path: Path, html_path: Path
) -> dict[str, bytes]:
    """Prove the secret really was recorded, in many places and encodings, then mask."""
    har_before = har_path.read_bytes()
    har_obj = json.loads(har_before)
    assert {"raw", "quote", "quote_slash", "quote_plus", "html", "basic_auth"} <= leaks(har_before)
    assert any(SECRET.encode() in body for body in _har_base64_bodies(har_obj))
    members_before = _zip_members(trace_path)
    where = {name: leaks(data) for name, data in members_before.items() if leaks(data)}
    assert "raw" in where["trace.trace"]  # action params, logs, console, DOM snapshots
    assert {"raw", "quote", "basic_auth"} <= where["trace.network"]  # headers, URLs
    resources = {n: found for n, found in where.items() if n.startswith("resources/")}
    assert any("quote_plus" in found for found in resources.values())  # form body
    assert any("html" in found for found in resources.values())  # response HTML
    assert any(n.startswith("src/") for n in where)  # sources=True copies this very file
    assert leaks(console_path.read_bytes())
    assert leaks(html_path.read_bytes())
    entries = len(har_obj["log"]["entries"])

    masker = SecretMasker([SECRET])
    masker.mask_har(har_path)
    masker.mask_zip(trace_path)
    masker.mask_file(console_path)
    masker.mask_file(html_path)
    assert len(json.loads(har_path.read_bytes())["log"]["entries"]) == entries
    return members_before


def _check_masked(
    har_path: Path,
    trace_path: Path,
    console_path: Path,
    html_path: Path,
    members_before: dict[str, bytes],
) -> None:
    # HAR: valid JSON, nothing left, base64 bodies masked too.
    har_after = har_path.read_bytes()
    assert not leaks(har_after)
    assert MASK.encode() in har_after
    bodies = _har_base64_bodies(json.loads(har_after))
    assert bodies
    assert all(not leaks(body) for body in bodies)
    assert any(MASK.encode() in body for body in bodies)

    # Trace zip: intact, same members in the same order, nothing left in any member.
    with zipfile.ZipFile(trace_path) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == list(members_before)
    members_after = _zip_members(trace_path)
    for name, data in members_after.items():
        assert not leaks(data), name
        if name.endswith((".trace", ".network")):
            for line in data.splitlines():
                if line.strip():
                    json.loads(line)
    assert MASK.encode() in members_after["trace.trace"]

    # Console log and final HTML.
    for path in (console_path, html_path):
        data = path.read_bytes()
        assert not leaks(data)
        assert MASK.encode() in data
