"""The annotator's queue: next item (allocation + leases), submit, correct, progress.

Order of work for ``next_item`` (DESIGN §3):

1. the annotator's live lease, if any (a reload resumes it; one lease at a time);
2. nothing, if the annotator is blocked (inactive, not an annotating role, paused, failed
   qualification, daily cap reached, an open qualification round with no clip left to show —
   ``progress()["blocked_reason"]`` says which);
3. the next qualification gold clip while the round is open (stage 0), a clip given back
   unanswered included (see :mod:`annotation_app.services.gold`);
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
worker's clock. On SQLite the engine serialises writers instead. Because the user row lock comes
first, an annotator's own requests never race each other: a retry of a submission waits for the
first and finds its judgement (``uq_judgement_request`` stays as the database's guarantee).

The hot path runs prebuilt statements (``_queries``) through ``db.run_prebuilt``: per next clip the
user lock, one read of the annotator's state (:class:`_State`), one window query, the clip lock, its
slots and the lease insert; per submission the user lock, the clip with its assignment, and the
lease taken and the judgement stored by one statement on PostgreSQL (then the stage machine).

The eligible pool (who could still balance a clip) is cached per process and project: it is
reused while a fingerprint (read with the annotator's state) of the eligible people and passed qualifications is unchanged
and for at most ``POOL_TTL_S`` seconds, so a profile edit or a daily cap reached shows in the balance
rules within that time (at once after :func:`invalidate_pool_cache`). The re-check under the clip
lock reads the clip's own annotators fresh. The pool also knows who is *available now* (served a
clip of the project within ``available_window_minutes``), read in the same pass as the daily caps
and renewed at least each minute of ``now``; a person's requests balance against people only,
never simulated accounts (see ``_Pool``). A clip's ``updated_at`` (its stage's start), read with the
candidates, says whether it has waited its balance wait (``allocation``, rules 3-5).

The daily cap counts the annotator's stage-1/2 leases taken since midnight UTC that are live or
submitted (qualification items do not count; expired leases give the count back).

>>> WorkItem(1, 2, 1, None, "a.mp4", False).stage
1
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation_app.db import run_prebuilt
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
from annotation_app.services import _queries as sql
from annotation_app.services import allocation, gold, guidelines, stages
from annotation_app.services._common import (
    aware,
    day_start,
    expire_clip_leases,
    forget,
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
    "NextResult",
    "serve_next",
    "RECLAIM_INTERVAL_S",
]

ANNOTATING_ROLES = sql.ANNOTATING_ROLES
# Candidate clips read per round; most requests are served from the first window.
_WINDOW = 16
# Polling the busy clips when waiting for their locks is not safe (see _allocate).
_BUSY_POLLS = 20
_BUSY_POLL_S = 0.005
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


@dataclass(frozen=True)
class _State:
    """What one request needs to know about the annotator, read in one statement (``_queries.STATE``)."""

    lease_id: int | None
    served_today: int  # stage-1/2 slots counted against today's cap
    served_total: int  # stage-1/2 items ever served (the hidden-gold draw's counter)
    done_today: int
    done_total: int
    qualification: dict[str, Any]
    pool_fingerprint: tuple[Any, ...]
    # The first window of candidate clips (``_candidates``' rows at offset 0), when read with the state.
    first_window: list[tuple[Any, ...]] | None = None


def _open_stages(project: Project) -> dict[int, int]:
    """Slots each open stage asks for, stage 2 first (the allocator serves it first)."""
    needed = {stage: stages.slots_needed(project, stage) for stage in (2, 1)}
    return {stage: n for stage, n in needed.items() if n > 0}


def _window_params(project: Project, open_stages: dict[int, int], offset: int) -> dict[str, Any]:
    return {"window": _WINDOW, "offset": offset, **{f"needed_{s}": n for s, n in open_stages.items()},
            **{f"grows_to_{s}": stages.grows_to(project, s) for s in open_stages}}


def _read_state(
    session: Session, project: Project, annotator_id: int, now: datetime, *, with_window: bool = False
) -> _State:
    """The annotator's state; ``with_window``: and the first window of candidate clips, in the same
    round trip (``_queries.state_and_candidates``), for a request that will likely allocate."""
    params = {"project_id": project.id, "user_id": annotator_id, "now": now, "day_start": day_start(now)}
    open_stages = _open_stages(project) if with_window else {}
    window = None
    if open_stages:
        rows = _run(session, sql.state_and_candidates(tuple(open_stages)), **params,
                    **_window_params(project, open_stages, 0)).all()
        row = rows[0]
        width = len(sql.STATE.selected_columns)
        window = [tuple(r[width:]) for r in rows if r.candidate_id is not None]
    else:
        row = _run(session, sql.STATE, **params).one()
    required = min(project.qualification_size, int(row.gold_for_round)) if project.qualification_size > 0 else 0
    qualification = gold.round_view(
        project, required, answered=row.round_answered, correct=row.round_correct, passed=row.round_passed,
        completed_at=row.round_completed_at, attempt=row.round_attempt, round_size=row.round_size,
        waived=row.round_waived)
    fingerprint: tuple[Any, ...] = (row.pool_people, row.pool_passed) if required else (row.pool_people,)
    return _State(
        lease_id=row.lease_id, served_today=int(row.served_today), served_total=int(row.served_total),
        done_today=int(row.done_today), done_total=int(row.done_total), qualification=qualification,
        pool_fingerprint=fingerprint, first_window=window,
    )


def _run(session: Session, statement: Any, **params: Any) -> Any:
    """A prebuilt statement of ``_queries`` on the session's connection (no ORM layer)."""
    return run_prebuilt(session, statement, params)


