"""The shapes of the API's answers, for its OpenAPI description.

The routes build their JSON with the record functions (api/records.py and the routers'
`record`s); these models mirror those records field by field so that client generators and
fuzzers know what comes back. They describe, they do not serialize: the JSON stays the one the
record functions make, and tests/api/test_openapi.py checks real answers against these schemas.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

Json = dict[str, Any]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -----------------------------------------------------------------------------------


class Error(_Out):
    """Every refusal but a 422: what went wrong, in words that name the field or the thing."""

    detail: str = Field(examples=["run not found: run_01J…"])


class FieldError(_Out):
    loc: list[str | int] = Field(
        description="Where: `body`, `query`, `path` or `header`, then the path"
    )
    field: str = Field(description="The field at fault as a dotted path, e.g. `workflow.blocks[0]`")
    msg: str
    type: str = Field(description="The kind of error, e.g. `value_error`, `missing`")
    line: int | None = Field(
        default=None, description="Where the field is in a workflow sent as YAML/JSON text"
    )
    input: Any = Field(default=None, description="An excerpt of the refused input")


class FieldErrors(_Out):
    """422: the request is well-formed HTTP but its content is refused; each item names a field."""

    detail: list[FieldError]


class Unavailable(_Out):
    """503: a component this request needs (the database) is down."""

    detail: str
    status: str = Field(examples=["unavailable"])
    down: list[str]


# --- records ----------------------------------------------------------------------------------


class ArtifactRecord(_Out):
    id: str
    kind: str = Field(examples=["video"])
    name: str
    content_type: str
    size: int
    sha256: str
    created_at: str | None
    url: str = Field(description="Where its bytes are served")


class RecordCompleteness(_Out):
    complete: bool
    missing: list[str]


class RunRecord(_Out):
    id: str
    title: str
    status: str = Field(examples=["queued"])
    source: str = Field(examples=["api"])
    workflow_id: str | None
    parent_run_id: str | None
    schedule_id: str | None
    trigger_id: str | None
    tags: list[str]
    metadata: Json
    concurrency_key: str | None = Field(description="The workflow's key, rendered")
    not_before: str | None = Field(description="A follow-up is not claimed before this time")
    created_at: str | None
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    parameters: Json | None = Field(description="Secret values masked")
    summary: str | None
    summary_html: str | None = Field(description="The summary as safe HTML (Markdown, cleaned)")
    extracted_information: Any
    failure_reason: str | None
    step_count: int
    action_count: int
    metrics: Json | None
    record: RecordCompleteness
    timeout_s: int | None
    replay: Json | None = Field(
        description="What the run replayed: `cache_key`, `cache_version_id` (run_with: code), "
        "`from_run_id` and `from_block` (a rerun from a block), `continue_from`, and `blocks`: "
        "each block's label → replayed, healed or live; `new_version_id` when it made one"
    )
    artifacts: list[ArtifactRecord]
    webhook_url: str | None
    proxy: Json | None = Field(description="The password masked")
    extra_http_headers: dict[str, str] | None = Field(description="Secret headers masked")
    run_with: str | None
    archived: bool
    read: bool
    cancel_requested: bool
    attempt: int | None


class RunPage(_Out):
    items: list[RunRecord]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")
    counts: dict[str, int] = Field(description="Runs per status, for the filters in effect")


class TimelineCard(BaseModel):
    """A card; each kind adds its own fields (verb, target, text, …: see docs/api.md)."""

    model_config = ConfigDict(extra="allow")

    id: str
    seq: int
    kind: str = Field(examples=["action"])
    created_at: str | None
    video_ms: int | None
    block_label: str | None
    status: str | None
    duration_ms: int | None
    screenshot_artifact_id: str | None
    screenshot_url: str | None


class Timeline(_Out):
    items: list[TimelineCard]


class ArtifactList(_Out):
    items: list[ArtifactRecord]


class LastRun(_Out):
    id: str
    status: str | None
    created_at: str | None = None
    finished_at: str | None = None


class WorkflowRecord(_Out):
    id: str
    title: str
    description: str | None
    parameters: Json
    definition: Json = Field(description="The workflow as stored (secret defaults masked)")
    source: str = Field(description="The definition as YAML text")
    created_at: str | None
    updated_at: str | None
    last_run: LastRun | None


class WorkflowList(_Out):
    items: list[WorkflowRecord]


class ScheduleRecord(_Out):
    id: str
    workflow_id: str
    title: str | None
    kind: str = Field(examples=["cron", "interval", "once"])
    cron: str | None
    interval_s: int | None
    at: str | None
    timezone: str | None
    parameters: Json
    catch_up: str | None
    enabled: bool
    next_fire_at: str | None
    last_fire_at: str | None
    last_run: LastRun | None
    last_error: str | None
    skipped: int | None
    tags: list[str]
    metadata: Json
    created_at: str | None
    updated_at: str | None


class ScheduleList(_Out):
    items: list[ScheduleRecord]


class TriggerRecord(_Out):
    id: str
    workflow_id: str
    name: str | None
    kind: str = Field(
        examples=["webhook", "upload"],
        description="`webhook`: a JSON body starts a run; `upload`: each file starts a run",
    )
    file_parameter: str | None = Field(
        description="An upload trigger's `type: file` parameter, which takes each file"
    )
    url: str = Field(description="Where to POST a call")
    token_prefix: str | None
    parameters: Json
    signed: bool
    enabled: bool
    fire_count: int
    last_fired_at: str | None
    last_run_id: str | None
    tags: list[str]
    metadata: Json
    created_at: str | None


class TriggerCreated(TriggerRecord):
    token: str = Field(description="Shown once: only its hash is kept")
    hmac_secret: str | None = Field(default=None, description="Shown once, when `signed`")


class TriggerList(_Out):
    items: list[TriggerRecord]


class RunList(_Out):
    items: list[RunRecord]


class HookAnswer(RootModel[RunRecord | RunList]):
    """A webhook trigger's run, or an upload trigger's runs (`items`, one per file)."""


class UploadRecord(_Out):
    id: str
    name: str
    content_type: str
    size: int
    sha256: str
    created_at: str


class Health(_Out):
    status: str = Field(examples=["ok", "unavailable"])
    workers: int
    worker_restarts: int
    database_outages: int
    down: list[str] = Field(description="What is down, each naming its component")


class Activity(_Out):
    requests: list[Json]
    console: list[Json]
    truncated: bool
    missing: list[str]


class Reproduction(BaseModel):
    """Snippets that recreate the run (curl, Python, PowerShell) and the variables they read."""

    model_config = ConfigDict(extra="allow")


class CacheAction(_Out):
    verb: str | None
    locators: list[Json] = Field(description="The locator that worked first, then the fallbacks")
    args: Json = Field(description="The step's arguments, strings as templates over parameters")
    url: str | None = Field(description="The page's URL when the action was taken")
    code: str | None = Field(description="The locator as the generated script writes it")


class CacheBlock(_Out):
    type: str | None
    actions: int | list[CacheAction] = Field(
        description="How many actions (in a list), or the actions (one version)"
    )
    extracted: Json | None = Field(
        default=None, description="What the block reported (a goal's `complete`)"
    )
    fields: Json | None = Field(
        default=None,
        description="An extract instruction's values as field selectors (what a replay reads)",
    )


class CacheVersion(_Out):
    """One version of a saved workflow's action cache: the blocks a run left under a key."""

    id: str
    workflow_id: str | None
    cache_key: str | None
    run_id: str = Field(description="The run that made this version")
    created_at: str | None
    pinned: bool
    current: bool = Field(description="The version replays of its key use now")
    note: str | None = Field(description="Why it was made: recorded or healed blocks")
    blocks: dict[str, CacheBlock]


