from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from minio import Minio
from minio.error import S3Error
from pydantic import SecretStr

from storage.objects import (
    CHUNK_SIZE,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    RangeNotSatisfiable,
    S3ObjectStore,
    StoredObject,
    content_disposition,
    open_store,
)
from storage.settings import StorageSettings
from tests.s3server import SeaweedS3

MiB = 1024 * 1024
BUCKET = "glassbox-artifacts"
SCREENSHOT = "runs/run_x/screenshot/001.png"


def s3_settings(server: SeaweedS3, url: str, **overrides: object) -> StorageSettings:
    values: dict[str, object] = {
        "storage_url": url,
        "s3_endpoint": server.endpoint,
        "s3_access_key": SecretStr(server.access_key),
        "s3_secret_key": SecretStr(server.secret_key),
        "s3_region": server.region,
        "s3_secure": False,
        **overrides,
    }
    return StorageSettings.model_validate(values)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(StorageSettings(data_dir=tmp_path))
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    # One bucket for the session, a fresh key prefix per test: cheap isolation that also puts
    # the prefix support under every test.
    return open_store(s3_settings(server, f"s3://{BUCKET}/t/{uuid.uuid4().hex}"))


def read_all(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_bytes(store: ObjectStore, key: str, data: bytes, content_type: str = "") -> StoredObject:
    return store.put(key, [data], content_type=content_type or "application/octet-stream")


def test_put_open_roundtrip(store: ObjectStore) -> None:
    data = b"hello, glassbox\n" * 100
    chunks = [data[:7], b"", data[7:500], data[500:]]
    stored = store.put("logs/console.txt", chunks, content_type="text/plain")
    assert stored == StoredObject(key="logs/console.txt", size=len(data), sha256=sha(data))
    assert read_all(store.open("logs/console.txt")) == data
    assert store.size("logs/console.txt") == len(data)
    assert store.exists("logs/console.txt")


def test_empty_object(store: ObjectStore) -> None:
    stored = store.put("empty.bin", [], content_type="application/octet-stream")
    assert stored.size == 0
    assert stored.sha256 == sha(b"")
    assert store.exists("empty.bin")
    assert store.size("empty.bin") == 0
    assert read_all(store.open("empty.bin")) == b""


def test_put_overwrites(store: ObjectStore) -> None:
    put_bytes(store, "a.txt", b"first version, longer")
    put_bytes(store, "a.txt", b"second")
    assert read_all(store.open("a.txt")) == b"second"
    assert store.size("a.txt") == 6


def test_nested_keys(store: ObjectStore) -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
    stored = store.put(SCREENSHOT, iter([png]), content_type="image/png")
    assert stored.key == SCREENSHOT
    assert store.exists(SCREENSHOT)
    assert not store.exists("runs/run_x/screenshot")  # a "directory" is not an object
    with pytest.raises(ObjectNotFound):
        store.size("runs/run_x")
    assert read_all(store.open(SCREENSHOT)) == png


def test_put_file(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "video.webm"
    data = os.urandom(3 * MiB + 17)
    source.write_bytes(data)
    stored = store.put_file("runs/run_x/video.webm", source, content_type="video/webm")
    assert stored.size == len(data)
    assert stored.sha256 == sha(data)
    assert read_all(store.open("runs/run_x/video.webm")) == data


def test_streams_large_generator_in_bounded_memory(store: ObjectStore) -> None:
    if isinstance(store, S3ObjectStore):
        # minio holds about three parts at once (the part being read, its copy, the previous
        # part); at the 5 MiB S3 minimum that stays well under the object's size.
        store.part_size = 5 * MiB
    block = os.urandom(64 * 1024)
    count = 400  # 25 MiB
    expected = hashlib.sha256()

    def produce() -> Iterator[bytes]:
        for i in range(count):
            chunk = i.to_bytes(8, "big") + block[8:]
            expected.update(chunk)
            yield chunk

    total = count * len(block)
    tracemalloc.start()
    try:
        stored = store.put("big.bin", produce(), content_type="application/octet-stream")
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        readback = hashlib.sha256()
        largest = 0
        for chunk in store.open("big.bin"):
            readback.update(chunk)
            largest = max(largest, len(chunk))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.size == total == store.size("big.bin")
    assert stored.sha256 == expected.hexdigest() == readback.hexdigest()
    assert largest <= CHUNK_SIZE
    assert read_peak < 4 * MiB
    assert put_peak < total * 0.8, f"put peaked at {put_peak / MiB:.1f} MiB"
    if isinstance(store, LocalObjectStore):
        assert put_peak < 4 * MiB


@pytest.mark.s3
def test_s3_large_put_is_multipart(s3_server: SeaweedS3) -> None:
    store = open_store(s3_settings(s3_server, f"s3://{BUCKET}/multipart"))
    assert isinstance(store, S3ObjectStore)
    assert store.part_size == 10 * MiB
    data = os.urandom(25 * MiB)
    view = memoryview(data)
    chunks = (view[i : i + MiB].tobytes() for i in range(0, len(data), MiB))
    stored = store.put("video.webm", chunks, content_type="video/webm")
    assert stored.sha256 == sha(data)
    info = s3_server.client().stat_object(BUCKET, "multipart/video.webm")
    # S3 ETags of multipart uploads are "<md5 of part md5s>-<part count>".
    assert info.etag is not None and info.etag.endswith("-3")
    assert info.size == len(data)
    assert info.content_type == "video/webm"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, slice(None)),
        (1000, None, slice(1000, None)),
        (100, 299_999, slice(100, 300_000)),
        (0, 0, slice(0, 1)),
        (CHUNK_SIZE - 1, CHUNK_SIZE, slice(CHUNK_SIZE - 1, CHUNK_SIZE + 1)),
        (-1, -1, slice(-1, None)),  # last byte; resolved against the size below
        (-10, -10 + 500, slice(-10, None)),  # end past the object is clamped, as in HTTP
    ],
)
def test_byte_ranges(store: ObjectStore, start: int, end: int | None, expected: slice) -> None:
    data = os.urandom(600 * 1024)
    put_bytes(store, "range.bin", data)
    if start < 0:
        start += len(data)
        end = None if end is None else end + len(data)
    assert read_all(store.open("range.bin", start=start, end=end)) == data[expected]


