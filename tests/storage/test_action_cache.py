"""The action cache's versions on SQLite and PostgreSQL: the current one is the pinned one of a
key, else the newest; pinning moves the pin; a key keeps its newest versions (and the pinned
one) when pruned; taking a version out keeps the run's own record; expired browser states are
dropped."""

from __future__ import annotations

from datetime import timedelta

from storage import action_cache as cache
from storage.db import Database
from storage.models import Run
from storage.runs import drop_expired_states
from storage.status import RunStatus
from storage.workflows import create_workflow
from tests.storage.test_runs import move, new_run


async def test_current_pin_prune_and_drop(db: Database) -> None:
    async with db.session() as session:
        workflow = await create_workflow(session=session, title="w", definition={})
        await session.commit()
    made = []
    for n in range(4):
        async with db.session() as session:
            row = await cache.save_record(
                session=session,
                run_id=f"run_{n}",
                blocks={"b": {"n": n}},
                workflow_id=workflow.id,
                cache_key="k" if n < 3 else "other",
                cached=True,
            )
            await session.commit()
            made.append(row.id)
    async with db.session() as session:
        current = await cache.current_version(
            session=session, workflow_id=workflow.id, cache_key="k"
        )
        assert current is not None and current.id == made[2]
        await cache.set_pinned(
            session=session, workflow_id=workflow.id, version_id=made[0], pinned=True
        )
        await session.commit()
        current = await cache.current_version(
            session=session, workflow_id=workflow.id, cache_key="k"
        )
        assert current is not None and current.id == made[0]
        await cache.set_pinned(
            session=session, workflow_id=workflow.id, version_id=made[1], pinned=True
        )
        await session.commit()
        versions = await cache.list_versions(
            session=session, workflow_id=workflow.id, cache_key="k"
        )
        assert [(v.id, v.pinned) for v in versions] == [
            (made[2], False),
            (made[1], True),
            (made[0], False),
        ]
        await cache.prune_versions(session=session, workflow_id=workflow.id, cache_key="k", keep=1)
        await session.commit()
        kept = await cache.list_versions(session=session, workflow_id=workflow.id)
        assert {v.id for v in kept} == {made[1], made[2], made[3]}  # the pinned one stays
        await cache.drop_version(session=session, workflow_id=workflow.id, version_id=made[2])
        await session.commit()
        assert (await cache.record_of_run(session=session, run_id="run_2")) is not None
        current = await cache.current_version(
            session=session, workflow_id=workflow.id, cache_key="k"
        )
        assert current is not None and current.id == made[1]


async def test_expired_browser_states_are_dropped(db: Database) -> None:
    ended, running = await new_run(db), await new_run(db)
    await move(db, ended, RunStatus.queued, RunStatus.running, RunStatus.completed)
    await move(db, running, RunStatus.queued, RunStatus.running)
    async with db.session() as session:
        for run_id in (ended, running):
            row = await session.get(Run, run_id)
            assert row is not None
            row.sealed_state = "sealed"
        await session.commit()
        finished = (await session.get(Run, ended)).finished_at  # type: ignore[union-attr]
        assert finished is not None
        assert await drop_expired_states(session=session, ended_before=finished) == 0
        later = finished + timedelta(seconds=1)
        assert await drop_expired_states(session=session, ended_before=later) == 1
        await session.commit()
    async with db.session() as session:
        assert (await session.get(Run, ended)).sealed_state is None  # type: ignore[union-attr]
        assert (await session.get(Run, running)).sealed_state == "sealed"  # type: ignore[union-attr]