def _lock_user_row(session: Session, user_id: int) -> Any:
    """The user's row (role, state, profile), locked FOR NO KEY UPDATE for this transaction."""
    return _run(session, sql.LOCK_USER, user_id=user_id).first()


def _live_lease(session: Session, project: Project, annotator_id: int, now: datetime) -> Assignment | None:
    return session.scalars(
        select(Assignment).where(
            Assignment.project_id == project.id,
            Assignment.annotator_id == annotator_id,
            Assignment.status == AssignmentStatus.leased,
            Assignment.lease_expires_at > now,
        ).order_by(Assignment.id).execution_options(populate_existing=True)
    ).first()


def _blocked(project: Project, user: Any, state: dict[str, Any], served_today: int, now: datetime) -> str | None:
    if not user.is_active:
        return "account is inactive"
    if user.role not in ANNOTATING_ROLES:
        return f"role {Role(user.role).value} does not annotate"
    if user.paused:
        return f"paused: {user.pause_reason}" if user.pause_reason else "paused"
    if state["passed"] is False and not gold.retake_due(state, now):  # a due retake starts at the next request
        failed = f"qualification not passed ({state['correct']}/{state['answered']} correct)"
        if state["retake_at"] is None:
            return (f"{failed} in {state['attempt']} round{'s' if state['attempt'] != 1 else ''}, the most the "
                    "project allows; ask your curator for another round")
        return f"{failed}; you can retake it from {state['retake_at']:%Y-%m-%d %H:%M} UTC"
    if served_today >= project.daily_cap:
        return f"daily cap of {project.daily_cap} clips reached"
    return None


def blocked_reason(session: Session, project: Project, annotator: User, *, now: datetime | None = None) -> str | None:
    """Why ``annotator`` gets no work now, or None."""
    now = utc_now(now)
    state = _read_state(session, project, annotator.id, now)
    return _blocked(project, annotator, state.qualification, state.served_today, now)


def _item(assignment: Assignment, clip: Any) -> WorkItem:
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


@dataclass(frozen=True)
class _Pool:
    """The eligible pool as the allocator uses it (see ``_eligible_pool``).

    A person's requests balance against people only: simulated accounts (``curate demo
    --simulate``) never log in, so counting them would hold clips for people who never come. A
    simulated account's own requests — the demo's simulation, which runs before anyone logs in —
    balance against the simulated crowd (``with_simulated``), so its labels are allocated as a
    team's would be.
    """

    eligible: list[allocation.Person]  # active, unpaused, qualified, under their daily cap, not simulated
    index: allocation.PoolIndex  # of ``eligible``; available: those served a clip within the window
    known: dict[int, allocation.Person]  # every active, qualified person, capped ones included
    with_simulated: allocation.PoolIndex  # ``eligible`` and the simulated accounts among them
    seen: frozenset[int]  # ids served a clip of the project within ``available_window_minutes``

    def for_requester(self, me: allocation.Person, simulated: bool) -> allocation.PoolIndex:
        """The index a request of ``me`` balances against, ``me`` included (a fresh qualification
        or a cap just lifted may not have reached the cached pool yet; ``me`` is asking: available)."""
        index = self.with_simulated if simulated else self.index
        if me.id in index.people:
            return index
        return allocation.PoolIndex([*index.people.values(), me], index.attributes, [*index.available, me.id])


# The eligible pool, per (database, project): the balance rules compare every clip against it, and it
# changes rarely (people join, are paused, pass qualification, reach their cap). An entry is reused
# while its fingerprint — eligible people's count, highest id and latest creation time; passed
# qualifications' count and latest completion — is unchanged and it is younger than ``POOL_TTL_S``:
# profile edits (gender, languages) and daily caps reached are picked up within that time, or at
# once after :func:`invalidate_pool_cache`. The fingerprint comes with the request's state read.
POOL_TTL_S = 5.0
_pool_cache: dict[tuple[str, int, datetime], tuple[tuple[Any, ...], float, _Pool]] = {}
_pool_lock = threading.Lock()


def _database_key(session: Session) -> str:
    """Which database the session works on, for the per-process caches here."""
    return _url_text(session.get_bind().engine.url)


@functools.lru_cache(maxsize=16)
def _url_text(url: Any) -> str:
    # Rendering a URL costs more than hashing it, and it is asked on every next-clip request.
    return str(url)


def invalidate_pool_cache(project_id: int | None = None) -> None:
    """Forget cached eligible pools (of one project, or all): the next allocation reloads them."""
    with _pool_lock:
        for key in [k for k in _pool_cache if project_id is None or k[1] == project_id]:
            del _pool_cache[key]


