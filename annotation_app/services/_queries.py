"""The annotator queue's SQL, built once: every statement ``next`` and ``submit`` run per request.

Building a SQLAlchemy statement costs more Python than running it (coercing each operand, each
clause: about a millisecond for the allocator's window query), and the ORM adds identity-map and
unit-of-work work on top. The hot path therefore runs these prebuilt Core statements with bound
parameters through ``db.run_prebuilt``: SQLAlchemy compiles each once per dialect, on PostgreSQL
the SQL then goes straight to psycopg, which prepares it on the server after a few runs. They read and write the same tables and
take the same locks as the ORM code elsewhere (lock order in ``_common``).

Parameters are named: ``project_id``, ``user_id``, ``now``, ``day_start`` (midnight UTC of
``now``), ``clip_id``, ``assignment_id``, ``request_id``, and per statement as documented.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    false,
    func,
    insert,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Executable

from annotation_app.models import (
    Assignment,
    AssignmentStatus,
    Clip,
    ClipStatus,
    GoldItem,
    GoldPurpose,
    Judgement,
    Qualification,
    Role,
    User,
)

__all__: list[str] = []  # private module

A = Assignment.__table__
C = Clip.__table__
J = Judgement.__table__
U = User.__table__
Q = Qualification.__table__
G = GoldItem.__table__

NOW = bindparam("now", type_=DateTime(timezone=True))
DAY_START = bindparam("day_start", type_=DateTime(timezone=True))
PROJECT_ID = bindparam("project_id", type_=Integer)
USER_ID = bindparam("user_id", type_=Integer)
CLIP_ID = bindparam("clip_id", type_=Integer)
ASSIGNMENT_ID = bindparam("assignment_id", type_=Integer)
REQUEST_ID = bindparam("request_id", type_=String(64))

ANNOTATING_ROLES = (Role.annotator, Role.expert)
QUALIFICATION_PURPOSES = (GoldPurpose.qualification, GoldPurpose.both)
PROFILE_COLUMNS = (U.c.id, U.c.gender, U.c.age_band, U.c.region, U.c.background, U.c.languages)


def live_slot(now: Any) -> Any:
    """An assignment holds a slot: submitted, or leased and not yet expired at ``now`` (a datetime,
    or the ``NOW`` parameter in the statements here)."""
    return or_(
        A.c.status == AssignmentStatus.submitted,
        and_(A.c.status == AssignmentStatus.leased, A.c.lease_expires_at > now),
    )


# Who may take work: active, unpaused annotators and experts. An OR rather than IN: an IN list is
# an "expanding" parameter, which SQLAlchemy compiles again on every run.
ANNOTATING_USERS = (U.c.is_active.is_(True), U.c.paused.is_(False), or_(*(U.c.role == r for r in ANNOTATING_ROLES)))


def _fingerprint(*values: Any) -> Any:
    """SELECT of the values joined into one text (NULL as empty), for a cheap change check."""
    text = func.coalesce(cast(values[0], String), "")
    for value in values[1:]:
        text = text + "|" + func.coalesce(cast(value, String), "")
    return select(text)


def _count(*where: Any, table: Any) -> Any:
    return select(func.count()).select_from(table).where(*where).scalar_subquery()


# -- next: the user row, locked; everything else the request needs, in one round trip ------------

LOCK_USER = (
    select(U.c.id, U.c.role, U.c.is_active, U.c.paused, U.c.pause_reason, U.c.is_simulated,
           *PROFILE_COLUMNS[1:])
    .where(U.c.id == USER_ID)
    .with_for_update(key_share=True)
)


def _state() -> Executable:
    mine = (A.c.project_id == PROJECT_ID, A.c.annotator_id == USER_ID)
    counted = and_(A.c.stage >= 1, A.c.leased_at >= DAY_START, live_slot(NOW))
    # The annotator's own assignments, one pass: their live lease, today's slots, all slots.
    assignments = select(
        func.min(case((and_(A.c.status == AssignmentStatus.leased, A.c.lease_expires_at > NOW), A.c.id)))
        .label("lease_id"),
        func.coalesce(func.sum(case((counted, 1), else_=0)), 0).label("served_today"),
        func.coalesce(func.sum(case((A.c.stage >= 1, 1), else_=0)), 0).label("served_total"),
    ).where(*mine).subquery("own_assignments")
    # Their judgements, for the progress counts, also in one pass. Not a count of "today's" rows on
    # its own: with no statistics yet (a new project's first minute) a prepared plan took the
    # project's index on submission time for it and read every judgement of the day.
    judgements = select(
        func.coalesce(func.sum(case((J.c.submitted_at >= DAY_START, 1), else_=0)), 0).label("done_today"),
        func.count().label("done_total"),
    ).where(J.c.project_id == PROJECT_ID, J.c.annotator_id == USER_ID, J.c.replaces_id.is_(None),
            J.c.stage >= 1).subquery("own_judgements")
    passed = (Q.c.project_id == PROJECT_ID, Q.c.passed.is_(True))
    return select(
        assignments.c.lease_id, assignments.c.served_today, assignments.c.served_total,
        judgements.c.done_today, judgements.c.done_total,
        # The qualification round: gold clips available for it, and this annotator's round.
        _count(G.c.project_id == PROJECT_ID, or_(*(G.c.purpose == p for p in QUALIFICATION_PURPOSES)), table=G)
        .label("gold_for_round"),
        Q.c.answered.label("round_answered"), Q.c.correct.label("round_correct"),
        Q.c.passed.label("round_passed"), Q.c.completed_at.label("round_completed_at"),
        Q.c.attempt.label("round_attempt"), Q.c.round_size.label("round_size"), Q.c.waived.label("round_waived"),
        # The eligible pool's fingerprint (``work._eligible_pool``): creation and completion times,
        # not just counts and ids, because ids can be reused after a rollback. One text per table,
        # so each is read once.
        _fingerprint(func.count(U.c.id), func.max(U.c.id), func.max(U.c.created_at))
        .where(*ANNOTATING_USERS).scalar_subquery().label("pool_people"),
        _fingerprint(func.count(Q.c.id), func.max(Q.c.completed_at))
        .where(*passed).scalar_subquery().label("pool_passed"),
    ).select_from(
        assignments.join(judgements, true())
        .outerjoin(Q, and_(Q.c.project_id == PROJECT_ID, Q.c.annotator_id == USER_ID))
    )


STATE = _state()


@functools.cache
def candidates(stages: tuple[int, ...]) -> Executable:
    """The oldest open clips of each stage in ``stages`` that still need slots and the annotator never
    had, each with its assignment rows (one row per assignment; NULLs for a clip with none).

    Parameters besides the common ones: ``window``, ``offset``, ``needed_<stage>``, ``grows_to_<stage>``. One window
    per stage, in id order, so the database walks ``ix_clips_project_status_stage_id`` and stops
    after ``window`` matches instead of counting slots on every open clip.
    """
    window, offset = bindparam("window", type_=Integer), bindparam("offset", type_=Integer)
    # NOT IN over the annotator's own (few hundred) assignments: PostgreSQL hashes them once. The
    # NOT EXISTS form was planned as a merge anti-join over the whole clip/annotator index.
    seen = C.c.id.in_(select(A.c.clip_id).where(A.c.annotator_id == USER_ID))
    filled = (
        select(func.count()).select_from(A)
        .where(A.c.clip_id == C.c.id, A.c.stage == C.c.stage, live_slot(NOW))
        .correlate(C).scalar_subquery()
    )
    # An adaptive stage (``grows_to_<stage>`` > 0, ``stages.slots_asked``) asks for one slot more
    # than it has submitted once ``needed`` are live: open while no lease of it is live, up to the cap.
    leased = (
        select(A.c.id).where(A.c.clip_id == C.c.id, A.c.stage == C.c.stage, A.c.status == AssignmentStatus.leased,
                             A.c.lease_expires_at > NOW)
        .correlate(C).exists()
    )
    windows = [
        select(C.c.id, C.c.stage, C.c.language, C.c.updated_at)
        .where(C.c.project_id == PROJECT_ID, C.c.status == ClipStatus.active, C.c.stage == stage, ~seen,
               or_(filled < bindparam(f"needed_{stage}", type_=Integer),
                   and_(filled < bindparam(f"grows_to_{stage}", type_=Integer), ~leased)))
        .order_by(C.c.id).limit(window).offset(offset)
        .subquery(f"stage{stage}")
        for stage in stages
    ]
    # SQLite refuses LIMIT inside a compound SELECT's members: each window is its own subquery.
    members = [select(w.c.id, w.c.stage, w.c.language, w.c.updated_at) for w in windows]
    cand = (members[0] if len(members) == 1 else union_all(*members)).subquery("cand")
    slot = A.alias("slot")
    return (
        # ``updated_at``: when the clip entered its stage (or last changed), for the balance wait.
        select(cand.c.id, cand.c.stage, cand.c.language, cand.c.updated_at, slot.c.annotator_id,
               slot.c.stage.label("slot_stage"),
               slot.c.status, slot.c.lease_expires_at)
        .select_from(cand.outerjoin(slot, slot.c.clip_id == cand.c.id))
    )


@functools.cache
def state_and_candidates(stages: tuple[int, ...]) -> Executable:
    """STATE and the first window of :func:`candidates` (``offset`` 0) in one round trip: one row per
    candidate row with the state beside it, or a single row with NULL candidate columns.

    Both are plain reads after the user lock; the candidates are re-checked under each clip's lock,
    so reading them before knowing whether the annotator needs a new clip costs nothing but the read.
    """
    state = STATE.subquery("state")
    window = candidates(stages).subquery("first_window")
    return select(state, *(c.label(f"candidate_{c.name}") for c in window.c)).select_from(
        state.outerjoin(window, true()))


# The clip's assignment rows with their annotators' profiles, read fresh under the clip lock.
CLIP_SLOTS = (
    select(A.c.clip_id, A.c.stage, A.c.status, A.c.lease_expires_at, *PROFILE_COLUMNS)
    .join(U, U.c.id == A.c.annotator_id)
    .where(A.c.clip_id == CLIP_ID)
)

PROFILES = select(*PROFILE_COLUMNS).where(U.c.id.in_(bindparam("user_ids", expanding=True)))

_LOCKED_CLIP_COLUMNS = (C.c.id, C.c.project_id, C.c.status, C.c.stage, C.c.language, C.c.media_path, C.c.updated_at)

# The first of a ranked list of clips no other transaction holds (PostgreSQL): ordered by the
# position in the one array parameter ``ranked_clip_ids`` (a 128-branch CASE cost more Python).
_RANKED = bindparam("ranked_clip_ids", type_=postgresql.ARRAY(Integer))
LOCK_FIRST_FREE_CLIP = (
    select(*_LOCKED_CLIP_COLUMNS)
    .where(C.c.id == any_(_RANKED))
    .order_by(func.array_position(_RANKED, C.c.id))
    .limit(1)
    .with_for_update(key_share=True, skip_locked=True)
)
LOCK_CLIP = select(*_LOCKED_CLIP_COLUMNS).where(C.c.id == CLIP_ID).with_for_update(key_share=True)
LOCK_CLIP_SKIP_LOCKED = (
    select(*_LOCKED_CLIP_COLUMNS).where(C.c.id == CLIP_ID).with_for_update(key_share=True, skip_locked=True)
)

INSERT_LEASE = (
    insert(A)
    .values(project_id=PROJECT_ID, clip_id=CLIP_ID, annotator_id=USER_ID, stage=bindparam("stage", type_=Integer),
            is_gold=False, status=AssignmentStatus.leased, leased_at=NOW,
            lease_expires_at=bindparam("expires", type_=DateTime(timezone=True)))
    .returning(A.c.id)
)
# A lease given on a balance rule that yielded (``allocation.relaxations``), with the rule and why.
# Rare, so the plain lease keeps its statement and parameters.
INSERT_RELAXED_LEASE = (
    insert(A)
    .values(project_id=PROJECT_ID, clip_id=CLIP_ID, annotator_id=USER_ID, stage=bindparam("stage", type_=Integer),
            is_gold=False, status=AssignmentStatus.leased, leased_at=NOW,
            lease_expires_at=bindparam("expires", type_=DateTime(timezone=True)),
            relaxed_rule=bindparam("relaxed_rule", type_=String(64)),
            relaxed_reason=bindparam("relaxed_reason", type_=Text))
    .returning(A.c.id)
)


# -- submit -------------------------------------------------------------------------------------

# The clip an assignment belongs to, locked, with the assignment's owner and kind and the judgement
# already stored under this request id. Run under the user lock: a twin request with the same id
# has committed by then, or not started.
SUBMIT_TARGET = (
    select(
        C.c.id.label("clip_id"), C.c.status.label("clip_status"), C.c.stage.label("clip_stage"),
        A.c.annotator_id, A.c.project_id, A.c.is_gold,
        select(J.c.id).where(J.c.annotator_id == USER_ID, J.c.client_request_id == REQUEST_ID)
        .scalar_subquery().label("duplicate_of"),
    )
    .join(A, A.c.clip_id == C.c.id)
    .where(A.c.id == ASSIGNMENT_ID)
    .with_for_update(key_share=True, of=C)
)

JUDGEMENT_BY_REQUEST = select(J.c.id).where(J.c.annotator_id == USER_ID, J.c.client_request_id == REQUEST_ID)

# Taking the lease and checking it in one statement: a lease that was submitted, released or
# expired meanwhile (by a twin request, a curator, the reclaim) matches no row.
SUBMIT_LEASE = (
    update(A)
    .where(A.c.id == ASSIGNMENT_ID, A.c.status == AssignmentStatus.leased, A.c.lease_expires_at > NOW)
    .values(status=AssignmentStatus.submitted, submitted_at=NOW)
    .returning(A.c.id, A.c.clip_id, A.c.stage, A.c.annotator_id)
)
_JUDGEMENT_COLUMNS = [
    "project_id", "clip_id", "annotator_id", "assignment_id", "stage", "label_id", "confidence", "cant_judge",
    "broken", "flag_reason", "time_on_task_s", "client_request_id", "replaces_id", "live", "excluded",
    "submitted_at",
]


def _judgement_values(lease: Any) -> Any:
    """The new judgement's row for the lease row ``lease`` (the assignments table or a CTE over it)."""
    return select(
        PROJECT_ID, lease.c.clip_id, lease.c.annotator_id, lease.c.id, lease.c.stage,
        bindparam("label_id", type_=Integer), bindparam("confidence", type_=Integer),
        bindparam("cant_judge", type_=Boolean), bindparam("broken", type_=Boolean),
        bindparam("flag_reason", type_=Text), bindparam("time_on_task_s", type_=Float),
        REQUEST_ID, null(), true(), false(), NOW,
    )


