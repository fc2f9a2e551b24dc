"""Run options on the command line: `glassbox run` takes them from the workflow file
(`timeout_s`, `title`); the request-only options of the API (proxy, extra_http_headers,
webhook_url) have no CLI form."""

from __future__ import annotations

from pathlib import Path

import yaml

from examples.site_server import SiteServer
from tests.test_cli import glassbox


def test_timeout_s_of_the_workflow_file_ends_a_longer_run_timed_out(
    site: SiteServer, tmp_path: Path
) -> None:
    flow = tmp_path / "too-slow.yaml"
    flow.write_text(
        yaml.safe_dump(
            {
                "title": "Cut short on the command line",
                "url": site.url,
                "timeout_s": 3,
                "blocks": [
                    {
                        "label": "wait",
                        "type": "action",
                        "steps": [
                            {"goto": "{{ url }}"},
                            # Waits 60 s for a text that never comes: only the limit ends it.
                            {"wait_for": {"text": "zq-never-on-any-page-qz", "timeout_ms": 60000}},
                        ],
                    }
                ],
            }
        )
    )
    result = glassbox("run", str(flow), "--json", data_dir=tmp_path / "data")
    assert result.returncode == 1, result.describe()
    record = result.record()
    assert record["status"] == "timed_out", result.describe()
    assert "time limit of 3 s" in record["failure_reason"], record["failure_reason"]
    assert record["timeout_s"] == 3
    assert record["title"] == "Cut short on the command line"
    assert "Cut short on the command line" in result.stderr
    assert "timed_out" in result.stderr
    assert {"video", "trace"} <= {a["kind"] for a in record["artifacts"]}
