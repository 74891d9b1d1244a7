"""The audit trail: one row per curator action that changes data or people."""

from __future__ import annotations

from datetime import datetime
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
    created_at: datetime | None = None,
) -> AuditEntry:
    """An audit row; ``created_at`` for a caller that works on a clock of its own (default: now)."""
    entry = AuditEntry(
        action=action,
        actor_id=actor_id,
        project_id=project_id,
        target_type=target_type,
        target_id=str(target_id),
        details=details or {},
    )
    if created_at is not None:
        entry.created_at = created_at
    session.add(entry)
    return entry
