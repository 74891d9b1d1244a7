"""Clips: registering media files as clips (used by ``curate ingest`` and ``curate demo``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError
from annotation_app.models import Clip, ClipStatus, Project

__all__ = ["register_clip", "find_by_sha256"]


def find_by_sha256(session: Session, project: Project, sha256: str) -> Clip | None:
    return session.scalar(select(Clip).where(Clip.project_id == project.id, Clip.sha256 == sha256))


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
