"""The run record: the JSON users see from the API, the CLI and webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.models import Artifact, Run, TimelineCard


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def artifact_record(artifact: Artifact) -> dict[str, Any]:
    return {
        "id": artifact.id,
        "kind": artifact.kind,
        "name": artifact.name,
        "content_type": artifact.content_type,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "created_at": iso(artifact.created_at),
        "url": f"/api/v1/artifacts/{artifact.id}/content",
    }


def run_record(run: Run, artifacts: list[Artifact] | None = None) -> dict[str, Any]:
    return {
        "id": run.id,
        "title": run.title,
        "status": run.status,
        "source": run.source,
        "workflow_id": run.workflow_id,
        "parent_run_id": run.parent_run_id,
        "created_at": iso(run.created_at),
        "queued_at": iso(run.queued_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "parameters": run.parameters,
        "summary": run.summary,
        "extracted_information": run.extracted_information,
        "failure_reason": run.failure_reason,
        "step_count": run.step_count,
        "action_count": run.action_count,
        "metrics": run.metrics,
        "record": {"complete": not run.record_missing, "missing": list(run.record_missing or [])},
        "timeout_s": run.timeout_s,
        "artifacts": [artifact_record(a) for a in artifacts or []],
    }


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
            f"/api/v1/artifacts/{card.screenshot_artifact_id}/content"
            if card.screenshot_artifact_id
            else None
        ),
        **card.data,
    }
