"""Runs, their status history, timeline cards and artifact rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, StatementError

from storage import ids
from storage.artifacts import add_artifact, artifact_key, get_artifact, list_artifacts
from storage.db import Database
from storage.errors import InvalidTransition, NotFound
from storage.ids import new_id
from storage.models import Run, RunStatusChange, Workflow
from storage.runs import count_by_status, create_run, get_run, status_history, transition
from storage.status import TERMINAL_STATUSES, ArtifactKind, CardKind, RunSource, RunStatus
from storage.timeline import add_card, list_cards

S = RunStatus
# The shortest legal path from `created` to each status.
PATHS: dict[RunStatus, list[RunStatus]] = {
    S.created: [],
    S.queued: [S.queued],
    S.running: [S.queued, S.running],
    **{t: [S.queued, S.running, t] for t in TERMINAL_STATUSES},
}


async def new_run(db: Database, *, title: str = "Find the cheapest lamp", **extra: Any) -> str:
    async with db.session() as session:
        values: dict[str, Any] = {
            "title": title,
            "definition": {"title": title, "blocks": []},
            "parameters": {"query": "lamp"},
            "source": RunSource.api,
            "timeout_s": 60,
            **extra,
        }
        run = await create_run(session=session, **values)
        await session.commit()
        return run.id


async def move(db: Database, run_id: str, *statuses: RunStatus, reason: str | None = None) -> Run:
    """Each transition in its own transaction, as the API and the worker do it."""
    for status in statuses:
        async with db.session() as session:
            await transition(session=session, run_id=run_id, to=status, reason=reason)
            await session.commit()
    return await fetch(db, run_id)


async def fetch(db: Database, run_id: str) -> Run:
    """A fresh read from the database, not an object cached in a session."""
    async with db.session() as session:
        return await get_run(session=session, run_id=run_id)


async def history(db: Database, run_id: str) -> list[RunStatusChange]:
    async with db.session() as session:
        return await status_history(session=session, run_id=run_id)


def assert_utc(value: datetime | None) -> datetime:
    assert value is not None
    assert value.tzinfo is not None, "datetimes must come back timezone-aware"
    assert value.utcoffset() == timedelta(0)
    return value


# --- create and the state machine ---------------------------------------------------------


async def test_create_run_starts_created_with_one_history_entry(db: Database) -> None:
    before = datetime.now(UTC)
    run_id = await new_run(db)
    after = datetime.now(UTC)

    run = await fetch(db, run_id)
    assert run.status == "created"
    assert run.source == "api"
    assert run.title == "Find the cheapest lamp"
    assert before <= assert_utc(run.created_at) <= after
    assert (run.queued_at, run.started_at, run.finished_at) == (None, None, None)
    assert run.failure_reason is None
    assert run.metrics == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "llm_calls": 0,
        "cost_usd": 0.0,
    }
    [entry] = await history(db, run_id)
    assert (entry.from_status, entry.to_status) == (None, "created")
    assert entry.at == run.created_at


async def test_run_keeps_its_inputs_and_outlives_its_workflow(db: Database) -> None:
    async with db.session() as session:
        session.add(Workflow(id="wf_lamps", title="Lamps", definition={"title": "Lamps"}))
        await session.commit()
    parent = await new_run(db)
    run_id = await new_run(
        db,
        source=RunSource.rerun,
        timeout_s=120,
        workflow_id="wf_lamps",
        parent_run_id=parent,
        webhook_url="https://hooks.example/glassbox",
        run_with="code",
        sealed_secrets="sealed:opaque",
    )
    run = await fetch(db, run_id)
    assert (run.source, run.timeout_s, run.run_with) == ("rerun", 120, "code")
    assert (run.workflow_id, run.parent_run_id) == ("wf_lamps", parent)
    assert run.webhook_url == "https://hooks.example/glassbox"
    assert run.sealed_secrets == "sealed:opaque"
    assert run.id != parent and run.id.startswith("run_")

    async with db.session() as session:
        await session.execute(delete(Workflow).where(Workflow.id == "wf_lamps"))
        await session.commit()
    assert (await fetch(db, run_id)).workflow_id is None  # ON DELETE SET NULL


async def test_happy_path_records_every_transition_with_its_time(db: Database) -> None:
    run_id = await new_run(db)
    times: dict[str, tuple[datetime, datetime]] = {}
    for status in (S.queued, S.running, S.completed):
        before = datetime.now(UTC)
        await move(db, run_id, status)
        times[status] = (before, datetime.now(UTC))

    run = await fetch(db, run_id)
    assert run.status == "completed"
    entries = await history(db, run_id)
    assert [(e.from_status, e.to_status) for e in entries] == [
        (None, "created"),
        ("created", "queued"),
        ("queued", "running"),
        ("running", "completed"),
    ]
    for entry in entries[1:]:
        low, high = times[entry.to_status]
        assert low <= assert_utc(entry.at) <= high, entry.to_status
    stamps = [e.at for e in entries]
    assert stamps == sorted(stamps)
    assert assert_utc(run.queued_at) == entries[1].at
    assert assert_utc(run.started_at) == entries[2].at
    assert assert_utc(run.finished_at) == entries[3].at
    assert run.failure_reason is None
    assert run.lease_expires_at is None


async def test_transition_at_an_explicit_time(db: Database) -> None:
    run_id = await new_run(db)
    at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with db.session() as session:
        await transition(session=session, run_id=run_id, to=S.queued, at=at)
        await session.commit()
    assert (await fetch(db, run_id)).queued_at == at
    assert (await history(db, run_id))[-1].at == at


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.completed, S.running),
        (S.queued, S.completed),
        (S.created, S.running),
        (S.created, S.completed),
        (S.created, S.created),
        (S.queued, S.queued),
        (S.queued, S.failed),
        (S.running, S.running),
        (S.running, S.queued),
        (S.running, S.created),
    ],
    ids=lambda s: str(s),
)
async def test_invalid_transitions_are_refused_and_change_nothing(
    db: Database, current: RunStatus, target: RunStatus
) -> None:
    run_id = await new_run(db)
    await move(db, run_id, *PATHS[current])
    before = await fetch(db, run_id)
    entries = len(await history(db, run_id))

    async with db.session() as session:
        with pytest.raises(InvalidTransition) as info:
            await transition(session=session, run_id=run_id, to=target, reason="nope")
        await session.commit()

    assert (info.value.run_id, info.value.current, info.value.target) == (
        run_id,
        current.value,
        target.value,
    )
    assert current.value in str(info.value) and target.value in str(info.value)
    after = await fetch(db, run_id)
    assert after.status == current.value
    assert (after.queued_at, after.started_at, after.finished_at) == (
        before.queued_at,
        before.started_at,
        before.finished_at,
    )
    assert after.failure_reason is None
    assert len(await history(db, run_id)) == entries


async def test_cancel_is_allowed_before_the_run_starts(db: Database) -> None:
    created = await new_run(db)
    await move(db, created, S.canceled, reason="changed my mind")
    queued = await new_run(db)
    await move(db, queued, S.queued, S.canceled, reason="changed my mind")
    for run_id in (created, queued):
        run = await fetch(db, run_id)
        assert run.status == "canceled"
        assert run.started_at is None
        assert_utc(run.finished_at)
        assert run.failure_reason == "changed my mind"


async def test_terminal_statuses_never_change_again(db: Database) -> None:
    refused: list[tuple[str, str]] = []
    for terminal in sorted(TERMINAL_STATUSES):
        run_id = await new_run(db, title=terminal)
        await move(db, run_id, *PATHS[terminal], reason="the end")
        settled = await fetch(db, run_id)
        for target in RunStatus:
            async with db.session() as session:
                with pytest.raises(InvalidTransition):
                    await transition(session=session, run_id=run_id, to=target)
                await session.commit()
            refused.append((terminal, target))
        run = await fetch(db, run_id)
        assert run.status == terminal
        assert run.finished_at == settled.finished_at
        assert [e.to_status for e in await history(db, run_id)][-1] == terminal
        assert len(await history(db, run_id)) == len(PATHS[terminal]) + 1
    assert len(refused) == len(TERMINAL_STATUSES) * len(RunStatus)


@pytest.mark.parametrize("ending", sorted(TERMINAL_STATUSES - {S.completed}), ids=str)
async def test_failure_reason_is_kept_for_endings_other_than_completed(
    db: Database, ending: RunStatus
) -> None:
    run_id = await new_run(db)
    reason = f'block "search", step 3 click #buy-now: {ending} — ünïcødé ✓'
    await move(db, run_id, S.queued, S.running)
    await move(db, run_id, ending, reason=reason)
    run = await fetch(db, run_id)
    assert run.status == ending
    assert run.failure_reason == reason
    assert (await history(db, run_id))[-1].reason == reason


async def test_completed_has_no_failure_reason(db: Database) -> None:
    run_id = await new_run(db)
    await move(db, run_id, S.queued, S.running)
    await move(db, run_id, S.completed, reason="all good")
    assert (await fetch(db, run_id)).failure_reason is None


async def test_an_earlier_failure_reason_is_not_overwritten(db: Database) -> None:
    run_id = await new_run(db)
    await move(db, run_id, S.queued, S.running)
    async with db.session() as session:
        run = await get_run(session=session, run_id=run_id)
        run.failure_reason = "step 2 failed: the first, precise reason"
        await session.commit()
    await move(db, run_id, S.failed, reason="generic")
    assert (await fetch(db, run_id)).failure_reason == "step 2 failed: the first, precise reason"


async def test_transition_of_a_missing_run_is_not_found(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(NotFound, match="run_nope"):
            await transition(session=session, run_id="run_nope", to=S.queued)
        with pytest.raises(NotFound):
            await get_run(session=session, run_id="run_nope")


async def test_count_by_status(db: Database) -> None:
    async with db.session() as session:
        assert await count_by_status(session=session) == {}
    plan = {S.created: 3, S.queued: 2, S.running: 1, S.completed: 4, S.failed: 1, S.canceled: 2}
    for status, count in plan.items():
        for _ in range(count):
            await move(db, await new_run(db), *PATHS[status])
    async with db.session() as session:
        assert await count_by_status(session=session) == {s.value: n for s, n in plan.items()}


# --- concurrency ----------------------------------------------------------------------------


async def race(
    db: Database, run_id: str, targets: list[RunStatus], *, preloaded: bool
) -> list[str]:
    """Each target in its own session, all at once; returns "won" or "lost" for each.

    Every session is inside a transaction (and, if preloaded, already holds the run in its
    identity map with its old status) before any of them asks for the transition. The winner
    holds its lock a moment before committing, so the others really have to wait on it.
    """
    ready = asyncio.Barrier(len(targets))

    async def attempt(worker: int, target: RunStatus) -> str:
        async with db.session() as session:
            if preloaded:
                await get_run(session=session, run_id=run_id)
            else:
                await session.execute(select(1))
            await ready.wait()
            try:
                run = await transition(session=session, run_id=run_id, to=target, reason="race")
            except InvalidTransition:
                await session.rollback()
                return "lost"
            run.worker_id = f"worker-{worker}"
            await asyncio.sleep(0.2)
            await session.commit()
            return "won"

    return await asyncio.wait_for(
        asyncio.gather(*(attempt(n, t) for n, t in enumerate(targets))), timeout=30
    )


@pytest.mark.parametrize("preloaded", [False, True], ids=["cold", "preloaded"])
async def test_concurrent_claims_of_one_run_let_exactly_one_win(
    db: Database, preloaded: bool
) -> None:
    """Two workers see the same queued run and both try to start it: exactly one may.

    PostgreSQL: the row lock (SELECT ... FOR UPDATE) in storage.runs.transition decides.
    SQLite (the embedded default, `glassbox serve --workers N`) needs the same guarantee.
    """
    run_id = await new_run(db)
    await move(db, run_id, S.queued)

    results = await race(db, run_id, [S.running, S.running], preloaded=preloaded)

    assert sorted(results) == ["lost", "won"]
    run = await fetch(db, run_id)
    assert run.status == "running"
    assert run.worker_id == f"worker-{results.index('won')}"
    assert [e.to_status for e in await history(db, run_id)] == ["created", "queued", "running"]


async def test_a_cancel_racing_the_worker_s_ending_leaves_one_terminal_status(
    db: Database,
) -> None:
    """The user cancels while the worker completes the run: one of them wins, and the run
    never changes again (no second terminal entry in its history)."""
    run_id = await new_run(db)
    await move(db, run_id, S.queued, S.running)

    results = await race(db, run_id, [S.completed, S.canceled], preloaded=True)

    assert sorted(results) == ["lost", "won"]
    winner = [S.completed, S.canceled][results.index("won")]
    run = await fetch(db, run_id)
    assert run.status == winner
    assert [e.to_status for e in await history(db, run_id)] == [
        "created",
        "queued",
        "running",
        winner,
    ]


# --- timeline cards -------------------------------------------------------------------------


async def test_cards_are_listed_in_seq_order_and_after_seq(db: Database) -> None:
    run_id = await new_run(db)
    other = await new_run(db)
    async with db.session() as session:
        # Inserted out of order: the listing follows seq, not insertion.
        for seq in (3, 1, 4, 2, 5):
            await add_card(
                session=session,
                run_id=run_id,
                seq=seq,
                kind=CardKind.action if seq % 2 else CardKind.thought,
                video_ms=seq * 100,
                block_label="search",
                status="completed",
                duration_ms=seq,
                data={"verb": "click", "n": seq},
            )
        await add_card(session=session, run_id=other, seq=1, kind=CardKind.block, video_ms=0)
        await session.commit()

    async with db.session() as session:
        cards = await list_cards(session=session, run_id=run_id)
        assert [c.seq for c in cards] == [1, 2, 3, 4, 5]
        assert [c.video_ms for c in cards] == [100, 200, 300, 400, 500]
        assert [c.kind for c in cards] == ["action", "thought", "action", "thought", "action"]
        assert cards[2].data == {"verb": "click", "n": 3}
        assert cards[2].block_label == "search"
        assert all(c.id.startswith("card_") for c in cards)
        assert_utc(cards[0].created_at)
        assert [c.seq for c in await list_cards(session=session, run_id=run_id, after_seq=3)] == [
            4,
            5,
        ]
        assert await list_cards(session=session, run_id=run_id, after_seq=5) == []
        assert [c.seq for c in await list_cards(session=session, run_id=other)] == [1]


async def test_a_seq_is_used_once_per_run(db: Database) -> None:
    run_id = await new_run(db)
    async with db.session() as session:
        await add_card(session=session, run_id=run_id, seq=1, kind=CardKind.thought, video_ms=0)
        await session.commit()
        with pytest.raises(IntegrityError):
            await add_card(session=session, run_id=run_id, seq=1, kind=CardKind.thought, video_ms=0)


# --- artifacts ------------------------------------------------------------------------------


async def test_artifacts_add_list_get(db: Database) -> None:
    run_id = await new_run(db)
    other = await new_run(db)
    added = []
    async with db.session() as session:
        for kind, name, content_type in [
            (ArtifactKind.video, "recording.mp4", "video/mp4"),
            (ArtifactKind.trace, "trace.zip", "application/zip"),
            (ArtifactKind.screenshot, "0001.png", "image/png"),
        ]:
            artifact = await add_artifact(
                session=session,
                run_id=run_id,
                kind=kind,
                name=name,
                content_type=content_type,
                size=5_000_000_000,  # beyond 32 bits
                sha256="ab" * 32,
                key=artifact_key(run_id, kind, name),
            )
            added.append(artifact.id)
        await add_artifact(
            session=session,
            run_id=other,
            kind=ArtifactKind.html,
            name="page.html",
            content_type="text/html",
            size=1,
            sha256="cd" * 32,
            key=artifact_key(other, ArtifactKind.html, "page.html"),
            artifact_id="art_chosen",
        )
        await session.commit()

    async with db.session() as session:
        listed = await list_artifacts(session=session, run_id=run_id)
        assert [a.id for a in listed] == added
        assert [a.kind for a in listed] == ["video", "trace", "screenshot"]
        video = await get_artifact(session=session, artifact_id=added[0])
        assert video.run_id == run_id
        assert (video.name, video.content_type) == ("recording.mp4", "video/mp4")
        assert video.size == 5_000_000_000
        assert video.sha256 == "ab" * 32
        assert video.key == f"runs/{run_id}/video/recording.mp4"
        assert video.id.startswith("art_")
        assert_utc(video.created_at)
        assert (await get_artifact(session=session, artifact_id="art_chosen")).run_id == other
        assert [a.id for a in await list_artifacts(session=session, run_id=other)] == ["art_chosen"]
        assert await list_artifacts(session=session, run_id="run_none") == []
        with pytest.raises(NotFound) as info:
            await get_artifact(session=session, artifact_id="art_missing")
        assert (info.value.what, info.value.ident) == ("artifact", "art_missing")


# --- types that must survive both backends -----------------------------------------------


async def test_datetimes_come_back_utc_aware(db: Database) -> None:
    run_id = await new_run(db)
    # An aware time in another zone is stored as the same instant and read back in UTC.
    plus_two = datetime(2031, 6, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    async with db.session() as session:
        await transition(session=session, run_id=run_id, to=S.queued, at=plus_two)
        await session.commit()
    run = await fetch(db, run_id)
    queued_at = assert_utc(run.queued_at)
    assert queued_at == plus_two
    assert queued_at.hour == 12 and queued_at.microsecond == 123456
    assert_utc(run.created_at)
    for entry in await history(db, run_id):
        assert_utc(entry.at)
    async with db.session() as session:
        # A query comparing against an aware bound works on both backends.
        found = await session.scalars(
            select(Run.id).where(Run.queued_at > datetime(2031, 6, 1, 12, 30, tzinfo=UTC))
        )
        assert list(found) == [run_id]


async def test_naive_datetimes_are_refused(db: Database) -> None:
    run_id = await new_run(db)
    async with db.session() as session:
        with pytest.raises(StatementError, match="naive datetime"):
            await transition(
                session=session, run_id=run_id, to=S.queued, at=datetime(2031, 1, 1, 12, 0)
            )


NESTED: dict[str, Any] = {
    "title": "Tischlampe — günstig ✓ 日本語 🙂",
    "blocks": [
        {"label": "search", "steps": [{"fill": {"selector": "#q", "value": 'naïve "quoted"'}}]},
        {"label": "products", "fields": {"prices": {"as": "number", "all": True}}},
    ],
    "numbers": [0, -1, 1.5, 10**15],
    "flags": {"on": True, "off": False, "none": None},
    "empty": {"list": [], "dict": {}},
    "escapes": "line\nbreak\ttab \\ backslash \u0001",
}


async def test_json_columns_round_trip(db: Database) -> None:
    extracted = [{"name": "Glow Reading Lamp", "price": 24.99}, "ünïcødé", 3, None]
    run_id = await new_run(
        db,
        title="Lampe 🙂",
        definition=NESTED,
        parameters={"query": "lämp", "password": "********"},
        proxy={"server": "http://proxy:3128", "bypass": ["localhost"]},
        extra_http_headers={"X-Ünïcode": "ü"},
    )
    async with db.session() as session:
        run = await get_run(session=session, run_id=run_id)
        run.extracted_information = extracted
        run.metrics = {**run.metrics, "prompt_tokens": 12, "cost_usd": 0.0125}
        await add_card(
            session=session, run_id=run_id, seq=1, kind=CardKind.thought, video_ms=0, data=NESTED
        )
        await session.commit()

    run = await fetch(db, run_id)
    assert run.title == "Lampe 🙂"
    assert run.definition == NESTED
    assert run.parameters == {"query": "lämp", "password": "********"}
    assert run.proxy == {"server": "http://proxy:3128", "bypass": ["localhost"]}
    assert run.extra_http_headers == {"X-Ünïcode": "ü"}
    assert run.extracted_information == extracted
    assert run.metrics["prompt_tokens"] == 12
    assert run.metrics["cost_usd"] == 0.0125
    async with db.session() as session:
        [card] = await list_cards(session=session, run_id=run_id)
        assert card.data == NESTED


# --- ids ------------------------------------------------------------------------------------


def test_ids_have_their_prefix_and_a_fixed_length() -> None:
    for prefix in ("run", "art", "card", "wf"):
        value = new_id(prefix)
        head, _, tail = value.partition("_")
        assert head == prefix
        assert len(tail) == 26
        assert set(tail) <= set("0123456789abcdefghjkmnpqrstvwxyz")
    assert len({new_id("run") for _ in range(1000)}) == 1000


def test_later_ids_sort_after_earlier_ones() -> None:
    made = []
    for _ in range(20):
        made.append(new_id("run"))
        time.sleep(0.002)  # ids in different milliseconds
    assert made == sorted(made)


@pytest.mark.parametrize(
    ("earlier", "later"),
    [(0.0, 0.001), (1_700_000_000.0, 1_700_000_000.001), (1_000_000_000.0, 9_000_000_000.0)],
)
def test_id_order_follows_time(
    monkeypatch: pytest.MonkeyPatch, earlier: float, later: float
) -> None:
    for _ in range(50):  # the random part never outranks the time part
        monkeypatch.setattr(ids.time, "time", lambda: later)
        late = new_id("run")
        monkeypatch.setattr(ids.time, "time", lambda: earlier)
        early = new_id("run")
        assert early < late


async def test_run_ids_page_like_creation_times(db: Database) -> None:
    made = []
    for n in range(5):
        made.append(await new_run(db, title=f"run {n}"))
        await asyncio.sleep(0.002)
    async with db.session() as session:
        by_id = list(await session.scalars(select(Run.id).order_by(Run.id)))
        by_time = list(await session.scalars(select(Run.id).order_by(Run.created_at)))
    assert by_id == by_time == made
