"""A whole recorded run with its artifacts on S3 (SeaweedFS), read back as a user would:
straight from the bucket and through presigned URLs. Once with the embedded SQLite database
and once in the scale-out configuration, PostgreSQL + S3."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from minio import Minio
from pydantic import SecretStr

from examples.site_server import SiteServer
from services.backends import open_services
from services.settings import Settings
from storage.settings import StorageSettings
from tests.conftest import Outcome, execute
from tests.media import find_ffprobe
from tests.s3server import SeaweedS3
from tests.storage.conftest import postgres_database

pytestmark = pytest.mark.s3

EXAMPLE = Path(__file__).parents[2] / "examples" / "shop.yaml"
BUCKET = "glassbox-runs"
EXPECTED_KINDS = {"video", "trace", "har", "console", "download", "code", "html", "screenshot"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3().start(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("GLASSBOX_DATABASE_URL", "GLASSBOX_STORAGE_URL", "GLASSBOX_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "REGION", "SECURE"):
        monkeypatch.delenv(f"GLASSBOX_S3_{name}", raising=False)
    return monkeypatch


def s3_settings(s3: SeaweedS3, data_dir: Path) -> StorageSettings:
    return StorageSettings(
        data_dir=data_dir,
        storage_url=f"s3://{BUCKET}",
        s3_endpoint=s3.endpoint,
        s3_access_key=SecretStr(s3.access_key),
        s3_secret_key=SecretStr(s3.secret_key),
        s3_secure=False,
    )


def shop(site: SiteServer) -> dict[str, Any]:
    definition: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    definition["url"] = site.url + "shop/"
    return definition


def download(client: Minio, key: str) -> bytes:
    """The object's bytes via a plain minio client, not through Glassbox."""
    response = client.get_object(BUCKET, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def probe(path: Path) -> dict[str, Any]:
    ffprobe = find_ffprobe()
    assert ffprobe, "ffprobe is needed to check videos"
    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    info: dict[str, Any] = json.loads(out.stdout)
    return info


async def check_recorded_on_s3(outcome: Outcome, s3: SeaweedS3, tmp_path: Path) -> None:
    assert outcome.status == "completed", outcome.run.failure_reason
    assert outcome.history == ["created", "queued", "running", "completed"]
    assert outcome.run.extracted_information == {
        "cheapest": "Glow Reading Lamp",
        "prices": [24.99, 34.5, 49.99, 89.0],
    }
    assert {a.kind for a in outcome.artifacts} >= EXPECTED_KINDS

    # Every row names an object in the bucket, and the bucket holds nothing else for the run.
    run_id = outcome.run.id
    client = s3.client()
    listed = {
        obj.object_name: obj
        for obj in client.list_objects(BUCKET, prefix=f"runs/{run_id}/", recursive=True)
    }
    assert set(listed) == {a.key for a in outcome.artifacts}

    for artifact in outcome.artifacts:
        assert artifact.key == f"runs/{run_id}/{artifact.kind}/{artifact.name}"
        data = download(client, artifact.key)
        assert len(data) == artifact.size, artifact.key
        assert hashlib.sha256(data).hexdigest() == artifact.sha256, artifact.key
        stat = client.stat_object(BUCKET, artifact.key)
        assert stat.size == artifact.size
        assert stat.content_type == artifact.content_type, artifact.key

    # The video is a real, browser-playable MP4.
    video = outcome.artifact("video")
    assert (video.name, video.content_type) == ("recording.mp4", "video/mp4")
    copy = tmp_path / "recording.mp4"
    copy.write_bytes(download(client, video.key))
    info = probe(copy)
    stream = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (stream["codec_name"], stream["pix_fmt"]) == ("h264", "yuv420p")
    assert float(info["format"]["duration"]) > 0.5
    assert "mp4" in info["format"]["format_name"]
    data = copy.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "moov atom must come first (+faststart)"

    # Presigned URLs download with any HTTP client, no credentials.
    store = outcome.services.store
    async with httpx.AsyncClient(timeout=30) as http:
        for artifact in (video, outcome.artifact("download"), outcome.artifact("trace")):
            url = store.url(artifact.key)
            assert url is not None and url.startswith(f"http://{s3.endpoint}/{BUCKET}/")
            assert s3.secret_key not in url
            response = await http.get(url)
            assert response.status_code == 200, response.text[:500]
            assert hashlib.sha256(response.content).hexdigest() == artifact.sha256
        csv = outcome.artifact("download")
        url = store.url(csv.key, content_type="text/csv", filename=csv.name)
        assert url is not None
        response = await http.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert csv.name in response.headers["content-disposition"]
        assert b"Glow Reading Lamp" in response.content

    # Artifacts went to the bucket, not to the local data directory.
    assert not (outcome.services.storage.data_dir / "artifacts").exists()


async def test_recorded_run_on_s3_with_sqlite(
    s3: SeaweedS3, site: SiteServer, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    services = open_services(Settings.load(storage=s3_settings(s3, data_dir)))
    try:
        assert services.db.engine.dialect.name != "postgresql"
        outcome = await execute(services, shop(site))
        await check_recorded_on_s3(outcome, s3, tmp_path)
        assert (data_dir / "glassbox.db").is_file()
    finally:
        await services.close()


@pytest.mark.postgres
async def test_recorded_run_on_s3_with_postgresql(
    s3: SeaweedS3, site: SiteServer, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """The scale-out configuration: PostgreSQL from a plain URL in the environment, S3."""
    with postgres_database() as database_url:
        clean_env.setenv("GLASSBOX_DATABASE_URL", database_url)
        data_dir = tmp_path / "data"
        services = open_services(Settings.load(storage=s3_settings(s3, data_dir)))
        try:
            assert services.db.engine.dialect.name == "postgresql"
            outcome = await execute(services, shop(site))
            await check_recorded_on_s3(outcome, s3, tmp_path)
        finally:
            await services.close()

        # The record is in PostgreSQL (nothing fell back to a local SQLite file).
        assert not (data_dir / "glassbox.db").exists()
        with psycopg.connect(database_url) as conn:
            status = conn.execute(
                "SELECT status FROM runs WHERE id = %s", (outcome.run.id,)
            ).fetchone()
            rows = conn.execute(
                "SELECT count(*) FROM artifacts WHERE run_id = %s", (outcome.run.id,)
            ).fetchone()
        assert status == ("completed",)
        assert rows == (len(outcome.artifacts),)