def _load_pool(session: Session, project: Project, attributes: list[str], now: datetime, required: int) -> _Pool:
    rows = session.execute(select(*sql.PROFILE_COLUMNS, User.is_simulated).where(*sql.ANNOTATING_USERS)).all()
    qualified = gold.qualified_ids(session, project, required=required)
    # Per annotator: today's live stage-1/2 slots (the daily cap) and their last lease in the project
    # (available now when it is within the window), in one pass over their recent assignments.
    today, since = day_start(now), now - timedelta(minutes=project.available_window_minutes)
    counted = case((and_(Assignment.stage >= 1, Assignment.leased_at >= today, live_slot(now)), 1), else_=0)
    activity = session.execute(
        select(Assignment.annotator_id, func.sum(counted), func.max(Assignment.leased_at))
        .where(Assignment.project_id == project.id, Assignment.leased_at >= min(today, since))
        .group_by(Assignment.annotator_id)
    ).all()
    capped = frozenset(int(a) for a, n, _ in activity if int(n or 0) >= project.daily_cap)
    seen = frozenset(int(a) for a, _, last in activity if last is not None and aware(last) > since)
    simulated = {int(row[0]) for row in rows if row[-1]}
    people = [allocation.person_from_user(_Profile(*row[:-1]), attributes) for row in rows
              if qualified is None or row[0] in qualified]
    everyone = [p for p in people if p.id not in capped]
    eligible = [p for p in everyone if p.id not in simulated]
    return _Pool(eligible, allocation.PoolIndex(eligible, attributes, seen), {p.id: p for p in people},
                 allocation.PoolIndex(everyone, attributes, seen), seen)


