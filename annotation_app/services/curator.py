"""Curator and admin actions and views: progress, annotator quality, clips, pausing, exclusion, export.

Every action that changes data or people writes an audit entry (``services.audit.record``):
``annotator.pause`` / ``annotator.resume`` and ``annotator.exclude``.

Exclusion (``exclude_annotator``): all of the annotator's judgements in the project are marked
``excluded`` (kept, never deleted — consensus, agreement and exports skip them), their leases are
released, their submitted slots are given back, and each affected clip goes back through the stage
machine (``stages.reopen``): its decision is cleared and the first stage short of judgements is
served again. Clips an expert already decided stay decided (listed in the audit entry). By default
the annotator is also paused, so no new work arrives before the curator looks again.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation_app.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from annotation_app.models import (
    Adjudication,
    Assignment,
    AssignmentStatus,
    AuditEntry,
    Clip,
    ClipStatus,
    GoldItem,
    Judgement,
    Label,
    Project,
    Role,
    User,
)
from annotation_app.services import audit, gold, quality, stages, tables, users
from annotation_app.services.access import check_may_manage
from curation.spreadsheet import neutralise_frame
from annotation_app.services._common import aware, day_start, lock_clip, lock_user, utc_now

__all__ = [
    "CURATING_ROLES",
    "EXPORT_COLUMNS",
    "ATTRIBUTE_COLUMNS",
    "project_progress",
    "annotator_quality",
    "ANNOTATOR_SORTS",
    "ANNOTATOR_STATES",
    "annotator_table",
    "CLIP_SORTS",
    "clip_table",
    "list_clips",
    "pause_annotator",
    "QUALIFICATION_ACTIONS",
    "qualification_action",
    "exclude_annotator",
    "sign_out_annotator",
    "audit_trail",
    "judgements_export",
]

CURATING_ROLES = (Role.curator, Role.admin)
EXPORT_COLUMNS = [
    "judgement_id", "clip_id", "annotator_id", "stage", "label", "confidence", "cant_judge", "broken",
    "flag_reason", "time_on_task_s", "leased_at", "submitted_at", "is_gold", "excluded", "live", "replaces_id",
]
# The annotator's profile, after EXPORT_COLUMNS when the download asks for it (include_attributes).
ATTRIBUTE_COLUMNS = ["gender", "age_band", "region", "languages", "background"]


def _require_curator(user: User) -> None:
    if user.role not in CURATING_ROLES:
        raise PermissionDeniedError(f"only curators and admins may do this; {user.username} is {user.role.value}")


def _status(value: Any) -> str:
    return value.value if hasattr(value, "value") else str(value)


# ----------------------------------------------------------------------------------------------
# Views


def project_progress(session: Session, project: Project) -> dict[str, Any]:
    """Counts per status, per open stage, per resolving stage and per final label; slot fill."""
    by_status = {_status(s): int(n) for s, n in session.execute(
        select(Clip.status, func.count()).where(Clip.project_id == project.id).group_by(Clip.status))}
    open_by_stage = {int(st): int(n) for st, n in session.execute(
        select(Clip.stage, func.count()).where(Clip.project_id == project.id, Clip.status == ClipStatus.active)
        .group_by(Clip.stage))}
    resolved_by_stage = {int(st): int(n) for st, n in session.execute(
        select(Clip.resolved_stage, func.count()).where(
            Clip.project_id == project.id, Clip.status == ClipStatus.resolved).group_by(Clip.resolved_stage))
        if st is not None}
    final = dict(session.execute(
        select(Label.name, func.count()).join(Clip, Clip.final_label_id == Label.id)
        .where(Clip.project_id == project.id, Clip.status == ClipStatus.resolved).group_by(Label.name)).all())
    judgements = session.execute(
        select(Judgement.stage, func.count()).where(
            Judgement.project_id == project.id, Judgement.live.is_(True), Judgement.excluded.is_(False))
        .group_by(Judgement.stage)).all()
    slots = {int(st): {_status(s): int(n) for _, s, n in rows} for st, rows in _group(session.execute(
        select(Assignment.stage, Assignment.status, func.count()).where(
            Assignment.project_id == project.id, Assignment.is_gold.is_(False))
        .group_by(Assignment.stage, Assignment.status)).all()).items()}
    total = sum(n for s, n in by_status.items() if s not in (ClipStatus.gold.value, ClipStatus.example.value))
    done = sum(by_status.get(s.value, 0) for s in (ClipStatus.resolved, ClipStatus.discarded, ClipStatus.broken))
    return {
        "clips": total,
        "gold_clips": by_status.get(ClipStatus.gold.value, 0),
        "example_clips": by_status.get(ClipStatus.example.value, 0),
        "by_status": by_status,
        "open_by_stage": open_by_stage,
        "resolved_by_stage": resolved_by_stage,
        "final_labels": {lab.name: int(final.get(lab.name, 0)) for lab in project.labels},
        "judgements_by_stage": {int(st): int(n) for st, n in judgements},
        "assignments_by_stage": slots,
        "expert_queue": by_status.get(ClipStatus.expert.value, 0),
        "done_share": done / total if total else 0.0,
    }


def _group(rows: list[Any]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = defaultdict(list)
    for row in rows:
        out[row[0]].append(row)
    return out


def annotator_quality(session: Session, project: Project, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per annotator/expert: quality figures, workload, pause state, qualification."""
    now = utc_now(now)
    worked = select(Judgement.annotator_id).where(Judgement.project_id == project.id)
    users = session.scalars(
        select(User).where((User.role.in_((Role.annotator, Role.expert))) | User.id.in_(worked)).order_by(User.id)
    ).all()
    stats = quality.annotator_stats(session, project, [u.id for u in users])
    today = dict(session.execute(
        select(Judgement.annotator_id, func.count()).where(
            Judgement.project_id == project.id, Judgement.replaces_id.is_(None), Judgement.stage >= 1,
            Judgement.submitted_at >= day_start(now)).group_by(Judgement.annotator_id)).all())
    out = []
    for u in users:
        s = stats[u.id]
        out.append({
            "annotator_id": u.id,
            "username": u.username,
            "role": u.role.value,
            "gender": u.gender,
            "age_band": u.age_band,
            "languages": list(u.languages or []),
            "background": u.background,
            "is_active": u.is_active,
            "paused": u.paused,
            "pause_reason": u.pause_reason,
            "qualification": gold.qualification_state(session, project, u.id),
            "gold_accuracy": s.gold_accuracy,
            "gold_answers": s.gold_n,
            "agreement_with_consensus": s.agreement,
            "agreement_clips": s.agreed_n,
            "median_time_on_task_s": s.median_time_on_task_s,
            "label_distribution": {lab.name: s.label_counts.get(lab.name, 0) for lab in project.labels},
            "n_judgements": s.n_judgements,
            "done_today": int(today.get(u.id, 0)),
            "reliability": s.reliability,
            # The automatic pause's own rule (hidden gold only, enough answers), not all gold answers.
            "hidden_gold_accuracy": s.hidden_gold_accuracy,
            "hidden_gold_answers": s.hidden_gold_n,
            "below_quality_floor": gold.below_quality_floor(project, s.hidden_gold_correct, s.hidden_gold_n),
        })
    return out


