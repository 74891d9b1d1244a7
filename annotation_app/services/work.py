"""The annotator's queue: next item (allocation + leases), submit, correct, progress.

Order of work for ``next_item`` (DESIGN §3):

1. the annotator's live lease, if any (a reload resumes it; one lease at a time);
2. nothing, if the annotator is blocked (inactive, not an annotating role, paused, failed
   qualification, daily cap reached — ``progress()["blocked_reason"]`` says which);
3. the next qualification gold clip while the round is open (stage 0);
4. a hidden gold clip with probability ``gold_rate`` (shown as stage 1);
5. a stage-2 or stage-1 slot chosen by :mod:`annotation_app.services.allocation`.

Concurrency: every function here takes the annotator's user row lock first (their own requests
queue up), then at most one clip row lock, then assignment rows (the lock order in
``_common``). Allocation reads candidate clips without locks, then locks one with
``FOR NO KEY UPDATE SKIP LOCKED`` (a busy clip is skipped, and tried again with a waiting lock only
if nothing else fits), re-reads its slots under the lock and re-applies the rules before inserting the
lease — so two workers can never overfill a clip. Leases that ran out on that clip are marked
expired under the same lock, which makes expiry a database fact rather than a reading of each
worker's clock. On SQLite the engine serialises writers instead. Races on the named unique
constraints are caught in savepoints: ``uq_assignment_clip_annotator`` makes the allocator move on,
``uq_judgement_request`` turns a concurrent retry into the first result.

The daily cap counts the annotator's stage-1/2 leases taken since midnight UTC that are live or
submitted (qualification items do not count; expired leases give the count back).

>>> WorkItem(1, 2, 1, None, "a.mp4", False).stage
1
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, InvalidInputError, LeaseError, NotFoundError
from annotation_app.models import (
    Assignment,
    AssignmentStatus,
    Clip,
    ClipStatus,
    GoldItem,
    Judgement,
    Project,
    Role,
    User,
)
from annotation_app.services import allocation, gold, stages
from annotation_app.services._common import (
    aware,
    day_start,
    expire_clip_leases,
    is_postgres,
    lease_end,
    live_slot,
    lock_clip,
    lock_user,
    utc_now,
    violates,
)

__all__ = [
    "ANNOTATING_ROLES",
    "WorkItem",
    "SubmitResult",
    "next_item",
    "submit",
    "correct",
    "recent_judgements",
    "progress",
    "can_access_clip",
    "reclaim_expired",
    "blocked_reason",
]

ANNOTATING_ROLES = (Role.annotator, Role.expert)
# Candidate clips read per round; most requests are served from the first window.
_WINDOW = 64
_RECLAIM_BATCH = 500


@dataclass(frozen=True)
class WorkItem:
    """A leased slot. Hidden gold shows as stage 1 with ``is_qualification`` False."""

    assignment_id: int
    clip_id: int
    stage: int
    lease_expires_at: datetime | None
    media_path: str
    is_qualification: bool


@dataclass(frozen=True)
class SubmitResult:
    """A stored judgement; ``duplicate`` when a retry returned the first result."""

    judgement_id: int
    duplicate: bool
    qualification: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------------
# Reading state


def _served_today(session: Session, project: Project, annotator_id: int, now: datetime) -> int:
    return int(session.scalar(
        select(func.count()).select_from(Assignment).where(
            Assignment.project_id == project.id,
            Assignment.annotator_id == annotator_id,
            Assignment.stage >= 1,
            Assignment.leased_at >= day_start(now),
            live_slot(now),
        )
    ) or 0)


def _live_lease(session: Session, project: Project, annotator_id: int, now: datetime) -> Assignment | None:
    return session.scalars(
        select(Assignment).where(
            Assignment.project_id == project.id,
            Assignment.annotator_id == annotator_id,
            Assignment.status == AssignmentStatus.leased,
            Assignment.lease_expires_at > now,
        ).order_by(Assignment.id).execution_options(populate_existing=True)
    ).first()


def _blocked(
    session: Session, project: Project, user: User, now: datetime, state: dict[str, Any] | None = None
) -> str | None:
    if not user.is_active:
        return "account is inactive"
    if user.role not in ANNOTATING_ROLES:
        return f"role {user.role.value} does not annotate"
    if user.paused:
        return f"paused: {user.pause_reason}" if user.pause_reason else "paused"
    if state is None:
        state = gold.qualification_state(session, project, user.id)
    if state["passed"] is False:
        return f"qualification not passed ({state['correct']}/{state['answered']} correct)"
    if _served_today(session, project, user.id, now) >= project.daily_cap:
        return f"daily cap of {project.daily_cap} clips reached"
    return None


def blocked_reason(session: Session, project: Project, annotator: User, *, now: datetime | None = None) -> str | None:
    """Why ``annotator`` gets no work now, or None."""
    return _blocked(session, project, annotator, utc_now(now))


def _item(assignment: Assignment, clip: Clip) -> WorkItem:
    return WorkItem(
        assignment_id=assignment.id,
        clip_id=assignment.clip_id,
        stage=assignment.stage,
        lease_expires_at=aware(assignment.lease_expires_at),
        media_path=clip.media_path,
        is_qualification=assignment.stage == 0,
    )


# ----------------------------------------------------------------------------------------------
# Allocation


@dataclass(frozen=True)
class _Profile:
    """The user columns the allocator reads (no ORM identity: cheap to load for everyone)."""

    id: int
    gender: str | None
    age_band: str | None
    region: str | None
    background: str | None
    languages: list[str] | None


_PROFILE_COLUMNS = (User.id, User.gender, User.age_band, User.region, User.background, User.languages)


def _eligible_pool(
    session: Session, project: Project, attributes: list[str], now: datetime, required: int
) -> list[allocation.Person]:
    """Everyone who could take a slot now: the pool the balance rules compare against."""
    users = [_Profile(*row) for row in session.execute(select(*_PROFILE_COLUMNS).where(
        User.is_active.is_(True), User.paused.is_(False), User.role.in_(ANNOTATING_ROLES)))]
    qualified = gold.qualified_ids(session, project, required=required)
    today = dict(session.execute(
        select(Assignment.annotator_id, func.count()).where(
            Assignment.project_id == project.id, Assignment.stage >= 1,
            Assignment.leased_at >= day_start(now), live_slot(now),
        ).group_by(Assignment.annotator_id)
    ).all())
    return [
        allocation.person_from_user(u, attributes) for u in users
        if (qualified is None or u.id in qualified) and today.get(u.id, 0) < project.daily_cap
    ]


def _clip_states(
    session: Session, project: Project, clips: list[tuple[int, int, str | None]], attributes: list[str],
    now: datetime,
) -> dict[int, allocation.ClipState]:
    """Allocator view of clips given as (id, stage, language), from their assignment rows."""
    k, m = project.overlap_k, project.stage2_extra
    states = {
        cid: allocation.ClipState(
            clip_id=cid, stage=stage, needed=stages.slots_needed(project, stage),
            slots_total=k if stage == 1 else k + m, language=language, filled=0,
        )
        for cid, stage, language in clips
    }
    if not states:
        return states
    rows = session.execute(
        select(Assignment.clip_id, Assignment.stage, Assignment.status, Assignment.lease_expires_at,
               *_PROFILE_COLUMNS)
        .join(User, User.id == Assignment.annotator_id)
        .where(Assignment.clip_id.in_(list(states)))
    ).all()
    for cid, stage, status, expires, *profile in rows:
        user = _Profile(*profile)
        state = states[cid]
        state.ever.add(user.id)
        live = status == AssignmentStatus.submitted or (
            status == AssignmentStatus.leased and aware(expires) > now)
        if live and 1 <= stage <= state.stage:
            state.live.append(allocation.person_from_user(user, attributes))
            if stage == state.stage:
                state.filled = (state.filled or 0) + 1
    return states


def _candidates(
    session: Session, project: Project, annotator_id: int, attributes: list[str], now: datetime, offset: int
) -> tuple[dict[int, allocation.ClipState], bool]:
    """The oldest open clips of each stage that still need slots and this annotator never had.

    One query per stage, in id order, so the database walks ``ix_clips_project_status_stage`` and
    stops after ``_WINDOW`` matches instead of counting slots on every open clip (28k clips:
    milliseconds, not a scan). Returns the states and whether any window came back full (more may
    follow at the next offset). The allocator ranks within the windows.
    """
    filled = (
        select(func.count()).select_from(Assignment)
        .where(Assignment.clip_id == Clip.id, Assignment.stage == Clip.stage, live_slot(now))
        .correlate(Clip).scalar_subquery()
    )
    seen = exists().where(Assignment.clip_id == Clip.id, Assignment.annotator_id == annotator_id)
    rows: list[tuple[int, int, str | None]] = []
    more = False
    for stage in (2, 1):
        needed = stages.slots_needed(project, stage)
        if needed <= 0:
            continue
        window = session.execute(
            select(Clip.id, Clip.stage, Clip.language)
            .where(Clip.project_id == project.id, Clip.status == ClipStatus.active, Clip.stage == stage,
                   ~seen, filled < needed)
            .order_by(Clip.id)
            .limit(_WINDOW).offset(offset)
        ).all()
        rows.extend((int(cid), int(st), lang) for cid, st, lang in window)
        more = more or len(window) == _WINDOW
    return _clip_states(session, project, rows, attributes, now), more


def _lease(
    session: Session, project: Project, annotator_id: int, clip_id: int, *, stage: int, is_gold: bool,
    now: datetime,
) -> Assignment | None:
    assignment = Assignment(
        project_id=project.id, clip_id=clip_id, annotator_id=annotator_id, stage=stage, is_gold=is_gold,
        status=AssignmentStatus.leased, leased_at=now, lease_expires_at=lease_end(project, now),
    )
    try:
        with session.begin_nested():
            session.add(assignment)
            session.flush()
    except IntegrityError as exc:
        if violates(exc, "uq_assignment_clip_annotator", "assignments.clip_id", "assignments.annotator_id"):
            return None
        raise
    return assignment


def _take(
    session: Session, project: Project, me: allocation.Person, clip: Clip, pool: list[allocation.Person],
    attributes: list[str], now: datetime,
) -> Assignment | None:
    """Lease a slot of a clip locked by the caller, if the rules still allow it on fresh state."""
    if clip.project_id != project.id or clip.status != ClipStatus.active or clip.stage not in stages.OPEN_STAGES:
        return None
    expire_clip_leases(session, clip.id, now)
    state = _clip_states(session, project, [(clip.id, clip.stage, clip.language)], attributes, now)[clip.id]
    if allocation.refusal(me, state, pool, attributes) is not None:
        return None
    return _lease(session, project, me.id, clip.id, stage=clip.stage, is_gold=False, now=now)


def _allocate(session: Session, project: Project, user: User, now: datetime, required: int) -> WorkItem | None:
    attributes = [str(a) for a in (project.balance_attributes or [])]
    pool = _eligible_pool(session, project, attributes, now, required)
    me = allocation.person_from_user(user, attributes)
    if all(p.id != me.id for p in pool):
        pool.append(me)
    busy: list[int] = []
    offset = 0
    while True:
        states, more = _candidates(session, project, user.id, attributes, now, offset)
        for state in allocation.rank_clips(me, states.values(), pool, attributes):
            item = _try_clip(session, project, me, state.clip_id, pool, attributes, now, wait=False)
            if item == "busy":
                busy.append(state.clip_id)
            elif item is not None:
                return item
        if not more:
            break
        offset += _WINDOW
    # Every admissible clip was locked by another worker: wait for them rather than report no work.
    for clip_id in busy:
        item = _try_clip(session, project, me, clip_id, pool, attributes, now, wait=True)
        if isinstance(item, WorkItem):
            return item
    return None


def _try_clip(
    session: Session, project: Project, me: allocation.Person, clip_id: int, pool: list[allocation.Person],
    attributes: list[str], now: datetime, *, wait: bool,
) -> WorkItem | str | None:
    """Lock one clip and lease a slot of it; "busy" when it is locked and ``wait`` is False.

    Each try runs in a savepoint that is rolled back when the clip is refused: PostgreSQL then
    drops the row lock at once, so a worker never holds a clip it did not take while it waits
    for another (which could deadlock two workers in the busy-clip fallback).
    """
    savepoint = session.begin_nested()
    try:
        clip = lock_clip(session, clip_id, skip_locked=not wait)
        assignment = None if clip is None else _take(session, project, me, clip, pool, attributes, now)
    except BaseException:
        savepoint.rollback()
        raise
    if assignment is None or clip is None:
        savepoint.rollback()
        return "busy" if clip is None and not wait else None
    savepoint.commit()
    return _item(assignment, clip)


def _gold_item(session: Session, project: Project, user: User, item: GoldItem, stage: int, now: datetime) -> WorkItem | None:
    assignment = _lease(session, project, user.id, item.clip_id, stage=stage, is_gold=True, now=now)
    if assignment is None:
        return None
    clip = session.get(Clip, item.clip_id)
    return None if clip is None else _item(assignment, clip)


def next_item(session: Session, project: Project, annotator: User, *, now: datetime | None = None) -> WorkItem | None:
    """The annotator's live lease, else a newly leased slot; None when nothing is available.

    Does not commit: the caller's unit of work commits the lease.
    """
    now = utc_now(now)
    user = lock_user(session, annotator.id)
    if user is None:
        raise NotFoundError(f"no user with id {annotator.id}")
    item = _next(session, project, user, now)
    # Last, so the SKIP LOCKED row locks it takes are never held while waiting for a clip.
    reclaim_expired(session, now=now)
    return item


def _next(session: Session, project: Project, user: User, now: datetime) -> WorkItem | None:
    current = _live_lease(session, project, user.id, now)
    if current is not None:
        clip = lock_clip(session, current.clip_id)
        if clip is not None and clip.status == (ClipStatus.gold if current.is_gold else ClipStatus.active):
            return _item(current, clip)
        # The curator took the clip out of labelling meanwhile: give the slot back, serve another.
        current.status = AssignmentStatus.released
        session.flush()
    state = gold.qualification_state(session, project, user.id)
    if _blocked(session, project, user, now, state) is not None:
        return None
    if state["passed"] is None:  # the qualification round is open
        qualification = gold.next_qualification_item(session, project, user.id, state=state)
        # None: out of qualification gold clips; the curator must add some.
        return None if qualification is None else _gold_item(session, project, user, qualification, 0, now)
    if project.gold_rate > 0:
        n_served = int(session.scalar(select(func.count()).select_from(Assignment).where(
            Assignment.project_id == project.id, Assignment.annotator_id == user.id,
            Assignment.stage >= 1)) or 0)
        hidden = gold.draw_hidden_gold(session, project, user.id, n_served)
        # Gold is mixed into real work, never served alone when there is none.
        if hidden is not None and session.scalar(select(exists().where(
                Clip.project_id == project.id, Clip.status == ClipStatus.active))):
            item = _gold_item(session, project, user, hidden, 1, now)
            if item is not None:
                return item
    return _allocate(session, project, user, now, state["required"])


def reclaim_expired(session: Session, *, now: datetime | None = None) -> int:
    """Mark leases that ran out as expired (their slots are free again); returns how many.

    Rows another transaction holds are skipped, never waited for. Allocation already ignores
    leases past their expiry, so this is bookkeeping that keeps the lease table honest.
    """
    now = utc_now(now)
    stmt = select(Assignment).where(
        Assignment.status == AssignmentStatus.leased, Assignment.lease_expires_at <= now
    ).limit(_RECLAIM_BATCH)
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True, key_share=True)
    rows = session.scalars(stmt.execution_options(populate_existing=True)).all()
    for row in rows:
        row.status = AssignmentStatus.expired
    if rows:
        session.flush()
    return len(rows)


# ----------------------------------------------------------------------------------------------
# Submitting


def _check_request_id(client_request_id: str) -> str:
    if not isinstance(client_request_id, str) or not client_request_id.strip():
        raise InvalidInputError("a submission needs a client request id")
    if len(client_request_id) > 64:
        raise InvalidInputError("client request id must be at most 64 characters")
    return client_request_id


def _by_request(session: Session, annotator_id: int, client_request_id: str) -> Judgement | None:
    return session.scalar(select(Judgement).where(
        Judgement.annotator_id == annotator_id, Judgement.client_request_id == client_request_id))


def _validated_label(
    project: Project, label: str | None, confidence: int | None, cant_judge: bool, broken: bool,
    time_on_task_s: float | None,
) -> int | None:
    if label is not None and str(label).strip() == "":
        label = None
    if cant_judge and label is not None:
        raise InvalidInputError("a judgement is either a label or can't-judge, not both")
    if label is None and not cant_judge and not broken:
        raise InvalidInputError("a judgement needs a label, or can't-judge, or a broken flag")
    if confidence is not None and (isinstance(confidence, bool) or not 1 <= int(confidence) <= 5):
        raise InvalidInputError(f"confidence must be 1 to 5, not {confidence!r}")
    if time_on_task_s is not None and (time_on_task_s != time_on_task_s or time_on_task_s < 0):
        raise InvalidInputError(f"time on task must be ≥ 0 seconds, not {time_on_task_s!r}")
    if label is None:
        return None
    for lab in project.labels:
        if lab.name == label:
            return lab.id
    raise InvalidInputError(
        f"unknown label {label!r}: choose one of {', '.join(lab.name for lab in project.labels)}")


def _duplicate(session: Session, project: Project, first: Judgement) -> SubmitResult:
    qualification = None
    if first.stage == 0:
        qualification = gold.qualification_state(session, project, first.annotator_id)
    return SubmitResult(judgement_id=first.id, duplicate=True, qualification=qualification)


def _insert_judgement(session: Session, project: Project, judgement: Judgement) -> SubmitResult | None:
    """Insert in a savepoint; a concurrent twin of the same request id yields the first result."""
    try:
        with session.begin_nested():
            session.add(judgement)
            session.flush()
    except IntegrityError as exc:
        if violates(exc, "uq_judgement_request", "judgements.client_request_id"):
            first = _by_request(session, judgement.annotator_id, judgement.client_request_id or "")
            if first is not None:
                return _duplicate(session, project, first)
        if violates(exc, "uq_judgement_live", "judgements.stage", "judgements.live"):
            raise ConflictError(f"clip {judgement.clip_id} already has your judgement in stage {judgement.stage}") from None
        raise
    return None


def submit(
    session: Session,
    project: Project,
    annotator: User,
    *,
    assignment_id: int,
    label: str | None,
    confidence: int | None = None,
    cant_judge: bool = False,
    broken: bool = False,
    flag_reason: str | None = None,
    time_on_task_s: float | None = None,
    client_request_id: str,
    now: datetime | None = None,
) -> SubmitResult:
    """Store the annotator's judgement for a leased slot; idempotent by ``client_request_id``.

    Errors: ``InvalidInputError`` (unknown label, bad values), ``NotFoundError`` (no such
    assignment, or its clip was removed / withdrawn), ``LeaseError`` (not your lease, already
    submitted under another request id, expired or released). Does not commit.
    """
    now = utc_now(now)
    _check_request_id(client_request_id)
    user = lock_user(session, annotator.id)
    if user is None:
        raise NotFoundError(f"no user with id {annotator.id}")
    first = _by_request(session, user.id, client_request_id)
    if first is not None:
        return _duplicate(session, project, first)
    label_id = _validated_label(project, label, confidence, cant_judge, broken, time_on_task_s)

    peek = session.get(Assignment, assignment_id)
    if peek is None:
        raise NotFoundError(f"no assignment {assignment_id}: its clip may have been removed")
    if peek.annotator_id != user.id or peek.project_id != project.id:
        raise LeaseError(f"assignment {assignment_id} is not leased to you")
    clip = lock_clip(session, peek.clip_id)
    if clip is None:
        raise NotFoundError(f"clip {peek.clip_id} was removed")
    assignment = session.scalar(
        select(Assignment).where(Assignment.id == assignment_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True))
    if assignment is None:
        raise NotFoundError(f"no assignment {assignment_id}: its clip may have been removed")
    open_status = ClipStatus.gold if assignment.is_gold else ClipStatus.active
    if assignment.status == AssignmentStatus.submitted:
        done = session.scalar(select(Judgement.id).where(
            Judgement.assignment_id == assignment.id, Judgement.replaces_id.is_(None)))
        raise LeaseError(f"assignment {assignment_id} was already submitted (judgement {done}); correct it instead")
    # Not "clip.stage == assignment.stage": after a curator re-opened a clip at an earlier stage, a
    # lease taken in the later stage still holds a slot of that stage and may be submitted.
    if clip.status != open_status:
        raise NotFoundError(f"clip {clip.id} is no longer open for labelling (status {clip.status.value})")
    if assignment.status == AssignmentStatus.released:
        raise LeaseError(f"your lease on clip {clip.id} was released")
    if assignment.status == AssignmentStatus.expired or aware(assignment.lease_expires_at) <= now:
        raise LeaseError(f"your lease on clip {clip.id} expired at {aware(assignment.lease_expires_at):%H:%M:%S} UTC; "
                         "ask for the next clip")

    judgement = Judgement(
        project_id=project.id, clip_id=clip.id, annotator_id=user.id, assignment_id=assignment.id,
        stage=assignment.stage, label_id=label_id, confidence=confidence, cant_judge=bool(cant_judge),
        broken=bool(broken), flag_reason=flag_reason, time_on_task_s=time_on_task_s,
        client_request_id=client_request_id, live=True, submitted_at=now,
    )
    if (dup := _insert_judgement(session, project, judgement)) is not None:
        return dup
    assignment.status = AssignmentStatus.submitted
    assignment.submitted_at = now
    session.flush()
    qualification = None
    if assignment.is_gold:
        qualification = gold.record_answer(session, project, assignment, judgement, now=now)
    else:
        stages.advance(session, project, clip, now=now)
    return SubmitResult(judgement_id=judgement.id, duplicate=False, qualification=qualification)


def correct(
    session: Session,
    project: Project,
    annotator: User,
    *,
    judgement_id: int,
    label: str | None,
    confidence: int | None = None,
    cant_judge: bool = False,
    broken: bool = False,
    flag_reason: str | None = None,
    client_request_id: str,
    now: datetime | None = None,
) -> SubmitResult:
    """Replace one's own live judgement with a new row (``replaces_id``) while its stage is open.

    ``ConflictError`` when the stage has closed, it is a gold answer, or it was already corrected.
    """
    now = utc_now(now)
    _check_request_id(client_request_id)
    user = lock_user(session, annotator.id)
    if user is None:
        raise NotFoundError(f"no user with id {annotator.id}")
    first = _by_request(session, user.id, client_request_id)
    if first is not None:
        return _duplicate(session, project, first)
    label_id = _validated_label(project, label, confidence, cant_judge, broken, None)
    old = session.get(Judgement, judgement_id, populate_existing=True)
    if old is None or old.annotator_id != user.id or old.project_id != project.id:
        raise NotFoundError(f"you have no judgement {judgement_id}")
    clip = lock_clip(session, old.clip_id)
    if clip is None:
        raise NotFoundError(f"clip {old.clip_id} was removed")
    session.refresh(old)
    if not old.live:
        raise ConflictError(f"judgement {judgement_id} was already corrected")
    if old.stage not in stages.OPEN_STAGES or clip.status == ClipStatus.gold:
        raise ConflictError("gold answers cannot be corrected")
    if clip.status != ClipStatus.active or clip.stage != old.stage:
        raise ConflictError(f"stage {old.stage} of clip {clip.id} is closed; the judgement can no longer change")
    new = Judgement(
        project_id=project.id, clip_id=clip.id, annotator_id=user.id, assignment_id=old.assignment_id,
        stage=old.stage, label_id=label_id, confidence=confidence, cant_judge=bool(cant_judge),
        broken=bool(broken), flag_reason=flag_reason, time_on_task_s=old.time_on_task_s,
        client_request_id=client_request_id, replaces_id=old.id, live=True, submitted_at=now,
    )
    try:
        with session.begin_nested():
            old.live = None
            session.flush()
            session.add(new)
            session.flush()
    except IntegrityError as exc:
        if violates(exc, "uq_judgement_request", "judgements.client_request_id"):
            twin = _by_request(session, user.id, client_request_id)
            if twin is not None:
                return _duplicate(session, project, twin)
        raise
    stages.advance(session, project, clip, now=now)
    return SubmitResult(judgement_id=new.id, duplicate=False, qualification=None)


# ----------------------------------------------------------------------------------------------
# Views for the annotator


def recent_judgements(session: Session, project: Project, annotator: User, *, limit: int = 20) -> list[dict[str, Any]]:
    """The annotator's own live judgements, newest first, and whether each can still be corrected."""
    rows = session.execute(
        select(Judgement, Clip.status, Clip.stage)
        .join(Clip, Clip.id == Judgement.clip_id)
        .where(Judgement.project_id == project.id, Judgement.annotator_id == annotator.id,
               Judgement.live.is_(True))
        .order_by(Judgement.submitted_at.desc(), Judgement.id.desc())
        .limit(limit)
    ).all()
    out = []
    for j, status, stage in rows:
        out.append({
            "judgement_id": j.id,
            "clip_id": j.clip_id,
            "stage": j.stage,
            "label": j.label.name if j.label is not None else None,
            "confidence": j.confidence,
            "cant_judge": j.cant_judge,
            "broken": j.broken,
            "submitted_at": aware(j.submitted_at),
            "correctable": j.stage in stages.OPEN_STAGES and status == ClipStatus.active and stage == j.stage,
        })
    return out


