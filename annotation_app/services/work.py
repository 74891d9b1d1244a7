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
``_common``). Allocation reads candidate clips without locks, ranks them, then locks the first
ranked clip no other worker holds in one ``FOR NO KEY UPDATE SKIP LOCKED`` query
(``_common.lock_first_clip``; busy clips are tried again with a waiting lock only if nothing else
fits), re-reads its slots under the lock and re-applies the rules before inserting the
lease — so two workers can never overfill a clip. Leases that ran out on that clip are marked
expired under the same lock, which makes expiry a database fact rather than a reading of each
worker's clock. On SQLite the engine serialises writers instead. Races on the named unique
constraints are caught in savepoints: ``uq_assignment_clip_annotator`` makes the allocator move on,
``uq_judgement_request`` turns a concurrent retry into the first result.

The eligible pool (who could still balance a clip) is cached per process and project: it is
reused while a one-query fingerprint of the eligible people and passed qualifications is unchanged
and for at most ``POOL_TTL_S`` seconds, so a profile edit or a daily cap reached shows in the balance
rules within that time (at once after :func:`invalidate_pool_cache`). The re-check under the clip
lock reads the clip's own annotators fresh.

The daily cap counts the annotator's stage-1/2 leases taken since midnight UTC that are live or
submitted (qualification items do not count; expired leases give the count back).

