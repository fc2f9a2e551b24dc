"""Sealed secret inputs: the key a process makes or is given, and what a wrong one says."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from storage.errors import ConfigurationError
from storage.sealing import KEY_FILE, Sealer, load_key


@pytest.mark.parametrize(
    "configured",
    ["short", "x" * 44, "MpjdSKRxCzKVYJEdZJ8L0Ki1vUUxtPUOx63JsNmCrjE"[:-4]],
    ids=["short", "33 bytes", "truncated"],
)
def test_a_configured_key_that_is_no_fernet_key_is_refused_by_name(
    configured: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="GLASSBOX_SECRET_KEY must be a Fernet key"):
        load_key(configured, tmp_path)
    assert not (tmp_path / KEY_FILE).exists()


def test_a_made_key_is_the_owner_s_alone_and_seals_for_the_next_process(tmp_path: Path) -> None:
    key = load_key(None, tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    Fernet(key)  # a real Fernet key
    sealed = Sealer(key).seal({"password": "hunter2"})
    assert sealed and "hunter2" not in sealed
    assert load_key(None, tmp_path) == key  # the next process reads the same key
    assert Sealer(load_key(None, tmp_path)).open(sealed) == {"password": "hunter2"}
    assert Sealer(key).seal({}) is None and Sealer(key).open(None) == {}


def test_a_configured_key_opens_what_it_sealed_and_another_key_says_so(tmp_path: Path) -> None:
    mine = load_key(Fernet.generate_key().decode() + "\n", tmp_path)  # a newline is forgiven
    sealed = Sealer(mine).seal({"token": "abc"})
    assert Sealer(mine).open(sealed) == {"token": "abc"}
    other = Sealer(Fernet.generate_key())
    with pytest.raises(ConfigurationError, match="GLASSBOX_SECRET_KEY differs"):
        other.open(sealed)
