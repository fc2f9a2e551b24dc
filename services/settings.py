"""The settings tree: one section per area, each read from `GLASSBOX_*` environment variables.

Every entry point (`glassbox` and its commands, `create_app`, the demo, the benchmarks) loads
the tree once with `Settings.load()` and passes its sections down; nothing below reads the
environment. A bad value stops the start-up with an error naming its variable; a `GLASSBOX_*`
variable that is no setting (a typo, most often) is logged as a warning.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.llm import LLMSettings
from runner.settings import RunnerSettings
from storage.errors import ConfigurationError
from storage.settings import StorageSettings

__all__ = [
    "NOT_SETTINGS",
    "PREFIX",
    "SECTIONS",
    "LLMSettings",
    "RunnerSettings",
    "ServiceSettings",
    "Settings",
    "StorageSettings",
    "WebhookSettings",
    "setting_variables",
    "unknown_variables",
]

log = logging.getLogger(__name__)

PREFIX = "GLASSBOX_"


class ServiceSettings(BaseSettings):
    """The API and the workers."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address `glassbox serve` listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `glassbox serve` listens on.")
    workers: int = Field(
        default=1, ge=0, le=64, description="In-process workers of `glassbox serve` (0: API only)."
    )
    concurrency: int = Field(
        default=1, ge=1, le=64, description="Runs one worker executes at once."
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a worker's claim on a run lasts without a heartbeat.",
    )
    heartbeat_s: float = Field(
        default=5.0, gt=0, description="How often a worker renews the leases of its runs."
    )
    poll_s: float = Field(
        default=0.5,
        gt=0,
        description="How often workers look for queued runs and cancels without a notification.",
    )
    scheduler_poll_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often each `serve` and `worker` process fires due schedules.",
    )
    retry_interrupted: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Times a run whose worker vanished is queued again (as a new run).",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key that seals secret parameters of queued runs for workers in other processes "
            "(Fernet key; default: generated once into secret.key in the data directory)."
        ),
    )
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024,
        gt=0,
        description="Largest file POST /api/v1/uploads and `glassbox run --param NAME=@FILE` "
        "accept (bytes).",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL users reach the API at, used in reproduce snippets (default: "
        "the request's own base URL). Its host is also accepted in the `Host` header.",
    )
    allowed_hosts: str | None = Field(
        default=None,
        description="Comma-separated host names accepted in the `Host` header besides loopback "
        "names, the address the service is bound to and GLASSBOX_PUBLIC_URL's host (`*` accepts "
        "any host: DNS rebinding then reaches the service). Other hosts get `400`.",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest request body the API reads, in bytes (uploads have their own "
        "limit); a larger one gets `413` before it is read.",
    )


class WebhookSettings(BaseSettings):
    """Delivery of the webhooks of finished runs (`services.webhooks`)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    webhook_secret: SecretStr | None = Field(
        default=None, description="Key of the webhooks' HMAC-SHA256 signature."
    )
    webhook_attempts: int = Field(
        default=6, ge=1, le=50, description="Delivery attempts of a webhook before giving up."
    )
    webhook_first_retry_s: float = Field(
        default=2.0, gt=0, description="Delay before the first webhook retry; doubles each time."
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="Timeout of one webhook delivery attempt."
    )
    webhook_deny_private: bool = Field(
        default=False,
        description="Refuse webhook URLs on private, loopback and other non-public addresses "
        "(link-local and cloud-metadata addresses are always refused).",
    )


SECTIONS: dict[str, type[BaseSettings]] = {
    "storage": StorageSettings,
    "runner": RunnerSettings,
    "llm": LLMSettings,
    "service": ServiceSettings,
    "webhooks": WebhookSettings,
}
"""The sections of `Settings`, by attribute name."""

NOT_SETTINGS = frozenset(
    {
        # Read by API clients, not by Glassbox: the reproduce snippets (api/reproduce.py) send
        # it as X-API-Key, and it is often exported in the shell that starts the service.
        "GLASSBOX_API_KEY",
        # The remote Glassbox of `glassbox run|artifact|runs` (api/cli.py, like --server).
        "GLASSBOX_SERVER",
        # The port of the demo shop of `make run` (examples/demo.py).
        "GLASSBOX_DEMO_PORT",
        # The PostgreSQL server the test suite creates its databases on (tests/storage).
        "GLASSBOX_TEST_POSTGRES_URL",
    }
)
"""`GLASSBOX_*` variables that are read legitimately but are no setting: never warned about."""

S = TypeVar("S", bound=BaseSettings)


def variable_name(cls: type[BaseSettings], field: str) -> str:
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def setting_variables() -> dict[str, tuple[str, str]]:
    """Every setting's environment variable → (section, field), in the order of the tree."""
    return {
        variable_name(cls, field): (section, field)
        for section, cls in SECTIONS.items()
        for field in cls.model_fields
    }


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The `GLASSBOX_*` names in `environ` that are no setting → the setting meant, if one is
    close (names are case-insensitive, as the settings read them)."""
    known = setting_variables()
    suffixes = {name[len(PREFIX) :]: name for name in known}
    unknown: dict[str, str | None] = {}
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known or upper in NOT_SETTINGS:
            continue
        # Compared without the shared prefix, which would make every name look alike.
        close = difflib.get_close_matches(upper[len(PREFIX) :], list(suffixes), n=1)
        unknown[name] = suffixes[close[0]] if close else None
    return unknown


def warn_about_unknown_variables(environ: Mapping[str, str]) -> None:
    for name, meant in unknown_variables(environ).items():
        hint = f"did you mean {meant}?" if meant else "see docs/settings.md"
        log.warning("%s is not a Glassbox setting (%s)", name, hint)


def read_section(cls: type[S]) -> S:
    """One section from the environment; a bad value is a ConfigurationError naming it."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            problems.append(f"{variable_name(cls, field)}: {error['msg']}")
        raise ConfigurationError("; ".join(problems)) from None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The settings of a Glassbox process, one section per area."""

    storage: StorageSettings
    runner: RunnerSettings
    llm: LLMSettings
    service: ServiceSettings
    webhooks: WebhookSettings

    @classmethod
    def load(
        cls,
        *,
        storage: StorageSettings | None = None,
        runner: RunnerSettings | None = None,
        llm: LLMSettings | None = None,
        service: ServiceSettings | None = None,
        webhooks: WebhookSettings | None = None,
    ) -> Settings:
        """Every section not given, read from the environment. Raises ConfigurationError
        naming the variable of a bad value; logs a warning for each `GLASSBOX_*` variable
        that is no setting."""
        warn_about_unknown_variables(os.environ)
        return cls(
            storage=storage or read_section(StorageSettings),
            runner=runner or read_section(RunnerSettings),
            llm=llm or read_section(LLMSettings),
            service=service or read_section(ServiceSettings),
            webhooks=webhooks or read_section(WebhookSettings),
        )
