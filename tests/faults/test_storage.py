"""S3 (SeaweedFS) killed mid-run, as an operator would see it: a short outage loses nothing; an
outage longer than the retry budget leaves the run `completed` with `record.complete` false,
the missing artifacts named and kept in the spool, until a sweep stores them."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from api.records import run_record
from examples.site_server import SiteServer
from runner.salvage import salvage_spools
from services.backends import Services, open_services
from services.settings import Settings
from storage.artifacts import list_artifacts
from storage.models import TimelineCard
from storage.runs import get_run
from storage.settings import StorageSettings
from storage.timeline import list_cards
from tests.conftest import Outcome, execute
from tests.faults.s3fault import RestartableS3

pytestmark = [pytest.mark.faults, pytest.mark.s3]

BUCKET = "glassbox-faults"
# Every kind a run of SEARCH records, screenshots apart.
KINDS = {"video", "trace", "har", "console", "html", "code", "download", "screenshot"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableS3]:
    server = RestartableS3().start_in(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def open_s3_services(
    s3: RestartableS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    opened: list[Services] = []

    def _open(retry_s: float) -> Services:
        for name in ("GLASSBOX_DATABASE_URL", "GLASSBOX_STORAGE_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("GLASSBOX_STORE_RETRY_S", str(retry_s))
        storage = StorageSettings(
            data_dir=tmp_path / "data",
            storage_url=f"s3://{BUCKET}",
            s3_endpoint=s3.endpoint,
            s3_access_key=SecretStr(s3.access_key),
            s3_secret_key=SecretStr(s3.secret_key),
            s3_secure=False,
        )
        services = open_services(Settings.load(storage=storage))
        opened.append(services)
        return services

    yield _open


def search(site: SiteServer, *, download: bool = True) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"goto": site.url + "shop/search.html"},
        {"fill": {"selector": "#q", "value": "lamp"}},
        {"select": {"selector": "#sort", "value": "price"}},
        {"check": {"selector": "#in-stock"}},
        {"click": {"role": "button", "name": "Search"}},
        {"wait_for": {"selector": ".result", "state": "visible"}},
        {"assert_text": {"text": "results"}},
    ]
    if download:
        steps.append({"download": {"click": {"text": "Export CSV"}}})
    return {"title": "Search", "blocks": [{"label": "search", "type": "action", "steps": steps}]}


def at_card(number: int, act: Any) -> Any:
    """A card listener that calls `act` (in a thread: the run goes on) at the run's
    `number`th action card."""
    seen: list[TimelineCard] = []

    def listener(card: TimelineCard) -> None:
        if card.kind == "action":
            seen.append(card)
            if len(seen) == number:
                threading.Thread(target=act, daemon=True).start()

    return listener


def check_all_stored(
    outcome_services: Services, s3: RestartableS3, run_id: str, artifacts: list[Any]
) -> None:
    """Every artifact row names an object in the bucket with its size and hash, and the bucket
    holds nothing else for the run."""
    client = s3.client()
    listed = {
        o.object_name for o in client.list_objects(BUCKET, prefix=f"runs/{run_id}/", recursive=True)
    }
    assert listed == {a.key for a in artifacts}
    for artifact in artifacts:
        data = b"".join(outcome_services.store.open(artifact.key))
        assert len(data) == artifact.size, artifact.key
        assert hashlib.sha256(data).hexdigest() == artifact.sha256, artifact.key


async def test_s3_killed_and_restarted_mid_run_loses_nothing(
    s3: RestartableS3, site: SiteServer, open_s3_services: Any
) -> None:
    services = open_s3_services(60)
    restarted: list[threading.Thread] = []
    outcome: Outcome = await execute(
        services,
        search(site),
        listeners=[at_card(2, lambda: restarted.append(s3.outage(3)))],
    )
    assert restarted, "the outage never happened"
    restarted[0].join(60)
    assert outcome.status == "completed", outcome.run.failure_reason
    assert outcome.run.record_missing is None
    assert run_record(outcome.run, outcome.artifacts)["record"] == {"complete": True, "missing": []}
    assert {a.kind for a in outcome.artifacts} == KINDS
    shots = {a.id for a in outcome.artifacts if a.kind == "screenshot"}
    assert {c.screenshot_artifact_id for c in outcome.actions()} == shots
    assert len(shots) == 8
    check_all_stored(services, s3, outcome.run.id, outcome.artifacts)
    assert not (services.spool_dir / outcome.run.id).exists()
    await services.close()


async def test_s3_down_past_the_budget_keeps_the_spool_until_a_sweep_stores_it(
    s3: RestartableS3, site: SiteServer, open_s3_services: Any
) -> None:
    services = open_s3_services(1)
    killed = threading.Event()

    def kill() -> None:
        s3.kill()
        killed.set()

    outcome = await execute(services, search(site, download=False), listeners=[at_card(3, kill)])
    assert killed.is_set()
    # The steps succeeded: the run is completed, its record is not, and says what it lacks.
    assert outcome.status == "completed", outcome.run.failure_reason
    missing = outcome.run.record_missing or []
    record = run_record(outcome.run, outcome.artifacts)["record"]
    assert record == {"complete": False, "missing": missing}
    lacking = {line.split(" ", 1)[0] for line in missing}
    assert {"video", "trace", "har", "console", "html", "code"} <= lacking, missing
    for line in missing:
        assert "storage unavailable: connection refused" in line, line
        assert "kept on the worker" in line, line
    told = [c.data.get("text", "") for c in outcome.cards if c.kind == "thought"]
    assert set(missing) <= set(told)  # on the timeline too
    spool = services.spool_dir / outcome.run.id
    assert (spool / "pending").is_dir()

    # S3 back: a sweep stores everything and completes the record.
    took = s3.restart()
    started = time.monotonic()
    swept = await salvage_spools(services)
    recovered = time.monotonic() - started
    assert [s.run_id for s in swept] == [outcome.run.id]
    assert swept[0].failed == [] and swept[0].deleted
    assert not spool.exists()
    async with services.db.session() as session:
        run = await get_run(session=session, run_id=outcome.run.id)
        artifacts = await list_artifacts(session=session, run_id=run.id)
        cards = await list_cards(session=session, run_id=run.id)
    assert run.status == "completed" and run.record_missing is None
    assert run_record(run, artifacts)["record"] == {"complete": True, "missing": []}
    assert {a.kind for a in artifacts} == KINDS - {"download"}
    check_all_stored(services, s3, run.id, artifacts)
    # Screenshots keep the ids their action cards refer to.
    shots = {a.id for a in artifacts if a.kind == "screenshot"}
    assert {c.screenshot_artifact_id for c in cards if c.kind == "action"} == shots
    assert len(shots) == 7
    salvaged = [c for c in cards if c.kind == "thought" and "Salvaged" in c.data.get("text", "")]
    assert len(salvaged) == 1
    stored = len(swept[0].stored)
    print(f"S3 restart {took:.1f} s; the sweep stored {stored} artifacts in {recovered:.1f} s")
    await services.close()