# Columns of the curator's annotator table that it sorts by, and the states it filters on.
ANNOTATOR_SORTS = ("username", "role", "gold_accuracy", "agreement_with_consensus", "reliability",
                   "median_time_on_task_s", "n_judgements", "done_today")
ANNOTATOR_STATES = ("working", "paused", "below_floor", "not_qualified", "inactive")


def annotator_state(row: dict[str, Any]) -> str:
    """One word for where an annotator stands (the first that applies, most pressing first)."""
    if not row["is_active"]:
        return "inactive"
    if row["paused"]:
        return "paused"
    if row["below_quality_floor"]:
        return "below_floor"
    if row["qualification"].get("passed") is not True:
        return "not_qualified"
    return "working"


def annotator_table(
    rows: list[dict[str, Any]],
    *,
    sort: str = "username",
    descending: bool = False,
    text: str = "",
    role: str | None = None,
    state: str | None = None,
    page: int = 1,
    per_page: int = 25,
) -> tuple[list[dict[str, Any]], int]:
    """Rows of :func:`annotator_quality` filtered, sorted and cut to one page; and how many matched.

    Unknown figures (``None``: no gold answered yet) sort last either way, so "lowest first" shows
    the real low values, not the empty ones.

    >>> rows = [{"username": u, "role": "annotator", "is_active": True, "paused": False,
    ...          "below_quality_floor": False, "qualification": {"passed": True}, "reliability": r}
    ...         for u, r in (("ann", 0.9), ("bo", None), ("cy", 0.4))]
    >>> [r["username"] for r in annotator_table(rows, sort="reliability")[0]]
    ['cy', 'ann', 'bo']
    """
    if state is not None and state not in ANNOTATOR_STATES:
        raise InvalidInputError(f"no annotator state {state!r}; one of {', '.join(ANNOTATOR_STATES)}")
    needle = text.strip().casefold()
    return tables.table_page(
        rows, sort=sort, sorts=ANNOTATOR_SORTS, descending=descending, page=page, per_page=per_page, what="annotators",
        keep=lambda r: ((not needle or needle in r["username"].casefold())
                        and (role is None or r["role"] == role)
                        and (state is None or annotator_state(r) == state)))


