"""The run state machine: statuses and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    created = "created"
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    terminated = "terminated"
    canceled = "canceled"
    timed_out = "timed_out"
    interrupted = "interrupted"


TERMINAL_STATUSES = frozenset(
    {
        RunStatus.completed,
        RunStatus.failed,
        RunStatus.terminated,
        RunStatus.canceled,
        RunStatus.timed_out,
        RunStatus.interrupted,
    }
)

_ENDINGS = TERMINAL_STATUSES

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.created: frozenset({RunStatus.queued, RunStatus.canceled}),
    RunStatus.queued: frozenset({RunStatus.running, RunStatus.canceled}),
    RunStatus.running: _ENDINGS,
    **{status: frozenset() for status in TERMINAL_STATUSES},
}


class RunSource(StrEnum):
    manual = "manual"
    api = "api"
    schedule = "schedule"
    webhook = "webhook"
    follow_up = "follow_up"
    rerun = "rerun"
    cli = "cli"
    agent = "agent"  # started by another run's `run_workflow` block
    upload = "upload"  # a file posted to an upload trigger (one run per file)


class CardKind(StrEnum):
    thought = "thought"
    block = "block"
    divergence = "divergence"
    action = "action"


class ArtifactKind(StrEnum):
    screenshot = "screenshot"
    video = "video"
    trace = "trace"
    har = "har"
    console = "console"
    download = "download"
    code = "code"
    llm_prompt = "llm_prompt"
    llm_response = "llm_response"
    html = "html"
    input = "input"  # a file given to the run (a `type: file` parameter)


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    return target in TRANSITIONS[current]
