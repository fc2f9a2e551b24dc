"""The Web UI: HTML pages (workflows, a workflow with its launch form, the workflow editor, run
history, one run) and their static assets, plus Playwright's own trace viewer, served read-only
from the installed playwright package.

The pages hold no data: their JavaScript calls the REST API (/api/v1), which checks API keys.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

import playwright
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PAGES = HERE / "pages"

# Each page: its title, the header link it belongs to, and its script (in /ui/).
PAGE_PARTS = {
    "runs": ("Runs", "runs", "runs.js"),
    "workflows": ("Workflows", "workflows", "workflows.js"),
    "workflow": ("Workflow", "workflows", "workflow.js"),
    "workflow-edit": ("Edit workflow", "workflows", "workflow-edit.js"),
    "run": ("Run", "runs", "run.js"),
}
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


@cache
def _html(name: str) -> str:
    """A page: its body (ui/pages/NAME.html) in the shell every page shares (ui/shell.html)."""
    title, section, script = PAGE_PARTS[name]
    current = ' aria-current="page"'
    return Template((HERE / "shell.html").read_text(encoding="utf-8")).substitute(
        title=title,
        body=(PAGES / f"{name}.html").read_text(encoding="utf-8").rstrip("\n"),
        script=script,
        workflows_current=current if section == "workflows" else "",
        runs_current=current if section == "runs" else "",
    )


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(_html(name), headers={"Cache-Control": "no-cache"})


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=307)


@router.get("/workflows")
async def workflows_page() -> HTMLResponse:
    return _page("workflows")


@router.get("/workflows/new")
async def new_workflow_page() -> HTMLResponse:
    return _page("workflow-edit")


@router.get("/workflows/{workflow_id}")
async def workflow_page(workflow_id: str) -> HTMLResponse:
    return _page("workflow")


@router.get("/workflows/{workflow_id}/edit")
async def edit_workflow_page(workflow_id: str) -> HTMLResponse:
    return _page("workflow-edit")


@router.get("/runs")
async def runs_page() -> HTMLResponse:
    return _page("runs")


@router.get("/runs/{run_id}")
async def run_page(run_id: str) -> HTMLResponse:
    return _page("run")


def install(app: FastAPI) -> None:
    """Mounts the pages, /ui/ (assets) and /trace-viewer/ (if Playwright ships it) on `app`."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
    viewer = trace_viewer_dir()
    if viewer is not None:
        app.mount(
            TRACE_VIEWER_PREFIX, StaticFiles(directory=viewer, html=True), name="trace-viewer"
        )
