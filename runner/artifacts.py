"""Writing a run's artifacts while it goes: bytes to the object store, a row to the database.

Both are retried with backoff while the store or the database is down (`retry_s`). What still
could not be stored is kept in the run's spool (`pending/`, with what it needs to be stored
later by runner.salvage) and reported: `StoreFailed` carries the line for `record.missing`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from storage.artifacts import add_artifact, artifact_key
from storage.db import Database
from storage.ids import new_id
from storage.models import Artifact, utcnow
from storage.objects import ObjectStore, StoredObject, file_chunks, storage_failure, transient
from storage.status import ArtifactKind

log = logging.getLogger(__name__)

T = TypeVar("T")

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
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
PENDING = "pending"  # the spool's folder of artifacts waiting to be stored


def guess_content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_.() " else "_" for c in name).strip(" .")
    return cleaned[:200] or "file"


def missing_line(kind: ArtifactKind | str, name: str, reason: str) -> str:
    """One line of `record.missing`: `<kind> <name>: <reason>` (runner.salvage strikes the
    lines of what it stores by that prefix)."""
    return f"{getattr(kind, 'value', kind)} {name}: {reason}"


class StoreFailed(Exception):
    """An artifact not stored within the retry budget. `reason` names the component
    (`storage unavailable: connection refused`, `disk full: …`); `kept`: it waits in the
    run's spool for a later sweep."""

    def __init__(self, kind: ArtifactKind, name: str, reason: str, *, kept: bool) -> None:
        self.kind = kind
        self.name = name
        self.reason = reason
        self.kept = kept
        super().__init__(self.line)

    @property
    def line(self) -> str:
        suffix = "; kept on the worker for a later retry" if self.kept else ""
        return missing_line(self.kind, self.name, self.reason + suffix)


def database_transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError | TimeoutError)


def database_failure(exc: BaseException) -> str:
    text = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
    return f"database unavailable: {text[:200]}"


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    budget_s: float,
    transient: Callable[[BaseException], bool],
    what: str,
    stop_by: Callable[[], float | None] = lambda: None,
) -> T:
    """`attempt()` again after a transient failure, backing off (0.5 s doubling to 5 s) while
    `budget_s` lasts, and not past `stop_by()` (time.monotonic(), asked after each failure: set
    when the worker shuts down); the last failure is raised."""
    deadline = time.monotonic() + budget_s
    delay = RETRY_FIRST_S
    while True:
        try:
            return await attempt()
        except Exception as exc:
            stop = stop_by()
            until = deadline if stop is None else min(deadline, stop)
            if not transient(exc) or time.monotonic() + delay > until:
                raise
            log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


