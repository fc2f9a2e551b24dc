"""Domain errors, mapped to HTTP statuses in one place (api)."""

from __future__ import annotations


class GlassboxError(Exception):
    """Base for errors a user can act on."""


class ConfigurationError(GlassboxError):
    """A setting is missing or wrong; the message names it."""


class NotFound(GlassboxError):
    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} not found")
        self.what = what
        self.ident = ident


class InvalidTransition(GlassboxError):
    def __init__(self, run_id: str, current: str, target: str) -> None:
        super().__init__(f"run {run_id} is {current}; it cannot become {target}")
        self.run_id = run_id
        self.current = current
        self.target = target


class ValidationFailed(GlassboxError):
    """Input refused before anything ran. `field` is a dotted path to the culprit."""

    def __init__(
        self, field: str, message: str, *, location: str = "body", line: int | None = None
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.location = location  # body, query or path: where the field was sent
        self.line = line  # in a workflow's YAML/JSON text, when it came as text


class StateGone(GlassboxError):
    """A run to continue from kept no browser state (none recorded, or dropped since)."""

    def __init__(self, run_id: str, why: str) -> None:
        super().__init__(f"run {run_id} has no browser state to continue from: {why}")
        self.run_id = run_id


class WebhookError(GlassboxError):
    """A webhook delivery that cannot be attempted."""


class RunNotFinished(WebhookError):
    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is {status}; its webhook is sent once it has finished")
        self.run_id = run_id
        self.status = status


class WebhookNotConfigured(WebhookError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} has no webhook_url")
        self.run_id = run_id


class WebhookNotDue(WebhookError):
    """An automatic attempt for a webhook that is already delivered or failed."""

    def __init__(self, run_id: str, state: str) -> None:
        super().__init__(f"the webhook of run {run_id} is {state}; no automatic attempt is due")
        self.run_id = run_id
        self.state = state


class TriggerRefused(GlassboxError):
    """A trigger URL called without its token (or signature): the same answer whether or not
    the trigger exists."""

    def __init__(self, why: str = "invalid or missing trigger token") -> None:
        super().__init__(why)
