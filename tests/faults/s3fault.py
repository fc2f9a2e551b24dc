"""A SeaweedFS S3 server (tests/s3server.py) that a fault test can SIGKILL and start again on
the same ports and the same data directory, as an operator's restart would."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.s3server import SeaweedS3


class RestartableS3(SeaweedS3):
    """`kill()` SIGKILLs the whole server (master, volume, filer, S3 gateway); `restart()`
    starts it again with the same ports, data directory and keys, and waits until it takes
    writes."""

    def start_in(self, tmp_dir: Path) -> RestartableS3:
        self._tmp = tmp_dir
        self.start(tmp_dir)
        assert self._proc is not None
        self._args = [str(a) for a in self._proc.args]  # type: ignore[union-attr]
        return self

    def kill(self) -> None:
        proc = self._proc
        assert proc is not None, "not running"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self) -> float:
        """Seconds until the restarted server took a write."""
        started = time.monotonic()
        assert self._log_file is not None
        self._proc = subprocess.Popen(
            self._args,
            cwd=self._tmp,
            env={**os.environ, "HOME": str(self._tmp)},
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        return time.monotonic() - started

    def outage(self, seconds: float) -> threading.Thread:
        """Kills the server now and starts it again `seconds` later, in the background."""
        self.kill()

        def later() -> None:
            time.sleep(seconds)
            self.restart()

        thread = threading.Thread(target=later, name="s3-restart", daemon=True)
        thread.start()
        return thread