class ArtifactSink:
    """One per run. Names are made unique within a kind. `pending`: where artifacts that could
    not be stored are kept (the run's spool), None to keep nothing."""

    def __init__(
        self,
        *,
        db: Database,
        store: ObjectStore,
        run_id: str,
        retry_s: float = 120.0,
        pending: Path | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.run_id = run_id
        self.retry_s = retry_s
        self.pending = pending
        # When retries must end sooner than retry_s (its worker shutting down), else None.
        self.stop_by: Callable[[], float | None] = lambda: None
        self._names: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    def reserve(self, kind: ArtifactKind, name: str) -> None:
        """A name already taken (an artifact stored before this sink existed)."""
        self._names.add((kind.value, name))

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
        stored: StoredObject,
        artifact_id: str,
        created_at: datetime,
    ) -> Artifact:
        async def attempt() -> Artifact:
            try:
                async with self.db.session() as session:
                    artifact = await add_artifact(
                        session=session,
                        run_id=self.run_id,
                        kind=kind,
                        name=name,
                        content_type=content_type,
                        size=stored.size,
                        sha256=stored.sha256,
                        key=stored.key,
                        artifact_id=artifact_id,
                        created_at=created_at,
                    )
                    await session.commit()
                return artifact
            except IntegrityError:
                # A commit whose answer was lost with the connection: the row is there.
                async with self.db.session() as session:
                    existing = await session.get(Artifact, artifact_id)
                if existing is None:
                    raise
                return existing

        return await retrying(
            attempt,
            budget_s=self.retry_s,
            transient=database_transient,
            stop_by=self.stop_by,
            what=f"run {self.run_id}: artifact row {kind.value} {name}",
        )

    async def put_bytes(
        self,
        kind: ArtifactKind,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        artifact_id: str | None = None,
    ) -> Artifact:
        return await self._put(
            kind,
            name,
            content_type,
            artifact_id,
            lambda key, ct: self.store.put(key, [data], content_type=ct),
            data=data,
        )

    async def put_file(
        self,
        kind: ArtifactKind,
        name: str,
        path: Path,
        *,
        content_type: str | None = None,
        consume: bool = False,
        artifact_id: str | None = None,
        created_at: datetime | None = None,
    ) -> Artifact:
        """`consume`: the file is deleted once stored (a spool file: the spool then holds
        only what is still to be stored)."""
        artifact = await self._put(
            kind,
            name,
            content_type,
            artifact_id,
            lambda key, ct: self.store.put(key, file_chunks(path), content_type=ct),
            path=path,
            created_at=created_at,
        )
        if consume:
            with contextlib.suppress(OSError):
                path.unlink()
        return artifact

    async def _put(
        self,
        kind: ArtifactKind,
        name: str,
        content_type: str | None,
        artifact_id: str | None,
        put: Callable[[str, str], StoredObject],
        *,
        data: bytes | None = None,
        path: Path | None = None,
        created_at: datetime | None = None,
    ) -> Artifact:
        created_at = created_at or utcnow()  # the run's order, however late the row is written
        name = self._unique(kind, name)
        content_type = content_type or guess_content_type(name)
        artifact_id = artifact_id or new_id("art")
        key = artifact_key(self.run_id, kind, name)
        entry: dict[str, Any] = {
            "kind": kind.value,
            "name": name,
            "content_type": content_type,
            "artifact_id": artifact_id,
            "created_at": created_at.isoformat(),
        }
        try:
            stored = await retrying(
                lambda: asyncio.to_thread(put, key, content_type),
                budget_s=self.retry_s,
                transient=transient,
                stop_by=self.stop_by,
                what=f"run {self.run_id}: storing {kind.value} {name}",
            )
        except Exception as exc:
            reason = storage_failure(exc)
            log.error("run %s: %s %s not stored: %s", self.run_id, kind.value, name, reason)
            kept = self._keep(entry, reason, data=data, path=path)
            raise StoreFailed(kind, name, reason, kept=kept) from exc
        try:
            return await self._record(kind, name, content_type, stored, artifact_id, created_at)
        except Exception as exc:
            reason = database_failure(exc)
            log.error("run %s: row of %s %s not written: %s", self.run_id, kind.value, name, reason)
            entry["stored"] = {"key": stored.key, "size": stored.size, "sha256": stored.sha256}
            kept = self._keep(entry, reason)
            raise StoreFailed(kind, name, reason, kept=kept) from exc

    def _keep(
        self,
        entry: dict[str, Any],
        reason: str,
        *,
        data: bytes | None = None,
        path: Path | None = None,
    ) -> bool:
        """Leaves what the salvage needs to store it later in the spool's `pending/`: its
        bytes (or where its spool file is) and its row's fields. False if it could not."""
        if self.pending is None:
            return False
        spool = self.pending.parent
        stem = entry["artifact_id"]
        try:
            self.pending.mkdir(parents=True, exist_ok=True)
            if data is not None:
                (self.pending / f"{stem}.data").write_bytes(data)
                entry["file"] = f"{PENDING}/{stem}.data"
            elif path is not None:
                if not path.resolve().is_relative_to(spool.resolve()) or not path.is_file():
                    return False
                entry["file"] = path.resolve().relative_to(spool.resolve()).as_posix()
            entry["line"] = StoreFailed(
                ArtifactKind(entry["kind"]), entry["name"], reason, kept=True
            ).line
            (self.pending / f"{stem}.json").write_text(json.dumps(entry))
        except OSError:
            log.error(
                "run %s: %s %s could not be kept either",
                self.run_id,
                entry["kind"],
                entry["name"],
                exc_info=True,
            )
            with contextlib.suppress(OSError):
                (self.pending / f"{stem}.data").unlink(missing_ok=True)
            return False
        return True


def release_spool(spool: Path) -> bool:
    """Deletes a run's spool if nothing in it is still to be stored (only empty folders are
    left once everything was stored: stored files are consumed). True if deleted."""
    if spool.is_dir() and any(p.is_file() for p in spool.rglob("*")):
        log.warning("spool %s kept: it holds artifacts not stored yet", spool)
        return False
    shutil.rmtree(spool, ignore_errors=True)
    return True
