"""Secret run inputs for a worker in another process: sealed (Fernet), never clear text.

The key comes from GLASSBOX_SECRET_KEY or, for a single machine, is generated once into
secret.key in the data directory, readable by its owner only (every process on that machine
then shares it). Sealed values live only while a run may still need them: `storage.runs`
drops them when the run ends.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from storage.errors import ConfigurationError

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"
KEY_MODE = 0o600


def load_key(configured: str | None, data_dir: Path) -> bytes:
    if configured:
        key = configured.strip().encode()
        try:
            valid = len(base64.urlsafe_b64decode(key)) == 32  # what Fernet(key) checks
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise ConfigurationError(
                "GLASSBOX_SECRET_KEY must be a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
        return key
    path = data_dir / KEY_FILE
    if path.exists():
        _tighten(path)
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(os.urandom(32))  # Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    except FileExistsError:  # another process of this machine made it first
        return path.read_bytes().strip()
    try:
        os.fchmod(fd, KEY_MODE)  # whatever the umask
        os.write(fd, key)
    finally:
        os.close(fd)
    return key


def _tighten(path: Path) -> None:
    """A key file others may read (or write) is made owner-only, with a warning."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "%s was readable by other users (mode %03o): restricted to its owner (%03o); "
            "anyone who read it can open the secrets of runs sealed with it",
            path,
            mode,
            KEY_MODE,
        )
        try:
            path.chmod(KEY_MODE)
        except OSError as exc:
            raise ConfigurationError(
                f"{path} is readable by other users (mode {mode:03o}) and cannot be restricted: "
                f"{exc.strerror}"
            ) from None


class Sealer:
    """Seals and opens with the key. cryptography is loaded at the first use: it takes a while,
    and many processes (the CLI's list verbs) never seal anything."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._cipher: Any = None

    @property
    def _fernet(self) -> Any:
        if self._cipher is None:
            from cryptography.fernet import Fernet

            self._cipher = Fernet(self._key)
        return self._cipher

    def seal(self, values: dict[str, Any]) -> str | None:
        """`values` (JSON data) encrypted; None when there is nothing to seal."""
        if not values:
            return None
        sealed: bytes = self._fernet.encrypt(json.dumps(values).encode())
        return sealed.decode()

    def open(self, sealed: str | None) -> dict[str, Any]:
        if not sealed:
            return {}
        from cryptography.fernet import InvalidToken

        try:
            return dict(json.loads(self._fernet.decrypt(sealed.encode())))
        except InvalidToken:
            raise ConfigurationError(
                "cannot open this run's secret inputs: GLASSBOX_SECRET_KEY differs from the "
                "key of the process that queued it"
            ) from None
