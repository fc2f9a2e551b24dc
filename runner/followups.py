"""Follow-ups: a completed run whose workflow has `follow_up` queues its successor, due
`after_s` later, in the same transaction that stores its end (so a run that completes has its
follow-up, and one whose end is lost has none). The chain stops when `until` holds over the
extracted information or when `max_count` follow-ups were made."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from runner.templating import render_template
from runner.workflow import FollowUp
from storage.errors import ValidationFailed
from storage.models import Run, utcnow
from storage.runs import copy_run, transition
from storage.status import RunSource, RunStatus

log = logging.getLogger(__name__)


def until_holds(follow_up: FollowUp, scope: dict[str, Any], extracted: dict[str, Any]) -> bool:
    """Whether `until` holds over the parameters and `extracted` (also `extracted.<name>`'s
    names at the top level). A template error counts as holding: the chain stops, named."""
    if follow_up.until is None:
        return False
    template = "{% if " + follow_up.until + " %}1{% else %}0{% endif %}"
    values = {**scope, **extracted, "extracted": extracted}
    return render_template(template, values, "follow_up.until") == "1"


async def chain_length(*, session: AsyncSession, run: Run, limit: int) -> int:
    """How many follow-ups precede and include `run` in its chain (0 for the first run)."""
    count, current = 0, run
    while current.source == RunSource.follow_up.value and current.parent_run_id and count < limit:
        count += 1
        parent = await session.scalar(select(Run).where(Run.id == current.parent_run_id))
        if parent is None:
            break
        current = parent
    return count


async def queue_follow_up(
    *, session: AsyncSession, run: Run, follow_up: FollowUp, sealed_secrets: str | None
) -> Run | None:
    """Queues `run`'s follow-up unless its chain already has `max_count`, with the secrets
    `run` had (sealed; read before its end dropped them)."""
    made = await chain_length(session=session, run=run, limit=follow_up.max_count)
    if made >= follow_up.max_count:
        return None
    now = utcnow()
    successor = await copy_run(
        session=session, run=run, source=RunSource.follow_up, sealed_secrets=sealed_secrets
    )
    successor.not_before = now + timedelta(seconds=follow_up.after_s)
    successor.concurrency_key = run.concurrency_key
    return await transition(session=session, run_id=successor.id, to=RunStatus.queued, at=now)


def decide(follow_up: FollowUp | None, scope: dict[str, Any], extracted: dict[str, Any]) -> str:
    """'queue' or why not ('until holds', 'until: <error>')."""
    if follow_up is None:
        return "none"
    try:
        return "until holds" if until_holds(follow_up, scope, extracted) else "queue"
    except ValidationFailed as exc:
        return f"follow_up.until: {exc.message}"
