"""A run's network requests and console lines on the video's clock, so each timeline card can
show what the page did while it ran: read from the run's HAR and console log artifacts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.backends import Services
from storage.artifacts import list_artifacts
from storage.models import Artifact
from storage.runs import get_run
from storage.status import ArtifactKind

MAX_ENTRIES = 5000
"""Requests and console lines listed at most (each); `truncated` says when there were more."""
MAX_TEXT = 2000


@dataclass(frozen=True)
class Activity:
    requests: list[dict[str, Any]]
    console: list[dict[str, Any]]
    truncated: bool
    missing: list[str]  # what could not be read ("har: not recorded", …)


def _newest(artifacts: list[Artifact], kind: ArtifactKind) -> Artifact | None:
    found = [a for a in artifacts if a.kind == kind]
    return found[-1] if found else None


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_har(data: bytes, video_started_at: float | None) -> tuple[list[dict[str, Any]], bool]:
    """The HAR's entries, oldest first: method, URL, status (0 when no answer came), whether it
    failed (no answer, or 4xx/5xx), resource type, timing and `video_ms`."""
    har = json.loads(data)
    entries = har.get("log", {}).get("entries", []) if isinstance(har, dict) else []
    requests = []
    for entry in entries[:MAX_ENTRIES]:
        request, response = entry.get("request", {}), entry.get("response", {})
        started = _epoch(entry.get("startedDateTime"))
        status = int(response.get("status") or 0)  # -1 or 0: no answer came
        error = response.get("_failureText") or (None if status > 0 else "no response")
        requests.append(
            {
                "video_ms": (
                    max(0, round((started - video_started_at) * 1000))
                    if started is not None and video_started_at is not None
                    else None
                ),
                "started_at": entry.get("startedDateTime"),
                "method": request.get("method"),
                "url": str(request.get("url", ""))[:MAX_TEXT],
                "status": status,
                "failed": status <= 0 or status >= 400,
                "error": error,
                "type": entry.get("_resourceType"),
                "mime_type": response.get("content", {}).get("mimeType"),
                "size": response.get("content", {}).get("size"),
                "duration_ms": round(float(entry.get("time") or 0)),
            }
        )
    requests.sort(key=lambda r: r["started_at"] or "")
    return requests, len(entries) > MAX_ENTRIES


def parse_console(data: bytes) -> tuple[list[dict[str, Any]], bool]:
    lines = []
    raw = data.decode("utf-8", "replace").splitlines()
    for line in raw[:MAX_ENTRIES]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash or a full disk
        if not isinstance(entry, dict):
            continue
        lines.append(
            {
                "video_ms": entry.get("video_ms"),
                "type": entry.get("type"),
                "text": str(entry.get("text", ""))[:MAX_TEXT],
                "url": entry.get("url"),
                "line": entry.get("line"),
            }
        )
    return lines, len(raw) > MAX_ENTRIES


async def run_activity(services: Services, run_id: str) -> Activity:
    async with services.db.session() as session:
        run = await get_run(session=session, run_id=run_id)
        artifacts = await list_artifacts(session=session, run_id=run_id)
    video_started_at = (run.metrics or {}).get("video_started_at")
    missing: list[str] = []
    requests: list[dict[str, Any]] = []
    console: list[dict[str, Any]] = []
    truncated = False

    def read(artifact: Artifact) -> bytes:
        return b"".join(services.store.open(artifact.key))

    har = _newest(artifacts, ArtifactKind.har)
    if har is None:
        missing.append("network: no HAR was recorded")
    else:
        try:
            data = await asyncio.to_thread(read, har)
            requests, cut = await asyncio.to_thread(parse_har, data, video_started_at)
            truncated |= cut
        except (OSError, ValueError) as exc:
            missing.append(f"network: the HAR could not be read: {exc}")
    log = _newest(artifacts, ArtifactKind.console)
    if log is None:
        missing.append("console: no console log was recorded")
    else:
        try:
            lines, cut = await asyncio.to_thread(parse_console, await asyncio.to_thread(read, log))
            console, truncated = lines, truncated or cut
        except OSError as exc:
            missing.append(f"console: the log could not be read: {exc}")
    return Activity(requests=requests, console=console, truncated=truncated, missing=missing)
