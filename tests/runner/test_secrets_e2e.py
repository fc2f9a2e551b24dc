"""A secret parameter, end to end: typed into the real login page through `glassbox run`, then
searched for in everything the run stored and printed.

Two runs, each with its own data directory so "everything stored" is exactly that run's:
- `plain`: tests/fixtures/login.yaml, the secret only as the whole value of the password field;
- `templated`: tests/fixtures/login_token.yaml, the secret also inside templates next to other
  text: in the start URL's query string (HAR, trace, page URL) and in the username, which the
  server echoes back in the welcome page (response body, DOM snapshots, final HTML, extraction).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import html
import io
import json
import re
import urllib.parse
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from examples.site_server import LOGIN_PASSWORD, SiteServer
from tests.test_cli import Recorded, recorded_runs

SECRET = LOGIN_PASSWORD  # "hunter2-secret": the only password the demo site accepts
MASK = "********"
# variant -> the shared run of tests/fixtures/login.yaml or login_token.yaml
FLOWS = {"plain": "login", "templated": "login_token"}
WELCOME = {"plain": "Welcome, ada", "templated": f"Welcome, ada {MASK}"}


# --- looking for a secret in stored bytes -----------------------------------------------------


def b64_needles(secret: bytes) -> dict[str, bytes]:
    """The base64 text of `secret` wherever it starts in a larger blob (three alignments):
    only the characters fully determined by the secret's own bits, standard and URL-safe."""
    needles: dict[str, bytes] = {}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret)
        start = (offset * 8 + 5) // 6
        end = ((offset + len(secret)) * 8) // 6
        needle = encoded[start:end]
        needles[f"base64@{offset}"] = needle
        needles[f"base64url@{offset}"] = needle.translate(bytes.maketrans(b"+/", b"-_"))
    return needles


def needles_for(secret: str) -> dict[str, bytes]:
    """How a secret shows up in clear, computed independently of the code under test."""
    forms = {
        "raw": secret,
        "url-encoded": urllib.parse.quote(secret, safe=""),
        "url-encoded (path)": urllib.parse.quote(secret),
        "form-encoded": urllib.parse.quote_plus(secret),
        "json": json.dumps(secret)[1:-1],
        "html": html.escape(secret),
    }
    needles = {name: value.encode() for name, value in forms.items()}
    needles.update(b64_needles(secret.encode()))
    return needles


_B64_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


def _b64_decode(text: str) -> bytes | None:
    """`text` decoded when it is a whole base64 token (standard or URL-safe), else None."""
    if text.startswith("data:") and ";base64," in text:
        text = text.split(";base64,", 1)[1]
    if not _B64_TOKEN.fullmatch(text):
        return None
    body = text.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        if "-" in padded or "_" in padded:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _strings(value)


def _json_documents(data: bytes) -> Iterator[Any]:
    """The JSON in `data`: one document (HAR, resources), or JSON lines (trace events)."""
    head = data.lstrip()[:1]
    if head not in (b"{", b"["):
        return
    try:
        yield json.loads(data)
        return
    except ValueError:
        pass
    for line in data.splitlines():
        if line.lstrip()[:1] in (b"{", b"["):
            try:
                yield json.loads(line)
            except ValueError:
                continue


