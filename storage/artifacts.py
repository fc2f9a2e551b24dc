"""Artifact rows. Bytes live in the object store under runs/<run_id>/<kind>/<name>."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import NotFound
from storage.ids import new_id
from storage.models import Artifact
from storage.status import ArtifactKind


def artifact_key(run_id: str, kind: ArtifactKind, name: str) -> str:
    return f"runs/{run_id}/{kind.value}/{name}"


async def add_artifact(
    *,
    session: AsyncSession,
    run_id: str,
    kind: ArtifactKind,
    name: str,
    content_type: str,
    size: int,
    sha256: str,
    key: str,
    artifact_id: str | None = None,
    created_at: datetime | None = None,
) -> Artifact:
    """`created_at`: when the run produced it, so rows written late (a retry after an outage)
    still list in the run's order."""
    artifact = Artifact(
        id=artifact_id or new_id("art"),
        run_id=run_id,
        kind=kind.value,
        name=name,
        content_type=content_type,
        size=size,
        sha256=sha256,
        key=key,
    )
    if created_at is not None:
        artifact.created_at = created_at
    session.add(artifact)
    await session.flush()
    return artifact


async def list_artifacts(*, session: AsyncSession, run_id: str) -> list[Artifact]:
    rows = await session.execute(
        select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.created_at, Artifact.id)
    )
    return list(rows.scalars())


async def get_artifact(*, session: AsyncSession, artifact_id: str) -> Artifact:
    artifact = await session.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFound("artifact", artifact_id)
    return artifact
