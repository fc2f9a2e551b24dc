"""storage.db: plain URLs in, the right driver out; SQLite set up for a writer plus readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from storage import migrate
from storage.artifacts import add_artifact
from storage.db import Database, async_url, sync_url
from storage.errors import ConfigurationError
from storage.models import Artifact, Run
from storage.runs import create_run
from storage.settings import StorageSettings
from storage.status import ArtifactKind, RunSource

# --- URL normalization --------------------------------------------------------------------


def test_sqlite_url_gets_aiosqlite_for_async_and_pysqlite_for_sync(tmp_path: Path) -> None:
    path = tmp_path / "data" / "glassbox.db"
    url = f"sqlite:///{path}"
    assert async_url(url).drivername == "sqlite+aiosqlite"
    assert async_url(url).database == str(path)
    assert sync_url(url).drivername == "sqlite"
    assert sync_url(url).database == str(path)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
def test_postgres_urls_get_psycopg(scheme: str) -> None:
    url = f"{scheme}://alice:pa%40ss@db.example:6543/glassbox?sslmode=require"
    for normalized in (async_url(url), sync_url(url)):
        assert normalized.drivername == "postgresql+psycopg"
        assert normalized.username == "alice"
        assert normalized.password == "pa@ss"
        assert (normalized.host, normalized.port) == ("db.example", 6543)
        assert normalized.database == "glassbox"
        assert normalized.query == {"sslmode": "require"}


def test_plain_postgres_url_as_users_write_it() -> None:
    normalized = async_url("postgresql://user@host/db")
    assert normalized.render_as_string() == "postgresql+psycopg://user@host/db"


@pytest.mark.parametrize("url", ["mysql://root@localhost/glassbox", "mssql+pyodbc://u@h/db"])
def test_unsupported_database_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="GLASSBOX_DATABASE_URL") as info:
        async_url(url)
    assert "unsupported" in str(info.value)
    assert "sqlite" in str(info.value) and "postgresql" in str(info.value)


@pytest.mark.parametrize("url", ["", "not a url", "://nowhere", "postgresql://h:port/db"])
def test_garbage_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="GLASSBOX_DATABASE_URL"):
        async_url(url)
    with pytest.raises(ConfigurationError, match="GLASSBOX_DATABASE_URL"):
        Database(url)


def test_garbage_url_error_does_not_echo_the_password() -> None:
    """A malformed URL's error goes to logs and stderr; its password must not go with it."""
    with pytest.raises(ConfigurationError) as info:
        async_url("postgresql://glassbox:hunter2@db:notaport/glassbox")
    assert "hunter2" not in str(info.value)


# --- SQLite setup -------------------------------------------------------------------------


async def test_sqlite_pragmas_are_applied_on_every_connection(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'glassbox.db'}")
    try:
        assert db.engine.dialect.name != "postgresql"
        for _ in range(2):  # a second connection gets them too, not only the first
            async with db.engine.connect() as conn:
                assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
                assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
                assert await conn.scalar(text("PRAGMA busy_timeout")) == 10000
            await db.engine.dispose()
    finally:
        await db.dispose()


async def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "glassbox.db"
    db = Database(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        async with db.session() as session:
            assert await session.scalar(text("SELECT 1")) == 1
        assert path.is_file()
    finally:
        await db.dispose()


def test_migrate_creates_the_sqlite_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "dir" / "glassbox.db"
    migrate.upgrade(f"sqlite:///{path}")
    assert path.is_file()


async def test_default_database_is_sqlite_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GLASSBOX_DATABASE_URL", raising=False)
    data_dir = tmp_path / "not" / "yet" / "data"
    settings = StorageSettings(data_dir=data_dir)
    url = settings.resolved_database_url
    assert url == f"sqlite:///{(data_dir / 'glassbox.db').resolve()}"
    migrate.upgrade(url)
    db = Database(url)
    try:
        async with db.session() as session:
            await create_run(
                session=session,
                title="t",
                definition={},
                parameters={},
                source=RunSource.cli,
                timeout_s=10,
            )
            await session.commit()
    finally:
        await db.dispose()
    assert (data_dir / "glassbox.db").is_file()


# --- both backends --------------------------------------------------------------------------


async def test_plain_url_connects_with_the_chosen_driver(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert (db.engine.dialect.name == "postgresql") == database_url.startswith("postgresql://")
        async with db.session() as session:
            assert await session.scalar(text("SELECT 1")) == 1
            if db.engine.dialect.name == "postgresql":
                name = database_url.rsplit("/", 1)[1]
                assert await session.scalar(text("SELECT current_database()")) == name
        assert db.engine.dialect.driver in ("psycopg", "aiosqlite")
    finally:
        await db.dispose()


async def test_foreign_keys_are_enforced_and_cascade(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(IntegrityError):
            await add_artifact(
                session=session,
                run_id="run_missing",
                kind=ArtifactKind.video,
                name="recording.mp4",
                content_type="video/mp4",
                size=1,
                sha256="0" * 64,
                key="runs/run_missing/video/recording.mp4",
            )
        await session.rollback()

        run = await create_run(
            session=session,
            title="t",
            definition={},
            parameters={},
            source=RunSource.api,
            timeout_s=10,
        )
        await add_artifact(
            session=session,
            run_id=run.id,
            kind=ArtifactKind.html,
            name="page.html",
            content_type="text/html",
            size=1,
            sha256="0" * 64,
            key=f"runs/{run.id}/html/page.html",
        )
        await session.commit()
        await session.execute(delete(Run).where(Run.id == run.id))
        await session.commit()
        assert (await session.execute(select(Artifact))).scalars().all() == []
