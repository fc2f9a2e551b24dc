"""Upload rows: files sent for `type: file` parameters. Bytes live in the object store under
uploads/<upload_id>/<name>; a run that uses one gets its own copy (an `input` artifact)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import NotFound
from storage.models import Upload


def upload_key(upload_id: str, name: str) -> str:
    return f"uploads/{upload_id}/{name}"


async def add_upload(
    *,
    session: AsyncSession,
    upload_id: str,
    name: str,
    content_type: str,
    size: int,
    sha256: str,
    key: str,
) -> Upload:
    upload = Upload(
        id=upload_id, name=name, content_type=content_type, size=size, sha256=sha256, key=key
    )
    session.add(upload)
    await session.flush()
    return upload


async def get_upload(*, session: AsyncSession, upload_id: str) -> Upload:
    upload = await session.get(Upload, upload_id)
    if upload is None:
        raise NotFound("upload", upload_id)
    return upload
