"""Alembic, driven from code: `glassbox db upgrade` and the drift check in tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

from storage.db import _ensure_sqlite_dir, sync_url

_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(url: str) -> Config:
    config = Config(str(_INI))
    target = sync_url(url)
    _ensure_sqlite_dir(target)
    config.set_main_option(
        "sqlalchemy.url", target.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def upgrade(url: str, revision: str = "head") -> None:
    config = alembic_config(url)
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Processes starting together must not race on the same migration.
            connection.execute(text("SELECT pg_advisory_xact_lock(7715001)"))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


def check(url: str) -> None:
    """Raises if the models and the migrations disagree."""
    command.check(alembic_config(url))
