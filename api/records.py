"""The JSON users see from the API, the CLI (`glassbox run --json`) and webhooks: the run
record, its artifacts and cards, with the API URLs they are served at."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import nh3
from markdown_it import MarkdownIt

from services.runs import SECRET_HEADERS
from storage.models import Artifact, Run, TimelineCard

API_PREFIX = "/api/v1"


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def content_url(artifact_id: str) -> str:
    return f"{API_PREFIX}/artifacts/{artifact_id}/content"


def artifact_record(artifact: Artifact) -> dict[str, Any]:
    return {
        "id": artifact.id,
        "kind": artifact.kind,
        "name": artifact.name,
        "content_type": artifact.content_type,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "created_at": iso(artifact.created_at),
        "url": content_url(artifact.id),
    }


def run_record(run: Run, artifacts: list[Artifact] | None = None) -> dict[str, Any]:
    return {
        "id": run.id,
        "title": run.title,
        "status": run.status,
        "source": run.source,
        "workflow_id": run.workflow_id,
        "parent_run_id": run.parent_run_id,
        "schedule_id": run.schedule_id,
        "trigger_id": run.trigger_id,
        "concurrency_key": run.concurrency_key,
        "not_before": iso(run.not_before) if run.not_before else None,
        "tags": list(run.tags or []),
        "metadata": run.run_metadata or {},
        "created_at": iso(run.created_at),
        "queued_at": iso(run.queued_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "parameters": run.parameters,
        "summary": run.summary,
        "summary_html": summary_html(run.summary),
        "extracted_information": run.extracted_information,
        "failure_reason": run.failure_reason,
        "step_count": run.step_count,
        "action_count": run.action_count,
        "metrics": run.metrics,
        "record": {"complete": not run.record_missing, "missing": list(run.record_missing or [])},
        "timeout_s": run.timeout_s,
        "replay": run.replay,
        "artifacts": [artifact_record(a) for a in artifacts or []],
    }


_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_SUMMARY_TAGS = {
    "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip


@lru_cache(maxsize=1024)
def summary_html(summary: str | None) -> str | None:
    """The summary (Markdown, written by a model that read untrusted pages) as HTML safe to
    insert in a page: raw HTML escaped, then only formatting tags and http(s)/mailto links
    kept (no images, so showing it loads nothing)."""
    if not summary:
        return None
    return nh3.clean(
        _MARKDOWN.render(summary),
        tags=_SUMMARY_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def card_record(card: TimelineCard) -> dict[str, Any]:
    return {
        "id": card.id,
        "seq": card.seq,
        "kind": card.kind,
        "created_at": iso(card.created_at),
        "video_ms": card.video_ms,
        "block_label": card.block_label,
        "status": card.status,
        "duration_ms": card.duration_ms,
        "screenshot_artifact_id": card.screenshot_artifact_id,
        "screenshot_url": (
            content_url(card.screenshot_artifact_id) if card.screenshot_artifact_id else None
        ),
        **card.data,
    }


def public_record(run: Run, artifacts: list[Artifact]) -> dict[str, Any]:
    """The run record with the run's options (secret headers and proxy password masked) and
    its flags: what the API answers and webhooks send."""
    record = run_record(run, artifacts)
    record.update(
        {
            "webhook_url": run.webhook_url,
            "proxy": _mask_proxy(run.proxy),
            "extra_http_headers": _mask_headers(run.extra_http_headers),
            "run_with": run.run_with,
            "archived": run.archived,
            "read": run.read_at is not None,
            "cancel_requested": run.cancel_requested_at is not None,
            "attempt": run.attempt,
        }
    )
    return record


def _mask_headers(headers: dict[str, Any] | None) -> dict[str, Any] | None:
    if not headers:
        return headers
    return {k: ("********" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


def _mask_proxy(proxy: dict[str, Any] | None) -> dict[str, Any] | None:
    if not proxy:
        return proxy
    return {k: ("********" if k == "password" else v) for k, v in proxy.items()}
