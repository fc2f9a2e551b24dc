"""/api/v1/uploads: files for `type: file` parameters. A multipart form with one `file` part,
streamed to storage (at most GLASSBOX_MAX_UPLOAD_BYTES, else 413); the answer's `id` is the
value a run's file parameter takes: `{"parameters": {"attachment": "upl_…"}}`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.types import Message

from api.deps import ServicesDep, SessionDep
from services.uploads import UploadTooLarge, store_upload
from storage.errors import ValidationFailed
from storage.models import Upload
from storage.uploads import get_upload

router = APIRouter(tags=["uploads"])

FORM_OVERHEAD = 64 * 1024
"""Room for the multipart boundaries and part headers around the file itself."""


def upload_record(upload: Upload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "name": upload.name,
        "content_type": upload.content_type,
        "size": upload.size,
        "sha256": upload.sha256,
        "created_at": upload.created_at.isoformat(),
    }


class BodyTooLarge(Exception):
    pass


def limited(request: Request, limit: int) -> Request:
    """The request, its body cut off (`BodyTooLarge`) past `limit` bytes as it streams in."""
    receive = request.receive
    seen = 0

    async def limited_receive() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return Request(request.scope, limited_receive)


def too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        status_code=413,
        content={"detail": f"file: larger than the upload limit of {limit} bytes"},
    )


@router.post(
    "/uploads",
    status_code=201,
    summary="Upload a file for a run's file parameter",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "additionalProperties": False,
                    }
                }
            },
        }
    },
    responses={413: {"description": "Larger than GLASSBOX_MAX_UPLOAD_BYTES."}},
)
async def create_upload(request: Request, services: ServicesDep) -> Any:
    limit = services.settings.service.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        return too_large(limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ValidationFailed("file", "send the file as multipart/form-data, in a part `file`")
    try:
        form = await limited(request, limit + FORM_OVERHEAD).form(max_files=1, max_fields=5)
    except BodyTooLarge:
        return too_large(limit)
    except Exception as exc:  # a malformed form: starlette raises its own errors
        raise ValidationFailed("file", f"not a valid multipart form: {exc}") from None
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise ValidationFailed("file", "required: a file part named `file`")
        unknown = [name for name in form if name != "file"]
        if unknown:
            raise ValidationFailed(unknown[0][:200], "unknown part: send only the part `file`")
        read: Callable[[int], bytes] = part.file.read
        upload = await store_upload(
            services, name=part.filename, content_type=part.content_type, read=read
        )
    except UploadTooLarge:
        return too_large(limit)
    finally:
        await form.close()
    return upload_record(upload)


@router.get("/uploads/{upload_id}", summary="An uploaded file's record")
async def get_upload_endpoint(upload_id: str, session: SessionDep) -> dict[str, Any]:
    return upload_record(await get_upload(session=session, upload_id=upload_id))
