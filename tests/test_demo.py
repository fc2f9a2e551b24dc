"""`make run` as a new user runs it: the example run against the demo shop, then the service
with that run in it, and the address of the run in the web UI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[1]


def test_make_run_serves_the_example_run_in_the_web_ui(tmp_path: Path) -> None:
    env = dict(os.environ)
    for name in ("GLASSBOX_DATABASE_URL", "GLASSBOX_STORAGE_URL"):
        env.pop(name, None)
    env.update(
        GLASSBOX_DATA_DIR=str(tmp_path / "data"),
        GLASSBOX_PORT=str(free_port()),
        GLASSBOX_DEMO_PORT="0",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.demo"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        output: list[str] = []
        url = workflow_url = None
        deadline = time.monotonic() + 180
        while workflow_url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            found = re.search(r"Open the run in the web UI: (http://\S+/runs/(run_\w+))", line)
            if found:
                url, run_id = found.group(1), found.group(2)
            saved = re.search(r"from its workflow page: (http://\S+/workflows/(wf_\w+))", line)
            if saved:
                workflow_url, workflow_id = saved.group(1), saved.group(2)
        assert url is not None and workflow_url is not None, "".join(output)
        assert "completed" in "".join(output)
        base = url.split("/runs/")[0]
        for _ in range(150):  # the service starts after the line is printed
            try:
                record = httpx.get(f"{base}/api/v1/runs/{run_id}", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert record.status_code == 200, record.text
        assert record.json()["status"] == "completed"
        assert {a["kind"] for a in record.json()["artifacts"]} >= {"video", "trace", "har", "code"}
        page = httpx.get(url, timeout=5)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]

        # The example is saved, pointed at the demo shop: it starts again from its page.
        workflow = httpx.get(f"{base}/api/v1/workflows/{workflow_id}", timeout=5).json()
        assert workflow["title"] == record.json()["title"] and workflow["description"]
        shop = re.search(r"demo shop at (http://\S+)", "".join(output))
        assert shop and workflow["definition"]["url"] == shop.group(1) + "shop/"
        again = httpx.post(
            f"{base}/api/v1/runs", json={"workflow_id": workflow_id}, timeout=30
        ).json()
        for _ in range(300):
            done = httpx.get(f"{base}/api/v1/runs/{again['id']}", timeout=5).json()
            if done["status"] not in ("queued", "running"):
                break
            time.sleep(0.3)
        assert done["status"] == "completed", done["failure_reason"]
        assert httpx.get(workflow_url, timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
