"""Files an `upload` step may give a page: a run's file inputs, or files under
GLASSBOX_UPLOAD_DIR — nothing else of the machine the worker runs on.

A `type: file` parameter's value is an upload id (`upl_…`, from `POST /api/v1/uploads` or
`glassbox run --param NAME=@FILE`); the run holds its own copy as an `input` artifact, under
`runs/<run_id>/input/<upload id>/<name>`. Any other value of an `upload` step's `file` is a path
on the worker's machine, allowed only inside the upload directory: absolute paths elsewhere,
`~`, `..` that leaves the directory and symlinks that point out of it are refused, when the run
is validated and again when the step runs.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

UPLOAD_ID = re.compile(r"upl_[0-9a-z]{26}")


def is_upload_id(value: str) -> bool:
    return UPLOAD_ID.fullmatch(value) is not None


def input_key(run_id: str, upload_id: str, name: str) -> str:
    """Where a run keeps its copy of an uploaded file (an `input` artifact)."""
    return f"runs/{run_id}/input/{upload_id}/{name}"


def upload_id_of_key(key: str) -> str | None:
    parts = PurePosixPath(key).parts
    return parts[3] if len(parts) >= 5 and parts[2] == "input" else None


class PathRefused(ValueError):
    """A server path an `upload` step may not use; the message says why."""


def server_path(file: str, upload_dir: Path | None, *, must_exist: bool = False) -> Path:
    """The file `file` names inside `upload_dir` (relative to it, or absolute within it),
    symlinks resolved. Raises PathRefused."""
    if upload_dir is None:
        raise PathRefused(
            "files of the server are not allowed (GLASSBOX_UPLOAD_DIR is not set): give a "
            "`type: file` parameter (an uploaded file) instead"
        )
    if not file.strip():
        raise PathRefused("no file given")
    if "\x00" in file:
        raise PathRefused("a path cannot contain NUL")
    if file.startswith("~"):
        raise PathRefused("`~` is not allowed: give a path relative to GLASSBOX_UPLOAD_DIR")
    base = upload_dir.resolve()
    given = Path(file)
    candidate = given if given.is_absolute() else base / given
    resolved = candidate.resolve()
    if not resolved.is_relative_to(base):
        raise PathRefused(
            f"{file!r} is outside GLASSBOX_UPLOAD_DIR (absolute paths elsewhere, `..` and "
            "symlinks out of it are refused)"
        )
    if must_exist and not resolved.is_file():
        raise PathRefused(f"no file {file!r} in GLASSBOX_UPLOAD_DIR")
    return resolved


def matches_accept(accept: list[str], name: str, content_type: str) -> bool:
    """Whether a file fits a parameter's `accept` list: extensions (`.pdf`), media types
    (`application/pdf`) or families (`image/*`), as an HTML file input's `accept`."""
    lower_name, lower_type = name.lower(), content_type.split(";")[0].strip().lower()
    for item in accept:
        want = item.strip().lower()
        if want.startswith(".") and lower_name.endswith(want):
            return True
        if want.endswith("/*") and lower_type.startswith(want[:-1]):
            return True
        if want == lower_type:
            return True
    return False
