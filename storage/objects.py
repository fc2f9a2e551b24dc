"""Object storage for artifacts: a local directory or an S3 bucket.

Everything here is synchronous and streams; async callers wrap calls in asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

import certifi
import urllib3

from storage.settings import StorageSettings

CHUNK_SIZE = 256 * 1024
S3_PART_SIZE = 10 * 1024 * 1024
_MAX_PRESIGN_S = 7 * 24 * 3600
# Temp files live next to their final path so os.replace stays on one filesystem.
_TMP_MARKER = ".glassbox-tmp-"
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class ObjectNotFound(KeyError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"object not found: {self.key!r}"


class RangeNotSatisfiable(ValueError):
    """The requested start lies beyond the end of the object (HTTP 416)."""


# S3 answers that mean "not now" rather than "never": worth retrying.
_BUSY_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"})
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what caused it: chained exceptions and urllib3's wrapped reasons."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *(a for a in getattr(current, "args", ()) if isinstance(a, BaseException)),
        ):
            if isinstance(inner, BaseException):
                stack.append(inner)


def disk_full(exc: BaseException) -> bool:
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in _DISK_FULL:
            return True
        if "ENOSPC" in str(cause) or "No space left on device" in str(cause):
            return True
    return False


def storage_failure(exc: BaseException) -> str:
    """What went wrong writing an artifact, in an operator's words and naming the component:
    `disk full: [Errno 28] No space left on device`, `storage unavailable: connection refused`,
    else `storage failed: <error>`."""
    if disk_full(exc):
        return f"disk full: [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"
    if unavailable(exc):
        return f"storage unavailable: {_connection_problem(exc)}"
    return f"storage failed: {type(exc).__name__}: {_first_line(exc)}"


def unavailable(exc: BaseException) -> bool:
    """The store could not be reached or answered "busy": worth retrying later."""
    minio_error = _minio_errors()
    for cause in _causes(exc):
        if minio_error and isinstance(cause, minio_error.S3Error):
            return cause.code in _BUSY_CODES
        if isinstance(cause, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
            return True
        if minio_error and isinstance(cause, minio_error.ServerError | minio_error.MinioException):
            return True
    return False


def _minio_errors() -> Any:
    """minio's error classes if minio is in use (an error of its can only come from it): it is
    imported by the S3 store alone, as it takes a while (argon2, pycryptodome)."""
    return sys.modules.get("minio.error")


def transient(exc: BaseException) -> bool:
    """Storing may work if tried again: the store is down or busy, or the disk is full (space
    may be freed)."""
    return disk_full(exc) or unavailable(exc)


def _connection_problem(exc: BaseException) -> str:
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError) or "Connection refused" in str(cause):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        minio_error = _minio_errors()
        if minio_error and isinstance(cause, minio_error.ServerError):
            return f"HTTP {cause.status_code}"
        if minio_error and isinstance(cause, minio_error.S3Error):
            return f"{cause.code}: {cause.message}"
    for cause in causes:
        if isinstance(cause, OSError) and cause.errno is not None:
            return os.strerror(cause.errno).lower()
    for cause in causes:
        if isinstance(cause, TimeoutError | urllib3.exceptions.TimeoutError):
            return "timed out"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


class ByteStream(Iterator[bytes]):
    """Chunks of one object; releases the file or connection when exhausted or closed."""

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> bytes:
        if self._release is None:
            raise StopIteration
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            close_chunks = getattr(self._chunks, "close", None)
            if close_chunks is not None:
                close_chunks()
            release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Callers that stop iterating early (a client hanging up mid-download) must not leak
        # file handles or pooled connections.
        self.close()


class ObjectStore(Protocol):
    def put(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> StoredObject: ...

    def put_file(self, key: str, path: Path, *, content_type: str) -> StoredObject: ...

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> ByteStream: ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def url(
        self,
        key: str,
        *,
        expires_s: int = 300,
        content_type: str | None = None,
        filename: str | None = None,
    ) -> str | None: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int: ...


def check_key(key: str) -> str:
    """Keys are relative '/'-separated paths; anything that could escape a directory is refused."""
    if not isinstance(key, str) or not key:
        raise ValueError("object key must be a non-empty string")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"object key must not contain backslashes or NUL: {key!r}")
    if key.startswith("/"):
        raise ValueError(f"object key must be relative: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"object key has an empty, '.' or '..' segment: {key!r}")
        if segment.startswith(_TMP_MARKER):
            raise ValueError(f"object key uses the reserved {_TMP_MARKER!r} prefix: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    # A prefix is a key, optionally with a trailing '/'; the empty prefix is refused because
    # "delete everything" should never happen by accident.
    check_key(prefix.removesuffix("/"))
    return prefix


def _check_range(start: int, end: int | None) -> None:
    if start < 0:
        raise ValueError(f"range start must be >= 0, got {start}")
    if end is not None and end < start:
        raise ValueError(f"range end {end} is before start {start}")


def _read_chunks(f: IO[bytes], remaining: int | None) -> Iterator[bytes]:
    while remaining is None or remaining > 0:
        want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
        chunk = f.read(want)
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from _read_chunks(f, None)


def content_disposition(filename: str) -> str:
    # Plain ASCII fallback for old clients plus RFC 5987 filename* for the real name.
    fallback = "".join(
        c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename
    ).strip()
    value = f'attachment; filename="{fallback or "download"}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def _may_match(directory: str, prefix: str) -> bool:
    return directory.startswith(prefix) or prefix.startswith(directory + "/")


class LocalObjectStore:
    def __init__(self, base: Path) -> None:
        self.base = Path(base).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.base)!r})"

    def _path(self, key: str) -> Path:
        path = self.base / check_key(key)
        # Lexical checks can't see symlinks inside the store; resolving can.
        if not path.resolve().is_relative_to(self.base):
            raise ValueError(f"object key escapes the store: {key!r}")
        return path

    def put(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> StoredObject:
        path = self._path(key)
        tmp = path.with_name(f"{_TMP_MARKER}{secrets.token_hex(8)}")
        digest = hashlib.sha256()
        size = 0
        for attempt in range(3):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                # 0o666 lets the umask decide permissions, as for any ordinary file.
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileNotFoundError:
                # A concurrent delete pruned the directory between mkdir and open.
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    if not chunk:
                        continue
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                f.flush()
                # Without fsync a crash soon after the rename can leave an empty file in place.
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def put_file(self, key: str, path: Path, *, content_type: str) -> StoredObject:
        return self.put(key, file_chunks(path), content_type=content_type)

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> ByteStream:
        _check_range(start, end)
        path = self._path(key)
        try:
            f = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        try:
            size = os.fstat(f.fileno()).st_size
            # Same rule as S3: any explicit range must start inside the object.
            if (start > 0 or end is not None) and start >= size:
                raise RangeNotSatisfiable(f"range start {start} is beyond size {size} of {key!r}")
            f.seek(start)
        except BaseException:
            f.close()
            raise
        remaining = None if end is None else end - start + 1
        return ByteStream(_read_chunks(f, remaining), f.close)

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(key)
        return st.st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def url(
        self,
        key: str,
        *,
        expires_s: int = 300,
        content_type: str | None = None,
        filename: str | None = None,
    ) -> str | None:
        check_key(key)
        return None

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        # Plain string-prefix semantics, like S3: "runs/run_1" also matches "runs/run_10/...".
        check_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        top = self._path(head) if head else self.base
        if not top.is_dir():
            return 0
        deleted = 0
        dirs: set[Path] = set()
        for root, subdirs, files in os.walk(top):
            # Only descend where keys can still match, so "runs/run_1" skips the other runs.
            rel_root = Path(root).relative_to(self.base).as_posix()
            subdirs[:] = [
                d
                for d in subdirs
                if _may_match(d if rel_root == "." else f"{rel_root}/{d}", prefix)
            ]
            for name in files:
                if name.startswith(_TMP_MARKER):
                    continue
                path = Path(root, name)
                if path.relative_to(self.base).as_posix().startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        deleted += 1
                    dirs.add(path.parent)
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            self._prune(d)
        return deleted

    def _prune(self, directory: Path) -> None:
        # Empty directories are an artefact of the layout, not data; drop them up to the base.
        while directory != self.base and directory.is_relative_to(self.base):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


class _HashingReader:
    """A read()-able view of a chunk iterator that hashes and counts as minio consumes it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self._digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            if chunk:
                self._digest.update(chunk)
                self.size += len(chunk)
                self._pending = memoryview(chunk)
        if size < 0 or size >= len(self._pending):
            data, self._pending = self._pending, memoryview(b"")
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        # minio insists on bytes; a whole chunk that is already bytes goes through uncopied.
        obj = data.obj
        if isinstance(obj, bytes) and len(data) == len(obj):
            return obj
        return data.tobytes()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