def test_invalid_ranges(store: ObjectStore) -> None:
    put_bytes(store, "ten.bin", b"0123456789")
    with pytest.raises(RangeNotSatisfiable):
        store.open("ten.bin", start=10)
    with pytest.raises(RangeNotSatisfiable):
        store.open("ten.bin", start=50, end=60)
    with pytest.raises(ValueError, match="before start"):
        store.open("ten.bin", start=5, end=4)
    with pytest.raises(ValueError, match=">= 0"):
        store.open("ten.bin", start=-1)


def test_missing_key(store: ObjectStore) -> None:
    # open() fails on the call, not on first iteration, so callers can answer 404 up front.
    with pytest.raises(ObjectNotFound) as info:
        store.open("runs/nope/missing.png")
    assert isinstance(info.value, KeyError)
    assert info.value.key == "runs/nope/missing.png"
    with pytest.raises(ObjectNotFound):
        store.open("runs/nope/missing.png", start=5, end=10)
    with pytest.raises(ObjectNotFound):
        store.size("missing.png")
    assert not store.exists("missing.png")


def test_delete_is_idempotent(store: ObjectStore) -> None:
    put_bytes(store, SCREENSHOT, b"png")
    store.delete(SCREENSHOT)
    assert not store.exists(SCREENSHOT)
    with pytest.raises(ObjectNotFound):
        store.open(SCREENSHOT)
    store.delete(SCREENSHOT)
    store.delete("never/existed.txt")


def test_delete_prefix(store: ObjectStore) -> None:
    keys = [
        "runs/run_1/a.txt",
        "runs/run_1/screenshot/001.png",
        "runs/run_1/screenshot/002.png",
        "runs/run_10/a.txt",
        "runs/run_2/a.txt",
    ]
    for key in keys:
        put_bytes(store, key, key.encode())

    assert store.delete_prefix("runs/run_1/") == 3
    assert [k for k in keys if store.exists(k)] == ["runs/run_10/a.txt", "runs/run_2/a.txt"]
    # Plain string prefixes, as in S3: without the slash run_10 matches too.
    assert store.delete_prefix("runs/run_1") == 1
    assert store.exists("runs/run_2/a.txt")
    assert store.delete_prefix("runs/run_1/") == 0
    assert store.delete_prefix("nothing/here/") == 0
    assert store.delete_prefix("runs/") == 1
    assert not any(store.exists(k) for k in keys)


