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
