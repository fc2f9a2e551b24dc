"""How a step or a run ends early: the exceptions the step engine and block handlers raise."""

from __future__ import annotations

from storage.status import RunStatus


class StepFailed(Exception):
    """A step could not be done; `reason` says why in a user's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunEnded(Exception):
    """Ends the run early with a status other than completed (terminate, guards)."""

    def __init__(self, status: RunStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ToolProblem(Exception):
    """An agent's tool call that could not be carried out; the model is told and may retry."""


def infrastructure_reason(exc: BaseException) -> str | None:
    """A failure of what runs depend on — the disk, the object store, the database — in the
    words of a failure reason that names the component (`disk full: [Errno 28] …`, `storage
    unavailable: connection refused`); None for any other error."""
    from runner.artifacts import database_failure, database_transient
    from storage.objects import disk_full, storage_failure, unavailable

    if disk_full(exc) or unavailable(exc):
        return storage_failure(exc)
    if database_transient(exc):
        return database_failure(exc)
    return None


def step_failure(exc: Exception) -> StepFailed:
    """`exc` as a step's failure: a `StepFailed` as it is, an infrastructure failure named;
    anything else is raised again (a bug, reported as an internal error)."""
    if isinstance(exc, StepFailed):
        return exc
    reason = infrastructure_reason(exc)
    if reason is None:
        raise exc
    return StepFailed(reason)
