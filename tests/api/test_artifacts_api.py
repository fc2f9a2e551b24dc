"""/api/v1/artifacts/{id}/content over real HTTP: bytes, types, checksums, HTTP Range, and the
recording played (and sought) by a real Chromium straight from the API."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright

from examples.site_server import SiteServer
from runner.browser import CHROMIUM_ARGS, find_chromium
from runner.settings import RunnerSettings
from tests.api.conftest import Service, create_run, shop_workflow, wait_status

_RECORDED: dict[str, dict[str, Any]] = {}


@pytest.fixture
def recorded(service: Service, site: SiteServer) -> dict[str, Any]:
    """One finished shop search per backend (video, trace, screenshots, a CSV download, …)."""
    if service.backend not in _RECORDED:
        with httpx.Client(base_url=service.api, timeout=30) as http:
            created = create_run(http, shop_workflow(site))
            record = wait_status(http, created["id"], timeout=90)
        assert record["status"] == "completed", record["failure_reason"]
        _RECORDED[service.backend] = record
    return _RECORDED[service.backend]


def artifact(record: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [a for a in record["artifacts"] if a["kind"] == kind]
    assert found, f"no {kind}: {[a['kind'] for a in record['artifacts']]}"
    return found[0]


EXPECTED_TYPES = {
    "video": "video/mp4",
    "screenshot": "image/jpeg",
    "trace": "application/zip",
    "download": "text/csv",
    "code": "text/x-python",
}


def test_every_artifact_streams_its_bytes_with_type_size_and_checksum(
    recorded: dict[str, Any], base_url: str
) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for item in recorded["artifacts"]:
            answer = http.get(item["url"])
            assert answer.status_code == 200, (item["name"], answer.status_code)
            body = answer.content
            assert len(body) == item["size"], item["name"]
            assert hashlib.sha256(body).hexdigest() == item["sha256"], item["name"]
            assert answer.headers["content-type"].split(";")[0] == item["content_type"]
            assert int(answer.headers["content-length"]) == item["size"]
            assert answer.headers.get("accept-ranges") == "bytes"
            disposition = answer.headers.get("content-disposition", "")
            shown = item["content_type"].split("/")[0] in ("image", "video") or item[
                "content_type"
            ] in ("application/json", "application/x-ndjson", "text/plain")
            assert disposition.startswith("inline" if shown else "attachment"), item
            assert item["name"] in disposition
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["content-security-policy"] == "sandbox"
            expected = EXPECTED_TYPES.get(item["kind"])
            if expected:
                assert item["content_type"] == expected, item
            info = http.get(f"/api/v1/artifacts/{item['id']}")
            assert info.status_code == 200
            assert {k: info.json()[k] for k in ("id", "kind", "name", "size", "sha256")} == {
                k: item[k] for k in ("id", "kind", "name", "size", "sha256")
            }
        video = http.get(artifact(recorded, "video")["url"])
        assert video.content[4:8] == b"ftyp"
        shot = http.get(artifact(recorded, "screenshot")["url"])
        assert shot.content[:2] == b"\xff\xd8"
        saved = http.get(artifact(recorded, "download")["url"], params={"download": "true"})
        assert saved.headers["content-disposition"].startswith("attachment")
        assert "results.csv" in saved.headers["content-disposition"]
        assert saved.text.startswith("name,price,in_stock")


def test_range_requests_answer_206_with_the_right_bytes_and_416_beyond_the_end(
    recorded: dict[str, Any], base_url: str
) -> None:
    video = artifact(recorded, "video")
    size = video["size"]
    assert size > 1000
    with httpx.Client(base_url=base_url, timeout=30) as http:
        whole = http.get(video["url"]).content

        def ranged(spec: str) -> httpx.Response:
            return http.get(video["url"], headers={"Range": spec})

        first = ranged("bytes=0-99")
        assert first.status_code == 206
        assert first.headers["content-range"] == f"bytes 0-99/{size}"
        assert first.headers["content-length"] == "100"
        assert first.content == whole[:100]

        suffix = ranged("bytes=-100")
        assert suffix.status_code == 206
        assert suffix.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
        assert suffix.content == whole[-100:]

        rest = ranged("bytes=100-")
        assert rest.status_code == 206
        assert rest.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
        assert int(rest.headers["content-length"]) == size - 100
        assert rest.content == whole[100:]

        middle = ranged(f"bytes={size // 2}-{size // 2 + 9}")
        assert middle.status_code == 206 and middle.content == whole[size // 2 : size // 2 + 10]
        clipped = ranged(f"bytes={size - 10}-{size + 1000}")
        assert clipped.status_code == 206
        assert clipped.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
        assert clipped.content == whole[-10:]
        single = ranged("bytes=0-0")
        assert single.status_code == 206 and single.content == whole[:1]

        for beyond in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}"):
            refused = ranged(beyond)
            assert refused.status_code == 416, (beyond, refused.status_code)
            assert refused.headers["content-range"] == f"bytes */{size}"


def test_unknown_artifacts_are_404(client: httpx.Client) -> None:
    for path in ("/artifacts/art_0000000000000000000000000", "/artifacts/art_x/content"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["detail"]


async def test_chromium_plays_and_seeks_the_recording_from_the_api(
    recorded: dict[str, Any], base_url: str
) -> None:
    src = base_url + artifact(recorded, "video")["url"]
    executable = find_chromium(RunnerSettings())
    async with async_playwright() as playwright:
        sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # as runner.browser does
        browser = await playwright.chromium.launch(
            executable_path=executable, args=[*CHROMIUM_ARGS, *sandbox]
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{base_url}/api/v1/health")  # same origin as the video
            result = await page.evaluate(
                """async (src) => {
                    const video = document.createElement("video");
                    video.muted = true;
                    video.preload = "metadata";
                    document.body.appendChild(video);
                    const failed = () => new Error("media error " + (video.error?.code));
                    await new Promise((ok, fail) => {
                        video.addEventListener("loadedmetadata", ok, {once: true});
                        video.addEventListener("error", () => fail(failed()), {once: true});
                        video.src = src;
                    });
                    const duration = video.duration;
                    await new Promise((ok, fail) => {
                        video.addEventListener("seeked", ok, {once: true});
                        video.addEventListener("error", () => fail(failed()), {once: true});
                        video.currentTime = duration / 2;
                    });
                    return {
                        duration,
                        currentTime: video.currentTime,
                        width: video.videoWidth,
                        height: video.videoHeight,
                    };
                }""",
                src,
            )
        finally:
            await browser.close()
    assert result["duration"] > 1.0, result
    assert abs(result["currentTime"] - result["duration"] / 2) < 0.5, result
    assert result["width"] > 0 and result["height"] > 0, result
