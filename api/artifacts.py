"""/api/v1/artifacts/{id}/content: streamed with HTTP Range (videos seek), or a short-lived
presigned URL when artifacts live on S3."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from api.deps import ServicesDep, SessionDep
from api.records import artifact_record
from storage.artifacts import get_artifact
from storage.objects import content_disposition

router = APIRouter(tags=["artifacts"])

_RANGE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$", re.ASCII)

HOSTILE_CONTENT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
}
"""On every response that serves stored bytes: they come from pages nobody here wrote."""

_INLINE_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "text/plain",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
    }
)


def shown_inline(content_type: str | None) -> bool:
    """Images, videos, JSON and plain text may be shown in the browser; all else (HTML, SVG,
    scripts, archives…) is only ever saved. SVG is an image that runs scripts: saved."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind in _INLINE_TYPES or kind.startswith("video/")


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    iterator = iter(chunks)
    sentinel = object()
    try:
        while True:
            chunk: Any = await asyncio.to_thread(next, iterator, sentinel)
            if chunk is sentinel:
                return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


@router.get("/artifacts/{artifact_id}", summary="An artifact's row")
async def artifact_info(artifact_id: str, session: SessionDep) -> dict[str, Any]:
    return artifact_record(await get_artifact(session=session, artifact_id=artifact_id))


@router.get(
    "/artifacts/{artifact_id}/content",
    summary="An artifact's bytes",
    responses={206: {"description": "Partial content"}, 307: {"description": "Presigned URL"}},
)
async def artifact_content(
    artifact_id: str,
    session: SessionDep,
    services: ServicesDep,
    range_header: str | None = Header(default=None, alias="Range"),
    download: bool = Query(default=False, description="Ask the browser to save the file"),
    redirect: bool = Query(default=True, description="Redirect to S3 when artifacts are there"),
) -> Response:
    artifact = await get_artifact(session=session, artifact_id=artifact_id)
    attachment = download or not shown_inline(artifact.content_type)
    disposition = content_disposition(artifact.name)
    if not attachment:
        disposition = disposition.replace("attachment", "inline", 1)
    if redirect:
        url = services.store.url(
            artifact.key,
            expires_s=300,
            content_type=artifact.content_type,
            filename=artifact.name if attachment else None,
        )
        if url is not None:
            return RedirectResponse(url, status_code=307, headers=HOSTILE_CONTENT_HEADERS)
    size = artifact.size
    headers = {
        **HOSTILE_CONTENT_HEADERS,
        "Accept-Ranges": "bytes",
        "Content-Disposition": disposition,
        "ETag": f'"{artifact.sha256}"',
        "Cache-Control": "private, max-age=3600",
    }
    start, end, status = 0, size - 1, 200
    if range_header:
        match = _RANGE.match(range_header.strip())
        if match is None and "," not in range_header:  # several ranges: answered whole
            return JSONResponse(
                status_code=416,
                content={
                    "detail": "Range header: expected bytes=FIRST-LAST (up to 18 digits each)"
                },
                headers={**HOSTILE_CONTENT_HEADERS, "Content-Range": f"bytes */{size}"},
            )
        if match and (match.group(1) or match.group(2)):
            first, last = match.group(1), match.group(2)
            if first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            else:
                start = max(0, size - int(last))
            if start >= size or start > end:
                return Response(
                    status_code=416,
                    headers={**HOSTILE_CONTENT_HEADERS, "Content-Range": f"bytes */{size}"},
                )
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    if size == 0:
        return Response(content=b"", media_type=artifact.content_type, headers=headers)
    chunks = services.store.open(artifact.key, start=start, end=end)
    return StreamingResponse(
        _aiter(chunks), status_code=status, media_type=artifact.content_type, headers=headers
    )
