"""Service settings: the API, workers, webhooks."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLASSBOX_", extra="ignore")

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
    public_url: str | None = Field(
        default=None,
        description="Base URL users reach the API at, used in reproduce snippets (default: "
        "the request's own base URL).",
    )
