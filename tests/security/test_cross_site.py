"""A second origin in a real browser against `glassbox serve` with no API key.

A page on another loopback port tries what a malicious site can do without reading answers:
`fetch(…, {mode: "no-cors", method: "POST"})` with and without a text body, and plain form
POSTs, to cancel, rerun and archive a run and to queue a new one. Nothing may change. The Web
UI on Glassbox's own origin still cancels the same run. WebSockets from another origin and
requests through a rebinding host name are refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.api.conftest import Service, create_run, get_record, running_service, wait_status
from tests.security.hostile_site import HostileSite


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """No worker: runs stay queued, so a cancel would show."""
    with running_service(tmp_path_factory.mktemp("serve-cross-site"), workers=0) as service:
        yield service


def _workflow() -> dict[str, Any]:
    return {"title": "target", "url": "http://127.0.0.1:9/", "goal": "wait"}


def _all_runs(http: httpx.Client) -> list[tuple[str, str]]:
    shown = http.get("/runs", params={"limit": 500}).json()["items"]
    archived = http.get("/runs", params={"limit": 500, "archived": True}).json()["items"]
    return sorted(
        [(r["id"], r["status"]) for r in shown] + [(r["id"], "archived") for r in archived]
    )


async def test_another_origin_cannot_cancel_rerun_archive_or_create(
    browser: Browser, api_only: Service, hostile_site: HostileSite
) -> None:
    with httpx.Client(base_url=api_only.api, timeout=30) as http:
        run = create_run(http, _workflow())
        assert run["status"] == "queued"
        before = _all_runs(http)

        context = await browser.new_context()
        page = await context.new_page()
        sent: list[str] = []
        context.on("request", lambda r: sent.append(f"{r.method} {r.url}"))
        await page.goto(hostile_site.attacker_url(api_only.base_url, run["id"]))
        await page.wait_for_function("document.title === 'done'", timeout=20_000)
        await asyncio.sleep(0.5)
        await context.close()

        # The attacks did reach the service (so the refusals are the service's doing)...
        attacks = [s for s in sent if s.startswith("POST ") and api_only.base_url in s]
        assert len(attacks) >= 9, sent
        # ...and changed nothing.
        assert _all_runs(http) == before
        record = get_record(http, run["id"])
        assert record["status"] == "queued" and not record.get("cancel_requested")

        # The UI on Glassbox's own origin is not hindered: its Cancel button works.
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{api_only.base_url}/runs/{run['id']}")
        await page.locator("#cancel").click(timeout=15_000)
        await context.close()
        assert wait_status(http, run["id"])["status"] == "canceled"


def test_rebinding_host_names_and_foreign_websockets_are_refused(api_only: Service) -> None:
    with httpx.Client(base_url=api_only.api, timeout=30) as http:
        run = create_run(http, _workflow())
        for host in ("attacker.example", "127.0.0.1.nip.io", "localhost.attacker.example"):
            answer = http.get(f"/runs/{run['id']}", headers={"Host": host})
            assert answer.status_code == 400 and "Host" in answer.json()["detail"], host
        port = api_only.base_url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert http.get(f"/runs/{run['id']}", headers={"Host": host}).status_code == 200
        # JSON with the same origin, and without Origin at all (curl, scripts), is served.
        archived = http.post(
            f"/runs/{run['id']}/archive", headers={"Origin": api_only.base_url}, json={}
        )
        assert archived.status_code == 200 and archived.json()["archived"] is True

    live = api_only.base_url.replace("http://", "ws://") + f"/api/v1/runs/{run['id']}/live"
    foreign = "http://attacker.example"
    with pytest.raises(InvalidStatus), ws_connect(live, origin=foreign, open_timeout=10):  # type: ignore[arg-type]
        pass
    with ws_connect(live, origin=api_only.base_url, open_timeout=10) as socket:  # type: ignore[arg-type]
        socket.close()
