"""Writing a run's artifacts while it goes: bytes to the object store, a row to the database."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Iterable
from pathlib import Path

from storage.artifacts import add_artifact, artifact_key
from storage.db import Database
from storage.ids import new_id
from storage.models import Artifact
from storage.objects import ObjectStore
from storage.status import ArtifactKind

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".zip": "application/zip",
    ".har": "application/json",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".py": "text/x-python",
    ".html": "text/html",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".csv": "text/csv",
    ".txt": "text/plain",
}


def guess_content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_.() " else "_" for c in name).strip(" .")
    return cleaned[:200] or "file"


class ArtifactSink:
    """One per run. Names are made unique within a kind."""

    def __init__(self, *, db: Database, store: ObjectStore, run_id: str) -> None:
        self.db = db
        self.store = store
        self.run_id = run_id
        self._names: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    def _unique(self, kind: ArtifactKind, name: str) -> str:
        name = safe_name(name)
        stem, suffix = Path(name).stem, Path(name).suffix
        candidate, n = name, 1
        while (kind.value, candidate) in self._names:
            n += 1
            candidate = f"{stem}-{n}{suffix}"
        self._names.add((kind.value, candidate))
        return candidate

    async def _record(
        self,
        kind: ArtifactKind,
        name: str,
        content_type: str,
        size: int,
        sha256: str,
        key: str,
        artifact_id: str,
    ) -> Artifact:
        async with self.db.session() as session:
            artifact = await add_artifact(
                session=session,
                run_id=self.run_id,
                kind=kind,
                name=name,
                content_type=content_type,
                size=size,
                sha256=sha256,
                key=key,
                artifact_id=artifact_id,
            )
            await session.commit()
        return artifact

    async def put_bytes(
        self,
        kind: ArtifactKind,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        artifact_id: str | None = None,
    ) -> Artifact:
        return await self.put_chunks(
            kind, name, [data], content_type=content_type, artifact_id=artifact_id
        )

    async def put_chunks(
        self,
        kind: ArtifactKind,
        name: str,
        chunks: Iterable[bytes],
        *,
        content_type: str | None = None,
        artifact_id: str | None = None,
    ) -> Artifact:
        name = self._unique(kind, name)
        content_type = content_type or guess_content_type(name)
        key = artifact_key(self.run_id, kind, name)
        stored = await asyncio.to_thread(self.store.put, key, chunks, content_type=content_type)
        return await self._record(
            kind, name, content_type, stored.size, stored.sha256, key, artifact_id or new_id("art")
        )

    async def put_file(
        self,
        kind: ArtifactKind,
        name: str,
        path: Path,
        *,
        content_type: str | None = None,
    ) -> Artifact:
        name = self._unique(kind, name)
        content_type = content_type or guess_content_type(name)
        key = artifact_key(self.run_id, kind, name)
        stored = await asyncio.to_thread(self.store.put_file, key, path, content_type=content_type)
        return await self._record(
            kind, name, content_type, stored.size, stored.sha256, key, new_id("art")
        )
