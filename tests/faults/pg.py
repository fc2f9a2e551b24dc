"""A private PostgreSQL cluster a test owns: its own data directory and port, so the test may
stop, restart or kill it without disturbing anyone else's database.

PostgreSQL refuses to run as root; tests here run as root, so the server runs as the `postgres`
user (runuser), in a temporary directory handed to it. Trust authentication on loopback only.

    with PrivateCluster(tmp_path / "pg") as pg:
        url = pg.url          # postgresql://postgres@127.0.0.1:PORT/glassbox
        pg.restart(down_s=3)  # a restart with 3 s of nothing listening
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from tests.api.conftest import free_port

BIN = Path(os.environ.get("GLASSBOX_TEST_PG_BIN", "/usr/local/bin"))
DATABASE = "glassbox"
RUN_AS = "postgres"


def _as_postgres(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []
    done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        [*prefix, *args], capture_output=True, text=True, timeout=60, **kwargs
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def available() -> str | None:
    """None if a private cluster can be made here, else why not."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (BIN / tool).exists():
            return f"{BIN / tool} not found (set GLASSBOX_TEST_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    return None


class PrivateCluster:
    """`root` must be reachable by the postgres user: by default a fresh directory in the
    system's temporary directory (pytest's tmp_path is private to root)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="glassbox-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def create(self) -> PrivateCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, RUN_AS, RUN_AS)
        _as_postgres(
            [
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        )
        self.port = free_port()
        self.start()
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        return self

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _as_postgres(
            [
                str(BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "30",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects every client and shuts down cleanly; `immediate` is a crash."""
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self, down_s: float, mode: str = "fast") -> float:
        """Stopped, nothing listening for `down_s`, started again. Returns the seconds it was
        really down."""
        began = time.monotonic()
        self.stop(mode)
        time.sleep(max(0.0, down_s - (time.monotonic() - began)))
        self.start()
        return time.monotonic() - began

    def running(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateCluster:
        return self.create()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.destroy()