def test_delete_prefix_refuses_everything(store: ObjectStore) -> None:
    for prefix in ["", "/", "../", "runs//"]:
        with pytest.raises(ValueError):
            store.delete_prefix(prefix)


def test_early_close_releases_the_object(store: ObjectStore) -> None:
    data = os.urandom(3 * CHUNK_SIZE)
    put_bytes(store, "partial.bin", data)
    with store.open("partial.bin") as stream:
        assert next(stream) == data[:CHUNK_SIZE]
    assert next(stream, None) is None
    # An abandoned, never-iterated stream must not leak either (warnings are errors here).
    store.open("partial.bin")
    for _ in range(20):
        stream = store.open("partial.bin")
        next(stream)
        del stream
    store.delete("partial.bin")
    assert not store.exists("partial.bin")


def test_failed_put_leaves_nothing(store: ObjectStore) -> None:
    if isinstance(store, S3ObjectStore):
        store.part_size = 5 * MiB

    def broken() -> Iterator[bytes]:
        for _ in range(7):  # past the first part, so S3 has a multipart upload to abort
            yield os.urandom(MiB)
        raise ConnectionResetError("browser went away")

    with pytest.raises(ConnectionResetError):
        store.put("runs/run_x/video.webm", broken(), content_type="video/webm")
    assert not store.exists("runs/run_x/video.webm")

    put_bytes(store, "keep.txt", b"old")
    with pytest.raises(ConnectionResetError):
        store.put("keep.txt", broken(), content_type="text/plain")
    assert read_all(store.open("keep.txt")) == b"old"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../escape.txt",
        "runs/../../escape.txt",
        "/etc/passwd",
        "runs\\run_x\\a.png",
        "runs//a.png",
        "runs/a.png/",
        "./a.png",
        "runs/./a.png",
        "a\x00b",
        ".glassbox-tmp-0123",
    ],
)
def test_refuses_escaping_keys(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        put_bytes(store, key, b"x")
    with pytest.raises(ValueError):
        store.open(key)
    with pytest.raises(ValueError):
        store.exists(key)
    with pytest.raises(ValueError):
        store.delete(key)


def test_local_refuses_symlink_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalObjectStore(tmp_path / "artifacts")
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="escapes"):
        put_bytes(store, "link/evil.txt", b"x")
    assert list(outside.iterdir()) == []


