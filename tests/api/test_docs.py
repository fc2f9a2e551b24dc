"""The OpenAPI docs page loads every asset from Glassbox itself (no CDN) in a real browser."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import async_playwright

from api.app import create_app
from runner.browser import launch
from runner.settings import RunnerSettings
from services.settings import ServiceSettings, Settings
from storage.settings import StorageSettings
from tests.ports import free_port


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    app = create_app(
        Settings.load(
            service=ServiceSettings(port=port, workers=0),
            storage=StorageSettings(data_dir=tmp_path / "data"),
        )
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


async def test_docs_render_offline(api_only: str) -> None:
    requested: list[str] = []
    async with async_playwright() as playwright:
        browser = await launch(playwright, RunnerSettings())
        page = await browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        await page.goto(f"{api_only}/docs")
        await page.get_by_text("Cancel a queued or running run").first.wait_for(timeout=15_000)
        await browser.close()
    await asyncio.sleep(0)
    outside = [url for url in requested if not url.startswith(api_only)]
    assert outside == [], f"the docs page fetched from elsewhere: {outside}"
