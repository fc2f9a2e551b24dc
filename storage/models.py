"""Tables. The current run status lives on the run row; its history is append-only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Workflow(Base):
    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)


class Schedule(Base):
    """When a saved workflow runs by itself: a cron expression (in `timezone`), a fixed
    interval, or one time (`at`). `next_fire_at` is advanced by compare-and-set, in the same
    transaction that queues the run, so each fire time makes exactly one run in any number of
    processes."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(
        ForeignKey("workflows.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str | None] = mapped_column(String(500))
    cron: Mapped[str | None] = mapped_column(String(200))
    interval_s: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime | None] = mapped_column()
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    catch_up: Mapped[str] = mapped_column(String(20), default="skip")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_fire_at: Mapped[datetime | None] = mapped_column(index=True)
    last_fire_at: Mapped[datetime | None] = mapped_column()
    last_run_id: Mapped[str | None] = mapped_column(String(40))
    skipped: Mapped[int] = mapped_column(Integer, default=0)  # fire times missed and skipped
    last_error: Mapped[str | None] = mapped_column(Text)  # why the last fire made no run
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # of the runs it makes
    run_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Trigger(Base):
    """A URL that starts a saved workflow: `POST /api/v1/hooks/{id}` with the trigger's token
    (stored hashed), its JSON body mapped to parameters by a template per parameter, and
    optionally signed by the caller (the HMAC secret is sealed)."""

    __tablename__ = "triggers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(
        ForeignKey("workflows.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64))
    token_prefix: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sealed_hmac_secret: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    fire_count: Mapped[int] = mapped_column(Integer, default=0)
    last_fired_at: Mapped[datetime | None] = mapped_column()
    last_run_id: Mapped[str | None] = mapped_column(String(40))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # of the runs it starts
    run_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # `webhook` (a JSON body → one run) or `upload` (files → one run each, given to the
    # workflow's `type: file` parameter `file_parameter`).
    kind: Mapped[str] = mapped_column(String(20), default="webhook", server_default="webhook")
    file_parameter: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), index=True)
    source: Mapped[str] = mapped_column(String(20))
    workflow_id: Mapped[str | None] = mapped_column(
        ForeignKey("workflows.id", ondelete="SET NULL"), index=True
    )
    parent_run_id: Mapped[str | None] = mapped_column(String(40))
    schedule_id: Mapped[str | None] = mapped_column(String(40), index=True)  # source: schedule
    trigger_id: Mapped[str | None] = mapped_column(String(40), index=True)  # webhook, upload
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")  # + run_tags
    run_metadata: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSON, default=dict, server_default="{}"
    )
    # The workflow as submitted (secret defaults masked) and the run's parameters (masked).
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Secret parameter values for a worker in another process, encrypted; never clear text.
    sealed_secrets: Mapped[str | None] = mapped_column(Text)
    timeout_s: Mapped[int] = mapped_column(Integer, default=300)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    proxy: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    extra_http_headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    run_with: Mapped[str] = mapped_column(String(10), default="agent")

    summary: Mapped[str | None] = mapped_column(Text)
    extracted_information: Mapped[Any | None] = mapped_column(JSON)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    step_count: Mapped[int] = mapped_column(Integer, default=0)
    action_count: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What the run's record lacks ("trace: not stored: masking failed: …"); null when nothing.
    record_missing: Mapped[list[str] | None] = mapped_column(JSON)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    worker_id: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested_at: Mapped[datetime | None] = mapped_column()
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    read_at: Mapped[datetime | None] = mapped_column()
    # Webhook delivery: pending until delivered or out of attempts.
    webhook_state: Mapped[str | None] = mapped_column(String(20))
    webhook_next_at: Mapped[datetime | None] = mapped_column()
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Not claimed before this time (a follow-up waiting for its `after_s`).
    not_before: Mapped[datetime | None] = mapped_column()
    # The workflow's `concurrency_key` rendered over the run's parameters: one run per key.
    concurrency_key: Mapped[str | None] = mapped_column(String(200), index=True)
    # Replay: what this run replays ({"from_run_id", "from_block"} for a rerun from a block,
    # {"continue_from"} for a continuation) and, once it ran, how each block went
    # ({"blocks": {label: "replayed" | "healed" | "live"}, "cache_key", "cache_version_id"}).
    replay: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The browser state (cookies, local storage) and URL the run ended with, sealed like secrets,
    # for a run continuing from it (`POST /runs/{id}/continue`); dropped after
    # GLASSBOX_CONTINUE_TTL_S. A continuation holds its parent's until it starts.
    sealed_state: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_runs_status_created", "status", "created_at"),
        # The run list: newest first (keyset on created_at, id) and per-status counts.
        Index("ix_runs_archived_created_id", "archived", "created_at", "id"),
        Index("ix_runs_archived_status", "archived", "status"),
    )


class ActionRecord(Base):
    """The resolved actions of one run, block by block (`blocks`: label → the block's actions
    with their locators and value templates, see runner.replay). A row of a saved workflow's
    run with `cached` set is a version of the workflow's action cache under `cache_key`; a run
    replayed without change keeps its row uncached (a rerun from one of its blocks reads it)."""

    __tablename__ = "action_records"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40), unique=True)
    workflow_id: Mapped[str | None] = mapped_column(
        ForeignKey("workflows.id", ondelete="CASCADE"), index=True
    )
    cache_key: Mapped[str | None] = mapped_column(String(200))
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    blocks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_action_records_cache", "workflow_id", "cache_key", "cached", "created_at"),
    )


class RunTag(Base):
    """A run's tags, one row each, for `GET /runs?tag=`."""

    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class RunStatusChange(Base):
    __tablename__ = "run_status_history"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str | None] = mapped_column(Text)


class TimelineCard(Base):
    __tablename__ = "timeline_cards"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    video_ms: Mapped[int] = mapped_column(Integer, default=0)
    block_label: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str | None] = mapped_column(String(20))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    screenshot_artifact_id: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_timeline_cards_run_seq", "run_id", "seq", unique=True),)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Upload(Base):
    """A file sent to `POST /api/v1/uploads`, for a run's `type: file` parameter (the run gets
    its own copy, an `input` artifact). Bytes under uploads/<id>/<name>."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    manual: Mapped[bool] = mapped_column(Boolean, default=False)


class LiveFrame(Base):
    """The newest screencast frame of a running run, for live views in other processes."""

    __tablename__ = "live_frames"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
