"""Saved workflow queries. A deleted workflow is archived, not removed: runs keep their own copy
of the definition, and their `workflow_id` still names it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import NotFound
from storage.ids import new_id
from storage.models import Run, Workflow, utcnow


async def create_workflow(
    *, session: AsyncSession, title: str, definition: dict[str, Any]
) -> Workflow:
    workflow = Workflow(id=new_id("wf"), title=title, definition=definition)
    session.add(workflow)
    await session.flush()
    return workflow


async def list_workflows(*, session: AsyncSession) -> list[Workflow]:
    """Saved workflows that are not archived, newest first."""
    rows = await session.execute(
        select(Workflow).where(Workflow.archived.is_(False)).order_by(Workflow.created_at.desc())
    )
    return list(rows.scalars())


async def get_workflow(*, session: AsyncSession, workflow_id: str) -> Workflow:
    """A saved workflow; NotFound if there is none or it was archived."""
    workflow = await session.get(Workflow, workflow_id)
    if workflow is None or workflow.archived:
        raise NotFound("workflow", workflow_id)
    return workflow


async def update_workflow(
    *, session: AsyncSession, workflow_id: str, title: str, definition: dict[str, Any]
) -> Workflow:
    workflow = await get_workflow(session=session, workflow_id=workflow_id)
    workflow.title, workflow.definition = title, definition
    workflow.updated_at = utcnow()
    await session.flush()
    return workflow


async def archive_workflow(*, session: AsyncSession, workflow_id: str) -> None:
    workflow = await get_workflow(session=session, workflow_id=workflow_id)
    workflow.archived = True
    await session.flush()


async def latest_runs(*, session: AsyncSession, workflow_ids: list[str]) -> dict[str, Run]:
    """The newest run of each of these workflows (archived runs included), by workflow id."""
    if not workflow_ids:
        return {}
    newest = (
        select(Run.workflow_id, func.max(Run.created_at).label("at"))
        .where(Run.workflow_id.in_(workflow_ids))
        .group_by(Run.workflow_id)
        .subquery()
    )
    rows = await session.execute(
        select(Run).join(
            newest, (Run.workflow_id == newest.c.workflow_id) & (Run.created_at == newest.c.at)
        )
    )
    return {run.workflow_id: run for run in rows.scalars() if run.workflow_id}
