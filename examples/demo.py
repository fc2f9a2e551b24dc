"""`make run`: serve the demo shop locally, run the bundled example workflow against it, then
serve the API with that run in it (Ctrl-C stops). `--no-serve` stops after the run."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from api.cli import main as glassbox
from examples.site_server import SiteServer

EXAMPLE = Path(__file__).with_name("shop.yaml")


def start_site() -> SiteServer:
    port = int(os.environ.get("GLASSBOX_DEMO_PORT", "8080"))
    try:
        return SiteServer(port=port).start()
    except OSError:
        return SiteServer(port=0).start()  # 8080 is taken: any free port will do


def main() -> None:
    parser = argparse.ArgumentParser(description="Glassbox demo")
    parser.add_argument("--no-serve", action="store_true", help="stop after the example run")
    args = parser.parse_args()
    site = start_site()
    print(f"demo shop at {site.url}", file=sys.stderr)
    try:
        with contextlib.suppress(SystemExit):
            glassbox(["run", str(EXAMPLE), "--param", f"url={site.url}shop/"])
        if args.no_serve:
            return
        from api.settings import ServiceSettings

        settings = ServiceSettings()
        base = f"http://{settings.host}:{settings.port}"
        print(
            f"\nThe API serves this run and every other: {base}/api/v1/runs\n"
            f"OpenAPI docs: {base}/docs   (the demo shop stays up at {site.url}; Ctrl-C stops)",
            file=sys.stderr,
        )
        with contextlib.suppress(SystemExit, KeyboardInterrupt):
            glassbox(["serve"])
    finally:
        site.stop()


if __name__ == "__main__":
    main()
