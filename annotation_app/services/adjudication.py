"""Stage 3: the expert queue, the anonymised evidence an expert sees, and the expert's decision.

The expert sees the clip, the label distribution of its live, non-excluded stage-1/2 votes and, per
label, the mean reliability (``quality.reliability``) of the annotators who chose it — never who
they were. The decision is a final label (status ``resolved``, ``resolved_stage = 3``, confidence
1.0, and a stage-3 judgement row so the judgements table carries the final call) or a discard with
a reason (status ``discarded``). Each decision is stored once (``Adjudication.clip_id`` is unique:
a second decision is a ``ConflictError``) and audited.

**Independent judgement.** Experts also annotate, so an expert may have labelled a clip in stage 1
or 2 that later reaches stage 3. They never decide it (``PermissionDeniedError``), and their queue
leaves it out: another expert decides it, or an admin (admins do not annotate). When every active
expert labelled a clip, :func:`clips_without_eligible_expert` names it, and the curator is told
(``services.attention``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from annotation_app.models import Adjudication, Clip, ClipStatus, Judgement, Project, Role, User
from annotation_app.services import audit, quality, stages
from annotation_app.services._common import aware, lock_clip, utc_now

__all__ = [
    "ADJUDICATING_ROLES", "expert_queue", "clip_evidence", "adjudicate", "judged_in_open_stages",
    "clips_without_eligible_expert", "active_expert_ids", "flag_reasons",
]

ADJUDICATING_ROLES = (Role.expert, Role.admin)


def _labelled_by(user_id: int) -> Any:
    """Ids of the clips ``user_id`` judged in stage 1 or 2 (any row: a corrected or excluded one too,
    since they saw the clip before the others' labels)."""
    return select(Judgement.clip_id).where(Judgement.annotator_id == user_id, Judgement.stage.in_(stages.OPEN_STAGES))


def judged_in_open_stages(session: Session, user_id: int, clip_id: int) -> int | None:
    """The stage in which ``user_id`` first judged the clip (1 or 2), or None."""
    return session.scalar(select(func.min(Judgement.stage)).where(
        Judgement.clip_id == clip_id, Judgement.annotator_id == user_id, Judgement.stage.in_(stages.OPEN_STAGES)))


def expert_queue(
    session: Session, project: Project, *, limit: int | None = None, offset: int = 0, expert: Any = None,
    labelled_by_expert: bool = False,
) -> list[dict[str, Any]]:
    """Clips waiting for an expert, longest waiting first: clip id, waiting since, judgements.

    ``expert``: only the clips this user may decide (not those they labelled in stage 1 or 2);
    ``labelled_by_expert=True``: the others, those they labelled and someone else decides.
    """
    n_judgements = (
        select(func.count()).select_from(Judgement)
        .where(Judgement.clip_id == Clip.id, Judgement.live.is_(True), Judgement.excluded.is_(False),
               Judgement.stage.in_(stages.OPEN_STAGES))
        .correlate(Clip).scalar_subquery()
    )
    rows = session.execute(
        select(Clip.id, Clip.updated_at, Clip.media_path, n_judgements)
        .where(Clip.project_id == project.id, Clip.status == ClipStatus.expert,
               *(() if expert is None else
                 (Clip.id.in_(_labelled_by(expert.id)) if labelled_by_expert else Clip.id.not_in(_labelled_by(expert.id)),)))
        .order_by(Clip.updated_at, Clip.id)
        .limit(limit).offset(offset)
    ).all()
    return [
        {"clip_id": cid, "waiting_since": aware(since) if since else None, "media_path": media, "n_judgements": int(n)}
        for cid, since, media, n in rows
    ]


def clip_evidence(session: Session, project: Project, clip_id: int, *, viewer: Any) -> dict[str, Any]:
    """What the expert sees: the anonymised distribution and each label's mean annotator reliability.

    Labelling is blind for experts too (DESIGN §3: nobody sees another's label in stages 1-2, and
    experts also annotate): the votes are shown only for a clip waiting in the expert queue
    (``ConflictError`` otherwise: it may still come to ``viewer`` in stage 1 or 2), and never to
    someone who judged it in stage 1 or 2 (``PermissionDeniedError``), even once it is queued.
    """
    clip = session.get(Clip, clip_id)
    if clip is None or clip.project_id != project.id:
        raise NotFoundError(f"no clip {clip_id} in project {project.name!r}")
    if clip.status != ClipStatus.expert:
        raise ConflictError(f"clip {clip_id} is not waiting for an expert: its votes stay hidden")
    labelled_in = judged_in_open_stages(session, viewer.id, clip.id)
    if labelled_in is not None:
        raise PermissionDeniedError(
            f"you labelled clip {clip_id} in stage {labelled_in}: the others' votes stay hidden from you")
    cast = stages.votes(session, clip.id)
    rel = quality.reliability(session, project, {a for a, _ in cast})
    distribution: Counter[str] = Counter(name for _, name in cast)
    per_label: dict[str, list[float]] = defaultdict(list)
    for annotator_id, name in cast:
        per_label[name].append(rel[annotator_id])
    flags = session.execute(
        select(func.count().filter(Judgement.cant_judge.is_(True)), func.count().filter(Judgement.broken.is_(True)))
        .where(Judgement.clip_id == clip.id, Judgement.live.is_(True), Judgement.excluded.is_(False),
               Judgement.stage.in_(stages.OPEN_STAGES))
    ).one()
    ordered = [lab.name for lab in project.labels]
    return {
        "clip_id": clip.id,
        "media_path": clip.media_path,
        "status": clip.status.value,
        "language": clip.language,
        "duration_s": clip.duration_s,
        # Every label of the set, in label order, so a zero is visible too.
        "distribution": {name: distribution.get(name, 0) for name in ordered},
        "reliability": {
            name: (sum(per_label[name]) / len(per_label[name]) if per_label[name] else None) for name in ordered
        },
        "n_votes": len(cast),
        "n_cant_judge": int(flags[0] or 0),
        "n_broken": int(flags[1] or 0),
    }


def adjudicate(
    session: Session,
    project: Project,
    expert: User,
    *,
    clip_id: int,
    label: str | None,
    discard: bool = False,
    reason: str = "",
    now: datetime | None = None,
) -> Adjudication:
    """Decide a clip in the expert queue: a final label, or discard with a reason. Does not commit."""
    now = utc_now(now)
    if expert.role not in ADJUDICATING_ROLES:
        raise PermissionDeniedError(f"only experts adjudicate; {expert.username} is {expert.role.value}")
    reason = (reason or "").strip()
    if discard and label:
        raise InvalidInputError("choose a final label or discard, not both")
    if discard and not reason:
        raise InvalidInputError("discarding a clip needs a reason")
    if not discard and not label:
        raise InvalidInputError("choose a final label, or discard the clip with a reason")
    label_row = None
    if label:
        label_row = next((lab for lab in project.labels if lab.name == label), None)
        if label_row is None:
            raise InvalidInputError(
                f"unknown label {label!r}: choose one of {', '.join(lab.name for lab in project.labels)}")
    clip = lock_clip(session, clip_id)
    if clip is None or clip.project_id != project.id:
        raise NotFoundError(f"no clip {clip_id} in project {project.name!r}")
    if clip.status != ClipStatus.expert:
        raise ConflictError(f"clip {clip_id} is not waiting for an expert (status {clip.status.value})")
    labelled_in = judged_in_open_stages(session, expert.id, clip.id)
    if labelled_in is not None:
        raise PermissionDeniedError(
            f"you labelled clip {clip_id} in stage {labelled_in}: another expert decides it")
    evidence = clip_evidence(session, project, clip.id, viewer=expert)
    decision = Adjudication(
        clip_id=clip.id, expert_id=expert.id, label_id=label_row.id if label_row else None, discarded=discard,
        reason=reason, label_distribution=evidence["distribution"], created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(decision)
            session.flush()
    except IntegrityError:
        raise ConflictError(f"clip {clip_id} was already decided by an expert") from None
    if label_row is None:
        clip.status = ClipStatus.discarded
    else:
        clip.status = ClipStatus.resolved
        clip.final_label_id = label_row.id
        clip.resolved_stage = 3
        clip.resolution_confidence = 1.0
        # The final call joins the judgements table as a stage-3 row (ARCHITECTURE: the contract).
        existing = session.scalar(select(Judgement).where(
            Judgement.clip_id == clip.id, Judgement.annotator_id == expert.id, Judgement.stage == 3,
            Judgement.live.is_(True)))
        if existing is None:
            session.add(Judgement(project_id=project.id, clip_id=clip.id, annotator_id=expert.id, stage=3,
                                  label_id=label_row.id, flag_reason=reason or None, live=True, submitted_at=now))
    audit.record(session, "clip.adjudicate", actor_id=expert.id, project_id=project.id, target_type="clip",
                 target_id=clip.id, details={"label": label, "discard": discard, "reason": reason,
                                             "distribution": evidence["distribution"]})
    session.flush()
    return decision


def active_expert_ids(session: Session) -> set[int]:
    """The experts who can adjudicate (active people; admins, who also may, are not counted)."""
    return set(session.scalars(select(User.id).where(
        User.role == Role.expert, User.is_active.is_(True), User.is_simulated.is_(False))))


def clips_without_eligible_expert(session: Session, project: Project) -> list[int]:
    """Ids of the clips in the expert queue that every active expert labelled in stage 1 or 2 (all of
    them when the project has no active expert): only another expert, or an admin, can decide them."""
    experts = active_expert_ids(session)
    queued = list(session.scalars(select(Clip.id).where(
        Clip.project_id == project.id, Clip.status == ClipStatus.expert).order_by(Clip.id)))
    if not queued or not experts:
        return queued
    labelled: dict[int, set[int]] = defaultdict(set)
    for clip_id, annotator_id in session.execute(
        select(Judgement.clip_id, Judgement.annotator_id).distinct().where(
            Judgement.clip_id.in_(queued), Judgement.annotator_id.in_(experts),
            Judgement.stage.in_(stages.OPEN_STAGES))
    ):
        labelled[clip_id].add(annotator_id)
    return [clip_id for clip_id in queued if labelled[clip_id] >= experts]


def flag_reasons(session: Session, clip_id: int) -> list[dict[str, Any]]:
    """Why annotators flagged the clip in stages 1-2 (can't judge / broken), anonymised, oldest first."""
    rows = session.execute(
        select(Judgement.cant_judge, Judgement.broken, Judgement.flag_reason).where(
            Judgement.clip_id == clip_id, Judgement.live.is_(True), Judgement.excluded.is_(False),
            Judgement.stage.in_(stages.OPEN_STAGES), Judgement.cant_judge.is_(True) | Judgement.broken.is_(True),
        ).order_by(Judgement.id)
    ).all()
    return [{"flag": "broken" if broken else "can't judge", "reason": reason or ""} for cant, broken, reason in rows]
