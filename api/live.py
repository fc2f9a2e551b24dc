"""Live views of a run: Server-Sent Events of status changes and cards, a WebSocket of JPEG
frames. Both subscribe first, then backfill from the database, so nothing is missed; both work
across processes (PostgreSQL notifications, else polling)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from api.errors import field_error
from api.records import card_record
from services.backends import Services
from storage.errors import NotFound
from storage.frames import get_live_frame
from storage.notify import RUN
from storage.runs import get_run
from storage.status import TERMINAL_STATUSES, RunStatus
from storage.timeline import MAX_SEQ, list_cards

router = APIRouter(tags=["live"])

POLL_S = 1.0
_SEQ = re.compile(r"^[0-9]{1,18}$", re.ASCII)
KEEPALIVE_S = 15.0


def _sse(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, ensure_ascii=False)}")
    return ("\n".join(lines) + "\n\n").encode()


async def _wait_for_news(sub: Any, run_id: str, timeout: float) -> bool:
    """True when a notification about this run arrived; False on timeout (poll anyway)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        payload = await sub.get(remaining)
        if payload is None:
            return False
        try:
            if json.loads(payload).get("run_id") == run_id:
                return True
        except ValueError:
            continue


async def run_events(
    services: Services, run_id: str, after_seq: int, request: Request
) -> AsyncIterator[bytes]:
    sub = services.notifier.subscribe(RUN)
    try:
        last_status: str | None = None
        idle = 0.0
        yield b": glassbox events\n\n"
        while True:
            async with services.db.session() as session:
                run = await get_run(session=session, run_id=run_id)
                cards = await list_cards(session=session, run_id=run_id, after_seq=after_seq)
            for card in cards:
                after_seq = card.seq
                yield _sse("card", card_record(card), str(card.seq))
            if run.status != last_status:
                last_status = run.status
                yield _sse(
                    "status",
                    {
                        "run_id": run_id,
                        "status": run.status,
                        "failure_reason": run.failure_reason,
                        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                    },
                )
            if RunStatus(run.status) in TERMINAL_STATUSES:
                yield _sse("end", {"run_id": run_id, "status": run.status})
                return
            if await request.is_disconnected():
                return
            news = await _wait_for_news(sub, run_id, POLL_S)
            idle = 0.0 if news else idle + POLL_S
            if idle >= KEEPALIVE_S:
                idle = 0.0
                yield b": keep-alive\n\n"
    finally:
        sub.close()


@router.get(
    "/runs/{run_id}/events",
    summary="Server-Sent Events: status changes and new cards",
    response_class=StreamingResponse,
)
async def events(
    run_id: str,
    request: Request,
    last_event_id: str = Header(
        default="",
        alias="Last-Event-ID",
        description="Resume after this card number (the `id` of the last event received)",
        json_schema_extra={"pattern": r"^\s*(?:[0-9]{1,18}\s*)?$"},
    ),
    after_seq: int = Query(default=0, ge=0, le=MAX_SEQ),
) -> Response:
    if last_event_id.strip():
        if not _SEQ.match(last_event_id.strip()):
            return field_error(
                "Last-Event-ID",
                "expected a card number (digits 0-9, at most 18)",
                prefix=("header",),
            )
        # A number past the last possible card resumes after every card there can be.
        after_seq = max(after_seq, min(int(last_event_id.strip()), MAX_SEQ))
    services: Services = request.app.state.services
    async with services.db.session() as session:
        await get_run(session=session, run_id=run_id)  # 404 before the stream starts
    return StreamingResponse(
        run_events(services, run_id, after_seq, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/runs/{run_id}/live")
async def live(websocket: WebSocket, run_id: str) -> None:
    """JPEG frames of the browser while the run goes; closes when it ends."""
    services: Services = websocket.app.state.services
    async with services.db.session() as session:
        try:
            await get_run(session=session, run_id=run_id)
        except NotFound:
            await websocket.close(code=4404, reason=f"run {run_id} not found")
            return
    sub = services.notifier.subscribe(RUN)
    await websocket.accept()
    try:
        sent_seq = -1
        while True:
            async with services.db.session() as session:
                run = await get_run(session=session, run_id=run_id)
                frame = await get_live_frame(session=session, run_id=run_id)
                if frame is not None and frame.seq != sent_seq:
                    sent_seq = frame.seq
                    await websocket.send_bytes(frame.data)
            if RunStatus(run.status) in TERMINAL_STATUSES:
                await websocket.close(code=1000, reason=run.status)
                return
            await _wait_for_news(sub, run_id, 0.5)
    except WebSocketDisconnect:
        return
    finally:
        sub.close()
