"""Timeline cards: ordered per run by `seq`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.ids import new_id
from storage.models import TimelineCard, utcnow
from storage.status import CardKind

MAX_SEQ = 2**31 - 1  # a card number is a 32-bit integer in the database


async def next_seq(*, session: AsyncSession, run_id: str) -> int:
    """The seq after the run's last card (for cards added after the run ended)."""
    current = await session.scalar(
        select(func.max(TimelineCard.seq)).where(TimelineCard.run_id == run_id)
    )
    return (current or 0) + 1


async def add_card(
    *,
    session: AsyncSession,
    run_id: str,
    seq: int,
    kind: CardKind,
    video_ms: int,
    block_label: str | None = None,
    status: str | None = None,
    duration_ms: int | None = None,
    screenshot_artifact_id: str | None = None,
    data: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> TimelineCard:
    card = TimelineCard(
        created_at=created_at or utcnow(),
        id=new_id("card"),
        run_id=run_id,
        seq=seq,
        kind=kind.value,
        video_ms=video_ms,
        block_label=block_label,
        status=status,
        duration_ms=duration_ms,
        screenshot_artifact_id=screenshot_artifact_id,
        data=data or {},
    )
    session.add(card)
    await session.flush()
    return card


async def list_cards(
    *, session: AsyncSession, run_id: str, after_seq: int = 0
) -> list[TimelineCard]:
    rows = await session.execute(
        select(TimelineCard)
        .where(TimelineCard.run_id == run_id, TimelineCard.seq > after_seq)
        .order_by(TimelineCard.seq)
    )
    return list(rows.scalars())
