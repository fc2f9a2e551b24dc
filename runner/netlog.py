"""The network log: each response (or failure) written as one HAR entry per line while the run
goes (`network.jsonl` in the spool). The browser writes the real HAR only when the run's context
closes; when that never happens (a worker killed, a context that would not close) the HAR is
rebuilt from this log — headers, statuses and timings, without bodies — so the record still
has the run's requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.async_api import Request, Response

LOG_NAME = "network.jsonl"
REBUILT_NOTE = "rebuilt from the network log (no bodies)"


def _headers(headers: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers.items()]


def _started(request: Request) -> tuple[str, float]:
    timing = request.timing
    start = float(timing.get("startTime") or 0) / 1000 or datetime.now(UTC).timestamp()
    wait = float(timing.get("responseStart") or -1)
    return datetime.fromtimestamp(start, UTC).isoformat(), max(wait, 0.0)


def _request(request: Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "url": request.url,
        "httpVersion": "HTTP/1.1",
        "headers": _headers(request.headers),
        "queryString": [],
        "cookies": [],
        "headersSize": -1,
        "bodySize": -1,
    }


def response_entry(response: Response) -> dict[str, Any]:
    request = response.request
    started, wait = _started(request)
    headers = response.headers
    return {
        "startedDateTime": started,
        "time": wait,
        "request": _request(request),
        "response": {
            "status": response.status,
            "statusText": response.status_text,
            "httpVersion": "HTTP/1.1",
            "headers": _headers(headers),
            "cookies": [],
            "content": {"size": -1, "mimeType": headers.get("content-type", "")},
            "redirectURL": headers.get("location", ""),
            "headersSize": -1,
            "bodySize": -1,
        },
        "cache": {},
        "timings": {"send": 0, "wait": wait, "receive": 0},
        "_resourceType": request.resource_type,
    }


def failure_entry(request: Request) -> dict[str, Any]:
    started, _ = _started(request)
    return {
        "startedDateTime": started,
        "time": 0,
        "request": _request(request),
        "response": {
            "status": -1,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "headers": [],
            "cookies": [],
            "content": {"size": -1, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_failureText": request.failure or "failed",
        },
        "cache": {},
        "timings": {"send": 0, "wait": 0, "receive": 0},
        "_resourceType": request.resource_type,
    }


def rebuild_har(log: Path, har: Path) -> int:
    """Writes a HAR 1.2 file from the network log; returns its number of entries. Lines cut
    short (a crash mid-write) are skipped."""
    entries = []
    with log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    entries.sort(key=lambda e: str(e.get("startedDateTime", "")))
    document = {
        "log": {
            "version": "1.2",
            "creator": {"name": "glassbox", "version": "0.1.0", "comment": REBUILT_NOTE},
            "pages": [],
            "entries": entries,
        }
    }
    har.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return len(entries)