def progress(session: Session, project: Project, annotator: User, *, now: datetime | None = None) -> dict[str, Any]:
    """Counts for the annotator's page: today, cap, total, qualification round, why blocked."""
    now = utc_now(now)
    user = session.get(User, annotator.id, populate_existing=True) or annotator
    mine = (Judgement.project_id == project.id, Judgement.annotator_id == user.id,
            Judgement.replaces_id.is_(None), Judgement.stage >= 1)
    done_today = int(session.scalar(select(func.count()).select_from(Judgement).where(
        *mine, Judgement.submitted_at >= day_start(now))) or 0)
    total = int(session.scalar(select(func.count()).select_from(Judgement).where(*mine)) or 0)
    served = _served_today(session, project, user.id, now)
    return {
        "done_today": done_today,
        "daily_cap": project.daily_cap,
        "remaining_today": max(project.daily_cap - served, 0),
        "total_done": total,
        "qualification": gold.qualification_state(session, project, user.id),
        "blocked_reason": _blocked(session, project, user, now),
    }


def can_access_clip(session: Session, user: User, clip_id: int, *, now: datetime | None = None) -> bool:
    """May ``user`` fetch this clip's media: a live lease on it, or expert/curator/admin."""
    now = utc_now(now)
    if user.role in (Role.expert, Role.curator, Role.admin):
        return session.get(Clip, clip_id) is not None
    return bool(session.scalar(select(exists().where(
        Assignment.clip_id == clip_id, Assignment.annotator_id == user.id,
        Assignment.status == AssignmentStatus.leased, Assignment.lease_expires_at > now))))
