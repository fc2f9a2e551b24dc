"""A typed client of a remote Glassbox's REST API (`/api/v1`), on httpx.

`glassbox --server URL` uses it for `run`, `artifact` and `runs …`; scripts and tests may too.
Refusals come back as the errors the local path raises, so the CLI answers both alike:
a 422 is `ValidationFailed` naming the field, a 404 `NotFound`, a 409 `InvalidTransition`-like
`Conflict`; a refused key and an unreachable server are `RemoteError` with a clear message.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from storage.errors import GlassboxError, NotFound, ValidationFailed

API_PREFIX = "/api/v1"
TERMINAL = frozenset({"completed", "failed", "terminated", "canceled", "timed_out", "interrupted"})


class RemoteError(GlassboxError):
    """The server could not be reached, refused the key, or answered what it should not."""


class RemoteNotFound(NotFound):
    """A 404, with the server's own words (which name the id)."""

    def __init__(self, message: str) -> None:
        GlassboxError.__init__(self, message)
        self.what, self.ident = "record", ""


class Conflict(GlassboxError):
    """A 409: the record's state does not allow it (e.g. canceling a finished run)."""


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of `GET /runs/{id}/events`: `card`, `status` or `end`."""

    event: str
    data: dict[str, Any]


def _detail(answer: httpx.Response) -> Any:
    try:
        return answer.json().get("detail")
    except ValueError:
        return answer.text[:300]


class Client:
    """One server: `Client("http://host:8000", api_key)`; use as a context manager."""

    def __init__(self, server: str, api_key: str | None = None, *, timeout: float = 30) -> None:
        self.server = server.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(
            base_url=self.server + API_PREFIX, headers=headers, timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- requests --------------------------------------------------------------------------

    def _check(self, answer: httpx.Response) -> httpx.Response:
        if answer.is_success or answer.is_redirect:
            return answer
        detail = _detail(answer)
        code = answer.status_code
        if code == 422 and isinstance(detail, list) and detail:
            first = detail[0]
            raise ValidationFailed(str(first.get("field") or "request"), str(first.get("msg")))
        if code == 404:
            raise RemoteNotFound(str(detail))
        if code == 409:
            raise Conflict(str(detail))
        if code == 401:
            raise RemoteError(
                f"{self.server} refused the API key ({detail}): give a valid key with "
                "--api-key or GLASSBOX_API_KEY (`glassbox apikey create` on the server)"
            )
        raise RemoteError(f"{self.server} answered {code}: {detail}")

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RemoteError(f"cannot reach Glassbox at {self.server}: {exc}") from None
        return self._check(answer)

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self._request(method, path, **kwargs).json()
        return body

    # --- runs --------------------------------------------------------------------------------

    def create_run(
        self, workflow: dict[str, Any], parameters: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """`POST /runs` with an inline workflow: the queued run's record."""
        return self._json("POST", "/runs", json={"workflow": workflow, **_params(parameters)})

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._json("GET", f"/runs/{run_id}")

    def list_runs(self, **filters: Any) -> dict[str, Any]:
        """`GET /runs` with its filters (status, workflow_id, source, q, tag, limit, cursor)."""
        query = {k: v for k, v in filters.items() if v is not None}
        return self._json("GET", "/runs", params=query)

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        return self._json("POST", f"/runs/{run_id}/cancel")

    def rerun(self, run_id: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._json("POST", f"/runs/{run_id}/rerun", json=_params(parameters))

    def timeline(self, run_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", f"/runs/{run_id}/timeline")["items"]
        return items

    def events(self, run_id: str) -> Iterator[Event]:
        """The run's live events until the server ends the stream (after `end`)."""
        try:
            with self._http.stream(
                "GET", f"/runs/{run_id}/events", timeout=httpx.Timeout(30, read=None)
            ) as stream:
                if not stream.is_success:
                    stream.read()
                    self._check(stream)
                yield from _read_sse(stream.iter_lines())
        except httpx.TransportError as exc:
            raise RemoteError(f"lost the event stream of {self.server}: {exc}") from None

    def wait(self, run_id: str) -> dict[str, Any]:
        """The run's record once it has ended (the event stream ends with the run)."""
        for _ in self.events(run_id):
            pass
        return self.get_run(run_id)

    # --- artifacts and uploads ---------------------------------------------------------------

    def get_artifact(self, artifact_id: str) -> dict[str, Any]:
        return self._json("GET", f"/artifacts/{artifact_id}")

    def artifact_chunks(self, artifact_id: str) -> Iterator[bytes]:
        """The artifact's bytes (through S3's presigned URL where the server redirects)."""
        try:
            with self._http.stream(
                "GET", f"/artifacts/{artifact_id}/content", follow_redirects=True
            ) as stream:
                if not stream.is_success:
                    stream.read()
                    self._check(stream)
                yield from stream.iter_bytes()
        except httpx.TransportError as exc:
            raise RemoteError(f"cannot reach Glassbox at {self.server}: {exc}") from None

    def upload(self, path: Path, field: str = "file") -> dict[str, Any]:
        """`POST /uploads` of a local file: its upload record (`id` for a file parameter)."""
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise ValidationFailed(field, f"cannot read {str(path)!r}: {exc.strerror}") from None
        with handle:
            return self._json("POST", "/uploads", files={"file": (path.name, handle, kind)})


def _params(parameters: dict[str, Any] | None) -> dict[str, Any]:
    return {"parameters": parameters} if parameters else {}


def _read_sse(lines: Iterator[str]) -> Iterator[Event]:
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield Event(event, json.loads("\n".join(data)))
            event, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
