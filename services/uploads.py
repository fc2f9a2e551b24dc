"""Uploaded files: stored for `type: file` parameters, checked against them, and copied into
each run that uses one as its `input` artifact (so deleting a run deletes its inputs, and a
rerun copies the upload again)."""

from __future__ import annotations

import asyncio
import mimetypes
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PureWindowsPath

from sqlalchemy.ext.asyncio import AsyncSession

from runner.templating import Inputs
from runner.uploads import input_key, is_upload_id, matches_accept
from runner.workflow import Workflow
from services.backends import Services
from storage.artifacts import add_artifact
from storage.errors import NotFound, ValidationFailed
from storage.ids import new_id
from storage.models import Upload
from storage.objects import StoredObject
from storage.status import ArtifactKind
from storage.uploads import add_upload, get_upload, upload_key

CHUNK = 1 << 20


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the upload limit of {limit} bytes")
        self.limit = limit


def safe_name(name: str | None) -> str:
    """A file name fit for an object key and a page's file input: the last path segment,
    without control or path characters."""
    base = PureWindowsPath(name or "").name  # browsers may send a full path
    cleaned = re.sub(r"[^\w.\- ()+@,=]", "_", base).strip(" .")[:200]
    return cleaned or "upload"


async def store_upload(
    services: Services,
    *,
    name: str | None,
    content_type: str | None,
    read: Callable[[int], bytes],
) -> Upload:
    """Streams `read` into the store (refusing more than GLASSBOX_MAX_UPLOAD_BYTES with
    UploadTooLarge) and records the upload."""
    limit = services.settings.service.max_upload_bytes
    upload_id = new_id("upl")
    filename = safe_name(name)
    key = upload_key(upload_id, filename)
    kind = (content_type or "").strip() or "application/octet-stream"

    def chunks() -> Iterator[bytes]:
        total = 0
        while chunk := read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise UploadTooLarge(limit)
            yield chunk

    try:
        stored = await asyncio.to_thread(services.store.put, key, chunks(), content_type=kind)
    except UploadTooLarge:
        await asyncio.to_thread(services.store.delete_prefix, f"uploads/{upload_id}/")
        raise
    async with services.db.session() as session:
        upload = await add_upload(
            session=session,
            upload_id=upload_id,
            name=filename,
            content_type=kind,
            size=stored.size,
            sha256=stored.sha256,
            key=stored.key,
        )
        await session.commit()
    return upload


async def check_file_inputs(
    services: Services, workflow: Workflow, inputs: Inputs
) -> list[tuple[str, Upload]]:
    """The uploads a run's file parameters name, each checked against its parameter's
    `accept` and `max_bytes`. Refusals name `parameters.<name>`."""
    found: list[tuple[str, Upload]] = []
    for name in sorted(workflow.file_names):
        value = inputs.values.get(name)
        if value is None:
            continue
        where = f"parameters.{name}"
        try:
            async with services.db.session() as session:
                upload = await get_upload(session=session, upload_id=str(value))
        except NotFound:
            raise ValidationFailed(where, f"no uploaded file {value!r}") from None
        spec = workflow.parameters[name]
        if spec.max_bytes is not None and upload.size > spec.max_bytes:
            raise ValidationFailed(
                where, f"the file has {upload.size} bytes; this parameter takes {spec.max_bytes}"
            )
        if spec.accept and not matches_accept(spec.accept, upload.name, upload.content_type):
            raise ValidationFailed(
                where,
                f"{upload.name!r} ({upload.content_type}) is not one of the accepted types: "
                + ", ".join(spec.accept),
            )
        found.append((name, upload))
    return found


async def copy_inputs(
    services: Services, session: AsyncSession, run_id: str, uploads: list[tuple[str, Upload]]
) -> None:
    """Each upload copied into the run, as its `input` artifact (within `session`)."""
    done: set[str] = set()
    for _name, upload in uploads:
        if upload.id in done:
            continue
        done.add(upload.id)
        stored = await asyncio.to_thread(_copy, services, upload, run_id)
        await add_artifact(
            session=session,
            run_id=run_id,
            kind=ArtifactKind.input,
            name=upload.name,
            content_type=upload.content_type,
            size=stored.size,
            sha256=stored.sha256,
            key=stored.key,
        )


def _copy(services: Services, upload: Upload, run_id: str) -> StoredObject:
    source = services.store.open(upload.key)
    key = input_key(run_id, upload.id, upload.name)
    return services.store.put(key, source, content_type=upload.content_type)


async def upload_local_files(
    services: Services, workflow: Workflow, overrides: dict[str, object]
) -> dict[str, object]:
    """`glassbox run`'s file parameters: `@PATH` (or a plain path) is a file of this machine,
    stored as an upload; an upload id is kept. Refusals name `parameters.<name>`."""
    values = dict(overrides)
    for name in workflow.file_names:
        value = values.get(name)
        if not isinstance(value, str) or is_upload_id(value):
            continue
        where = f"parameters.{name}"
        path = Path(value[1:] if value.startswith("@") else value).expanduser()
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise ValidationFailed(where, f"cannot read {str(path)!r}: {exc.strerror}") from None
        with handle:
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            try:
                upload = await store_upload(
                    services, name=path.name, content_type=kind, read=handle.read
                )
            except UploadTooLarge as exc:
                raise ValidationFailed(where, str(exc)) from None
        values[name] = upload.id
    return values
