"""`glassbox --server URL …`: the CLI as a client of a remote Glassbox, run as a user runs it
(a subprocess) against a real `glassbox serve` with an API key.

The example workflow run remotely leaves the same record as run locally (status, extracted
data, artifact kinds); `runs list|show|cancel|rerun|logs` do what they say over the REST API;
a wrong key and an unreachable server end with a non-zero status and a message that says so."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from examples.site_server import SiteServer
from services.client import Client
from tests.api.conftest import (
    Service,
    create_key,
    glassbox_command,
    running_service,
    shop_workflow,
    stepwise_workflow,
    wait_status,
    waiting_workflow,
)
from tests.ports import free_port

CLI_TIMEOUT_S = 120
pytestmark = pytest.mark.timeout(300)  # a serve, two runs of the shop and CLI starts, on 2 cores


@dataclass
class Remote:
    service: Service
    key: str
    http: httpx.Client


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """One `glassbox serve` (one worker) for the module, with an API key: keys are required."""
    with running_service(tmp_path_factory.mktemp("serve-remote")) as service:
        key = create_key(service, "cli")
        headers = {"X-API-Key": key}
        with httpx.Client(base_url=service.api, headers=headers, timeout=30) as http:
            yield Remote(service, key, http)


def glassbox(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    return subprocess.run(
        [*glassbox_command(), *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "200", **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def remote_cli(
    remote: Remote, *args: str, cwd: Path, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`glassbox --server URL ARGS…`, the key in GLASSBOX_API_KEY."""
    env = {"GLASSBOX_API_KEY": key or remote.key}
    return glassbox("--server", remote.service.base_url, *args, cwd=cwd, env=env)


