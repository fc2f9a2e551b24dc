"""API keys: created once in clear, stored hashed, looked up by a public prefix.

A key reads `gbx_<prefix>_<secret>`:

- `prefix`: 8 random characters of `[a-z0-9]`, stored in clear and indexed. It only finds the
  row (and names the key in listings); it grants nothing.
- `secret`: 43 random characters of `[A-Za-z0-9]` (256 bits from `secrets`), never stored.

Only `sha256:<hex of SHA-256 over the whole key>` is kept. A fast hash is the right tool here:
slow, salted hashes (bcrypt, scrypt, Argon2) exist to make guessing *low-entropy* passwords
expensive, but a key with 256 random bits cannot be guessed whatever the hash costs, so a stolen
database gives nothing usable, and checking a key costs microseconds instead of the ~100 ms per
request a password hash would. Salting is pointless too: no two keys share a secret.

The functions flush; callers commit (as everywhere in `storage`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import NotFound, ValidationFailed
from storage.ids import new_id
from storage.models import ApiKey, utcnow

KEY_SCHEME = "gbx"
PREFIX_LENGTH = 8
SECRET_LENGTH = 43  # 43 * log2(62) ≈ 256 bits
NAME_MAX_LENGTH = 200
HASH_ALGORITHM = "sha256"
# `last_used_at` is written at most this often per key, not once per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def hash_key(key: str) -> str:
    """The stored form of a key: `sha256:<hex>` (the algorithm is named so it can change)."""
    return f"{HASH_ALGORITHM}:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def parse_key(key: str) -> tuple[str, str] | None:
    """`(prefix, secret)` of a well-formed key, else None."""
    scheme, _, rest = key.strip().partition("_")
    prefix, _, secret = rest.partition("_")
    if (
        scheme != KEY_SCHEME
        or len(prefix) != PREFIX_LENGTH
        or len(secret) != SECRET_LENGTH
        or not set(prefix) <= set(_PREFIX_ALPHABET)
        or not set(secret) <= set(_SECRET_ALPHABET)
    ):
        return None
    return prefix, secret


def is_active(key: ApiKey) -> bool:
    return key.revoked_at is None


async def create_api_key(*, session: AsyncSession, name: str) -> tuple[ApiKey, str]:
    """Creates a key; returns its row and the key in clear, which exists nowhere else after."""
    name = name.strip()
    if not name:
        raise ValidationFailed("name", "an API key needs a name, e.g. the script that uses it")
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationFailed("name", f"at most {NAME_MAX_LENGTH} characters")
    prefix = _random(_PREFIX_ALPHABET, PREFIX_LENGTH)
    key = f"{KEY_SCHEME}_{prefix}_{_random(_SECRET_ALPHABET, SECRET_LENGTH)}"
    row = ApiKey(
        id=new_id("key"), name=name, prefix=prefix, key_hash=hash_key(key), created_at=utcnow()
    )
    session.add(row)
    await session.flush()
    return row, key


async def verify_api_key(
    *, session: AsyncSession, key: str, now: datetime | None = None
) -> ApiKey | None:
    """The active key row matching `key`, or None (malformed, unknown or revoked).

    Marks the key used, but writes `last_used_at` at most once per `LAST_USED_RESOLUTION`.
    """
    parsed = parse_key(key)
    if parsed is None:
        return None
    prefix, _secret = parsed
    candidates = await session.execute(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    )
    presented = hash_key(key).encode()
    match: ApiKey | None = None
    # Prefixes are random, not unique: compare every candidate, in constant time.
    for row in candidates.scalars():
        if hmac.compare_digest(row.key_hash.encode(), presented) and match is None:
            match = row
    if match is None:
        return None
    now = now or utcnow()
    if match.last_used_at is None or now - match.last_used_at >= LAST_USED_RESOLUTION:
        match.last_used_at = now
        await session.flush()
    return match


async def list_api_keys(*, session: AsyncSession, include_revoked: bool = True) -> list[ApiKey]:
    """Keys, oldest first."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list((await session.execute(query)).scalars())


async def get_api_key(*, session: AsyncSession, key_id: str) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound("API key", key_id)
    return row


async def revoke_api_key(*, session: AsyncSession, key_id: str) -> ApiKey:
    """Revokes a key for good. Revoking a revoked key keeps its first revocation time."""
    row = await get_api_key(session=session, key_id=key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.flush()
    return row


async def count_active_keys(*, session: AsyncSession) -> int:
    query = select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
    return int((await session.execute(query)).scalar_one())
