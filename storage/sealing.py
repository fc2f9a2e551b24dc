"""Secret parameter values for a worker in another process: sealed (Fernet), never clear text.

The key comes from GLASSBOX_SECRET_KEY or, for a single machine, is generated once into
secret.key in the data directory (every process on that machine then shares it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from storage.errors import ConfigurationError


def load_key(configured: str | None, data_dir: Path) -> bytes:
    if configured:
        key = configured.strip().encode()
        try:
            Fernet(key)
        except ValueError:
            raise ConfigurationError(
                "GLASSBOX_SECRET_KEY must be a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
        return key
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return key


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, values: dict[str, str]) -> str | None:
        if not values:
            return None
        return self._fernet.encrypt(json.dumps(values).encode()).decode()

    def open(self, sealed: str | None) -> dict[str, str]:
        if not sealed:
            return {}
        try:
            return dict(json.loads(self._fernet.decrypt(sealed.encode())))
        except InvalidToken:
            raise ConfigurationError(
                "cannot open this run's secret parameters: GLASSBOX_SECRET_KEY differs from the "
                "key of the process that queued it"
            ) from None
