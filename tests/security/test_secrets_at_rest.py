"""Secrets at rest (issue 9, points 1 and 8): secret parameters, `Authorization` / `Cookie`
headers and a proxy's password reach the page, are sealed in the database only while the run
may need them, never appear in clear (nor upper-cased, URL- or base64-encoded) in any row or
artifact, are environment variables in the reproduce snippets; a rerun must be given them
again. The sealing key file is owner-only. Real `glassbox serve`, real Chromium, real database.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import stat
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from runner.secrets import base64_fragments
from storage.db import Database
from storage.models import Base
from storage.sealing import load_key
from tests.api.conftest import (
    Service,
    error_fields,
    postgresql_service,  # noqa: F401 (fixture)
    running_service,
    service,  # noqa: F401 (fixture)
    sqlite_service,  # noqa: F401 (fixture)
    wait_status,
)
from tests.probe_site import ProbeSite

PASSWORD = "pa55-Wrd_zebra-91"
BEARER = "tok-Auth-7e1d-q9x"
COOKIE = "sid=ck-Sess-41f0-plum"
PROXY_PASSWORD = "prx-Pass-55aa-kiwi"
MASK = "********"


@pytest.fixture(scope="module")
def probe() -> Iterator[ProbeSite]:
    with ProbeSite() as site:
        yield site


def echo_workflow(url: str) -> dict[str, Any]:
    """Opens /echo with the password in the query string and on the page (its headers shown),
    then extracts what the page shows."""
    return {
        "title": "Secrets at rest",
        "url": url,
        "timeout_s": 60,
        "parameters": {"password": {"type": "string", "secret": True}},
        "blocks": [
            {
                "label": "echo",
                "type": "action",
                "steps": [{"goto": "{{ url }}echo?pw={{ password }}"}],
            },
            {
                "label": "read",
                "type": "extract",
                "fields": {"headers": {"selector": "#headers", "first": True}},
            },
        ],
    }


def forms(value: str) -> list[str]:
    """The value and the encodings a leak would take."""
    raw = value.encode()
    return [
        value,
        value.upper(),
        value.lower(),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        base64.b64encode(raw).decode().rstrip("="),
        base64.b64encode(b"user:" + raw).decode().rstrip("="),
        *base64_fragments(value),
    ]


def leaks(data: bytes, values: list[str]) -> list[str]:
    found = []
    for value in values:
        for form in forms(value):
            if form.encode() in data:
                found.append(f"{value!r} as {form!r}")
    return found


def all_bytes(data: bytes) -> bytes:
    """The bytes, and for a zip (the trace) every member's bytes too."""
    if not data.startswith(b"PK"):
        return data
    parts = [data]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        parts += [archive.read(info) for info in archive.infolist()]
    return b"\n".join(parts)


async def _dump_database(url: str) -> dict[str, bytes]:
    """Every row of every table, as text."""
    database = Database(url)
    try:
        async with database.session() as session:
            dump = {}
            for table in Base.metadata.tables:
                rows = await session.execute(text(f"SELECT * FROM {table}"))
                dump[table] = "\n".join(repr(tuple(row)) for row in rows).encode()
            return dump
    finally:
        await database.dispose()


async def _sealed(url: str, run_id: str) -> str | None:
    database = Database(url)
    try:
        async with database.session() as session:
            found = await session.execute(
                text("SELECT sealed_secrets FROM runs WHERE id = :id"), {"id": run_id}
            )
            value: str | None = found.scalar_one()
            return value
    finally:
        await database.dispose()


