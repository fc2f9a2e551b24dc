"""The Web UI: HTML pages (workflows, a workflow with its launch form, the workflow editor, run
history, one run) and their static assets, plus Playwright's own trace viewer, served read-only
from the installed playwright package.

The pages hold no data: their JavaScript calls the REST API (/api/v1), which checks API keys.
"""

from __future__ import annotations

from pathlib import Path

import playwright
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
TRACE_VIEWER_PREFIX = "/trace-viewer"

router = APIRouter(include_in_schema=False)


def trace_viewer_dir() -> Path | None:
    """Playwright's bundled trace viewer (index.html, sw.bundle.js…), or None if not shipped."""
    directory = (
        Path(playwright.__file__).resolve().parent
        / "driver"
        / "package"
        / "lib"
        / "vite"
        / "traceViewer"
    )
    if (directory / "index.html").is_file() and (directory / "sw.bundle.js").is_file():
        return directory
    return None


def _page(name: str) -> FileResponse:
    return FileResponse(
        STATIC / name, media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=307)


@router.get("/workflows")
async def workflows_page() -> FileResponse:
    return _page("workflows.html")


@router.get("/workflows/new")
async def new_workflow_page() -> FileResponse:
    return _page("workflow-edit.html")


@router.get("/workflows/{workflow_id}")
async def workflow_page(workflow_id: str) -> FileResponse:
    return _page("workflow.html")


@router.get("/workflows/{workflow_id}/edit")
async def edit_workflow_page(workflow_id: str) -> FileResponse:
    return _page("workflow-edit.html")


@router.get("/runs")
async def runs_page() -> FileResponse:
    return _page("runs.html")


@router.get("/runs/{run_id}")
async def run_page(run_id: str) -> FileResponse:
    return _page("run.html")


def install(app: FastAPI) -> None:
    """Mounts the pages, /ui/ (assets) and /trace-viewer/ (if Playwright ships it) on `app`."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
    viewer = trace_viewer_dir()
    if viewer is not None:
        app.mount(
            TRACE_VIEWER_PREFIX, StaticFiles(directory=viewer, html=True), name="trace-viewer"
        )
