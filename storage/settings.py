"""Storage settings: where the record lives."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLASSBOX_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./data"),
        description="Directory for the SQLite database, local artifacts and spool files.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "Database URL, e.g. postgresql://user@host/db. Default: SQLite file "
            "glassbox.db in the data directory."
        ),
    )
    storage_url: str | None = Field(
        default=None,
        description=(
            "Artifact store: s3://bucket for S3/MinIO, or a local directory path. "
            "Default: the artifacts folder in the data directory."
        ),
    )
    s3_endpoint: str | None = Field(
        default=None, description="S3 endpoint as host:port (MinIO, SeaweedFS, AWS...)."
    )
    s3_access_key: SecretStr | None = Field(default=None, description="S3 access key.")
    s3_secret_key: SecretStr | None = Field(default=None, description="S3 secret key.")
    s3_region: str | None = Field(default=None, description="S3 region, e.g. us-east-1.")
    s3_secure: bool = Field(default=True, description="Use TLS to reach the S3 endpoint.")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'glassbox.db').resolve()}"
