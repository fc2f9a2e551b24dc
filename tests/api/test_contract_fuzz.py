"""Schemathesis against the served API: every check, every phase (examples, coverage, fuzzing,
and the stateful phase following the OpenAPI links), with zero failures.

The service is `glassbox serve` with an API key (so the authentication checks apply) and no
in-process worker: the runs the fuzzer creates wait in the queue, no browser starts. The seed
and the number of examples are fixed, so a run takes well under a minute and a failure
reproduces. What the schema cannot state is configured in tests/api/schemathesis.toml and
tests/api/fuzz_hooks.py, each with its reason; everything else the fuzzer finds is a bug of
the API or of its description.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import BACKENDS, Service, create_key, error_fields, running_service
from tests.storage.conftest import postgres_database

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEED = 20261203
MAX_EXAMPLES = 5
TIMEOUT_S = 300  # ~50 s on a quiet machine; far more when the cores are shared


@pytest.fixture(scope="module")
def sqlite_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("fuzz-sqlite"), workers=0) as service:
        yield service


@pytest.fixture(scope="module")
def postgresql_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with (
        postgres_database() as url,
        running_service(
            tmp_path_factory.mktemp("fuzz-postgresql"),
            backend="postgresql",
            database_url=url,
            workers=0,
        ) as service,
    ):
        yield service


def schemathesis(service: Service, key: str, tmp_path: Path, phases: list[str]) -> tuple[int, str]:
    """`st run` against the service: its exit status and its output (also when it timed out)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    log = tmp_path / "schemathesis.log"
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{service.base_url}/openapi.json",
        "--header",
        f"X-API-Key: {key}",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        ",".join(phases),
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            code = process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"schemathesis ran over {TIMEOUT_S} s:\n{log.read_text()[-8000:]}")
    return code, log.read_text()


PHASES = {
    "sqlite": ["examples", "coverage", "fuzzing", "stateful"],
    # The coverage phase (every boundary value of every field, ~40 s here) checks validation,
    # which is the same on both backends: PostgreSQL gets the phases that store and read back.
    "postgresql": ["examples", "fuzzing", "stateful"],
}


@pytest.mark.timeout(TIMEOUT_S + 60)
@pytest.mark.parametrize("service", BACKENDS, indirect=True)
def test_schemathesis_finds_nothing(service: Service, tmp_path: Path) -> None:
    key = create_key(service, "schemathesis")
    phases = PHASES[service.backend]
    code, output = schemathesis(service, key, tmp_path, phases)
    assert code == 0, output[-20000:]
    # It ran: every operation, every phase (a run that tested nothing would also exit 0).
    tested = re.search(r"Tested: (\d+)", output)
    assert tested and int(tested.group(1)) >= 40, output[-4000:]
    for phase in phases:
        assert f"✅  {phase.title()}" in output, f"{phase} did not pass:\n{output[-4000:]}"
    assert "<testsuite" in (tmp_path / "junit.xml").read_text()


def test_what_the_fuzzer_found_stays_fixed(sqlite_service: Service) -> None:
    """Each refusal names its field; each answer is the one the description gives."""
    key = create_key(sqlite_service, "regressions")
    shop = {
        "title": "t",
        "blocks": [{"label": "a", "type": "action", "steps": [{"goto": "http://127.0.0.1:9/"}]}],
    }
    with httpx.Client(base_url=sqlite_service.api, headers={"X-API-Key": key}, timeout=30) as http:
        # A 405 names every method of the path (GET /runs and POST /runs are two routes).
        for path, allowed in (("/runs", "GET, POST"), ("/schedules/sch_x", "GET, PATCH, DELETE")):
            answer = http.request("OPTIONS", path)
            assert answer.status_code == 405 and answer.headers["allow"] == allowed, path
        # The schema's types hold in the validator: no string for a number, no 0 for a boolean,
        # max_steps is checked beside blocks too.
        for definition, field in (
            ({**shop, "max_steps": {}}, "definition.max_steps"),
            ({**shop, "timeout_s": "5"}, "definition.timeout_s"),
            ({**shop, "goal": None, "max_steps": None}, None),  # null is not given
        ):
            answer = http.post("/workflows", json={"definition": definition})
            if field is None:
                assert answer.status_code == 201, answer.text
            else:
                assert error_fields(answer) == [field], definition
        saved = http.post("/workflows", json={"definition": shop}).json()
        answer = http.post(f"/workflows/{saved['id']}/triggers", json={"signed": 0})
        assert error_fields(answer) == ["signed"]
        answer = http.post(f"/workflows/{saved['id']}/triggers", json={"tags": ["-no"]})
        assert error_fields(answer) == ["tags[0]"]
        answer = http.post("/uploads", files={"file": ("a.txt", b"a")}, data={"other": "b"})
        assert error_fields(answer) == ["other"]
        # Redelivering the webhook of a run that has none: a 409 saying so.
        run = http.post("/runs", json={"workflow": shop}).json()
        http.post(f"/runs/{run['id']}/cancel")
        answer = http.post(f"/runs/{run['id']}/webhook-deliveries")
        assert answer.status_code == 409 and "webhook_url" in answer.json()["detail"]