class CacheVersionList(_Out):
    items: list[CacheVersion]


RESPONSES: dict[str, type[BaseModel]] = {
    "runs-create": RunRecord,
    "runs-list": RunPage,
    "runs-get": RunRecord,
    "runs-activity": Activity,
    "runs-timeline": Timeline,
    "runs-artifacts": ArtifactList,
    "runs-cancel": RunRecord,
    "runs-rerun": RunRecord,
    "runs-duplicate": RunRecord,
    "runs-continue": RunRecord,
    "runs-archive": RunRecord,
    "runs-unarchive": RunRecord,
    "runs-read": RunRecord,
    "runs-unread": RunRecord,
    "runs-reproduce": Reproduction,
    "artifacts-get": ArtifactRecord,
    "workflows-create": WorkflowRecord,
    "workflows-list": WorkflowList,
    "workflows-get": WorkflowRecord,
    "workflows-replace": WorkflowRecord,
    "schedules-create": ScheduleRecord,
    "workflows-schedules-create": ScheduleRecord,
    "schedules-list": ScheduleList,
    "workflows-schedules-list": ScheduleList,
    "schedules-get": ScheduleRecord,
    "schedules-update": ScheduleRecord,
    "workflows-triggers-create": TriggerCreated,
    "workflows-triggers-list": TriggerList,
    "triggers-list": TriggerList,
    "triggers-get": TriggerRecord,
    "uploads-create": UploadRecord,
    "uploads-get": UploadRecord,
    "workflows-cache": CacheVersionList,
    "workflows-cache-get": CacheVersion,
    "workflows-cache-pin": CacheVersion,
    "workflows-cache-unpin": CacheVersion,
    "service-health": Health,
    "hooks-call": HookAnswer,
}
"""The answer's model of each operation (by operationId) whose route returns a plain dict."""

CREATES: dict[type[BaseModel], str] = {
    RunRecord: "run_id",
    WorkflowRecord: "workflow_id",
    ScheduleRecord: "schedule_id",
    TriggerCreated: "trigger_id",
    UploadRecord: "upload_id",
}
"""What a created record's `id` is called in the paths of the operations that take it."""