def _eligible_pool(
    session: Session, project: Project, attributes: list[str], now: datetime, required: int, state: _State,
) -> _Pool:
    """Everyone who could take a slot now (the pool the balance rules compare against), indexed,
    and the allocator's view of each qualified, active person by id (capped ones included)."""
    key = (_database_key(session), project.id, project.created_at)
    # ``now`` to the minute: who counts as available changes as the clock moves, also a test's clock.
    fingerprint = (state.pool_fingerprint, tuple(attributes), project.daily_cap, day_start(now),
                   project.available_window_minutes, int(now.timestamp() // 60))
    with _pool_lock:
        cached = _pool_cache.get(key)
    if cached is not None and cached[0] == fingerprint and time.monotonic() - cached[1] < POOL_TTL_S:
        return cached[2]
    pool = _load_pool(session, project, attributes, now, required)
    with _pool_lock:
        _pool_cache[key] = (fingerprint, time.monotonic(), pool)
    return pool


def _clip_states(
    project: Project, rows: list[Any], now: datetime, people: Callable[[int], allocation.Person],
    expired: set[int] | None = None,
) -> dict[int, allocation.ClipState]:
    """Allocator view of clips from rows of (clip id, clip stage, language, clip changed at, annotator
    id, slot stage, slot status, lease end); a clip without assignments comes as one row with NULL
    slot columns.

    ``people`` maps an annotator id to the allocator's view of them. ``expired``, when given,
    collects the ids of clips with leases past their end still marked leased. A clip is overdue for
    the balance wait when it has been in its stage (unchanged) for ``balance_wait_minutes``.
    """
    k, m = stages.slots_needed(project, 1), stages.slots_needed(project, 2)
    waited_since = now - timedelta(minutes=project.balance_wait_minutes)
    states: dict[int, allocation.ClipState] = {}
    submitted: dict[int, int] = {}
    for cid, clip_stage, language, changed_at, annotator_id, stage, status, expires in rows:
        state = states.get(cid)
        if state is None:
            state = states[cid] = allocation.ClipState(
                clip_id=cid, stage=clip_stage, needed=stages.slots_needed(project, clip_stage),
                slots_total=k if clip_stage == 1 else k + m, language=language, filled=0,
                overdue=changed_at is None or aware(changed_at) <= waited_since,
            )
        if annotator_id is None:
            continue
        state.ever.add(annotator_id)
        live = status == AssignmentStatus.submitted or (
            status == AssignmentStatus.leased and aware(expires) > now)
        if expired is not None and status == AssignmentStatus.leased and not live:
            expired.add(cid)
        if live and 1 <= stage <= state.stage:
            state.live.append(people(annotator_id))
            if stage == state.stage:
                state.filled = (state.filled or 0) + 1
                if status == AssignmentStatus.submitted:
                    submitted[cid] = submitted.get(cid, 0) + 1
    for cid, state in states.items():
        if stages.grows_to(project, state.stage):
            # Adaptive: one more slot at a time once k_min are in (the balance ceiling's base grows too).
            state.needed = state.slots_total = stages.slots_asked(project, state.stage, submitted.get(cid, 0))
    return states


def _candidates(
    session: Session, project: Project, annotator_id: int, pool: _Pool, attributes: list[str], now: datetime,
    offset: int, prefetched: list[tuple[Any, ...]] | None = None,
) -> tuple[dict[int, allocation.ClipState], bool]:
    """The oldest open clips of each stage that still need slots and this annotator never had.

    One statement (``_queries.candidates``): a window of ``_WINDOW`` clips per open stage, in id
    order, with their assignment rows (``prefetched``: those rows, read with the state). Returns
    the states and whether any window came back full (more may follow at the next offset). The
    allocator ranks within the windows.
    """
    open_stages = _open_stages(project)
    if not open_stages:
        return {}, False
    rows = prefetched if prefetched is not None else _run(
        session, sql.candidates(tuple(open_stages)), project_id=project.id, user_id=annotator_id, now=now,
        **_window_params(project, open_stages, offset)).all()
    known = pool.known
    missing = {aid for *_, aid, _, _, _ in rows if aid is not None and aid not in known}
    if missing:
        # People no longer in the pool (paused, capped out of it, ...) who were on these clips.
        known = {**known, **{
            int(row[0]): allocation.person_from_user(_Profile(*row), attributes)
            for row in _run(session, sql.PROFILES, user_ids=sorted(missing))
        }}
    states = _clip_states(project, rows, now, known.__getitem__)
    per_stage: dict[int, int] = {}
    for state in states.values():
        per_stage[state.stage] = per_stage.get(state.stage, 0) + 1
    return states, any(n == _WINDOW for n in per_stage.values())


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
    session: Session, project: Project, me: allocation.Person, clip: Any, pool: allocation.PoolIndex,
    attributes: list[str], now: datetime,
) -> WorkItem | None:
    """Lease a slot of a clip locked by the caller, if the rules still allow it on fresh state."""
    if clip.project_id != project.id or clip.status != ClipStatus.active or clip.stage not in stages.OPEN_STAGES:
        return None
    expired: set[int] = set()
    profiles: dict[int, allocation.Person] = {}
    rows = []
    # Every profile read fresh under the lock: the cached pool may be up to POOL_TTL_S old.
    for _, stage, status, expires, *profile in _run(session, sql.CLIP_SLOTS, clip_id=clip.id):
        person = allocation.person_from_user(_Profile(*profile), attributes)
        profiles[person.id] = person
        rows.append((clip.id, clip.stage, clip.language, clip.updated_at, person.id, stage, status, expires))
    state = _clip_states(project, rows or [(clip.id, clip.stage, clip.language, clip.updated_at, None, None, None,
                                            None)], now, profiles.__getitem__, expired)[clip.id]
    if expired:
        # Under the clip lock, so a late submit for such a lease finds it expired (see _common).
        expire_clip_leases(session, clip.id, now)
    refused, relaxed = allocation.verdict(me, state, pool, attributes)
    if refused is not None:
        return None
    expires = lease_end(project, now)
    lease = {"project_id": project.id, "clip_id": clip.id, "user_id": me.id, "stage": clip.stage, "now": now,
             "expires": expires}
    if relaxed:  # a balance rule yielded: the slot says which and why (for the curator)
        assignment_id = _run(session, sql.INSERT_RELAXED_LEASE, **lease,
                             relaxed_rule=",".join(dict.fromkeys(r.rule for r in relaxed)),
                             relaxed_reason="; ".join(f"{r.rule}: {r.reason}" for r in relaxed)).scalar_one()
    else:
        assignment_id = _run(session, sql.INSERT_LEASE, **lease).scalar_one()
    return WorkItem(assignment_id=assignment_id, clip_id=clip.id, stage=clip.stage, lease_expires_at=aware(expires),
                    media_path=clip.media_path, is_qualification=False)


def _allocate(
    session: Session, project: Project, user: Any, now: datetime, required: int, state: _State
) -> WorkItem | None:
    attributes = [str(a) for a in (project.balance_attributes or [])]
    cached = _eligible_pool(session, project, attributes, now, required, state)
    me = allocation.person_from_user(user, attributes)
    index = cached.for_requester(me, bool(getattr(user, "is_simulated", False)))
    busy: list[int] = []
    refused_locked = False  # a clip refused after locking it is still locked (no savepoint)
    offset = 0
    while True:
        states, more = _candidates(session, project, user.id, cached, attributes, now, offset,
                                   state.first_window if offset == 0 else None)
        ranked = [s.clip_id for s in allocation.rank_clips(me, states.values(), index, attributes)]
        while ranked:
            item, taken = _try_first(session, project, me, ranked, index, attributes, now)
            if item is not None:
                return item
            if taken is None:  # every remaining clip of the window is locked by another worker
                busy.extend(ranked)
                break
            refused_locked = True
            at = ranked.index(taken)
            busy.extend(ranked[:at])  # skipped: locked by another worker
            ranked = ranked[at + 1:]
        if not more:
            break
        offset += _WINDOW
    # Every admissible clip was locked by another worker: wait for them rather than report no work.
    # Holding a refused clip's lock, waiting could close a cycle with a worker that waits for it:
    # then poll without waiting instead, a bounded number of times.
    rounds = _BUSY_POLLS if refused_locked else 1
    for attempt in range(rounds):
        still_busy = []
        for clip_id in busy:
            item = _try_clip(session, project, me, clip_id, index, attributes, now, wait=not refused_locked)
            if isinstance(item, WorkItem):
                return item
            if item == "busy":
                still_busy.append(clip_id)
        busy = still_busy
        if not busy:
            break
        if attempt + 1 < rounds:
            time.sleep(_BUSY_POLL_S)
    return None


def _try_first(
    session: Session, project: Project, me: allocation.Person, ranked: list[int], pool: allocation.PoolIndex,
    attributes: list[str], now: datetime,
) -> tuple[WorkItem | None, int | None]:
    """Lock the first clip of ``ranked`` no other worker holds and lease a slot of it.

    One ``FOR NO KEY UPDATE SKIP LOCKED`` query walks the ranked clips in order and locks the
    first free one: under load most of the best-ranked clips are locked by workers serving other
    annotators, and probing them one by one cost three round trips each. Returns (the item or
    None, the id of the clip locked and tried, or None when every clip was locked).

    No savepoint (two round trips per request): a clip refused on its fresh state stays locked
    until the transaction ends, which only makes other workers skip it for those milliseconds;
    :func:`_allocate` then never waits for a lock (see :func:`_try_clip`). The lease insert cannot
    meet ``uq_assignment_clip_annotator``: the user row lock serialises this annotator's
    allocations and the clip's past annotators were read under the clip lock.
    """
    clip = lock_first_clip(session, ranked)
    if clip is None:
        return None, None
    return _take(session, project, me, clip, pool, attributes, now), clip.id


def _try_clip(
    session: Session, project: Project, me: allocation.Person, clip_id: int, pool: allocation.PoolIndex,
    attributes: list[str], now: datetime, *, wait: bool,
) -> WorkItem | str | None:
    """Lock one clip and lease a slot of it; "busy" when it is locked and ``wait`` is False.

    Each try runs in a savepoint that is rolled back when the clip is refused: PostgreSQL then
    drops the row lock at once, so a worker never holds a clip it did not take while it waits
    for another (which could deadlock two workers in the busy-clip fallback).
    """
    savepoint = session.begin_nested()
    try:
        clip = _run(session, sql.LOCK_CLIP if wait else sql.LOCK_CLIP_SKIP_LOCKED, clip_id=clip_id).first()
        item = None if clip is None else _take(session, project, me, clip, pool, attributes, now)
    except IntegrityError as exc:
        # The lease insert runs in this savepoint (not one of its own: two round trips fewer).
        savepoint.rollback()
        if violates(exc, "uq_assignment_clip_annotator", "assignments.clip_id", "assignments.annotator_id"):
            return None
        raise
    except BaseException:
        savepoint.rollback()
        raise
    if item is None or clip is None:
        savepoint.rollback()
        return "busy" if clip is None and not wait else None
    savepoint.commit()
    return item


def _gold_item(session: Session, project: Project, user: Any, item: GoldItem, stage: int, now: datetime) -> WorkItem | None:
    assignment = _lease(session, project, user.id, item.clip_id, stage=stage, is_gold=True, now=now)
    if assignment is None:
        return None
    clip = session.get(Clip, item.clip_id)
    return None if clip is None else _item(assignment, clip)


def _lease_again(session: Session, project: Project, given_back: Assignment, now: datetime) -> WorkItem | None:
    """Lease a qualification clip the annotator gave back unanswered once more, on its own row.

    Nothing else turns the row meanwhile: the annotator's own requests and a curator's pause or
    exclusion take the annotator's row lock first, which the caller holds, and housekeeping only
    ever marks a lapsed lease expired (given back either way).
    """
    given_back.status = AssignmentStatus.leased
    given_back.leased_at = now
    given_back.lease_expires_at = lease_end(project, now)
    session.flush()
    clip = session.get(Clip, given_back.clip_id)
    return None if clip is None else _item(given_back, clip)


@dataclass(frozen=True)
class NextResult:
    """:func:`serve_next`'s answer: the item (None when nothing is available) and the progress counts."""

    item: WorkItem | None
    progress: dict[str, Any]


def next_item(session: Session, project: Project, annotator: User, *, now: datetime | None = None) -> WorkItem | None:
    """The annotator's live lease, else a newly leased slot; None when nothing is available.

    Does not commit: the caller's unit of work commits the lease.
    """
    return serve_next(session, project, annotator, now=now).item


def serve_next(
    session: Session, project: Project, annotator: Any, *, now: datetime | None = None, locked: bool = False
) -> NextResult:
    """:func:`next_item` and :func:`progress` after it, in one pass over the annotator's state.

    ``locked``: ``annotator`` is the user's row as this transaction read it FOR NO KEY UPDATE, with
    the columns of ``_queries.LOCK_USER`` (the queue route reads it together with the project);
    otherwise the row is locked and read here. Does not commit: the caller's unit of work commits
    the lease.
    """
    now = utc_now(now)
    user = annotator if locked else _lock_user_row(session, annotator.id)
    if user is None:
        raise NotFoundError(f"no user with id {annotator.id}")
    guidelines.require_confirmed(session, project, user.id)  # the gate for every client, not only the page
    state = _read_state(session, project, user.id, now, with_window=True)
    item, counted = _next(session, project, user, state, now)
    # Last, so the SKIP LOCKED row locks it takes are never held while waiting for a clip.
    _reclaim_now_and_then(session, now)
    if counted is None:  # a path that changed more than one new slot: count again
        return NextResult(item, progress(session, project, user, now=now, fresh=True))
    return NextResult(item, _progress_view(project, user, state, served_today=state.served_today + counted, now=now))


def _next(session: Session, project: Project, user: Any, state: _State, now: datetime) -> tuple[WorkItem | None, int | None]:
    """(the item, how many slots it added to today's count: 0 or 1, None when unsure)."""
    if state.lease_id is not None:
        current = _live_lease(session, project, user.id, now)
        if current is not None:
            clip = lock_clip(session, current.clip_id)
            if clip is not None and clip.status == (ClipStatus.gold if current.is_gold else ClipStatus.active):
                return _item(current, clip), 0
            # The curator took the clip out of labelling meanwhile: give the slot back, serve another
            # (with the counts read again: the released slot no longer counts).
            current.status = AssignmentStatus.released
            session.flush()
        return _next_new(session, project, user, _read_state(session, project, user.id, now), now), None
    item = _next_new(session, project, user, state, now)
    if state.qualification["passed"] is not True:
        # the open round may have been created, decided or found stuck meanwhile, a retake started
        return item, None
    if item is None:
        return None, 0
    return item, 1


def _next_new(session: Session, project: Project, user: Any, state: _State, now: datetime) -> WorkItem | None:
    qualification = state.qualification
    if qualification["passed"] is None and qualification["answered"] >= qualification["required"]:
        # The round now asks for no more than they answered (its size was lowered): decide it.
        qualification = gold.close_qualification_round(session, project, user.id, now=now)
    if gold.retake_due(qualification, now):  # a failed round's cool-down is over: the next round
        qualification = gold.start_retake(session, project, user.id, now=now) or qualification
    if _blocked(project, user, qualification, state.served_today, now) is not None:
        return None
    if qualification["passed"] is False:  # a retake is due but no unseen clip is left: progress() says so
        return None
    if qualification["passed"] is None:  # the qualification round is open
        pick = gold.next_qualification_item(session, project, user.id, now=now, state=qualification)
        if pick is None:  # no qualification clip left to serve: progress() says so
            return None
        item, given_back = pick
        if given_back is not None:
            return _lease_again(session, project, given_back, now)
        return _gold_item(session, project, user, item, 0, now)
    if project.gold_rate > 0:
        hidden = gold.draw_hidden_gold(session, project, user.id, state.served_total)
        # Gold is mixed into real work, never served alone when there is none.
        if hidden is not None and session.scalar(select(exists().where(
                Clip.project_id == project.id, Clip.status == ClipStatus.active))):
            item = _gold_item(session, project, user, hidden, 1, now)
            if item is not None:
                return item
    return _allocate(session, project, user, now, qualification["required"], state)


# Housekeeping cadence: every next-clip request marking expired leases cost a statement per
# request; once in a while per process is as good, since allocation ignores leases past their end
# and a clip's own expired leases are marked under its lock when a slot of it is taken.
RECLAIM_INTERVAL_S = 10.0
_last_reclaim: dict[str, float] = {}


def _reclaim_now_and_then(session: Session, now: datetime) -> None:
    key = _database_key(session)
    clock = time.monotonic()
    if clock - _last_reclaim.get(key, float("-inf")) < RECLAIM_INTERVAL_S:
        return
    _last_reclaim[key] = clock
    reclaim_expired(session, now=now)


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


def _duplicate(session: Session, project: Project, first: Judgement, **request: Any) -> SubmitResult:
    """The first result for a retried request id, or ``ConflictError`` when the retry asks for something else.

    A retry repeats its request: one that reuses the key with another assignment, label or flag (or a
    correction reusing a submission's key) had silently got the first result and lost what it said.
    ``request``: what this call asks (``assignment_id`` or ``replaces_id``, ``label``, ``confidence``,
    ``cant_judge``, ``broken``, ``flag_reason``); a correction's None confidence / reason means "keep".
    """
    label = request.pop("label")
    asked = {**request, "label": None if label is None or str(label).strip() == "" else label}
    stored = {"assignment_id": first.assignment_id, "replaces_id": first.replaces_id,
              "label": first.label.name if first.label is not None else None, "confidence": first.confidence,
              "cant_judge": first.cant_judge, "broken": first.broken, "flag_reason": first.flag_reason}
    if "assignment_id" in asked:  # a submission: the first must be a submission too
        asked["replaces_id"] = None
    keeps = ("confidence", "flag_reason") if "replaces_id" in request else ()
    differs = sorted(k for k, v in asked.items() if stored[k] != (bool(v) if k in ("cant_judge", "broken") else v)
                     and not (k in keeps and v is None))
    if differs:
        raise ConflictError(f"client_request_id {first.client_request_id!r} was already used for another request "
                            f"(its {', '.join(differs)} differ): send a new id for a new request")
    qualification = None
    if first.stage == 0:
        qualification = gold.qualification_state(session, project, first.annotator_id)
    return SubmitResult(judgement_id=first.id, duplicate=True, qualification=qualification)


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
    locked: bool = False,
) -> SubmitResult:
    """Store the annotator's judgement for a leased slot; idempotent by ``client_request_id``.

    Errors: ``InvalidInputError`` (unknown label, bad values), ``NotFoundError`` (no such
    assignment, or its clip was removed / withdrawn), ``LeaseError`` (not your lease, already
    submitted under another request id, expired or released), ``GuidelinesUnreadError`` (the
    project has guidelines the annotator has not confirmed). Does not commit.

    Locks, in ``_common``'s order: the user row (``locked``: the caller already holds it, as the
    queue route does), then the clip row with the assignment read beside it, then the lease. Two
    submits of one lease queue on the user lock; the second finds the lease taken and returns the
    first result when the request id matches.
    """
    now = utc_now(now)
    _check_request_id(client_request_id)
    if not locked and _lock_user_row(session, annotator.id) is None:
        raise NotFoundError(f"no user with id {annotator.id}")
    guidelines.require_confirmed(session, project, annotator.id)
    ids = {"user_id": annotator.id, "request_id": client_request_id}
    # Under the user lock, so a twin request with this id has committed or not started.
    target = _run(session, sql.SUBMIT_TARGET, assignment_id=assignment_id, **ids).first()
    duplicate_of = target.duplicate_of if target is not None else _run(session, sql.JUDGEMENT_BY_REQUEST, **ids).scalar()
    if duplicate_of is not None:
        return _duplicate(session, project, _judgement(session, duplicate_of), assignment_id=assignment_id,
                          label=label, confidence=confidence, cant_judge=cant_judge, broken=broken,
                          flag_reason=flag_reason)
    label_id = _validated_label(project, label, confidence, cant_judge, broken, time_on_task_s)
    if target is None:
        raise NotFoundError(f"no assignment {assignment_id}: its clip may have been removed")
    clip, peek = stages.LockedClip(target.clip_id, ClipStatus(target.clip_status), target.clip_stage), target
    if peek.annotator_id != annotator.id or peek.project_id != project.id:
        raise LeaseError(f"assignment {assignment_id} is not leased to you")
    if clip.status != (ClipStatus.gold if peek.is_gold else ClipStatus.active):
        _refused_submit(session, assignment_id, clip)
    # Not "clip.stage == lease stage": after a curator re-opened a clip at an earlier stage, a
    # lease taken in the later stage still holds a slot of that stage and may be submitted.
    judgement = {"project_id": project.id, "label_id": label_id, "confidence": confidence,
                 "cant_judge": bool(cant_judge), "broken": bool(broken), "flag_reason": flag_reason,
                 "time_on_task_s": time_on_task_s, "request_id": client_request_id}
    try:
        lease, judgement_id, submitted = _take_lease_and_store(session, assignment_id, clip, now, judgement)
    except IntegrityError as exc:
        if violates(exc, "uq_judgement_live", "judgements.stage", "judgements.live"):
            raise ConflictError(f"clip {clip.id} already has your judgement in this stage") from None
        if violates(exc, "uq_judgement_request", "judgements.client_request_id"):
            # Only a caller that claimed the user lock without holding it can get here.
            raise ConflictError(f"request {client_request_id} is being stored by another request; retry it") from None
        raise
    if lease is None:  # submitted, released or expired meanwhile: nothing was written
        _refused_submit(session, assignment_id, clip)
    forget(session, Assignment, assignment_id)
    qualification = None
    if peek.is_gold:
        answer = _Answer(id=judgement_id, label_id=label_id, cant_judge=bool(cant_judge))
        qualification = gold.record_answer(session, project, lease, answer, now=now)
    else:
        # A judgement without a broken flag cannot tip the clip into "broken": skip that count.
        outcome = stages.advance(session, project, clip, now=now, flags_changed=bool(broken), submitted=submitted)
        gold.check_agreement(session, project, annotator.id, clip.id, label_id, now=now,
                             decided=outcome.action == "resolved")
    return SubmitResult(judgement_id=judgement_id, duplicate=False, qualification=qualification)


