"""The Web UI in real Chromium against a real `glassbox serve` (SQLite), on the demo site."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page

from examples.site_server import SiteServer
from tests.api.conftest import (
    Service,
    create_run,
    shop_workflow,
    sqlite_service,
    visit_workflow,
    wait_status,
)

__all__ = ["sqlite_service"]  # the module-scoped `glassbox serve` fixture, used here


@dataclass
class Runs:
    """Runs made once per module, before any page is opened."""

    shop: dict[str, Any]
    visit: dict[str, Any]


@pytest.fixture(scope="module")
def api(sqlite_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sqlite_service.api, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def runs(api: httpx.Client, site: SiteServer) -> Runs:
    shop = create_run(api, shop_workflow(site, title="Find the cheapest lamp"))
    visit = create_run(api, visit_workflow(site, title="Visit the shop"))
    shop = wait_status(api, shop["id"])
    visit = wait_status(api, visit["id"])
    assert shop["status"] == "completed", shop["failure_reason"]
    assert visit["status"] == "completed", visit["failure_reason"]
    return Runs(shop=shop, visit=visit)


@dataclass
class Watched:
    """A page whose requests and console errors are recorded."""

    page: Page
    base_url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    allowed_errors: list[str] = field(default_factory=list)  # substrings of expected ones
    served_by_worker: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        own = urlsplit(self.base_url).netloc
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme in ("http", "https", "ws", "wss")
            and urlsplit(url).netloc != own
            and url not in self.served_by_worker
        ]


@pytest_asyncio.fixture
async def ui(browser: Browser, sqlite_service: Service) -> AsyncIterator[Watched]:
    """A page on the service; at the end: no request left the service, no console error."""
    context: BrowserContext = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(15_000)
    watched = Watched(page=page, base_url=sqlite_service.base_url)
    context.on("request", lambda request: watched.requests.append(request.url))
    # Inside the trace viewer, a DOM snapshot asks for the recorded site's URLs; its service
    # worker answers them from trace.zip, so they never leave the browser.
    context.on(
        "response",
        lambda r: watched.served_by_worker.append(r.url) if r.from_service_worker else None,
    )
    page.on("websocket", lambda ws: watched.requests.append(ws.url))
    page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watched.errors.append(f"page error: {e}"))
    try:
        yield watched
    finally:
        await context.close()
    assert watched.requests, "the page made no request"
    assert watched.foreign_requests() == []
    unexpected = [e for e in watched.errors if not any(a in e for a in watched.allowed_errors)]
    assert unexpected == []
