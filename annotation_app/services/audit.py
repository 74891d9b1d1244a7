"""The audit trail: one row per curator action that changes data or people."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from annotation_app.models import AuditEntry

__all__ = ["record"]


def record(
    session: Session,
    action: str,
    *,
    actor_id: int | None = None,
    project_id: int | None = None,
    target_type: str = "",
    target_id: str | int = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        action=action,
        actor_id=actor_id,
        project_id=project_id,
        target_type=target_type,
        target_id=str(target_id),
        details=details or {},
    )
    session.add(entry)
    return entry
