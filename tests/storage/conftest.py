from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from storage import migrate
from storage.db import Database
from storage.models import Base
from tests.s3server import SeaweedS3


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3().start(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


# --- databases -----------------------------------------------------------------------------
#
# `database_url` hands each test a fresh, empty database, as a plain URL of the form users
# write (sqlite:///path, postgresql://user@host/db); storage.db picks the driver.

POSTGRES_ADMIN_ENV = "GLASSBOX_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
TEST_DATABASE_PREFIX = "glassbox_test_"


def postgres_admin_url() -> str:
    """The server and maintenance database the test databases are created from."""
    return os.environ.get(POSTGRES_ADMIN_ENV) or DEFAULT_POSTGRES_ADMIN_URL


@cache
def _postgres_unreachable() -> str | None:
    """None if PostgreSQL answers, else why not (checked once per session)."""
    try:
        with psycopg.connect(postgres_admin_url(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {postgres_admin_url()} is not reachable: {exc}".strip()
    return None


def require_postgres() -> None:
    """Fail under CI (a missing database must not turn the suite green), skip locally."""
    problem = _postgres_unreachable()
    if problem is None:
        return
    hint = (
        f"start it (pg_ctlcluster --skip-systemctl-redirect <version> main start) or point "
        f"{POSTGRES_ADMIN_ENV} at a server where this user may CREATE DATABASE"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{problem}\nCI is set, so the postgres tests must run: {hint}", pytrace=False)
    pytest.skip(f"{problem} ({hint})")


def _admin_execute(statement: sql.Composed) -> None:
    with psycopg.connect(postgres_admin_url(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Creates an empty `glassbox_test_<random>`, yields its plain postgresql:// URL (as users
    write it: no driver) and drops it afterwards."""
    require_postgres()
    name = TEST_DATABASE_PREFIX + secrets.token_hex(6)
    _admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(postgres_admin_url())._replace(path=f"/{name}").geturl()
    finally:
        _admin_execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend, as a plain URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'glassbox.db'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "glassbox.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def _postgres_migrated() -> Iterator[str]:
    with postgres_database() as url:
        migrate.upgrade(url)
        yield url


def _truncate_all(url: str) -> None:
    tables = sql.SQL(", ").join(sql.Identifier(name) for name in Base.metadata.tables)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(tables))


@pytest.fixture(params=BACKENDS)
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at the head revision, with no rows, on each backend, as a plain URL.

    Migrated once and reused: SQLite copies a migrated file per test; PostgreSQL keeps one
    fresh database per module and empties its tables before each test (CREATE DATABASE costs
    up to seconds on a busy machine). test_migrations covers upgrading empty databases.
    """
    if request.param == "sqlite":
        path = tmp_path / "db" / "glassbox.db"
        path.parent.mkdir()
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    require_postgres()
    url: str = request.getfixturevalue("_postgres_migrated")
    _truncate_all(url)
    yield url


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    """A migrated database with its engine; disposed after the test."""
    database = Database(migrated_url)
    try:
        yield database
    finally:
        await database.dispose()