def test_local_layout_is_atomic_and_tidy(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    put_bytes(store, SCREENSHOT, b"png")
    assert (tmp_path / SCREENSHOT).read_bytes() == b"png"
    # Only the final file: the temp file was renamed into place.
    assert sorted(p.name for p in (tmp_path / "runs/run_x/screenshot").iterdir()) == ["001.png"]
    store.delete(SCREENSHOT)
    assert list(tmp_path.iterdir()) == [], "empty directories are pruned"
    put_bytes(store, "runs/run_1/a/b.txt", b"x")
    put_bytes(store, "runs/run_2/c.txt", b"x")
    assert store.delete_prefix("runs/run_1/") == 1
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["run_2"]


def test_url_is_none_for_local(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    put_bytes(store, SCREENSHOT, b"png")
    assert store.url(SCREENSHOT) is None
    assert store.url(SCREENSHOT, content_type="image/png", filename="shot.png") is None


def test_url(store: ObjectStore) -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)
    store.put(SCREENSHOT, [png], content_type="image/png")
    url = store.url(
        SCREENSHOT, expires_s=60, content_type="application/octet-stream", filename="step 1 ✓.png"
    )
    if isinstance(store, LocalObjectStore):
        assert url is None
        return
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == png
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == content_disposition("step 1 ✓.png")

    plain = store.url(SCREENSHOT)
    assert plain is not None
    response = httpx.get(plain)
    assert response.status_code == 200
    assert response.content == png
    assert response.headers["content-type"] == "image/png"
    assert "content-disposition" not in response.headers

    # The signature is really checked: tampering with the signed parameters is refused.
    tampered = url.replace("application%2Foctet-stream", "text%2Fhtml")
    assert tampered != url
    assert httpx.get(tampered).status_code == 403

    with pytest.raises(ValueError):
        store.url(SCREENSHOT, expires_s=0)


def test_content_disposition() -> None:
    assert content_disposition("shot.png") == 'attachment; filename="shot.png"'
    assert content_disposition('a"b\\c.png') == (
        "attachment; filename=\"a_b_c.png\"; filename*=UTF-8''a%22b%5Cc.png"
    )
    assert content_disposition("é.png") == (
        "attachment; filename=\"_.png\"; filename*=UTF-8''%C3%A9.png"
    )


@pytest.mark.s3
def test_s3_prefix_isolation(s3_server: SeaweedS3) -> None:
    one = open_store(s3_settings(s3_server, f"s3://{BUCKET}/iso/one/"))
    two = open_store(s3_settings(s3_server, f"s3://{BUCKET}/iso/two"))
    put_bytes(one, "runs/a.txt", b"one")
    put_bytes(two, "runs/a.txt", b"two")
    assert read_all(one.open("runs/a.txt")) == b"one"
    assert one.delete_prefix("runs/") == 1
    assert not one.exists("runs/a.txt")
    assert read_all(two.open("runs/a.txt")) == b"two"
    names = [o.object_name for o in s3_server.client().list_objects(BUCKET, "iso/", recursive=True)]
    assert names == ["iso/two/runs/a.txt"]


@pytest.mark.s3
def test_s3_creates_missing_bucket_once_under_races(s3_server: SeaweedS3) -> None:
    bucket = f"fresh-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    assert not client.bucket_exists(bucket)
    stores = [open_store(s3_settings(s3_server, f"s3://{bucket}")) for _ in range(4)]
    # Reads on a missing bucket behave like a missing key rather than erroring.
    assert not stores[0].exists("a.txt")
    with pytest.raises(ObjectNotFound):
        stores[0].open("a.txt")
    assert stores[0].delete_prefix("runs/") == 0
    stores[0].delete("a.txt")

    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def upload(i: int, store: ObjectStore) -> None:
        try:
            barrier.wait()
            put_bytes(store, f"{i}.txt", str(i).encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert client.bucket_exists(bucket)
    assert sorted(o.object_name or "" for o in client.list_objects(bucket)) == [
        f"{i}.txt" for i in range(4)
    ]


@pytest.mark.s3
def test_s3_without_region(s3_server: SeaweedS3) -> None:
    # No region configured: minio asks the server for the bucket location before signing.
    store = open_store(s3_settings(s3_server, f"s3://{BUCKET}/noregion", s3_region=None))
    put_bytes(store, "a.txt", b"abc")
    assert read_all(store.open("a.txt", start=1)) == b"bc"
    url = store.url("a.txt")
    assert url is not None
    assert httpx.get(url).content == b"abc"


@pytest.mark.s3
def test_s3_wrong_secret_is_rejected(s3_server: SeaweedS3) -> None:
    store = open_store(
        s3_settings(s3_server, f"s3://{BUCKET}/auth", s3_secret_key=SecretStr("not-the-secret"))
    )
    with pytest.raises(S3Error) as info:
        put_bytes(store, "a.txt", b"abc")
    assert info.value.code in {"SignatureDoesNotMatch", "AccessDenied"}
    anonymous = Minio(s3_server.endpoint, secure=False, region=s3_server.region)
    with pytest.raises(S3Error):
        anonymous.list_buckets()


def test_open_store_default_is_local_artifacts(tmp_path: Path) -> None:
    store = open_store(StorageSettings(data_dir=tmp_path))
    assert isinstance(store, LocalObjectStore)
    assert store.base == (tmp_path / "artifacts").resolve()
    blank = open_store(StorageSettings(data_dir=tmp_path, storage_url="  "))
    assert isinstance(blank, LocalObjectStore)
    assert blank.base == store.base


def test_open_store_local_paths(tmp_path: Path) -> None:
    plain = open_store(StorageSettings(storage_url=str(tmp_path / "plain")))
    assert isinstance(plain, LocalObjectStore)
    assert plain.base == (tmp_path / "plain").resolve()
    url = open_store(StorageSettings(storage_url=(tmp_path / "via url").as_uri()))
    assert isinstance(url, LocalObjectStore)
    assert url.base == (tmp_path / "via url").resolve()
    put_bytes(url, "a.txt", b"x")
    assert (tmp_path / "via url" / "a.txt").read_bytes() == b"x"


def test_open_store_s3_parses_bucket_and_prefix() -> None:
    settings = StorageSettings(
        storage_url="s3://glassbox-artifacts/team/prod/",
        s3_endpoint="s3.example.com",
        s3_access_key=SecretStr("ak"),
        s3_secret_key=SecretStr("sk"),
        s3_region="eu-west-1",
    )
    store = open_store(settings)  # no network until first use
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix) == ("glassbox-artifacts", "team/prod/")
    bare = open_store(settings.model_copy(update={"storage_url": "s3://glassbox-artifacts"}))
    assert isinstance(bare, S3ObjectStore)
    assert bare.prefix == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GLASSBOX_STORAGE_URL": "s3://bucket"}, "GLASSBOX_S3_ENDPOINT is required"),
        (
            {"GLASSBOX_STORAGE_URL": "s3://bucket", "GLASSBOX_S3_ENDPOINT": "127.0.0.1:9000"},
            "GLASSBOX_S3_ACCESS_KEY and GLASSBOX_S3_SECRET_KEY are required",
        ),
        (
            {
                "GLASSBOX_STORAGE_URL": "s3://bucket",
                "GLASSBOX_S3_ENDPOINT": "127.0.0.1:9000",
                "GLASSBOX_S3_ACCESS_KEY": "ak",
            },
            "GLASSBOX_S3_SECRET_KEY is required",
        ),
        (
            {
                "GLASSBOX_STORAGE_URL": "s3://bucket",
                "GLASSBOX_S3_ENDPOINT": "http://127.0.0.1:9000",
                "GLASSBOX_S3_ACCESS_KEY": "ak",
                "GLASSBOX_S3_SECRET_KEY": "sk",
            },
            "GLASSBOX_S3_ENDPOINT must be host",
        ),
        ({"GLASSBOX_STORAGE_URL": "gs://bucket"}, "GLASSBOX_STORAGE_URL has unsupported scheme"),
        ({"GLASSBOX_STORAGE_URL": "s3://"}, "GLASSBOX_STORAGE_URL"),
        ({"GLASSBOX_STORAGE_URL": "s3:///prefix"}, "GLASSBOX_STORAGE_URL"),
        ({"GLASSBOX_STORAGE_URL": "s3://Not_A_Bucket"}, "GLASSBOX_STORAGE_URL"),
        ({"GLASSBOX_STORAGE_URL": "s3://user:pw@bucket"}, "GLASSBOX_S3_ACCESS_KEY"),
        ({"GLASSBOX_STORAGE_URL": "s3://bucket/a/../b"}, "GLASSBOX_STORAGE_URL"),
        ({"GLASSBOX_STORAGE_URL": "file://otherhost/data"}, "GLASSBOX_STORAGE_URL"),
    ],
)
def test_open_store_config_errors(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    # Through the environment, as an operator would configure it, so the names in the
    # messages are checked against the names the settings really read.
    for name in list(os.environ):
        if name.startswith("GLASSBOX_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        open_store(StorageSettings())


def test_seaweed_startup_failure_includes_log(tmp_path: Path) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fake weed: cannot bind' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = SeaweedS3(weed=fake, startup_timeout_s=5)
    with pytest.raises(RuntimeError, match="exited during startup") as info:
        server.start(tmp_path / "server", attempts=2)
    assert "fake weed: cannot bind" in str(info.value)
    assert sorted(p.name for p in (tmp_path / "server").glob("weed-*.log")) == [
        "weed-1.log",
        "weed-2.log",
    ]


# --- failures, as an operator reads them ------------------------------------------------------


def test_an_unreachable_s3_endpoint_is_named_storage_unavailable() -> None:
    import socket
    import time

    from storage.objects import S3ObjectStore, storage_failure, transient

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3ObjectStore(
        endpoint=f"127.0.0.1:{port}", bucket="runs", access_key="a", secret_key="s", secure=False
    )
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        store.put("runs/r/video/v.mp4", [b"x"], content_type="video/mp4")
    assert time.monotonic() - started < 10  # not minio's minutes of retries: callers retry
    assert transient(caught.value)
    assert storage_failure(caught.value) == "storage unavailable: connection refused"


def test_a_full_disk_is_named_disk_full(tmp_path: Path) -> None:
    import errno

    from storage.objects import storage_failure, transient

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert transient(full)
    assert storage_failure(full) == "disk full: [Errno 28] No space left on device"
    assert not transient(ValueError("bad key"))
    assert storage_failure(ValueError("bad key")) == "storage failed: ValueError: bad key"
