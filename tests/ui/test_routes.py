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
        for path, script in (
            ("/runs", "runs.js"),
            ("/runs/run_anything", "run.js"),
            ("/workflows", "workflows.js"),
            ("/workflows/new", "workflow-edit.js"),
            ("/workflows/wf_anything", "workflow.js"),
            ("/workflows/wf_anything/edit", "workflow-edit.js"),
        ):
            page = http.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "/ui/app.js" in page.text and f"/ui/{script}" in page.text, path
            assert page.text.count("<header") == 1 and "</html>" in page.text
        # The header marks the section the page belongs to.
        assert 'href="/workflows" aria-current="page"' in http.get("/workflows/new").text
        assert 'href="/runs" aria-current="page"' in http.get("/runs").text
        for asset in (
            "app.css",
            "app.js",
            "runs.js",
            "run.js",
            "workflows.js",
            "workflow.js",
            "workflow-edit.js",
            "favicon.svg",
        ):
            assert http.get(f"/ui/{asset}").status_code == 200, asset
        assert trace_viewer_dir() is not None
        viewer = http.get("/trace-viewer/index.html")
        assert viewer.status_code == 200 and "<html" in viewer.text.lower()
        refused = http.post("/trace-viewer/index.html")  # read-only, and says so
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"


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
