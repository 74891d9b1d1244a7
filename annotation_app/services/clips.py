"""Clips: registering media files as clips (used by ``curate ingest`` and ``curate demo``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, NotFoundError
from annotation_app.models import Clip, ClipStatus, Project

__all__ = ["register_clip", "find_by_sha256", "get_clip", "join_cluster", "cluster_members", "phash_rows"]


def find_by_sha256(session: Session, project: Project, sha256: str) -> Clip | None:
    return session.scalar(select(Clip).where(Clip.project_id == project.id, Clip.sha256 == sha256))


def get_clip(session: Session, project: Project, clip_id: int) -> Clip:
    clip = session.scalar(select(Clip).where(Clip.project_id == project.id, Clip.id == clip_id))
    if clip is None:
        raise NotFoundError(f"no clip #{clip_id} in project {project.name!r}")
    return clip


def register_clip(
    session: Session,
    project: Project,
    *,
    sha256: str,
    media_path: str,
    status: ClipStatus = ClipStatus.active,
    **metadata: Any,
) -> Clip:
    """Add a clip whose normalised media already sits at ``media_path`` (relative to the media folder)."""
    if find_by_sha256(session, project, sha256) is not None:
        raise ConflictError(f"a clip with SHA-256 {sha256[:12]}… is already in project {project.name!r}")
    clip = Clip(project_id=project.id, sha256=sha256, media_path=media_path, status=status, **metadata)
    session.add(clip)
    session.flush()
    return clip


def join_cluster(session: Session, clip: Clip, near: Clip) -> int:
    """Put ``clip`` in ``near``'s near-duplicate cluster; returns the cluster id.

    A cluster is named by the id of its first clip, so ``near`` founds one if it has none yet.
    """
    if near.duplicate_cluster is None:
        near.duplicate_cluster = near.id
    clip.duplicate_cluster = near.duplicate_cluster
    session.flush()
    return near.duplicate_cluster


def cluster_members(session: Session, project: Project, cluster: int) -> list[Clip]:
    return list(session.scalars(
        select(Clip).where(Clip.project_id == project.id, Clip.duplicate_cluster == cluster).order_by(Clip.id)
    ))


def phash_rows(session: Session, project: Project, *, after_id: int = 0) -> list[tuple[int, str, int | None]]:
    """``(clip id, phash, duplicate_cluster)`` of every hashed clip of the project (with an id above ``after_id``)."""
    rows = session.execute(
        select(Clip.id, Clip.phash, Clip.duplicate_cluster)
        .where(Clip.project_id == project.id, Clip.phash.is_not(None), Clip.id > after_id)
        .order_by(Clip.id)
    )
    return [(cid, ph, cluster) for cid, ph, cluster in rows]


