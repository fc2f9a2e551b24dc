"""`make run`: serve the demo shop locally and run the bundled example workflow against it."""

from __future__ import annotations

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
    site = start_site()
    print(f"demo shop at {site.url}", file=sys.stderr)
    try:
        glassbox(["run", str(EXAMPLE), "--param", f"url={site.url}shop/", *sys.argv[1:]])
    finally:
        site.stop()


if __name__ == "__main__":
    main()
