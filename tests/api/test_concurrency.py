"""One run per context: a workflow's `concurrency_key` (a template over the parameters) with its
policy, under 5 simultaneous trigger calls, against `glassbox serve` with two in-process
workers of concurrency 2 (four runs could start at once), on SQLite and PostgreSQL.

- `queue`: runs of one key never overlap; runs of other keys do not wait for them.
- `skip`: one run goes ahead; the others end `canceled` at once, naming the run they deferred
  to, and the trigger call that made each sees it in its answer.
- `cancel_previous`: the newest run goes ahead; the queued or running ones of the key end
  `canceled`, naming the run that superseded them."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import pairwise
from typing import Any

import httpx
import pytest

from examples.site_server import SiteServer
from tests.api.conftest import (
    BACKENDS,
    Service,
    error_fields,
    running_service,
    wait_status,
)
from tests.storage.conftest import postgres_database

CALLS = 5


@pytest.fixture(scope="module")
def keyed_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(
        tmp_path_factory.mktemp("serve-keys-sqlite"),
        workers=2,
        extra_env={"GLASSBOX_CONCURRENCY": "2"},
    ) as found:
        yield found


@pytest.fixture(scope="module")
def keyed_postgresql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with (
        postgres_database() as url,
        running_service(
            tmp_path_factory.mktemp("serve-keys-postgresql"),
            backend="postgresql",
            database_url=url,
            workers=2,
            extra_env={"GLASSBOX_CONCURRENCY": "2"},
        ) as found,
    ):
        yield found


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    found: Service = request.getfixturevalue(f"keyed_{request.param}")
    since = found.log_size()
    yield found
    output = found.output(since)
    if output.strip():
        print(f"----- glassbox serve ({found.backend}) output -----\n{output}")


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.api, timeout=30) as http:
        yield http


def keyed_trigger(
    client: httpx.Client, site: SiteServer, policy: str, wait_ms: int
) -> tuple[str, str]:
    """A saved workflow keyed by `account` that takes `wait_ms`, and a trigger URL for it."""
    definition = {
        "title": f"Per account ({policy})",
        "url": site.url,
        "timeout_s": 60,
        "parameters": {"account": {"type": "string"}},
        "concurrency_key": "account-{{ account }}",
        "concurrency_policy": policy,
        "blocks": [
            {
                "label": "work",
                "type": "action",
                "steps": [{"goto": f"{{{{ url }}}}slow?ms={wait_ms}"}],
            }
        ],
    }
    saved = client.post("/workflows", json={"definition": definition})
    assert saved.status_code == 201, saved.text
    made = client.post(
        f"/workflows/{saved.json()['id']}/triggers",
        json={"parameters": {"account": "{{ payload.account }}"}},
    )
    assert made.status_code == 201, made.text
    trigger = made.json()
    root = str(client.base_url).removesuffix("/").removesuffix("/api/v1")
    return root + trigger["url"], str(trigger["token"])


def fire(hook: tuple[str, str], accounts: list[str]) -> list[dict[str, Any]]:
    """Calls the trigger once per account, all at the same time; the runs it answered."""
    url, token = hook

    def call(account: str) -> dict[str, Any]:
        answer = httpx.post(
            url, json={"account": account}, headers={"X-Glassbox-Token": token}, timeout=60
        )
        assert answer.status_code == 201, answer.text
        run: dict[str, Any] = answer.json()
        return run

    with ThreadPoolExecutor(len(accounts)) as pool:
        return list(pool.map(call, accounts))


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_queue_runs_one_key_at_a_time(client: httpx.Client, site: SiteServer) -> None:
    hook = keyed_trigger(client, site, "queue", wait_ms=600)
    answered = fire(hook, ["acme"] * CALLS + ["globex"])
    assert {r["status"] for r in answered} == {"queued"}
    assert [r["concurrency_key"] for r in answered] == ["account-acme"] * CALLS + ["account-globex"]
    ended = [wait_status(client, r["id"], timeout=90) for r in answered]
    assert [r["status"] for r in ended] == ["completed"] * (CALLS + 1), [
        r["failure_reason"] for r in ended
    ]
    acme = sorted(ended[:CALLS], key=lambda r: at(r["started_at"]))
    for before, after in pairwise(acme):
        assert at(after["started_at"]) >= at(before["finished_at"]), (before, after)
    # Another account did not wait for acme's queue: it ran while acme's runs did.
    globex = ended[CALLS]
    assert at(globex["started_at"]) < at(acme[-1]["started_at"])


def test_skip_ends_the_others_at_once_naming_the_run_they_deferred_to(
    client: httpx.Client, site: SiteServer
) -> None:
    hook = keyed_trigger(client, site, "skip", wait_ms=1500)
    answered = fire(hook, ["acme"] * CALLS)
    going = [r for r in answered if r["status"] != "canceled"]
    skipped = [r for r in answered if r["status"] == "canceled"]
    assert len(going) == 1 and len(skipped) == CALLS - 1, [r["status"] for r in answered]
    winner = going[0]["id"]
    for run in skipped:  # the trigger call's own answer says so
        assert (
            run["failure_reason"] == f"skipped: run {winner} holds concurrency key 'account-acme'"
        )
        assert run["started_at"] is None and run["source"] == "webhook"
    assert wait_status(client, winner, timeout=60)["status"] == "completed"
    # Once it has ended, the key is free again.
    (later,) = fire(hook, ["acme"])
    assert later["status"] == "queued"
    assert wait_status(client, later["id"], timeout=60)["status"] == "completed"


def test_cancel_previous_keeps_the_newest(client: httpx.Client, site: SiteServer) -> None:
    hook = keyed_trigger(client, site, "cancel_previous", wait_ms=1500)
    answered = fire(hook, ["acme"] * CALLS)
    ids = {r["id"] for r in answered}
    ended = [wait_status(client, r["id"], timeout=90) for r in answered]
    kept = [r for r in ended if r["status"] == "completed"]
    canceled = [r for r in ended if r["status"] == "canceled"]
    assert len(kept) == 1 and len(canceled) == CALLS - 1, [r["status"] for r in ended]
    for run in canceled:
        reason = run["failure_reason"]
        assert reason.startswith("canceled: superseded by run "), reason
        superseding = reason.split()[4]
        assert superseding in ids and superseding != run["id"]
        assert "concurrency key 'account-acme'" in reason
    # A running run is canceled too, by its worker.
    (first,) = fire(hook, ["initech"])
    wait_status(client, first["id"], {"running"}, timeout=30)
    (second,) = fire(hook, ["initech"])
    stopped = wait_status(client, first["id"], timeout=30)
    assert stopped["status"] == "canceled", stopped["failure_reason"]
    assert stopped["failure_reason"] == (
        f"canceled: superseded by run {second['id']} (concurrency key 'account-initech')"
    )
    assert wait_status(client, second["id"], timeout=60)["status"] == "completed"


def test_the_key_and_policy_are_checked(client: httpx.Client, site: SiteServer) -> None:
    base = {
        "title": "x",
        "url": site.url,
        "blocks": [{"label": "v", "type": "action", "steps": [{"goto": "{{ url }}"}]}],
    }
    for extra, field in (
        ({"concurrency_key": "{{ account"}, "workflow.concurrency_key"),
        ({"concurrency_key": "k", "concurrency_policy": "later"}, "workflow.concurrency_policy"),
        ({"concurrency_key": "{{ nope }}"}, "workflow.concurrency_key"),
    ):
        answer = client.post("/runs", json={"workflow": {**base, **extra}})
        assert answer.status_code == 422, answer.text
        assert error_fields(answer) == [field], answer.text