def _take_lease_and_store(
    session: Session, assignment_id: int, clip: stages.LockedClip, now: datetime, judgement: dict[str, Any]
) -> tuple[Any, int | None, int | None]:
    """(the lease row, the new judgement's id, the clip's submitted slots in its stage now — None when
    not counted here), or (None, None, None) when the lease could not be taken."""
    ids = {"assignment_id": assignment_id, "now": now}
    if is_postgres(session):
        row = _run(session, sql.SUBMIT_JUDGEMENT, **ids, **judgement, clip_id=clip.id, clip_stage=clip.stage).first()
        if row is None:
            return None, None, None
        return row, row.judgement_id, row.submitted_before + int(row.stage == clip.stage)
    lease = _run(session, sql.SUBMIT_LEASE, **ids).first()
    if lease is None:
        return None, None, None
    return lease, _run(session, sql.INSERT_JUDGEMENT, **ids, **judgement).scalar_one(), None


@dataclass(frozen=True)
class _Answer:
    """A stored judgement as gold scoring reads it."""

    id: int
    label_id: int | None
    cant_judge: bool


def _judgement(session: Session, judgement_id: int) -> Judgement:
    found = session.get(Judgement, judgement_id, populate_existing=True)
    if found is None:  # pragma: no cover - rows are never deleted while their clip exists
        raise NotFoundError(f"judgement {judgement_id} is gone")
    return found