# The judgement for the lease SUBMIT_LEASE just took (submitted, at ``now``, no judgement yet), with
# the lease's stage; it inserts nothing when the lease was not taken. For SQLite, which has no
# data-modifying CTEs; PostgreSQL runs SUBMIT_JUDGEMENT instead.
INSERT_JUDGEMENT = (
    insert(J)
    .from_select(
        _JUDGEMENT_COLUMNS,
        _judgement_values(A).where(
            A.c.id == ASSIGNMENT_ID, A.c.status == AssignmentStatus.submitted, A.c.submitted_at == NOW,
            # Taken just now, not submitted before (an earlier submission has its judgement).
            ~select(J.c.id).where(J.c.assignment_id == A.c.id).exists(),
        ),
    )
    .returning(J.c.id)
)


def _submit_judgement() -> Executable:
    taken = SUBMIT_LEASE.cte("taken")
    stored = insert(J).from_select(_JUDGEMENT_COLUMNS, _judgement_values(taken)).returning(J.c.id).cte("stored")
    # Read with the statement's snapshot, which does not see the lease just taken.
    submitted_before = (
        select(func.count()).select_from(A)
        .where(A.c.clip_id == CLIP_ID, A.c.stage == bindparam("clip_stage", type_=Integer),
               A.c.status == AssignmentStatus.submitted)
        .scalar_subquery()
    )
    return select(taken.c.id, taken.c.clip_id, taken.c.stage, taken.c.annotator_id,
                  stored.c.id.label("judgement_id"), submitted_before.label("submitted_before"),
                  ).select_from(taken.outerjoin(stored, true()))


# PostgreSQL: SUBMIT_LEASE and the judgement's insert as one statement (one round trip; a pipeline
# of the two busy-polled the socket). No row when the lease was not taken, and then nothing is stored.
# Also the clip's submitted slots in stage ``clip_stage`` before this one (``stages.advance`` needs
# them): under the clip lock, which every change to a submitted slot takes, only this statement's
# own lease can have changed them.
SUBMIT_JUDGEMENT = _submit_judgement()

# -- stages -------------------------------------------------------------------------------------

STAGE = bindparam("stage", type_=Integer)
STAGE_SLOT_COUNTS = select(
    func.coalesce(func.sum(case((live_slot(NOW), 1), else_=0)), 0),
    func.coalesce(func.sum(case((A.c.status == AssignmentStatus.submitted, 1), else_=0)), 0),
).where(A.c.clip_id == CLIP_ID, A.c.stage == STAGE)

# -- the annotator as pages show them (progress without a lock) ---------------------------------

USER = select(U.c.id, U.c.role, U.c.is_active, U.c.paused, U.c.pause_reason).where(U.c.id == USER_ID)