@pytest.mark.parametrize(
    "service", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_secrets_reach_the_page_and_nothing_at_rest_holds_them(
    service: Service,  # noqa: F811 (the fixture imported above)
    probe: ProbeSite,
) -> None:
    since = probe.mark()
    with httpx.Client(base_url=service.api, timeout=30) as client:
        answer = client.post(
            "/runs",
            json={
                "workflow": echo_workflow(probe.url),
                "parameters": {"password": PASSWORD},
                "extra_http_headers": {
                    "Authorization": f"Bearer {BEARER}",
                    "Cookie": COOKIE,
                    "X-Visible": "plain-header-ok",
                },
            },
        )
        assert answer.status_code == 201, answer.text
        run_id = answer.json()["id"]
        assert answer.json()["extra_http_headers"]["Authorization"] == MASK
        record = wait_status(client, run_id)
        assert record["status"] == "completed", record["failure_reason"]

        # The page received every secret.
        hit = probe.wait_for("/echo", since=since)
        assert hit.headers["authorization"] == f"Bearer {BEARER}"
        assert COOKIE in hit.headers["cookie"]
        assert hit.query["pw"] == [PASSWORD]

        secrets = [PASSWORD, BEARER, COOKIE]
        # The API and the snippets: masked, or environment variables.
        shown = {
            path: client.get(path).content
            for path in (
                f"/runs/{run_id}",
                f"/runs/{run_id}/timeline",
                f"/runs/{run_id}/reproduce",
                f"/runs?q={run_id}",
            )
        }
        snippets = client.get(f"/runs/{run_id}/reproduce").json()
        assert set(snippets["secret_env"]) == {"PASSWORD", "HEADER_AUTHORIZATION", "HEADER_COOKIE"}
        assert "plain-header-ok" in snippets["curl"]
        # Every artifact, whatever its kind (trace members one by one).
        for artifact in client.get(f"/runs/{run_id}/artifacts").json()["items"]:
            content = httpx.get(service.base_url + artifact["url"], timeout=30).content
            shown[f"artifact {artifact['kind']} {artifact['name']}"] = all_bytes(content)
        kinds = {name.split()[1] for name in shown if name.startswith("artifact ")}
        assert {"har", "trace", "html", "console", "code"} <= kinds, kinds
        # The HAR did record the header (masked), so the check above is not vacuous.
        har = next(v for k, v in shown.items() if k.startswith("artifact har"))
        assert b"plain-header-ok" in har and MASK.encode() in har

    rows = asyncio.run(_dump_database(service.database_url))
    assert asyncio.run(_sealed(service.database_url, run_id)) is None  # dropped at the end
    found = {
        where: problem
        for where, data in {**shown, **{f"table {t}": v for t, v in rows.items()}}.items()
        if (problem := leaks(data, secrets))
    }
    assert not found, f"secrets in clear: {found}"


def test_a_rerun_asks_for_the_secrets_again(
    sqlite_service: Service,  # noqa: F811 (the fixture imported above)
    probe: ProbeSite,
) -> None:
    with httpx.Client(base_url=sqlite_service.api, timeout=30) as client:
        headers = {"Authorization": f"Bearer {BEARER}", "X-Visible": "plain-header-ok"}
        answer = client.post(
            "/runs",
            json={
                "workflow": echo_workflow(probe.url),
                "parameters": {"password": PASSWORD},
                "extra_http_headers": headers,
            },
        )
        assert answer.status_code == 201, answer.text
        first = answer.json()["id"]
        assert wait_status(client, first)["status"] == "completed"

        bare = client.post(f"/runs/{first}/rerun")
        assert error_fields(bare) == ["parameters.password"]
        message = str(bare.json())
        assert "extra_http_headers.Authorization" in message
        assert PASSWORD not in message and BEARER not in message

        only_password = client.post(
            f"/runs/{first}/rerun", json={"parameters": {"password": PASSWORD}}
        )
        assert error_fields(only_password) == ["extra_http_headers.Authorization"]

        since = probe.mark()
        again = client.post(
            f"/runs/{first}/rerun",
            json={
                "parameters": {"password": PASSWORD},
                "extra_http_headers": {"Authorization": f"Bearer {BEARER}"},
            },
        )
        assert again.status_code == 201, again.text
        assert again.json()["parent_run_id"] == first
        assert wait_status(client, again.json()["id"])["status"] == "completed"
        hit = probe.wait_for("/echo", since=since)
        assert hit.headers["authorization"] == f"Bearer {BEARER}"
        assert hit.headers["x-visible"] == "plain-header-ok"
        assert hit.query["pw"] == [PASSWORD]


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """No worker: runs stay queued, so what a queued run keeps can be read."""
    with running_service(tmp_path_factory.mktemp("serve-api-only"), workers=0) as found:
        yield found


def test_a_queued_run_keeps_its_secrets_sealed_and_drops_them_when_it_ends(
    api_only: Service, probe: ProbeSite
) -> None:
    with httpx.Client(base_url=api_only.api, timeout=30) as client:
        answer = client.post(
            "/runs",
            json={
                "workflow": echo_workflow(probe.url),
                "parameters": {"password": PASSWORD},
                "extra_http_headers": {"Cookie": COOKIE},
                "proxy": {
                    "server": "http://127.0.0.1:9",
                    "username": "proxy-user",
                    "password": PROXY_PASSWORD,
                },
            },
        )
        assert answer.status_code == 201, answer.text
        run_id = answer.json()["id"]
        assert answer.json()["proxy"]["password"] == MASK
        secrets = [PASSWORD, COOKIE, PROXY_PASSWORD]
        sealed = asyncio.run(_sealed(api_only.database_url, run_id))
        assert sealed  # the worker will need them
        rows = asyncio.run(_dump_database(api_only.database_url))
        assert not {t: p for t, v in rows.items() if (p := leaks(v, secrets))}
        # Sealed with the service's key, which is its owner's alone.
        key_file = api_only.data_dir / "secret.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        opened = Fernet(key_file.read_bytes().strip()).decrypt(sealed.encode()).decode()
        assert PROXY_PASSWORD in opened and COOKIE in opened and PASSWORD in opened

        assert client.post(f"/runs/{run_id}/cancel").json()["status"] == "canceled"
        assert asyncio.run(_sealed(api_only.database_url, run_id)) is None


def test_the_key_file_is_created_owner_only_and_a_wider_one_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = load_key(None, tmp_path / "fresh")
    assert stat.S_IMODE((tmp_path / "fresh" / "secret.key").stat().st_mode) == 0o600
    Fernet(made)

    shared = tmp_path / "shared"
    shared.mkdir()
    key = Fernet.generate_key()
    (shared / "secret.key").write_bytes(key)
    (shared / "secret.key").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="storage.sealing"):
        assert load_key(None, shared) == key
    assert stat.S_IMODE((shared / "secret.key").stat().st_mode) == 0o600
    assert "readable by other users (mode 644)" in caplog.text
