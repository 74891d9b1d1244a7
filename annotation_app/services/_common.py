"""Small helpers shared by the annotation services: clocks, row locks, savepoints, slot counting.

Lock order (to keep PostgreSQL free of deadlocks): user row → clip row → assignment rows. Every
service that takes more than one of these takes them in that order; bulk housekeeping over
assignments (``reclaim_expired``) uses ``SKIP LOCKED`` and never waits. On SQLite the engine
serialises writers (``BEGIN IMMEDIATE``), so the ``FOR UPDATE`` clauses compile to nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation_app.db import run_prebuilt
from annotation_app.models import Assignment, AssignmentStatus, Clip, Project, User
from annotation_app.services import _queries as sql
from annotation_app.services._queries import live_slot  # noqa: F401 - the services import it from here

__all__: list[str] = []  # private module


def utc_now(now: datetime | None = None) -> datetime:
    """``now`` as an aware UTC datetime (the real clock when None)."""
    if now is None:
        return datetime.now(UTC)
    return aware(now)


def aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone=True columns; everything we store is UTC.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: the daily cap counts from here."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def lease_end(project: Project, now: datetime) -> datetime:
    return now + timedelta(minutes=project.lease_minutes)


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


_LOCK_USER = select(User).where(User.id == bindparam("user_id")).with_for_update(key_share=True)
_LOCK_CLIP = {
    skip: select(Clip).where(Clip.id == bindparam("clip_id")).with_for_update(key_share=True, skip_locked=skip)
    for skip in (False, True)
}
_FRESH = {"populate_existing": True}


def forget(session: Session, entity: type, ident: int) -> None:
    """Expire the session's copy of a row a Core statement just changed, if it holds one."""
    copy = session.identity_map.get(session.identity_key(entity, ident))
    if copy is not None:
        session.expire(copy)


def lock_user(session: Session, user_id: int) -> User | None:
    """The user row, fresh and locked (FOR NO KEY UPDATE on PostgreSQL) for this transaction."""
    return session.scalar(_LOCK_USER, {"user_id": user_id}, execution_options=_FRESH)


def lock_clip(session: Session, clip_id: int, *, skip_locked: bool = False) -> Clip | None:
    """The clip row, fresh and locked; None if it is gone (or, with ``skip_locked``, busy)."""
    return session.scalar(_LOCK_CLIP[skip_locked], {"clip_id": clip_id}, execution_options=_FRESH)


def lock_first_clip(session: Session, clip_ids: list[int]) -> Any:
    """The first clip of ``clip_ids`` (in that order) no other transaction holds, locked; None when
    all are held (or gone). A row of id, project_id, status, stage, language and media_path.

    On PostgreSQL one query whatever the number of busy clips: it sorts by the position in the
    given list, skips rows other transactions hold (``SKIP LOCKED``) and stops at the first it can
    lock. On SQLite (serialised writers) it is the first clip that exists.
    """
    if not clip_ids:
        return None
    if not is_postgres(session):
        for clip_id in clip_ids:
            clip = run_prebuilt(session, sql.LOCK_CLIP, {"clip_id": clip_id}).first()
            if clip is not None:
                return clip
        return None
    return run_prebuilt(session, sql.LOCK_FIRST_FREE_CLIP, {"ranked_clip_ids": list(clip_ids)}).first()


def expire_clip_leases(session: Session, clip_id: int, now: datetime) -> int:
    """Mark the clip's leases that ran out as expired; call with the clip row locked.

    Doing this under the clip lock makes expiry a database fact, not a clock reading: a late
    submit for the lease then sees ``expired`` whatever its own clock says, so a re-served slot is
    never filled twice.
    """
    rows = session.scalars(
        select(Assignment).where(
            Assignment.clip_id == clip_id,
            Assignment.status == AssignmentStatus.leased,
            Assignment.lease_expires_at <= now,
        ).execution_options(populate_existing=True)
    ).all()
    for row in rows:
        row.status = AssignmentStatus.expired
    return len(rows)


def stage_slot_counts(session: Session, clip_id: int, stage: int, now: datetime) -> tuple[int, int]:
    """(live slots, submitted slots) of a clip in a stage, gold and qualification work excluded."""
    # One round trip: both counts over the same few rows of the clip.
    live, submitted = run_prebuilt(session, sql.STAGE_SLOT_COUNTS, {"clip_id": clip_id, "stage": stage, "now": now}).one()
    return int(live), int(submitted)


def constraint_name(exc: IntegrityError) -> str:
    """The violated constraint's name (psycopg reports it; SQLite only in the message text)."""
    diag = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if diag:
        return str(diag)
    return str(exc.orig)


def violates(exc: IntegrityError, name: str, *columns: str) -> bool:
    """Whether ``exc`` broke the named unique constraint (SQLite names the columns instead)."""
    text = constraint_name(exc)
    if name in text:
        return True
    # SQLite: "UNIQUE constraint failed: judgements.annotator_id, judgements.client_request_id"
    return bool(columns) and "UNIQUE constraint failed" in text and all(c in text for c in columns)