# Columns of the curator's clips table that it sorts by.
CLIP_SORTS = ("clip_id", "status", "stage", "final_label", "agreement", "n_judgements", "resolution_confidence",
              "language", "platform", "created_at")


def clip_table(
    session: Session,
    project: Project,
    *,
    status: str | None = None,
    stage: int | None = None,
    label: str | None = None,
    max_agreement: float | None = None,
    sort: str = "clip_id",
    descending: bool = False,
    page: int = 1,
    per_page: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """The clips table of the curator's page: :func:`list_clips` filtered, sorted by a column of
    ``CLIP_SORTS`` and cut to one page (:func:`tables.table_page`); and how many clips matched."""
    rows = list_clips(session, project, status=status, stage=stage, label=label, max_agreement=max_agreement,
                      limit=None)
    return tables.table_page(rows, sort=sort, sorts=CLIP_SORTS, descending=descending, page=page,
                             per_page=per_page, what="clips")


def list_clips(
    session: Session,
    project: Project,
    *,
    status: str | ClipStatus | None = None,
    stage: int | None = None,
    label: str | None = None,
    max_agreement: float | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Clips with their state; ``agreement`` is the top label's share of the live votes (None: no
    vote). ``limit`` None: every clip from ``offset`` on."""
    stmt = select(Clip, Label.name).outerjoin(Label, Label.id == Clip.final_label_id).where(
        Clip.project_id == project.id)
    if status is not None:
        try:
            stmt = stmt.where(Clip.status == ClipStatus(status))
        except ValueError:
            raise InvalidInputError(
                f"unknown clip status {status!r}: choose one of {', '.join(s.value for s in ClipStatus)}") from None
    if stage is not None:
        stmt = stmt.where(Clip.stage == int(stage))
    if label is not None:
        if label not in {lab.name for lab in project.labels}:
            raise InvalidInputError(f"unknown label {label!r}")
        stmt = stmt.where(Label.name == label)
    rows = session.execute(stmt.order_by(Clip.id)).all()
    end = None if limit is None else offset + limit
    if max_agreement is None:
        rows = rows[offset:end]
    ids = [clip.id for clip, _ in rows]
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    n_judgements: Counter[int] = Counter()
    if ids:
        for cid, name, n in session.execute(
            select(Judgement.clip_id, Label.name, func.count())
            .outerjoin(Label, Label.id == Judgement.label_id)
            .where(Judgement.clip_id.in_(ids), Judgement.live.is_(True), Judgement.excluded.is_(False),
                   Judgement.stage.in_(stages.OPEN_STAGES))
            .group_by(Judgement.clip_id, Label.name)
        ):
            n_judgements[cid] += int(n)
            if name is not None:
                counts[cid][name] += int(n)
    out = []
    for clip, final_name in rows:
        votes = counts.get(clip.id)
        agreement = max(votes.values()) / sum(votes.values()) if votes else None
        if max_agreement is not None and (agreement is None or agreement > max_agreement + 1e-12):
            continue
        out.append({
            "clip_id": clip.id,
            "status": clip.status.value,
            "stage": clip.stage,
            "final_label": final_name,
            "resolved_stage": clip.resolved_stage,
            "resolution_confidence": clip.resolution_confidence,
            "agreement": agreement,
            "n_judgements": int(n_judgements.get(clip.id, 0)),
            "distribution": dict(votes) if votes else {},
            "media_path": clip.media_path,
            "language": clip.language,
            "platform": clip.platform,
            "created_at": aware(clip.created_at),
        })
    if max_agreement is not None:
        out = out[offset:end]
    return out


def audit_trail(session: Session, project: Project, *, limit: int = 200) -> list[dict[str, Any]]:
    """The project's audit entries, newest first, with the actor's username."""
    rows = session.execute(
        select(AuditEntry, User.username).outerjoin(User, User.id == AuditEntry.actor_id)
        .where(AuditEntry.project_id == project.id)
        .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(limit)
    ).all()
    return [
        {"id": e.id, "at": aware(e.created_at), "actor_id": e.actor_id, "actor": name, "action": e.action,
         "target_type": e.target_type, "target_id": e.target_id, "details": e.details}
        for e, name in rows
    ]


def judgements_export(
    session: Session,
    project: Project,
    *,
    fmt: str = "csv",
    include_excluded: bool = False,
    include_history: bool = False,
    include_qualification: bool = False,
    include_attributes: bool = False,
) -> bytes:
    """The project's judgements as CSV or parquet bytes (columns: ``EXPORT_COLUMNS``).

    Default: live, non-excluded rows of stages 1-3 (the curation library reads them as they are);
    ``include_excluded`` / ``include_history`` / ``include_qualification`` add excluded rows,
    superseded (corrected) rows and stage-0 qualification answers, told apart by the ``excluded``,
    ``live`` and ``stage`` columns. ``include_attributes`` adds the annotator's profile as it is now
    (``ATTRIBUTE_COLUMNS``: gender, age band, region, languages first one first, background), for
    agreement per group; off by default, since it is personal data a plain download need not carry.
    """
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"export format must be csv or parquet, not {fmt!r}")
    gold_clips = select(GoldItem.clip_id).where(GoldItem.project_id == project.id)
    stmt = (
        select(Judgement.id, Judgement.clip_id, Judgement.annotator_id, Judgement.stage, Label.name,
               Judgement.confidence, Judgement.cant_judge, Judgement.broken, Judgement.flag_reason,
               Judgement.time_on_task_s, Assignment.leased_at, Judgement.submitted_at,
               Judgement.clip_id.in_(gold_clips), Judgement.excluded, Judgement.live, Judgement.replaces_id)
        .outerjoin(Label, Label.id == Judgement.label_id)
        .outerjoin(Assignment, Assignment.id == Judgement.assignment_id)
        .where(Judgement.project_id == project.id)
        .order_by(Judgement.id)
    )
    if not include_excluded:
        stmt = stmt.where(Judgement.excluded.is_(False))
    if not include_history:
        stmt = stmt.where(Judgement.live.is_(True))
    if not include_qualification:
        stmt = stmt.where(Judgement.stage >= 1)
    if include_attributes:
        stmt = stmt.add_columns(User.gender, User.age_band, User.region, User.languages, User.background).join(
            User, User.id == Judgement.annotator_id)
    df = pd.DataFrame(session.execute(stmt).all(), columns=EXPORT_COLUMNS + (ATTRIBUTE_COLUMNS if include_attributes else []))
    if include_attributes:  # one text cell, first language first ("zh,en"), in CSV and Parquet alike
        df["languages"] = [",".join(langs or []) for langs in df["languages"]]
    for col in ("leased_at", "submitted_at"):
        df[col] = pd.to_datetime(df[col], utc=True)
    df["live"] = df["live"].fillna(False).astype(bool)
    df["replaces_id"] = df["replaces_id"].astype("Int64")
    df["confidence"] = df["confidence"].astype("Int64")
    if fmt == "csv":
        # For a curator's spreadsheet: an annotator's flag reason must not run as a formula there.
        return neutralise_frame(df).to_csv(index=False).encode("utf-8")
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Actions


def _annotator(session: Session, annotator_id: int) -> User:
    user = lock_user(session, annotator_id)
    if user is None:
        raise NotFoundError(f"no user with id {annotator_id}")
    return user


def _release_leases(session: Session, project: Project, annotator_id: int) -> int:
    rows = session.scalars(select(Assignment).where(
        Assignment.project_id == project.id, Assignment.annotator_id == annotator_id,
        Assignment.status == AssignmentStatus.leased)).all()
    for row in rows:
        row.status = AssignmentStatus.released
    return len(rows)


def pause_annotator(
    session: Session,
    project: Project,
    curator: User,
    annotator_id: int,
    *,
    paused: bool,
    reason: str,
    now: datetime | None = None,
) -> User:
    """Pause (no new work, open leases released) or resume an annotator; audited. Does not commit.

    A pause takes the annotator's labels out of the consensus of the clips still open at once, by
    the same rule as a pause by hidden gold (``gold.withdraw_from_open_clips``: excluded, slots
    given back, clips re-checked); the pause reason and the audit entry say how many and where.
    Resuming does not bring them back (the clips were re-checked without them); decided clips keep
    their labels unless the curator excludes the annotator.
    """
    _require_curator(curator)
    now = utc_now(now)
    reason = (reason or "").strip()
    if paused and not reason:
        raise InvalidInputError("pausing an annotator needs a reason")
    user = _annotator(session, annotator_id)
    check_may_manage(curator, target=user)
    released = _release_leases(session, project, user.id) if paused else 0
    withdrawn, rechecked = gold.withdraw_from_open_clips(session, project, user.id, now=now) if paused else (0, [])
    before = user.paused
    user.paused = bool(paused)
    user.pause_reason = reason if paused else ""
    if withdrawn:
        user.pause_reason += f" ({withdrawn} label(s) on {len(rechecked)} open clip(s) withdrawn from consensus)"
    audit.record(session, "annotator.pause" if paused else "annotator.resume", actor_id=curator.id,
                 project_id=project.id, target_type="user", target_id=user.id,
                 details={"reason": reason, "was_paused": before, "leases_released": released,
                          "labels_withdrawn": withdrawn, "open_clips_rechecked": rechecked})
    session.flush()
    return user


QUALIFICATION_ACTIONS = ("reset", "waive")


def qualification_action(
    session: Session, project: Project, curator: User, annotator_id: int, *, action: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Reset (a new round now) or waive (count as qualified) an annotator's qualification round
    (``gold.reset_qualification`` / ``gold.waive_qualification``, audited with the curator as
    actor); returns the new round's state. Does not commit."""
    _require_curator(curator)
    if action not in QUALIFICATION_ACTIONS:
        raise InvalidInputError(f"qualification action must be reset or waive, not {action!r}")
    now = utc_now(now)
    user = _annotator(session, annotator_id)
    check_may_manage(curator, target=user)
    change = gold.reset_qualification if action == "reset" else gold.waive_qualification
    return change(session, project, user.id, now=now, actor_id=curator.id)


def sign_out_annotator(session: Session, curator: User, annotator_id: int) -> User:
    """End every session and token of a person the curator manages ("sign out everywhere"); audited
    as ``user.sign_out``. Does not commit."""
    _require_curator(curator)
    user = _annotator(session, annotator_id)
    check_may_manage(curator, target=user)
    users.end_sessions(session, user, actor_id=curator.id, reason=f"signed out by {curator.username}")
    return user


def exclude_annotator(
    session: Session,
    project: Project,
    curator: User,
    annotator_id: int,
    *,
    reason: str,
    pause: bool = True,
    now: datetime | None = None,
) -> list[int]:
    """Exclude an annotator's judgements and re-open the clips they touched; returns the re-opened clip ids.

    Only stage 0-2 rows are excluded. An expert's stage-3 rows are decisions, not votes: excluding
    one had dropped the final call from the export while its clip stayed resolved with that label.
    They stay, and the audit entry (``annotator.exclude``, where the page sends the curator) lists
    them as ``expert_decisions_kept`` for the curator to review. Does not commit.
    """
    _require_curator(curator)
    now = utc_now(now)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInputError("excluding an annotator's judgements needs a reason")
    user = _annotator(session, annotator_id)
    check_may_manage(curator, target=user)
    judgements = session.scalars(select(Judgement).where(
        Judgement.project_id == project.id, Judgement.annotator_id == user.id,
        Judgement.excluded.is_(False), Judgement.stage < 3)).all()  # 3: the expert stage
    decisions_kept = sorted(session.scalars(select(Judgement.clip_id).where(
        Judgement.project_id == project.id, Judgement.annotator_id == user.id,
        Judgement.stage == 3, Judgement.live.is_(True))))
    gold_clips = set(session.scalars(select(GoldItem.clip_id).where(GoldItem.project_id == project.id)))
    judged = {j.clip_id for j in judgements if j.stage in stages.OPEN_STAGES and j.clip_id not in gold_clips}
    leased = set(session.scalars(select(Assignment.clip_id).where(
        Assignment.project_id == project.id, Assignment.annotator_id == user.id,
        Assignment.status == AssignmentStatus.leased)))
    for j in judgements:
        j.excluded = True
    session.flush()
    reopened: list[int] = []
    kept: list[int] = []
    released = 0
    # Clip locks in id order (two curators never take them in opposite orders), each clip's
    # assignment rows only under its clip lock (the services' lock order).
    for clip_id in sorted(judged | leased):
        clip = lock_clip(session, clip_id)
        if clip is None:
            continue
        for a in session.scalars(select(Assignment).where(
                Assignment.clip_id == clip.id, Assignment.annotator_id == user.id,
                Assignment.status.in_((AssignmentStatus.submitted, AssignmentStatus.leased)))):
            released += int(a.status == AssignmentStatus.leased)
            a.status = AssignmentStatus.released
        session.flush()
        if clip_id not in judged:
            continue
        decided = session.scalar(select(Adjudication.id).where(Adjudication.clip_id == clip.id)) is not None
        outcome = None if decided else stages.reopen(session, project, clip, now=now)
        (kept if outcome is None else reopened).append(clip.id)
    if pause and not user.paused:
        user.paused = True
        user.pause_reason = f"judgements excluded: {reason}"
    audit.record(session, "annotator.exclude", actor_id=curator.id, project_id=project.id, target_type="user",
                 target_id=user.id, details={"reason": reason, "judgements": len(judgements),
                                             "clips_reopened": reopened, "clips_kept_decided": kept,
                                             "leases_released": released, "paused": user.paused,
                                             "expert_decisions_kept": decisions_kept})
    session.flush()
    return reopened