def flow_file(directory: Path, definition: dict[str, Any], name: str = "flow.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path


def create(remote: Remote, definition: dict[str, Any]) -> dict[str, Any]:
    """The run queued through the CLI's own client (services/client.py)."""
    with Client(remote.service.base_url, remote.key) as client:
        record = client.create_run(definition)
    assert record["status"] == "queued" and record["id"].startswith("run_")
    return record


def test_the_example_run_remotely_leaves_the_record_it_leaves_locally(
    remote: Remote, site: SiteServer, tmp_path: Path
) -> None:
    flow = flow_file(tmp_path, shop_workflow(site))
    local = glassbox(
        "run", str(flow), "--json", cwd=tmp_path, env={"GLASSBOX_DATA_DIR": str(tmp_path / "d")}
    )
    assert local.returncode == 0, local.stderr
    over = remote_cli(remote, "run", str(flow), "--json", "--follow", cwd=tmp_path)
    assert over.returncode == 0, over.stderr
    mine, theirs = json.loads(local.stdout), json.loads(over.stdout)

    assert theirs["status"] == mine["status"] == "completed"
    assert theirs["extracted_information"] == mine["extracted_information"]
    assert theirs["extracted_information"]["cheapest"]  # the demo shop's data, not nothing
    kinds = sorted({a["kind"] for a in theirs["artifacts"]})
    assert kinds == sorted({a["kind"] for a in mine["artifacts"]})
    assert {"video", "trace", "download", "screenshot", "code"} <= set(kinds)
    assert (theirs["step_count"], theirs["action_count"]) == (
        mine["step_count"],
        mine["action_count"],
    )
    # It is the server's record, and --follow showed the cards as the run went.
    assert remote.http.get(f"/runs/{theirs['id']}").json()["status"] == "completed"
    assert "▶ search" in over.stderr and "✓ fill" in over.stderr
    assert f"record: run {theirs['id']} at {remote.service.base_url}" in over.stderr

    # `artifact` fetches the same bytes over the API.
    csv = next(a for a in theirs["artifacts"] if a["kind"] == "download")
    out = remote_cli(remote, "artifact", csv["id"], "-o", str(tmp_path / "got.csv"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    served = remote.http.get(f"/artifacts/{csv['id']}/content").content
    assert (tmp_path / "got.csv").read_bytes() == served and served


def test_runs_list_show_rerun(remote: Remote, site: SiteServer, tmp_path: Path) -> None:
    first = create(remote, shop_workflow(site, title="listed shop run"))
    wait_status(remote.http, first["id"])

    listed = remote_cli(remote, "runs", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert first["id"] in [r["id"] for r in json.loads(listed.stdout)["items"]]
    plain = remote_cli(remote, "runs", "list", "--q", "listed shop", cwd=tmp_path)
    assert plain.returncode == 0 and first["id"] in plain.stdout and "completed" in plain.stdout

    shown = remote_cli(remote, "runs", "show", first["id"], "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == remote.http.get(f"/runs/{first['id']}").json()
    text = remote_cli(remote, "runs", "show", first["id"], cwd=tmp_path)
    assert "status: completed" in text.stdout and "cheapest" in text.stdout

    again = remote_cli(remote, "runs", "rerun", first["id"], "--follow", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["parent_run_id"] == first["id"] and rerun["status"] == "completed"
    assert rerun["source"] == "rerun"

    missing = remote_cli(remote, "runs", "show", "run_nosuchrun", cwd=tmp_path)
    assert missing.returncode == 1 and "run_nosuchrun" in missing.stderr


def test_runs_cancel(remote: Remote, site: SiteServer, tmp_path: Path) -> None:
    run = create(remote, waiting_workflow(site, title="to cancel"))
    wait_status(remote.http, run["id"], {"running"})
    done = remote_cli(remote, "runs", "cancel", run["id"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert wait_status(remote.http, run["id"])["status"] == "canceled"
    again = remote_cli(remote, "runs", "cancel", run["id"], cwd=tmp_path)
    assert again.returncode == 1
    assert "canceled" in again.stderr  # the server's 409 says why


def test_logs_follow_prints_cards_until_the_end(
    remote: Remote, site: SiteServer, tmp_path: Path
) -> None:
    run = create(remote, stepwise_workflow(site, steps=4, step_ms=300, title="followed"))
    done = remote_cli(remote, "runs", "logs", run["id"], "--follow", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum("✓ goto" in line for line in lines) == 5, done.stdout  # search.html + 4 slow
    assert "■ steps completed" in done.stdout and lines[-1].strip() == "completed"
    assert remote.http.get(f"/runs/{run['id']}").json()["status"] == "completed"
    # Without --follow: the cards so far, once.
    once = remote_cli(remote, "runs", "logs", run["id"], cwd=tmp_path)
    assert once.returncode == 0 and once.stdout == done.stdout


def test_refusals_name_the_field_as_locally(remote: Remote, tmp_path: Path) -> None:
    flow = flow_file(tmp_path, {"title": "bad", "blocks": [{"label": "a", "type": "action"}]})
    done = remote_cli(remote, "run", str(flow), cwd=tmp_path)
    assert done.returncode == 2 and "blocks[0].steps" in done.stderr
    bad_param = flow_file(
        tmp_path,
        {"title": "p", "blocks": [{"label": "a", "type": "action", "steps": [{"goto": "x"}]}]},
        "p.yaml",
    )
    done = remote_cli(remote, "run", str(bad_param), "--param", "nope=1", cwd=tmp_path)
    assert done.returncode == 2 and "parameters.nope" in done.stderr


def test_a_wrong_key_is_refused_clearly(remote: Remote, tmp_path: Path) -> None:
    done = remote_cli(remote, "runs", "list", cwd=tmp_path, key="gbx_wrong_" + "x" * 20)
    assert done.returncode != 0
    assert "refused the API key" in done.stderr and remote.service.base_url in done.stderr
    nokey = glassbox("--server", remote.service.base_url, "runs", "list", cwd=tmp_path)
    assert nokey.returncode != 0 and "API key" in nokey.stderr


def test_an_unreachable_server_is_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = glassbox("--server", url, "runs", "list", cwd=tmp_path)
    assert done.returncode != 0 and f"cannot reach Glassbox at {url}" in done.stderr
    env = {"GLASSBOX_SERVER": url}
    flow = flow_file(tmp_path, {"title": "t", "goal": "g"})
    done = glassbox("run", str(flow), cwd=tmp_path, env=env)
    assert done.returncode != 0 and url in done.stderr


def test_runs_needs_a_server(tmp_path: Path) -> None:
    done = glassbox("runs", "list", cwd=tmp_path)
    assert done.returncode == 2 and "--server" in done.stderr