def _refused_submit(session: Session, assignment_id: int, clip: Clip | stages.LockedClip) -> NoReturn:
    """Why the lease could not be taken (under the clip lock), as the specific error."""
    assignment = session.get(Assignment, assignment_id, populate_existing=True)
    if assignment is None:
        raise NotFoundError(f"no assignment {assignment_id}: its clip may have been removed")
    if assignment.status == AssignmentStatus.submitted:
        done = session.scalar(select(Judgement.id).where(
            Judgement.assignment_id == assignment.id, Judgement.replaces_id.is_(None)))
        raise LeaseError(f"assignment {assignment_id} was already submitted (judgement {done}); correct it instead")
    if clip.status != (ClipStatus.gold if assignment.is_gold else ClipStatus.active):
        raise NotFoundError(f"clip {clip.id} is no longer open for labelling (status {clip.status.value})")
    if assignment.status == AssignmentStatus.released:
        raise LeaseError(f"your lease on clip {clip.id} was released")
    raise LeaseError(f"your lease on clip {clip.id} expired at {aware(assignment.lease_expires_at):%H:%M:%S} UTC; "
                     "ask for the next clip")


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

    A correction that gives no ``confidence`` keeps the one the annotator gave, and one that keeps the
    flags (can't judge, broken) without a new ``flag_reason`` keeps their reason: a correction
    changes what it says, nothing else. ``ConflictError`` when the stage has closed, it is a gold
    answer, or it was already corrected.
    """
    now = utc_now(now)
    _check_request_id(client_request_id)
    user = lock_user(session, annotator.id)
    if user is None:
        raise NotFoundError(f"no user with id {annotator.id}")
    asked = {"replaces_id": judgement_id, "label": label, "confidence": confidence, "cant_judge": cant_judge,
             "broken": broken, "flag_reason": flag_reason}
    first = _by_request(session, user.id, client_request_id)
    if first is not None:
        return _duplicate(session, project, first, **asked)
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
    if old.stage not in stages.OPEN_STAGES:
        raise ConflictError("qualification answers cannot be corrected")
    if not _correctable(project, old, clip.status, clip.stage, now):
        raise ConflictError(f"stage {old.stage} of clip {clip.id} is closed; the judgement can no longer change")
    if confidence is None:
        confidence = old.confidence
    if flag_reason is None and (bool(cant_judge), bool(broken)) == (old.cant_judge, old.broken):
        flag_reason = old.flag_reason
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
                return _duplicate(session, project, twin, **asked)
        raise
    if clip.status != ClipStatus.gold:  # a hidden gold answer keeps its first score (gold.record_answer)
        stages.advance(session, project, clip, now=now)
    return SubmitResult(judgement_id=new.id, duplicate=False, qualification=None)


def _correctable(project: Project, judgement: Judgement, status: ClipStatus, stage: int | None, now: datetime) -> bool:
    """Whether the annotator may still correct ``judgement``: while its clip's stage is open.

    A hidden gold clip has no stage that closes, yet must look like any other clip (DESIGN §3): had
    it stayed uncorrectable, ``correctable: false`` beside open clips' ``true`` gave it away. Its
    answer is correctable for ``lease_minutes`` after it was given, about as long as an ordinary
    stage stays open around one's own judgement, and a correction keeps the first answer's score.
    """
    if judgement.stage not in stages.OPEN_STAGES:
        return False
    if status == ClipStatus.gold:
        return aware(judgement.submitted_at) + timedelta(minutes=project.lease_minutes) > now
    return status == ClipStatus.active and stage == judgement.stage


# ----------------------------------------------------------------------------------------------
# Views for the annotator


def recent_judgements(
    session: Session, project: Project, annotator: User, *, limit: int = 20, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The annotator's own live judgements, newest first, and whether each can still be corrected
    (hidden gold looks like any clip here: see :func:`_correctable`)."""
    now = utc_now(now)
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
            "flag_reason": j.flag_reason,
            "submitted_at": aware(j.submitted_at),
            "correctable": _correctable(project, j, status, stage, now),
        })
    return out


