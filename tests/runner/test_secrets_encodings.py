"""Masking catches a secret's common encodings: case changes and base64 at any alignment."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from runner.secrets import MASK, SecretMasker, base64_fragments, option_secrets

SECRET = "Tr0ub4dor&3-horse"


@pytest.mark.parametrize("text", [SECRET.upper(), SECRET.lower(), SECRET.swapcase()])
def test_other_case_is_masked(text: str) -> None:
    assert SecretMasker([SECRET]).mask_text(f"<b>{text}</b>") == f"<b>{MASK}</b>"


@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc", "user:", "x" * 100])
@pytest.mark.parametrize("urlsafe", [False, True])
def test_base64_inside_a_larger_blob_at_every_alignment(prefix: str, urlsafe: bool) -> None:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    blob = encode(f"{prefix}{SECRET}?tail=1".encode()).decode()
    masked = SecretMasker([SECRET]).mask_text(blob)
    assert MASK in masked
    assert not any(f in masked for f in base64_fragments(SECRET))


def test_basic_auth_of_a_secret_password_is_masked() -> None:
    header = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    masked = SecretMasker([SECRET]).mask_text(f"authorization: {header}")
    assert header not in masked and MASK in masked


def test_basic_auth_header_given_as_option_masks_its_password_anywhere() -> None:
    header = "Basic " + base64.b64encode(b"bob:pw-19-apples").decode()
    masker = SecretMasker(option_secrets({"Authorization": header}, None))
    assert masker.mask_text("typed pw-19-apples") == f"typed {MASK}"
    assert masker.mask_text("PW-19-APPLES") == MASK


def test_short_values_get_no_base64_fragments_and_plain_text_is_left_alone() -> None:
    assert base64_fragments("abcde") == []
    masker = SecretMasker([SECRET])
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert masker.mask_text(text) == text
    assert (
        masker.mask_text(base64.b64encode(text.encode()).decode())
        == base64.b64encode(text.encode()).decode()
    )


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_files_are_masked_in_any_case_and_base64_across_chunk_boundaries(
    tmp_path: Path, chunk_size: int
) -> None:
    masker = SecretMasker([SECRET])
    blob = base64.b64encode(f"ab{SECRET}!".encode())
    for offset in range(0, 40, 3):
        path = tmp_path / f"log-{chunk_size}-{offset}.txt"
        pad = b"x" * offset
        path.write_bytes(pad + SECRET.upper().encode() + b"|" + blob + b"|" + pad)
        masker.mask_file(path, chunk_size=chunk_size)
        masked = path.read_bytes()
        assert SECRET.upper().encode() not in masked
        assert not any(f.encode() in masked for f in base64_fragments(SECRET))
        assert masked.startswith(pad + MASK.encode() + b"|") and masked.endswith(b"|" + pad)


def test_masking_a_large_base64_blob_stays_fast() -> None:
    blob = base64.b64encode(bytes(range(256)) * 20_000).decode()  # ~6.8 MB
    masker = SecretMasker([SECRET, "another-secret-value", "x9-third"])
    started = time.perf_counter()
    assert masker.mask_text(blob) == blob
    assert time.perf_counter() - started < 10  # about 0.5 s on a quiet machine
