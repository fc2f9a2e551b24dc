"""The hostile-input suite: a real `glassbox serve` (SQLite, no API key, as a local user starts
it), a hostile site on another loopback port, and a finished run with artifacts to aim at."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from examples.site_server import SiteServer
from tests.api.conftest import Service, create_run, running_service, visit_workflow, wait_status
from tests.security.hostile_site import HostileSite


@pytest.fixture(scope="session")
def hostile_site() -> Iterator[HostileSite]:
    server = HostileSite().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("serve-security")) as service:
        yield service


@dataclass
class Target:
    """What the hostile inputs aim at: ids that exist."""

    service: Service
    run: dict[str, Any]
    artifact: dict[str, Any]
    workflow: dict[str, Any]

    def fill(self, text: str) -> str:
        return text.format(
            run=self.run["id"], artifact=self.artifact["id"], workflow=self.workflow["id"]
        )


@pytest.fixture(scope="module")
def target(serve: Service, site: SiteServer) -> Target:
    with httpx.Client(base_url=serve.api, timeout=30) as http:
        run = wait_status(http, create_run(http, visit_workflow(site))["id"])
        assert run["status"] == "completed", run["failure_reason"]
        saved = http.post("/workflows", json={"definition": visit_workflow(site)})
        assert saved.status_code == 201, saved.text
    return Target(service=serve, run=run, artifact=run["artifacts"][0], workflow=saved.json())