@dataclass
class Scan:
    """Every place (file, zip member, decoded base64 field) where a needle was found."""

    needles: dict[str, bytes]
    leaks: list[str] = field(default_factory=list)
    files: int = 0
    zip_members: int = 0
    json_documents: int = 0
    base64_fields: int = 0
    har_base64_bodies: int = 0

    def bytes(self, where: str, data: bytes, depth: int = 0) -> None:
        self.leaks += [f"{where}: {name}" for name, n in self.needles.items() if n in data]
        if depth > 6:
            return
        if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for info in archive.infolist():
                    self.zip_members += 1
                    inner = f"{where}!{info.filename}"
                    self.bytes(f"{inner} (member name)", info.filename.encode(), depth + 1)
                    self.bytes(inner, archive.read(info), depth + 1)
        elif data.startswith(b"\x1f\x8b"):
            self.bytes(f"{where} (gunzipped)", gzip.decompress(data), depth + 1)
        else:
            for document in _json_documents(data):
                self.json_documents += 1
                self._har_bodies(where, document, depth)
                for text in _strings(document):
                    decoded = _b64_decode(text)
                    if decoded is not None:
                        self.base64_fields += 1
                        self.bytes(f"{where} (base64 field)", decoded, depth + 1)

    def _har_bodies(self, where: str, document: Any, depth: int) -> None:
        if not isinstance(document, dict) or not isinstance(document.get("log"), dict):
            return
        for entry in document["log"].get("entries", []):
            for part in (
                entry.get("response", {}).get("content"),
                entry["request"].get("postData"),
            ):
                if isinstance(part, dict) and part.get("encoding") == "base64":
                    self.har_base64_bodies += 1
                    body = base64.b64decode(part.get("text", ""))
                    self.bytes(f"{where} (base64 body of {entry['request']['url']})", body, depth)

    def tree(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.files += 1
                self.bytes(str(path.relative_to(root)), path.read_bytes())


# --- the runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(site: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Recorded]:
    made = recorded_runs(site, tmp_path_factory, *FLOWS.values())
    return {variant: made[name] for variant, name in FLOWS.items()}


VARIANTS = pytest.mark.parametrize("variant", list(FLOWS))


@VARIANTS
def test_the_secret_was_used(runs: dict[str, Recorded], variant: str) -> None:
    run = runs[variant]
    assert run.result.returncode == 0, run.result.describe()
    record = run.record
    assert record["status"] == "completed", record["failure_reason"]
    # The site only says Welcome for the right password: the secret reached the page.
    assert record["extracted_information"] == {"message": WELCOME[variant]}
    assert record["parameters"] == {"username": "ada", "password": MASK}


@VARIANTS
def test_nothing_stored_or_printed_holds_the_secret(
    runs: dict[str, Recorded], variant: str
) -> None:
    run = runs[variant]
    assert run.result.returncode == 0, run.result.describe()
    scan = Scan(needles_for(SECRET))
    scan.tree(run.data_dir)  # the SQLite db (and -wal/-shm if any), every artifact, the spool
    scan.bytes("stdout", run.result.stdout)
    scan.bytes("stderr", run.result.stderr.encode())
    assert scan.leaks == []
    # The scan looked where the secret would be: the db, the artifacts, inside the zips, the
    # JSON of the HAR and of the trace events.
    stored = {p.name for p in run.data_dir.rglob("*") if p.is_file()}
    assert "glassbox.db" in stored
    assert {a["name"] for a in run.record["artifacts"]} <= stored
    assert scan.zip_members > 10 and scan.json_documents > 20, scan


@VARIANTS
def test_the_secret_is_masked_where_it_was_typed(runs: dict[str, Recorded], variant: str) -> None:
    run = runs[variant]
    # The form post in the HAR: the value is there, masked.
    har = json.loads(run.artifact_bytes("har"))
    posts = [e for e in har["log"]["entries"] if e["request"]["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["request"]["url"].endswith("/login")
    body = posts[0]["request"]["postData"]["text"]
    assert body.endswith(f"&password={MASK}"), body
    assert posts[0]["response"]["status"] == 200
    # The progress on stderr shows the fill, masked.
    assert f"fill #password = {MASK}" in run.result.stderr
    # The generated code reads it from the environment.
    code = run.artifact_bytes("code").decode()
    assert 'PASSWORD = os.environ["PASSWORD"]' in code
    assert ".fill(PASSWORD)" in code


def test_a_secret_in_a_url_is_masked_in_har_and_trace(runs: dict[str, Recorded]) -> None:
    run = runs["templated"]
    har = json.loads(run.artifact_bytes("har"))
    urls = [e["request"]["url"] for e in har["log"]["entries"]]
    assert any(f"login.html?token={MASK}&user=ada" in u for u in urls), urls
    with zipfile.ZipFile(io.BytesIO(run.artifact_bytes("trace"))) as trace:
        assert trace.testzip() is None
        events = b"".join(trace.read(n) for n in trace.namelist() if n.endswith(".trace"))
        network = trace.read("trace.network")
    assert f"token={MASK}".encode() in events  # the navigation in the action list
    assert f"token={MASK}".encode() in network
    # The welcome page echoed the username with the secret in it; the copy stored is masked.
    final_html = run.artifact_bytes("html").decode()
    assert f"Welcome, ada {MASK}" in final_html
    code = run.artifact_bytes("code").decode()
    assert 'login.html?token=" + PASSWORD + "&user=ada"' in code, code
    assert '.fill("ada " + PASSWORD)' in code, code


# --- the scanner finds what it is meant to find ------------------------------------------------


def test_scanner_finds_planted_secrets(tmp_path: Path) -> None:
    secret = "p@ss w/rd&1"
    har = {
        "log": {
            "entries": [
                {
                    "request": {"url": "http://x/", "method": "GET"},
                    "response": {
                        "content": {
                            "encoding": "base64",
                            "text": base64.b64encode(b"xy" + secret.encode() + b"z").decode(),
                        }
                    },
                }
            ]
        }
    }
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("network.har", json.dumps(har))
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("nested.zip", inner.getvalue())
        archive.writestr("query.txt", "GET /?q=" + urllib.parse.quote(secret, safe=""))
    (tmp_path / "trace.zip").write_bytes(outer.getvalue())
    (tmp_path / "note.gz").write_bytes(gzip.compress(f"form: a={secret}".encode()))
    (tmp_path / "events.jsonl").write_text(
        json.dumps({"x": 1}) + "\n" + json.dumps({"b": base64.b64encode(secret.encode()).decode()})
    )
    scan = Scan(needles_for(secret))
    scan.tree(tmp_path)
    found = {leak.split(": ")[0] for leak in scan.leaks}
    assert found == {
        "trace.zip!nested.zip!network.har",  # base64 at an odd offset of a JSON string
        "trace.zip!nested.zip!network.har (base64 body of http://x/)",
        "trace.zip!nested.zip!network.har (base64 field)",
        "trace.zip!query.txt",
        "note.gz (gunzipped)",
        "events.jsonl",
        "events.jsonl (base64 field)",
    }, scan.leaks
    # Near misses and the mask are not leaks.
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "masked.har").write_text(json.dumps({"q": f"p@ss w/r {MASK}", "b": "cEBzcyB3L3I="}))
    quiet = Scan(needles_for(secret))
    quiet.tree(clean)
    assert quiet.leaks == [] and quiet.files == 1 and quiet.base64_fields == 1