def progress(
    session: Session, project: Project, annotator: User, *, now: datetime | None = None, fresh: bool = False
) -> dict[str, Any]:
    """Counts for the annotator's page: today, cap, total, qualification round, why blocked.

    ``fresh=True``: ``annotator`` was read in this transaction already, so it is not read again.
    """
    now = utc_now(now)
    user = annotator if fresh else (_run(session, sql.USER, user_id=annotator.id).first() or annotator)
    state = _read_state(session, project, user.id, now)
    stall = None
    if state.qualification["passed"] is not True and state.lease_id is None:
        stall = gold.qualification_stall(session, project, user.id, now=now)
    return _progress_view(project, user, state, served_today=state.served_today, now=now, stall=stall)


def _progress_view(
    project: Project, user: Any, state: _State, *, served_today: int, now: datetime, stall: str | None = None
) -> dict[str, Any]:
    """``stall``: why an open qualification round offers nothing (only :func:`progress` looks)."""
    return {
        "done_today": state.done_today,
        "daily_cap": project.daily_cap,
        "remaining_today": max(project.daily_cap - served_today, 0),
        "total_done": state.done_total,
        "qualification": state.qualification,
        "blocked_reason": _blocked(project, user, state.qualification, served_today, now) or stall,
    }


def can_access_clip(session: Session, user: User, clip_id: int, *, now: datetime | None = None) -> bool:
    """May ``user`` fetch this clip's media: a live lease on it, or expert/curator/admin."""
    now = utc_now(now)
    if user.role in (Role.expert, Role.curator, Role.admin):
        return session.get(Clip, clip_id) is not None
    return bool(session.scalar(select(exists().where(
        Assignment.clip_id == clip_id, Assignment.annotator_id == user.id,
        Assignment.status == AssignmentStatus.leased, Assignment.lease_expires_at > now))))
