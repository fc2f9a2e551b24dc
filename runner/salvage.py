"""Spools left behind: a run's spool outlives it when its worker died (the video's fragments,
the console log, downloads not stored yet) or when an outage kept artifacts from being stored
(`pending/`, runner.artifacts). A worker that starts, and then every `salvage_interval_s`,
stores what such spools hold — secrets masked as on the normal path —, tells the run's record
(a timeline card, `record.missing` updated), deletes the spool, and drops the live frames of
runs that ended."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from runner import netlog
from runner.artifacts import PENDING, ArtifactSink, StoreFailed, database_failure, missing_line
from runner.resources import RunnerResources, inputs_of
from runner.secrets import SecretMasker, option_secrets
from runner.video import faststart_remux
from storage.artifacts import add_artifact, list_artifacts
from storage.frames import delete_finished_live_frames
from storage.models import Artifact, Run
from storage.status import TERMINAL_STATUSES, ArtifactKind, CardKind, RunStatus
from storage.timeline import add_card, next_seq

log = logging.getLogger(__name__)

_DOWNLOAD_PREFIX = re.compile(r"^\d+-")
_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)


@dataclass
class Salvaged:
    """What a sweep did with one run's spool."""

    run_id: str
    stored: list[str] = field(default_factory=list)  # "video recording.mp4", …
    failed: list[str] = field(default_factory=list)  # record.missing lines; spool kept
    lost: list[str] = field(default_factory=list)  # record.missing lines: gone for good
    deleted: bool = False


async def sweep_forever(
    resources: RunnerResources, busy: Callable[[], Collection[str]] = frozenset
) -> None:
    """A worker's background sweep: at once, then every `salvage_interval_s`. `busy`: the runs
    this process is executing (their spools are in use)."""
    while True:
        try:
            await salvage_spools(resources, busy=busy)
        except Exception:
            log.warning("salvage sweep failed", exc_info=True)
        await asyncio.sleep(resources.runner.salvage_interval_s)


async def salvage_spools(
    resources: RunnerResources, *, busy: Callable[[], Collection[str]] = frozenset
) -> list[Salvaged]:
    """One sweep over the spool directory: the spools of runs that ended (any terminal status:
    an `interrupted` run's worker is gone) are stored and deleted; runs still running are left
    to their worker (or to the reaper, which ends them `interrupted` for the next sweep).
    `busy()`: the runs this process is executing, asked for each spool (a run may start while
    the sweep goes)."""
    async with resources.db.session() as session:
        dropped = await delete_finished_live_frames(session=session)
        await session.commit()
    if dropped:
        log.info("dropped the live frames of %d ended run(s)", dropped)
    done: list[Salvaged] = []
    root = resources.spool_dir
    if not root.is_dir():
        return done
    for spool in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if spool.name in busy():
            continue
        with _locked(spool) as mine:
            if not mine:
                continue  # another process on this data directory is at it
            salvaged = await salvage_spool(resources, spool)
        if salvaged is not None:
            done.append(salvaged)
    return done


@contextlib.contextmanager
def _locked(spool: Path) -> Iterator[bool]:
    """One process at a time on a spool (workers sharing a data directory). The lock file sits
    beside the spool, never in it: a spool holds only what is still to be stored."""
    lock = spool.parent / f".{spool.name}.salvage-lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


async def salvage_spool(resources: RunnerResources, spool: Path) -> Salvaged | None:
    """Stores what `spool` holds for its run, if the run ended; None if it is not for now."""
    run_id = spool.name
    async with resources.db.session() as session:
        run = await session.get(Run, run_id)
        artifacts = await list_artifacts(session=session, run_id=run_id) if run else []
    if run is None:
        log.info("spool %s: its run is gone (deleted); removing it", spool)
        shutil.rmtree(spool, ignore_errors=True)
        return Salvaged(run_id, deleted=True)
    if run.status not in _TERMINAL:
        return None
    salvage = _Salvage(resources, run, spool, artifacts)
    await salvage.pending()
    await salvage.leftovers()
    await salvage.record()
    result = salvage.result
    if not result.failed:
        shutil.rmtree(spool, ignore_errors=True)
        result.deleted = True
    if result.stored or result.failed:
        log.info(
            "run %s: salvaged %s%s",
            run_id,
            ", ".join(result.stored) or "nothing",
            f"; still missing: {'; '.join(result.failed)}" if result.failed else "",
        )
    return result


