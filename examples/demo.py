"""`make run`: serve the demo shop locally, run the bundled example workflow against it, save it
as a workflow (pointed at this demo shop) to start again from the web UI, then serve the API and
the UI with that run in it (Ctrl-C stops). `--no-serve` stops after the run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

import yaml

from api.cli import main as glassbox
from examples.site_server import SiteServer
from services.backends import open_services
from services.settings import Settings
from services.workflows import list_workflows, load_workflow_file, replace_workflow, save_workflow
from storage.errors import ConfigurationError
from storage.settings import StorageSettings

EXAMPLE = Path(__file__).with_name("shop.yaml")


def start_site() -> SiteServer:
    port = int(os.environ.get("GLASSBOX_DEMO_PORT", "8080"))
    try:
        return SiteServer(port=port).start()
    except OSError:
        return SiteServer(port=0).start()  # 8080 is taken: any free port will do


DEMO_DESCRIPTION = (
    "The bundled example (examples/shop.yaml): searches the demo shop, sorts by price, exports "
    "the results as CSV and extracts the cheapest lamp. Saved by `make run`, pointed at its demo "
    "shop."
)


async def save_example(settings: Settings, shop_url: str) -> str:
    """The example as a saved workflow whose `url` is this demo shop (the shop's port may change
    from one `make run` to the next: the workflow saved by an earlier one is updated)."""
    services = open_services(settings)
    try:
        title = load_workflow_file(EXAMPLE).title  # checked as `glassbox run` checks it
        loaded = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        definition = {**loaded, "url": shop_url, "description": DEMO_DESCRIPTION}
        for saved in await list_workflows(services):
            if saved.title == title:
                return (await replace_workflow(services, saved.id, definition)).id
        return (await save_workflow(services, definition)).id
    finally:
        await services.close()


def newest_run_id(storage: StorageSettings) -> str:
    """The run just made (the newest in the configured database)."""
    from sqlalchemy import create_engine, pool, select

    from storage.db import sync_url
    from storage.models import Run

    engine = create_engine(sync_url(storage.resolved_database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                select(Run.id).order_by(Run.created_at.desc(), Run.id.desc()).limit(1)
            ).scalar()
    finally:
        engine.dispose()
    return str(found or "")


def main() -> None:
    parser = argparse.ArgumentParser(description="Glassbox demo")
    parser.add_argument("--no-serve", action="store_true", help="stop after the example run")
    args = parser.parse_args()
    try:
        settings = Settings.load()  # once, for both commands below
    except ConfigurationError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    site = start_site()
    print(f"demo shop at {site.url}", file=sys.stderr)
    try:
        with contextlib.suppress(SystemExit):
            glassbox(["run", str(EXAMPLE), "--param", f"url={site.url}shop/"], settings)
        if args.no_serve:
            return
        base = f"http://{settings.service.host}:{settings.service.port}"
        run_id = newest_run_id(settings.storage)
        workflow_id = asyncio.run(save_example(settings, f"{site.url}shop/"))
        print(
            f"\nOpen the run in the web UI: {base}/runs/{run_id}\n"
            f"Start it again from its workflow page: {base}/workflows/{workflow_id}\n"
            f"Every run: {base}/runs   API: {base}/api/v1/runs   OpenAPI docs: {base}/docs\n"
            f"(the demo shop stays up at {site.url}; Ctrl-C stops)",
            file=sys.stderr,
        )
        with contextlib.suppress(SystemExit, KeyboardInterrupt):
            glassbox(["serve"], settings)
    finally:
        site.stop()


if __name__ == "__main__":
    main()