class S3ObjectStore:
    """Objects in an S3 bucket, through the minio client (imported where used: it loads
    argon2 and pycryptodome, which a process on a local store never needs)."""

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        access_key: str | None,
        secret_key: str | None,
        prefix: str = "",
        region: str | None = None,
        secure: bool = True,
        part_size: int = S3_PART_SIZE,
    ) -> None:
        from minio import Minio

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if self.prefix:
            check_key(self.prefix.removesuffix("/"))
        self.part_size = part_size
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            region=region,
            secure=secure,
            # minio's own client retries for minutes (5 min timeouts); callers retry with their
            # own budget (runner.artifacts), so a dead endpoint is reported within seconds.
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=10, read=120),
                maxsize=10,
                cert_reqs="CERT_REQUIRED",
                ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
                retries=urllib3.Retry(
                    total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
                ),
            ),
        )
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _ensure_bucket(self) -> None:
        from minio.error import S3Error

        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            # Check first: credentials scoped to one bucket may read it but not create buckets.
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    # Another process or thread created it between our check and our create.
                    if exc.code != "BucketAlreadyOwnedByYou":
                        raise
            self._bucket_ready = True

    def put(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> StoredObject:
        name = self._name(key)
        self._ensure_bucket()
        reader = _HashingReader(chunks)
        self._client.put_object(
            self.bucket,
            name,
            reader,  # type: ignore[arg-type]  # minio only calls read()
            length=-1,
            part_size=self.part_size,
            content_type=content_type,
            # minio queues parts for its upload threads without bound, which would buffer a
            # fast producer's whole stream in memory; one part at a time keeps it to part_size.
            num_parallel_uploads=1,
        )
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def put_file(self, key: str, path: Path, *, content_type: str) -> StoredObject:
        return self.put(key, file_chunks(path), content_type=content_type)

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> ByteStream:
        from minio.error import S3Error

        _check_range(start, end)
        name = self._name(key)
        length = 0 if end is None else end - start + 1
        try:
            response = self._client.get_object(self.bucket, name, offset=start, length=length)
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from None
            if exc.code == "InvalidRange":
                raise RangeNotSatisfiable(
                    f"range start {start} is beyond the end of {key!r}"
                ) from None
            raise

        def release() -> None:
            response.close()
            response.release_conn()

        return ByteStream(response.stream(CHUNK_SIZE), release)

    def size(self, key: str) -> int:
        from minio.error import S3Error

        name = self._name(key)
        try:
            info = self._client.stat_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from None
            raise
        assert info.size is not None
        return info.size

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def url(
        self,
        key: str,
        *,
        expires_s: int = 300,
        content_type: str | None = None,
        filename: str | None = None,
    ) -> str | None:
        if not 1 <= expires_s <= _MAX_PRESIGN_S:
            raise ValueError(f"expires_s must be between 1 and {_MAX_PRESIGN_S}, got {expires_s}")
        name = self._name(key)
        params: dict[str, str | list[str] | tuple[str]] = {}
        if content_type:
            params["response-content-type"] = content_type
        if filename:
            params["response-content-disposition"] = content_disposition(filename)
        return self._client.presigned_get_object(
            self.bucket,
            name,
            expires=timedelta(seconds=expires_s),
            response_headers=params or None,
        )

    def delete(self, key: str) -> None:
        from minio.error import S3Error

        name = self._name(key)
        try:
            self._client.remove_object(self.bucket, name)
        except S3Error as exc:
            if exc.code not in _NOT_FOUND_CODES:
                raise

    def delete_prefix(self, prefix: str) -> int:
        from minio.deleteobjects import DeleteObject
        from minio.error import S3Error

        full = self.prefix + check_prefix(prefix)
        try:
            names = [
                obj.object_name
                for obj in self._client.list_objects(self.bucket, prefix=full, recursive=True)
                if obj.object_name is not None
            ]
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES:
                return 0
            raise
        if not names:
            return 0
        errors = list(
            self._client.remove_objects(self.bucket, (DeleteObject(name) for name in names))
        )
        failed = [e for e in errors if e.code not in _NOT_FOUND_CODES]
        if failed:
            first = failed[0]
            raise OSError(
                f"failed to delete {len(failed)} of {len(names)} objects under {full!r}: "
                f"{first.name}: {first.code} {first.message}"
            )
        return len(names) - len(errors)


def open_store(settings: StorageSettings) -> ObjectStore:
    url = (settings.storage_url or "").strip()
    if not url:
        return LocalObjectStore(settings.data_dir / "artifacts")
    match = _SCHEME.match(url)
    if match is None:
        return LocalObjectStore(Path(url))
    scheme = match.group(1).lower()
    parts = urlsplit(url)
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ValueError(
                f"GLASSBOX_STORAGE_URL {url!r}: use file:///absolute/path (no host or query)"
            )
        if not parts.path:
            raise ValueError(f"GLASSBOX_STORAGE_URL {url!r}: file:// URL has no path")
        return LocalObjectStore(Path(url2pathname(parts.path)))
    if scheme == "s3":
        return _open_s3(settings, url)
    raise ValueError(
        f"GLASSBOX_STORAGE_URL has unsupported scheme {scheme!r} in {url!r}; "
        "expected s3://bucket[/prefix], file:///path or a directory path"
    )


def _open_s3(settings: StorageSettings, url: str) -> S3ObjectStore:
    parts = urlsplit(url)
    bucket = parts.netloc
    if not bucket or "@" in bucket or parts.query or parts.fragment:
        raise ValueError(
            f"GLASSBOX_STORAGE_URL {url!r}: expected s3://bucket[/prefix] "
            "(credentials go in GLASSBOX_S3_ACCESS_KEY / GLASSBOX_S3_SECRET_KEY)"
        )
    from minio.helpers import check_bucket_name

    try:
        check_bucket_name(bucket)
    except ValueError as exc:
        raise ValueError(f"GLASSBOX_STORAGE_URL {url!r}: {exc}") from None
    prefix = parts.path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except ValueError:
            raise ValueError(
                f"GLASSBOX_STORAGE_URL {url!r}: the key prefix {prefix!r} has an empty, "
                "'.' or '..' segment"
            ) from None

    endpoint = (settings.s3_endpoint or "").strip()
    if not endpoint:
        raise ValueError(
            "GLASSBOX_S3_ENDPOINT is required when GLASSBOX_STORAGE_URL is s3://... "
            "(host:port, e.g. s3.amazonaws.com or 127.0.0.1:9000)"
        )
    if "://" in endpoint or "/" in endpoint:
        raise ValueError(
            f"GLASSBOX_S3_ENDPOINT must be host[:port] without scheme or path, got {endpoint!r}; "
            "set GLASSBOX_S3_SECURE=false for plain HTTP"
        )
    access_key = settings.s3_access_key.get_secret_value() if settings.s3_access_key else ""
    secret_key = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else ""
    if not access_key or not secret_key:
        missing = [
            name
            for name, value in (
                ("GLASSBOX_S3_ACCESS_KEY", access_key),
                ("GLASSBOX_S3_SECRET_KEY", secret_key),
            )
            if not value
        ]
        raise ValueError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required when "
            "GLASSBOX_STORAGE_URL is s3://..."
        )
    return S3ObjectStore(
        endpoint=endpoint,
        bucket=bucket,
        prefix=prefix,
        access_key=access_key,
        secret_key=secret_key,
        region=settings.s3_region or None,
        secure=settings.s3_secure,
    )
