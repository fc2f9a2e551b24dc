"""Live frames: the newest screencast frame of each running run, one row per run, so API
processes anywhere can show it."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import LiveFrame, Run, utcnow
from storage.status import TERMINAL_STATUSES


async def get_live_frame(*, session: AsyncSession, run_id: str) -> LiveFrame | None:
    return await session.get(LiveFrame, run_id)


async def put_live_frame(*, session: AsyncSession, run_id: str, seq: int, data: bytes) -> None:
    """Replaces the run's frame. Commit to keep."""
    row = await session.get(LiveFrame, run_id)
    if row is None:
        session.add(LiveFrame(run_id=run_id, seq=seq, data=data, updated_at=utcnow()))
    else:
        row.seq, row.data, row.updated_at = seq, data, utcnow()
    await session.flush()


async def delete_live_frame(*, session: AsyncSession, run_id: str) -> None:
    """Commit to keep."""
    await session.execute(delete(LiveFrame).where(LiveFrame.run_id == run_id))


async def delete_finished_live_frames(*, session: AsyncSession) -> int:
    """Frames of runs that ended (a worker that died kept its run's row). Commit to keep."""
    ended = select(Run.id).where(Run.status.in_([s.value for s in TERMINAL_STATUSES]))
    result = await session.execute(delete(LiveFrame).where(LiveFrame.run_id.in_(ended)))
    return int(getattr(result, "rowcount", 0) or 0)