def masker_of(resources: RunnerResources, run: Run) -> SecretMasker | None:
    """The run's masker, as its worker had it; None if its secrets cannot be opened (then
    nothing that may hold them is stored: fail closed)."""
    try:
        _, inputs = inputs_of(resources, run)
    except Exception:
        log.warning("run %s: secrets not opened for the salvage", run.id, exc_info=True)
        return None
    return SecretMasker([*inputs.secret_values, *option_secrets(run.extra_http_headers, run.proxy)])


class _Salvage:
    def __init__(
        self, resources: RunnerResources, run: Run, spool: Path, artifacts: list[Artifact]
    ) -> None:
        self.resources = resources
        self.run = run
        self.spool = spool
        self.have = {(a.kind, a.name) for a in artifacts}
        self.ids = {a.id for a in artifacts}
        self.sink = ArtifactSink(
            db=resources.db,
            store=resources.store,
            run_id=run.id,
            retry_s=min(resources.runner.store_retry_s, 10),
        )
        for kind, name in self.have:
            self.sink.reserve(ArtifactKind(kind), name)
        self.result = Salvaged(run.id)
        self.struck: set[str] = set()  # record.missing lines of what is now stored
        self.prefixes: set[str] = set()  # … and the prefixes of those lines
        self._masker: SecretMasker | bool | None = False

    @property
    def masker(self) -> SecretMasker | None:
        if self._masker is False:
            self._masker = masker_of(self.resources, self.run)
        return self._masker if isinstance(self._masker, SecretMasker) else None

    def _stored(self, kind: ArtifactKind, name: str) -> None:
        self.result.stored.append(f"{kind.value} {name}")
        self.prefixes.add(missing_line(kind, name, ""))

    # --- artifacts the run could not store (runner.artifacts keeps them in pending/) --------

    async def pending(self) -> None:
        folder = self.spool / PENDING
        if not folder.is_dir():
            return
        for meta in sorted(folder.glob("*.json")):
            try:
                entry = json.loads(meta.read_text())
                kind, name = ArtifactKind(entry["kind"]), str(entry["name"])
            except (OSError, ValueError, KeyError):
                log.warning("spool %s: unreadable %s dropped", self.spool, meta.name)
                meta.unlink(missing_ok=True)
                continue
            try:
                await self._store_pending(entry, kind, name)
            except StoreFailed as exc:
                self.result.failed.append(exc.line)
                continue
            self.struck.add(entry.get("line", ""))
            self._stored(kind, name)
            # Its spool file may still be there (its object was stored, its row was not):
            # the leftovers below must not store it a second time.
            self.have.add((kind.value, name))
            if entry.get("file"):
                (self.spool / entry["file"]).unlink(missing_ok=True)
            meta.unlink(missing_ok=True)

    async def _store_pending(self, entry: dict[str, object], kind: ArtifactKind, name: str) -> None:
        artifact_id = str(entry["artifact_id"])
        if artifact_id in self.ids:
            return
        created_at = datetime.fromisoformat(str(entry["created_at"]))
        content_type = str(entry["content_type"])
        stored = entry.get("stored")
        if isinstance(stored, dict):  # the object is in the store; its row was not written
            try:
                async with self.resources.db.session() as session:
                    await add_artifact(
                        session=session,
                        run_id=self.run.id,
                        kind=kind,
                        name=name,
                        content_type=content_type,
                        size=int(stored["size"]),
                        sha256=str(stored["sha256"]),
                        key=str(stored["key"]),
                        artifact_id=artifact_id,
                        created_at=created_at,
                    )
                    await session.commit()
            except Exception as exc:
                raise StoreFailed(kind, name, database_failure(exc), kept=True) from exc
            return
        path = self.spool / str(entry.get("file") or "")
        if not entry.get("file") or not path.is_file():
            raise StoreFailed(kind, name, "lost: its spool file is gone", kept=False)
        # Its row keeps the name, id and time the run gave it (cards refer to screenshots by
        # id; rows list in the run's order).
        await self.sink.put_file(
            kind,
            name,
            path,
            content_type=content_type,
            artifact_id=artifact_id,
            created_at=created_at,
        )

    # --- what a worker that died left: the recording's files --------------------------------

    async def leftovers(self) -> None:
        spool = self.spool
        mp4, fragments = spool / "recording.mp4", spool / "video.spool.mp4"
        if fragments.is_file() and not mp4.is_file():
            try:
                await asyncio.to_thread(
                    faststart_remux, fragments, mp4, ffmpeg_exe=self.resources.runner.ffmpeg
                )
            except Exception as exc:
                line = missing_line(ArtifactKind.video, "recording.mp4", f"not salvaged: {exc}")
                self.result.failed.append(line[:500])
        if mp4.is_file() and await self._store(ArtifactKind.video, "recording.mp4", mp4):
            fragments.unlink(missing_ok=True)
        masker = self.masker
        log, har = spool / netlog.LOG_NAME, spool / "network.har"
        if log.is_file():
            # The browser writes the HAR only when the context closes, which a worker that died
            # never did: the entries it logged as the run went make one (without bodies).
            if not har.is_file() and (ArtifactKind.har.value, har.name) not in self.have:
                try:
                    await asyncio.to_thread(netlog.rebuild_har, log, har)
                    self.result.lost.append(
                        missing_line(ArtifactKind.har, har.name, netlog.REBUILT_NOTE)
                    )
                except OSError as exc:  # a full disk: the log stays for a later sweep
                    har.unlink(missing_ok=True)
                    self.result.failed.append(
                        missing_line(ArtifactKind.har, har.name, f"not rebuilt: {exc}")
                    )
            if har.is_file() or (ArtifactKind.har.value, har.name) in self.have:
                log.unlink(missing_ok=True)
        for kind, path, mask in (
            (ArtifactKind.console, spool / "console.jsonl", _mask_lines),
            (ArtifactKind.har, spool / "network.har", SecretMasker.mask_har),
            (ArtifactKind.trace, spool / "trace.zip", SecretMasker.mask_zip),
        ):
            if not path.is_file():
                continue
            if (kind.value, path.name) in self.have:  # stored (or kept) before: not twice
                path.unlink(missing_ok=True)
                continue
            if masker is None:
                self.result.failed.append(
                    missing_line(
                        kind,
                        path.name,
                        "not salvaged: the run's secrets could not be opened to mask it",
                    )
                )
                continue
            try:
                await asyncio.to_thread(mask, masker, path)
            except Exception as exc:
                self.result.failed.append(
                    missing_line(kind, path.name, f"not salvaged: masking failed: {exc}")
                )
                continue
            await self._store(kind, path.name, path)
        if self.run.status == RunStatus.interrupted.value:
            # Written by the browser only when the run's context closes, which a worker that
            # died never did: say so rather than leave the record silently short.
            settings = self.resources.runner
            for enabled, kind, name in (
                (settings.har, ArtifactKind.har, "network.har"),
                (settings.trace, ArtifactKind.trace, "trace.zip"),
            ):
                if enabled and (kind.value, name) not in self.have:
                    self.result.lost.append(missing_line(kind, name, "lost with its worker"))
        downloads = spool / "downloads"
        for path in sorted(downloads.iterdir()) if downloads.is_dir() else []:
            if path.is_file():
                name = _DOWNLOAD_PREFIX.sub("", path.name, count=1) or "download"
                await self._store(ArtifactKind.download, name, path, dedupe=False)

    async def _store(
        self, kind: ArtifactKind, name: str, path: Path, *, dedupe: bool = True
    ) -> bool:
        if dedupe and (kind.value, name) in self.have:
            path.unlink(missing_ok=True)  # stored before its worker died
            return True
        try:
            artifact = await self.sink.put_file(kind, name, path, consume=True)
        except StoreFailed as exc:
            self.result.failed.append(exc.line)
            return False
        self.have.add((kind.value, artifact.name))
        self._stored(kind, artifact.name)
        return True

    # --- the run's record ------------------------------------------------------------------

    async def record(self) -> None:
        result = self.result
        async with self.resources.db.session() as session:
            run = await session.get(Run, self.run.id)
            if run is None:
                return
            before = list(run.record_missing or [])
            kept = [
                line
                for line in before
                if line not in self.struck and not any(line.startswith(p) for p in self.prefixes)
            ]
            for line in [*result.failed, *result.lost]:
                if not any(line.split(":", 1)[0] == k.split(":", 1)[0] for k in kept):
                    kept.append(line)
            run.record_missing = kept or None
            if result.stored:
                text = f"Salvaged after the run ended: {', '.join(result.stored)}"
                await add_card(
                    session=session,
                    run_id=run.id,
                    seq=await next_seq(session=session, run_id=run.id),
                    kind=CardKind.thought,
                    video_ms=0,
                    data={"text": text, "salvaged": list(result.stored)},
                )
            await session.commit()


def _mask_lines(masker: SecretMasker, path: Path) -> None:
    masked = path.with_name(f".{path.name}.masked")
    with path.open(encoding="utf-8", errors="replace") as src, masked.open("w") as out:
        for line in src:
            out.write(masker.mask_text(line))
    os.replace(masked, path)
