"""The UI routes on their own: pages, assets, and the trace viewer only when Playwright ships it."""

from __future__ import annotations

from pathlib import Path

import playwright
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ui.routes import install, trace_viewer_dir


def test_pages_assets_and_trace_viewer() -> None:
    app = FastAPI()
    install(app)
    with TestClient(app) as http:
        home = http.get("/", follow_redirects=False)
        assert home.status_code == 307 and home.headers["location"] == "/runs"
        for path in ("/runs", "/runs/run_anything"):
            page = http.get(path)
            assert page.status_code == 200 and "/ui/app.js" in page.text
        for asset in ("app.css", "app.js", "runs.js", "run.js", "favicon.svg"):
            assert http.get(f"/ui/{asset}").status_code == 200, asset
        assert trace_viewer_dir() is not None
        viewer = http.get("/trace-viewer/index.html")
        assert viewer.status_code == 200 and "<html" in viewer.text.lower()
        assert http.post("/trace-viewer/index.html").status_code == 405  # read-only


def test_without_playwrights_viewer_the_mount_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(playwright, "__file__", str(tmp_path / "playwright" / "__init__.py"))
    assert trace_viewer_dir() is None
    app = FastAPI()
    install(app)
    with TestClient(app) as http:
        assert http.get("/trace-viewer/index.html").status_code == 404
        assert http.get("/runs").status_code == 200