>>> WorkItem(1, 2, 1, None, "a.mp4", False).stage
1
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from annotation_app.errors import ConflictError, InvalidInputError, LeaseError, NotFoundError
from annotation_app.models import (
    Assignment,
    AssignmentStatus,
    Clip,
    ClipStatus,
    GoldItem,
    Judgement,
    Project,
    Qualification,
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
    lock_first_clip,
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
    "invalidate_pool_cache",
    "POOL_TTL_S",
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


def _served(session: Session, project: Project, annotator_id: int, now: datetime) -> tuple[int, int]:
    """(stage-1/2 slots counted against today's cap, stage-1/2 items ever served) in one query."""
    today = and_(Assignment.leased_at >= day_start(now), live_slot(now))
    row = session.execute(
        select(func.coalesce(func.sum(case((today, 1), else_=0)), 0), func.count()).where(
            Assignment.project_id == project.id,
            Assignment.annotator_id == annotator_id,
            Assignment.stage >= 1,
        )
    ).one()
    return int(row[0]), int(row[1])


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
    session: Session, project: Project, user: User, now: datetime, state: dict[str, Any] | None = None,
    served_today: int | None = None,
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
    if served_today is None:
        served_today = _served_today(session, project, user.id, now)
    if served_today >= project.daily_cap:
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


# The eligible pool, per (database, project): the balance rules compare every clip against it, and it
# changes rarely (people join, are paused, pass qualification, reach their cap). An entry is reused
# while its fingerprint — eligible people's count, highest id and latest creation time; passed
# qualifications' count and latest completion — is unchanged and it is younger than ``POOL_TTL_S``:
# profile edits (gender, languages) and daily caps reached are picked up within that time, or at
# once after :func:`invalidate_pool_cache`.
POOL_TTL_S = 5.0
_pool_cache: dict[
    tuple[str, int, datetime],
    tuple[tuple[Any, ...], float, list[allocation.Person], frozenset[int], dict[int, allocation.Person]],
] = {}
_pool_lock = threading.Lock()


def invalidate_pool_cache(project_id: int | None = None) -> None:
    """Forget cached eligible pools (of one project, or all): the next allocation reloads them."""
    with _pool_lock:
        for key in [k for k in _pool_cache if project_id is None or k[1] == project_id]:
            del _pool_cache[key]


def _annotating_users() -> tuple[ColumnElement[bool], ...]:
    return (User.is_active.is_(True), User.paused.is_(False), User.role.in_(ANNOTATING_ROLES))


def _pool_fingerprint(session: Session, project: Project, required: int) -> tuple[Any, ...]:
    # Creation and completion times, not just counts and ids: ids can be reused after a rollback.
    users = select(func.count(User.id), func.max(User.id), func.max(User.created_at)).where(*_annotating_users())
    if required == 0:
        return tuple(session.execute(users).one())
    passed = (Qualification.project_id == project.id, Qualification.passed.is_(True))
    n_passed = select(func.count()).select_from(Qualification).where(*passed).scalar_subquery()
    last_passed = select(func.max(Qualification.completed_at)).where(*passed).scalar_subquery()
    return tuple(session.execute(users.add_columns(n_passed, last_passed)).one())


def _load_pool(
    session: Session, project: Project, attributes: list[str], now: datetime, required: int
) -> tuple[list[allocation.Person], frozenset[int]]:
    """(everyone active, unpaused and qualified, ids of those at their daily cap)."""
    users = [_Profile(*row) for row in session.execute(select(*_PROFILE_COLUMNS).where(*_annotating_users()))]
    qualified = gold.qualified_ids(session, project, required=required)
    capped = frozenset(int(a) for a in session.scalars(
        select(Assignment.annotator_id).where(
            Assignment.project_id == project.id, Assignment.stage >= 1,
            Assignment.leased_at >= day_start(now), live_slot(now),
        ).group_by(Assignment.annotator_id).having(func.count() >= project.daily_cap)
    ))
    people = [allocation.person_from_user(u, attributes) for u in users if qualified is None or u.id in qualified]
    return people, capped


def _eligible_pool(
    session: Session, project: Project, attributes: list[str], now: datetime, required: int
) -> tuple[list[allocation.Person], dict[int, allocation.Person]]:
    """Everyone who could take a slot now (the pool the balance rules compare against), and the
    allocator's view of each qualified, active person by id (capped ones included)."""
    key = (str(session.get_bind().engine.url), project.id, project.created_at)
    fingerprint = (_pool_fingerprint(session, project, required), tuple(attributes), project.daily_cap,
                   day_start(now))
    with _pool_lock:
        cached = _pool_cache.get(key)
    if cached is not None and cached[0] == fingerprint and time.monotonic() - cached[1] < POOL_TTL_S:
        people, capped, by_id = cached[2], cached[3], cached[4]
    else:
        people, capped = _load_pool(session, project, attributes, now, required)
        by_id = {p.id: p for p in people}
        with _pool_lock:
            _pool_cache[key] = (fingerprint, time.monotonic(), people, capped, by_id)
    return [p for p in people if p.id not in capped], by_id


def _clip_states(
    session: Session, project: Project, clips: list[tuple[int, int, str | None]], attributes: list[str],
    now: datetime, expired: set[int] | None = None, known: dict[int, allocation.Person] | None = None,
) -> dict[int, allocation.ClipState]:
    """Allocator view of clips given as (id, stage, language), from their assignment rows.

    ``expired``, when given, collects the ids of clips with leases past their end still marked leased.
    ``known``: people already built (the cached pool, for ranking); only the others' profiles are read.
    Without it every profile is read fresh (the re-check under the clip lock does that).
    """
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
    slots = (Assignment.clip_id, Assignment.stage, Assignment.status, Assignment.lease_expires_at)
    if known is None:
        rows = [
            (cid, stage, status, expires, allocation.person_from_user(_Profile(*profile), attributes))
            for cid, stage, status, expires, *profile in session.execute(
                select(*slots, *_PROFILE_COLUMNS).join(User, User.id == Assignment.annotator_id)
                .where(Assignment.clip_id.in_(list(states))))
        ]
    else:
        plain = session.execute(select(*slots, Assignment.annotator_id).where(
            Assignment.clip_id.in_(list(states)))).all()
        missing = {int(aid) for *_, aid in plain if aid not in known}
        if missing:
            known = {**known, **{
                int(row[0]): allocation.person_from_user(_Profile(*row), attributes)
                for row in session.execute(select(*_PROFILE_COLUMNS).where(User.id.in_(missing)))
            }}
        rows = [(cid, stage, status, expires, known[int(aid)]) for cid, stage, status, expires, aid in plain]
    for cid, stage, status, expires, person in rows:
        state = states[cid]
        state.ever.add(person.id)
        live = status == AssignmentStatus.submitted or (
            status == AssignmentStatus.leased and aware(expires) > now)
        if expired is not None and status == AssignmentStatus.leased and not live:
            expired.add(cid)
        if live and 1 <= stage <= state.stage:
            state.live.append(person)
            if stage == state.stage:
                state.filled = (state.filled or 0) + 1
    return states


def _candidates(
    session: Session, project: Project, annotator_id: int, attributes: list[str], now: datetime, offset: int,
    known: dict[int, allocation.Person] | None = None,
) -> tuple[dict[int, allocation.ClipState], bool]:
    """The oldest open clips of each stage that still need slots and this annotator never had.

    One query per stage, in id order, so the database walks ``ix_clips_project_status_stage_id`` and
    stops after ``_WINDOW`` matches instead of counting slots on every open clip (28k clips:
    milliseconds, not a scan). Returns the states and whether any window came back full (more may
    follow at the next offset). The allocator ranks within the windows.
    """
    filled = (
        select(func.count()).select_from(Assignment)
        .where(Assignment.clip_id == Clip.id, Assignment.stage == Clip.stage, live_slot(now))
        .correlate(Clip).scalar_subquery()
    )
    # NOT IN over the annotator's own (few hundred) assignments: PostgreSQL hashes them once. The
    # NOT EXISTS form was planned as a merge anti-join over the whole clip/annotator index.
    seen = Clip.id.in_(select(Assignment.clip_id).where(Assignment.annotator_id == annotator_id))
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
    return _clip_states(session, project, rows, attributes, now, known=known), more


def _lease(
    session: Session, project: Project, annotator_id: int, clip_id: int, *, stage: int, is_gold: bool,
    now: datetime, savepoint: bool = True,
) -> Assignment | None:
    """Insert a lease; None when the annotator already had the clip (``uq_assignment_clip_annotator``).

    ``savepoint=False``: the caller already runs in a savepoint and handles the IntegrityError.
    """
    assignment = Assignment(
        project_id=project.id, clip_id=clip_id, annotator_id=annotator_id, stage=stage, is_gold=is_gold,
        status=AssignmentStatus.leased, leased_at=now, lease_expires_at=lease_end(project, now),
    )
    if not savepoint:
        session.add(assignment)
        session.flush()
        return assignment
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
    expired: set[int] = set()
    state = _clip_states(session, project, [(clip.id, clip.stage, clip.language)], attributes, now, expired)[clip.id]
    if expired:
        # Under the clip lock, so a late submit for such a lease finds it expired (see _common).
        expire_clip_leases(session, clip.id, now)
    if allocation.refusal(me, state, pool, attributes) is not None:
        return None
    return _lease(session, project, me.id, clip.id, stage=clip.stage, is_gold=False, now=now, savepoint=False)


def _allocate(session: Session, project: Project, user: User, now: datetime, required: int) -> WorkItem | None:
    attributes = [str(a) for a in (project.balance_attributes or [])]
    pool, known = _eligible_pool(session, project, attributes, now, required)
    me = allocation.person_from_user(user, attributes)
    if all(p.id != me.id for p in pool):
        pool.append(me)
    busy: list[int] = []
    offset = 0
    while True:
        states, more = _candidates(session, project, user.id, attributes, now, offset, known)
        ranked = [state.clip_id for state in allocation.rank_clips(me, states.values(), pool, attributes)]
        while ranked:
            item, taken = _try_first(session, project, me, ranked, pool, attributes, now)
            if item is not None:
                return item
            if taken is None:  # every remaining clip of the window is locked by another worker
                busy.extend(ranked)
                break
            at = ranked.index(taken)
            busy.extend(ranked[:at])  # skipped: locked by another worker
            ranked = ranked[at + 1:]
        if not more:
            break
        offset += _WINDOW
    # Every admissible clip was locked by another worker: wait for them rather than report no work.
    for clip_id in busy:
        item = _try_clip(session, project, me, clip_id, pool, attributes, now, wait=True)
        if isinstance(item, WorkItem):
            return item
    return None


def _try_first(
    session: Session, project: Project, me: allocation.Person, ranked: list[int], pool: list[allocation.Person],
    attributes: list[str], now: datetime,
) -> tuple[WorkItem | None, int | None]:
    """Lock the first clip of ``ranked`` no other worker holds and lease a slot of it.

    One ``FOR NO KEY UPDATE SKIP LOCKED`` query walks the ranked clips in order and locks the
    first free one: under load most of the best-ranked clips are locked by workers serving other
    annotators, and probing them one by one cost three round trips each. Returns (the item or
    None, the id of the clip locked and tried, or None when every clip was locked). A refused
    clip's savepoint is rolled back, which drops its lock at once (see :func:`_try_clip`).
    """
    savepoint = session.begin_nested()
    clip: Clip | None = None
    try:
        clip = lock_first_clip(session, ranked)
        assignment = None if clip is None else _take(session, project, me, clip, pool, attributes, now)
    except IntegrityError as exc:
        savepoint.rollback()
        if violates(exc, "uq_assignment_clip_annotator", "assignments.clip_id", "assignments.annotator_id"):
            return None, ranked[0] if clip is None else clip.id
        raise
    except BaseException:
        savepoint.rollback()
        raise
    if assignment is None or clip is None:
        savepoint.rollback()
        return None, None if clip is None else clip.id
    savepoint.commit()
    return _item(assignment, clip), clip.id


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
    except IntegrityError as exc:
        # The lease insert runs in this savepoint (not one of its own: two round trips fewer).
        savepoint.rollback()
        if violates(exc, "uq_assignment_clip_annotator", "assignments.clip_id", "assignments.annotator_id"):
            return None
        raise
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
    served_today, n_served = _served(session, project, user.id, now)
    if _blocked(session, project, user, now, state, served_today) is not None:
        return None
    if state["passed"] is None:  # the qualification round is open
        qualification = gold.next_qualification_item(session, project, user.id, state=state)
        # None: out of qualification gold clips; the curator must add some.
        return None if qualification is None else _gold_item(session, project, user, qualification, 0, now)
    if project.gold_rate > 0:
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
        # A judgement without a broken flag cannot tip the clip into "broken": skip that count.
        stages.advance(session, project, clip, now=now, flags_changed=bool(broken))
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


def progress(
    session: Session, project: Project, annotator: User, *, now: datetime | None = None, fresh: bool = False
) -> dict[str, Any]:
    """Counts for the annotator's page: today, cap, total, qualification round, why blocked.

    ``fresh=True``: ``annotator`` was read in this transaction already (``next_item`` locks and
    re-reads the user row), so it is not read again.
    """
    now = utc_now(now)
    user = annotator if fresh else (session.get(User, annotator.id, populate_existing=True) or annotator)
    mine = (Judgement.project_id == project.id, Judgement.annotator_id == user.id,
            Judgement.replaces_id.is_(None), Judgement.stage >= 1)
    today = Judgement.submitted_at >= day_start(now)
    # One round trip for the three counts (this runs on every "next clip" request).
    served_today = (
        select(func.count()).select_from(Assignment).where(
            Assignment.project_id == project.id, Assignment.annotator_id == user.id, Assignment.stage >= 1,
            Assignment.leased_at >= day_start(now), live_slot(now),
        ).scalar_subquery()
    )
    done_today, total, served = session.execute(
        select(func.coalesce(func.sum(case((today, 1), else_=0)), 0), func.count(), served_today)
        .select_from(Judgement).where(*mine)
    ).one()
    done_today, total, served = int(done_today), int(total), int(served)
    state = gold.qualification_state(session, project, user.id)
    return {
        "done_today": done_today,
        "daily_cap": project.daily_cap,
        "remaining_today": max(project.daily_cap - served, 0),
        "total_done": total,
        "qualification": state,
        "blocked_reason": _blocked(session, project, user, now, state, served),
    }


def can_access_clip(session: Session, user: User, clip_id: int, *, now: datetime | None = None) -> bool:
    """May ``user`` fetch this clip's media: a live lease on it, or expert/curator/admin."""
    now = utc_now(now)
    if user.role in (Role.expert, Role.curator, Role.admin):
        return session.get(Clip, clip_id) is not None
    return bool(session.scalar(select(exists().where(
        Assignment.clip_id == clip_id, Assignment.annotator_id == user.id,
        Assignment.status == AssignmentStatus.leased, Assignment.lease_expires_at > now))))
