"""Live views of a run over real HTTP: Server-Sent Events (status changes and cards, with
backfill and Last-Event-ID) and the WebSocket of JPEG frames."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from examples.site_server import SiteServer
from tests.api.conftest import (
    BACKENDS,
    Service,
    SseEvent,
    collect_sse,
    create_run,
    timeline,
    visit_workflow,
    wait_status,
    waiting_workflow,
)


def two_pages(site: SiteServer) -> dict[str, Any]:
    """Two page visits: a handful of cards over a second or two."""
    return {
        "title": "watched live",
        "url": site.url,
        "timeout_s": 60,
        "blocks": [
            {
                "label": "browse",
                "type": "action",
                "steps": [{"goto": "{{ url }}"}, {"goto": "{{ url }}login.html"}],
            }
        ],
    }


def statuses(events: list[SseEvent]) -> list[str]:
    return [e.data["status"] for e in events if e.event == "status"]


def cards(events: list[SseEvent]) -> list[SseEvent]:
    return [e for e in events if e.event == "card"]


@pytest.mark.parametrize("service", BACKENDS, indirect=True)
def test_events_stream_a_run_live_and_replay_it_afterwards(
    client: httpx.Client, site: SiteServer, service: Service
) -> None:
    # The only worker is busy with the first run, so the watched one is still queued when
    # the stream starts.
    ahead = create_run(client, visit_workflow(site, title="ahead in the queue"))
    watched = create_run(client, two_pages(site))
    run_id = watched["id"]
    live = collect_sse(client, run_id)

    assert statuses(live) == ["queued", "running", "completed"], [(e.event, e.data) for e in live]
    assert all(e.data["run_id"] == run_id for e in live if e.event in ("status", "end"))
    assert live[-1].event == "end" and live[-1].data["status"] == "completed"
    assert [e.event for e in live].count("end") == 1

    streamed = cards(live)
    seqs = [e.data["seq"] for e in streamed]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert [e.id for e in streamed] == [str(s) for s in seqs]
    assert {e.data["kind"] for e in streamed} >= {"block", "action"}
    stored = timeline(client, run_id)
    assert [(c["seq"], c["id"]) for c in stored] == [
        (e.data["seq"], e.data["id"]) for e in streamed
    ]

    # Order: queued, running, the cards, completed, end.
    kinds = [e.event if e.event != "status" else e.data["status"] for e in live]
    assert kinds.index("running") < kinds.index("card")
    assert len(kinds) - 1 - kinds[::-1].index("card") < kinds.index("completed")
    # Live, not all at the end: the first card came well before the end.
    assert live[-1].at - streamed[0].at > 0.3, [round(e.at - live[0].at, 2) for e in live]
    assert wait_status(client, ahead["id"])["status"] == "completed"

    # Afterwards: the whole timeline again (backfill), the final status, the end.
    replay = collect_sse(client, run_id, timeout=15)
    assert [e.data for e in cards(replay)] == [e.data for e in streamed]
    assert [e.id for e in cards(replay)] == [e.id for e in streamed]
    assert statuses(replay)[-1] == "completed"
    assert replay[-1].event == "end"

    # Resuming after the second card: only what came after it.
    resumed = collect_sse(client, run_id, headers={"Last-Event-ID": "2"}, timeout=15)
    assert [e.data["seq"] for e in cards(resumed)] == seqs[2:]
    assert resumed[-1].event == "end"


def test_events_of_an_unknown_run_are_404(client: httpx.Client) -> None:
    answer = client.get("/runs/run_0000000000000000000000000/events")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/json")
    assert "run_0000000000000000000000000" in answer.json()["detail"]


def _ws_url(service: Service, run_id: str) -> str:
    return f"ws://{service.base_url.removeprefix('http://')}/api/v1/runs/{run_id}/live"


async def test_live_frames_are_jpegs_while_the_run_goes_and_the_socket_closes_at_its_end(
    service: Service, site: SiteServer
) -> None:
    async with httpx.AsyncClient(base_url=service.api, timeout=30) as http:
        answer = await http.post(
            "/runs", json={"workflow": waiting_workflow(site, timeout_ms=2500, title="frames")}
        )
        assert answer.status_code == 201, answer.text
        run_id = answer.json()["id"]

        frames: list[tuple[float, bytes]] = []
        async with asyncio.timeout(60), connect(_ws_url(service, run_id)) as ws:
            async for message in ws:
                assert isinstance(message, bytes), message
                frames.append((time.time(), message))
            closed_at = time.time()
            code, reason = ws.close_code, ws.close_reason

        record = (await http.get(f"/runs/{run_id}")).json()
    assert record["status"] == "failed"  # its wait_for timed out, as designed
    assert code == 1000 and reason == record["status"], (code, reason)
    assert frames, "no frame came while the run went"
    for _, data in frames:
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", data[:8]
    finished = datetime.fromisoformat(record["finished_at"]).timestamp()
    assert frames[0][0] < finished, "the first frame came only after the run had ended"
    # Closed at the end of the run, not left open until the client gives up (60 s).
    assert closed_at - finished < 10, f"closed {closed_at - finished:.1f} s after the run ended"

    # A finished run: nothing to show, closed at once with its status.
    async with asyncio.timeout(10), connect(_ws_url(service, run_id)) as ws:
        leftovers = [message async for message in ws]
    assert ws.close_code == 1000 and ws.close_reason == record["status"]
    assert all(isinstance(m, bytes) for m in leftovers)


async def test_live_frames_of_an_unknown_run_are_refused_cleanly(service: Service) -> None:
    """Not a server error and an abnormal close (1006): a 404 handshake or a policy close."""
    outcome: tuple[str, Any]
    try:
        async with (
            asyncio.timeout(10),
            connect(_ws_url(service, "run_0000000000000000000000000")) as ws,
        ):
            try:
                await ws.recv()
                outcome = ("message", None)
            except ConnectionClosed:
                outcome = ("closed", ws.close_code)
    except InvalidStatus as exc:
        outcome = ("handshake", exc.response.status_code)
    assert outcome in {("handshake", 404), ("handshake", 403)} or (
        outcome[0] == "closed" and outcome[1] in (1008, 4004, 4404)
    ), f"unknown run on the live socket: {outcome}"
