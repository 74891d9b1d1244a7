"""Gold clips: the qualification round and hidden gold checks (DESIGN §3, quality control).

Rules:

- A gold clip is a clip with status ``gold`` and a :class:`GoldItem` naming its correct label and
  purpose (``qualification``, ``hidden`` or ``both``). Gold clips are never part of the dataset.
- **Qualification.** The round has ``min(qualification_size, qualification gold items)`` clips
  (none: no round). A new annotator (experts too: they also annotate) gets them first, as stage-0
  work. ``qualification_rule`` decides it: ``fixed``, after the last answer, at ``correct / answered
  >= qualification_pass_mark``; ``sequential`` (the default, chosen with bench/bench_qualification.py),
  after every answer, by Wald's test (:func:`qualification_test`) of accuracy
  ``qualification_pass_mark`` against ``qualification_fail_mark``, each error rate
  ``qualification_error_rate``: the round stops as soon as either is clear, and its last clip
  decides by which the answers favour. A can't-judge or broken flag on a gold clip counts as a
  wrong answer. A failed annotator gets no real work (the curator sees the result in ``progress`` /
  ``annotator_quality``).
- **Retakes.** ``qualification_retake_hours`` after a failed round the annotator's next request
  starts the next round (``qualification.retake`` in the audit), while they have taken fewer than
  ``qualification_attempts`` rounds; their page says from when. A retake serves only qualification
  gold clips the annotator has not answered before (a clip given back unanswered counts as
  unseen): it is as long as the project's round when enough are left, shorter when fewer are (its
  length is fixed when it starts, ``Qualification.round_size``, and the sequential rule's last clip
  decides), and when none is left no retake starts: the page tells the annotator to ask their
  curator, who may add gold or waive the round.
- **Curator actions** (audited with who, whom and what): :func:`reset_qualification` starts a new
  round now (on unseen clips, whatever the cool-down and the attempts say; refused when none is
  left) and :func:`waive_qualification` counts the annotator as qualified without a round.
- **The round never stalls.** A qualification clip whose lease was given back unanswered (released
  on a pause or an exclusion, expired, or leased past its end) is served again, on the same
  assignment row: ``uq_assignment_clip_annotator`` keeps one row per clip and annotator. A round
  whose size drops to what the annotator has answered (the curator lowered ``qualification_size``)
  is decided at their next request. When no qualification clip is left to serve,
  :func:`qualification_stall` says so, for the annotator's page.
- **Hidden gold.** Once qualified, each request is a gold clip with probability ``gold_rate``; the
  draw is a hash of (annotator, number of items served), so it is reproducible yet not a visible
  pattern. The annotator is told stage 1: hidden gold looks like any clip. No annotator sees the
  same gold clip twice (qualification and hidden included).
- **Quality floor.** After every hidden gold answer, Wald's sequential test
  (:mod:`annotation_app.services.sequential`) weighs the annotator's hidden-gold answers: accuracy
  ``quality_floor + QUALITY_MARGIN`` (good enough) against ``quality_floor - QUALITY_MARGIN``
  (below the floor), each error rate ``quality_error_rate``, the curator's setting for how strong the
  evidence must be. When it rejects, the annotator is paused automatically (audited as
  ``annotator.auto_pause``); the curator decides what happens next. A spammer is paused after a few
  answers when they are all wrong (three at the defaults, 0.5 and 0.1), an honest annotator near
  the floor is given more. :func:`below_quality_floor` is that rule, for the pause and for the
  curator's "below quality floor" alike: qualification answers do not count (the round has its own
  pass mark); a floor of 0 pauses nobody.
- **Agreement.** Gold is scarce (one request in twenty at ``gold_rate`` 0.05), so the same kind of
  test also runs on every label: on a clip already decided (resolved, by the crowd under the
  project's policy or by the expert), the annotator's crowd label is a pseudo-gold answer, right when
  it is the decided label (:func:`decided_answers`; gold clips left out). Every decided clip the
  annotator labelled counts, whatever they said. The earlier rule, the other annotators' clear
  consensus with the annotator's own vote left out, counted a clip only when the others' votes were
  many and lopsided; but how many votes a clip gets depends on that very vote (stage 2 and the
  adaptive policy ask for more annotators when a clip is contested), so those clips were mostly
  the ones the annotator had disagreed on: under ``adaptive`` nearly every piece of evidence was a
  disagreement, and the bench (``bench_policies.py``) saw all 47 qualified annotators paused. Own vote
  included, a spammer's agreement is a little above chance (their vote can tip a clip), which only
  makes the test more lenient. The test (:func:`agreement_test`) weighs those answers: chance,
  ``1 / labels`` (what a random spammer and one who always gives the same label agree at), against
  the quality floor (at least chance + ``QUALITY_MARGIN``), with the same ``quality_error_rate``.
  When it rejects, the annotator is paused by the same rule as by hidden gold
  (``annotator.auto_pause``, rule "agreement"; the pause reason names "agreement with the decided
  labels"). It runs on the annotator's own submissions (:func:`check_agreement`), whose clip and
  user locks they already hold.
- **A pause** (by either test, or by a curator) withdraws the annotator's labels from clips still
  open (:func:`withdraw_from_open_clips`), so they leave the consensus at once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from annotation_app.errors import ConflictError, InvalidInputError, NotFoundError
from annotation_app.models import (
    Assignment,
    AssignmentStatus,
    Clip,
    ClipStatus,
    GoldItem,
    GoldPurpose,
    GoldResult,
    Judgement,
    Project,
    Qualification,
    User,
)
from annotation_app.services import audit, quality, stages
from annotation_app.services._common import aware, lock_clip, lock_user
from annotation_app.services.sequential import SequentialTest, Verdict

__all__ = [
    "QUALITY_MARGIN",
    "quality_test",
    "below_quality_floor",
    "add_gold",
    "qualification_required",
    "qualification_shortfall",
    "qualification_state",
    "qualification_test",
    "round_view",
    "round_verdict",
    "retake_due",
    "start_retake",
    "reset_qualification",
    "waive_qualification",
    "is_qualified",
    "next_qualification_item",
    "close_qualification_round",
    "qualification_stall",
    "qualified_ids",
    "draw_hidden_gold",
    "record_answer",
    "agreement_test",
    "decided_answers",
    "check_agreement",
    "withdraw_from_open_clips",
]

# Half the width of the band around the floor that the sequential test does not try to tell apart.
QUALITY_MARGIN = 0.2
# The share of submissions on which the agreement test recounts an annotator's answers on decided
# clips (``check_agreement``): clips they labelled earlier are decided as the others label them, so
# the evidence grows between their own decisive submissions too.
AGREEMENT_RECHECK_RATE = 0.25
_QUALIFICATION_PURPOSES = (GoldPurpose.qualification, GoldPurpose.both)
_HIDDEN_PURPOSES = (GoldPurpose.hidden, GoldPurpose.both)


def add_gold(
    session: Session,
    project: Project,
    clip: Clip,
    label: str,
    *,
    purpose: GoldPurpose | str = GoldPurpose.both,
    explanation: str = "",
    actor_id: int | None = None,
) -> GoldItem:
    """Make ``clip`` a gold clip whose correct label is ``label``; audited."""
    label_row = next((lab for lab in project.labels if lab.name == label), None)
    if label_row is None:
        raise InvalidInputError(f"unknown label {label!r} in project {project.name!r}")
    try:
        purpose = GoldPurpose(purpose)
    except ValueError:
        raise InvalidInputError(f"gold purpose must be qualification, hidden or both, not {purpose!r}") from None
    if clip.project_id != project.id:
        raise NotFoundError(f"clip {clip.id} is not in project {project.name!r}")
    if session.scalar(select(func.count()).select_from(Judgement).where(
            Judgement.clip_id == clip.id, Judgement.stage.in_((1, 2)))):
        raise ConflictError(f"clip {clip.id} already has judgements; choose an unlabelled clip as gold")
    item = GoldItem(project_id=project.id, clip_id=clip.id, label_id=label_row.id, purpose=purpose,
                    explanation=explanation)
    try:
        with session.begin_nested():
            session.add(item)
            session.flush()
    except IntegrityError:
        raise ConflictError(f"clip {clip.id} is already a gold clip") from None
    clip.status = ClipStatus.gold
    audit.record(session, "gold.add", actor_id=actor_id, project_id=project.id, target_type="clip",
                 target_id=clip.id, details={"label": label, "purpose": purpose.value})
    return item


def qualification_required(session: Session, project: Project) -> int:
    """How many gold clips the qualification round has (0: no round)."""
    if project.qualification_size <= 0:
        return 0
    available = session.scalar(
        select(func.count()).select_from(GoldItem).where(
            GoldItem.project_id == project.id, GoldItem.purpose.in_(_QUALIFICATION_PURPOSES)
        )
    ) or 0
    return min(project.qualification_size, int(available))


def qualification_shortfall(session: Session, project: Project) -> str | None:
    """What a curator must be told when the project has fewer qualification gold clips than its
    round asks for (``qualification_size``), else None.

    The round then has only as many clips as there are (none: no round, and every annotator starts
    on real work unchecked), which nobody would notice from the annotators' side.
    """
    wanted = project.qualification_size
    have = qualification_required(session, project)
    if wanted <= 0 or have >= wanted:
        return None
    fix = ("add qualification gold clips (`curate gold add CLIP_ID --label LABEL`) or set "
           "qualification_size to 0 in the project settings")
    if have == 0:
        return (f"no qualification gold yet: qualification asks for {wanted} gold clips, so annotators start "
                f"real work without a qualification round; {fix}")
    return (f"qualification asks for {wanted} gold clips but the project has {have}: the round is {have} "
            f"clip{'s' if have != 1 else ''} long; {fix.replace('set qualification_size to 0', 'lower qualification_size')}")


def _qualification_row(session: Session, project: Project, annotator_id: int) -> Qualification | None:
    return session.scalar(
        select(Qualification).where(
            Qualification.project_id == project.id, Qualification.annotator_id == annotator_id
        ).execution_options(populate_existing=True)
    )


def round_view(
    project: Project, project_required: int, *, answered: int | None = None, correct: int | None = None,
    passed: bool | None = None, completed_at: datetime | None = None, attempt: int | None = None,
    round_size: int | None = None, waived: bool | None = None,
) -> dict[str, Any]:
    """An annotator's round as the pages and the queue read it, from their qualification row's
    columns (None: no row yet): ``{required, answered, correct, passed, attempt, attempts, retake_at,
    waived}``. ``passed`` is True when the project has no round; ``required`` is the round's length
    (a retake's own, ``round_size``, when shorter); ``retake_at``: when a failed annotator may retake
    it (None: passed, open, or no attempts left)."""
    attempts = int(project.qualification_attempts or 1)
    if project_required == 0:
        return {"required": 0, "answered": 0, "correct": 0, "passed": True, "attempt": 0, "attempts": attempts,
                "retake_at": None, "waived": False}
    required = project_required if round_size is None else min(project_required, round_size)
    attempt = attempt or 1
    retake_at = None
    if passed is False and completed_at is not None and attempt < attempts:
        retake_at = aware(completed_at) + timedelta(hours=int(project.qualification_retake_hours or 0))
    return {"required": required, "answered": answered or 0, "correct": correct or 0, "passed": passed,
            "attempt": attempt, "attempts": attempts, "retake_at": retake_at, "waived": bool(waived)}


def qualification_state(
    session: Session, project: Project, annotator_id: int, *, required: int | None = None
) -> dict[str, Any]:
    """:func:`round_view` of the annotator's round; ``required``: the project's round length, when known."""
    if required is None:
        required = qualification_required(session, project)
    row = _qualification_row(session, project, annotator_id) if required else None
    if row is None:
        return round_view(project, required)
    return round_view(project, required, answered=row.answered, correct=row.correct, passed=row.passed,
                      completed_at=row.completed_at, attempt=row.attempt, round_size=row.round_size,
                      waived=row.waived)


def qualification_test(project: Project) -> SequentialTest:
    """The sequential round's test: accuracy ``qualification_pass_mark`` (pass) against
    ``qualification_fail_mark`` (fail), both error rates ``qualification_error_rate``."""
    rate = float(project.qualification_error_rate if project.qualification_error_rate is not None else 0.1)
    return SequentialTest(good_accuracy=float(project.qualification_pass_mark),
                          poor_accuracy=float(project.qualification_fail_mark), false_alarm=rate, miss=rate)


def round_verdict(project: Project, correct: int, answered: int, required: int) -> bool | None:
    """Pass (True), fail (False) or not yet (None) after ``correct`` of ``answered`` in a round of
    ``required`` clips, by the project's ``qualification_rule``.

    >>> project = Project(qualification_rule="sequential", qualification_pass_mark=0.6,
    ...                   qualification_fail_mark=0.3, qualification_error_rate=0.1)
    >>> round_verdict(project, 4, 4, 20), round_verdict(project, 0, 4, 20), round_verdict(project, 3, 4, 20)
    (True, False, None)
    """
    if project.qualification_rule == "sequential":
        verdict = qualification_test(project).decide(correct, answered - correct, final=answered >= required)
        return None if verdict is Verdict.continue_ else verdict is Verdict.accept
    if answered < required:
        return None
    return correct / max(answered, 1) >= project.qualification_pass_mark


def retake_due(state: dict[str, Any], now: datetime) -> bool:
    """Whether a failed annotator's cool-down is over and they have a round left."""
    return state["passed"] is False and state.get("retake_at") is not None and now >= state["retake_at"]


def _unseen_count(session: Session, project: Project, annotator_id: int, now: datetime) -> int:
    servable = _servable_qualification_gold(project, annotator_id, now).subquery()
    return int(session.scalar(select(func.count()).select_from(servable)) or 0)


def _new_round(session: Session, project: Project, row: Qualification, unseen: int, *, next_attempt: bool) -> dict[str, Any]:
    """Open the annotator's next round on the ``unseen`` clips left; returns the row's state before."""
    before = {"attempt": row.attempt or 1, "answered": row.answered or 0, "correct": row.correct or 0,
              "passed": row.passed, "waived": bool(row.waived)}
    if next_attempt:
        row.attempt = (row.attempt or 1) + 1
    row.answered, row.correct, row.passed, row.completed_at, row.waived = 0, 0, None, None, False
    row.round_size = min(project.qualification_size, unseen)
    session.flush()
    return before


def start_retake(session: Session, project: Project, annotator_id: int, *, now: datetime) -> dict[str, Any] | None:
    """Open the retake of a failed annotator whose cool-down is over (:func:`retake_due`); returns
    the new round's state, or None when no qualification gold clip they have not seen is left (then
    nothing changes, and :func:`qualification_stall` says so). Audited as ``qualification.retake``
    by the annotator. The caller holds the annotator's row lock."""
    required = qualification_required(session, project)
    state = qualification_state(session, project, annotator_id, required=required)
    if not retake_due(state, now):
        return None
    unseen = _unseen_count(session, project, annotator_id, now)
    if unseen == 0:
        return None
    row = _qualification_row(session, project, annotator_id)
    assert row is not None  # a failed round has its row
    before = _new_round(session, project, row, unseen, next_attempt=True)
    audit.record(session, "qualification.retake", actor_id=annotator_id, project_id=project.id, target_type="user",
                 target_id=annotator_id, details={"attempt": row.attempt, "round_size": row.round_size,
                                                  "before": before})
    return qualification_state(session, project, annotator_id, required=required)


def _curator_target(session: Session, project: Project, annotator_id: int) -> tuple[User, Qualification, int]:
    """The annotator (row locked), their qualification row (created when missing) and the project's round length."""
    user = lock_user(session, annotator_id)
    if user is None:
        raise NotFoundError(f"no user with id {annotator_id}")
    required = qualification_required(session, project)
    if required == 0:
        raise ConflictError(f"project {project.name!r} has no qualification round (no qualification gold, or "
                            "qualification_size 0): every annotator counts as qualified")
    row = _qualification_row(session, project, annotator_id)
    if row is None:
        row = Qualification(project_id=project.id, annotator_id=annotator_id, answered=0, correct=0, attempt=1)
        session.add(row)
        session.flush()
    return user, row, required


def _release_leases(session: Session, project: Project, annotator_id: int, *, stage: int | None = None) -> int:
    where = [Assignment.project_id == project.id, Assignment.annotator_id == annotator_id,
             Assignment.status == AssignmentStatus.leased]
    if stage is not None:
        where.append(Assignment.stage == stage)
    rows = session.scalars(select(Assignment).where(*where)).all()
    for lease in rows:
        lease.status = AssignmentStatus.released
    session.flush()
    return len(rows)


def reset_qualification(
    session: Session, project: Project, annotator_id: int, *, now: datetime, actor_id: int | None = None,
    via: str | None = None,
) -> dict[str, Any]:
    """A curator's reset: the annotator's next round starts now, on qualification gold clips they
    have not answered, whatever the cool-down and attempts say. Their open leases are given back
    (they requalify before more real work). Refused (:class:`ConflictError`) when no such clip is
    left. Audited as ``qualification.reset`` (``via``: where it came from, e.g. the CLI). Returns
    the new round's state. Does not commit."""
    user, row, required = _curator_target(session, project, annotator_id)
    released = _release_leases(session, project, user.id)
    unseen = _unseen_count(session, project, user.id, now)
    if unseen == 0:
        raise ConflictError(f"{user.username} has answered every qualification gold clip of {project.name!r}: add "
                            "qualification gold clips (`curate gold add CLIP_ID --label LABEL --purpose "
                            "qualification`) or waive their round")
    started = bool(row.answered) or row.passed is not None
    before = _new_round(session, project, row, unseen, next_attempt=started)
    audit.record(session, "qualification.reset", actor_id=actor_id, project_id=project.id, target_type="user",
                 target_id=user.id, details={"attempt": row.attempt, "round_size": row.round_size, "before": before,
                                             "leases_released": released, **({"via": via} if via else {})})
    return qualification_state(session, project, user.id, required=required)


def waive_qualification(
    session: Session, project: Project, annotator_id: int, *, now: datetime, actor_id: int | None = None,
    via: str | None = None,
) -> dict[str, Any]:
    """A curator's waiver: the annotator counts as qualified without (more of) a round; an open
    qualification lease is given back. Refused when they have passed already. Audited as
    ``qualification.waive``. Returns the new state. Does not commit."""
    user, row, required = _curator_target(session, project, annotator_id)
    if row.passed is True:
        raise ConflictError(f"{user.username} is qualified already" + (" (waived)" if row.waived else ""))
    released = _release_leases(session, project, user.id, stage=0)
    before = {"attempt": row.attempt or 1, "answered": row.answered or 0, "correct": row.correct or 0,
              "passed": row.passed}
    row.passed, row.waived, row.completed_at = True, True, now
    session.flush()
    audit.record(session, "qualification.waive", actor_id=actor_id, project_id=project.id, target_type="user",
                 target_id=user.id, details={"attempt": row.attempt, "before": before, "leases_released": released,
                                             **({"via": via} if via else {})})
    return qualification_state(session, project, user.id, required=required)


def is_qualified(session: Session, project: Project, annotator_id: int) -> bool:
    return qualification_state(session, project, annotator_id)["passed"] is True


def qualified_ids(session: Session, project: Project, *, required: int | None = None) -> set[int] | None:
    """Ids of annotators who passed; None when the project has no qualification round."""
    if (qualification_required(session, project) if required is None else required) == 0:
        return None
    return set(session.scalars(select(Qualification.annotator_id).where(
        Qualification.project_id == project.id, Qualification.passed.is_(True))))


def _unseen_gold(project: Project, annotator_id: int, purposes: tuple[GoldPurpose, ...]) -> Select[tuple[GoldItem]]:
    seen = select(Assignment.clip_id).where(Assignment.annotator_id == annotator_id)
    return (
        select(GoldItem)
        .join(Clip, Clip.id == GoldItem.clip_id)
        .where(
            GoldItem.project_id == project.id,
            GoldItem.purpose.in_(purposes),
            Clip.status == ClipStatus.gold,
            GoldItem.clip_id.not_in(seen),
        )
    )


def _servable_qualification_gold(
    project: Project, annotator_id: int, now: datetime
) -> Select[tuple[GoldItem, Assignment | None]]:
    """Qualification gold items the annotator may be served now, each with their given-back lease
    on it (None when they never had the clip), in id order.

    Given back means unanswered: a stage-0 lease released (pause, exclusion), expired, or leased past
    its end. Counting those as seen, as hidden gold does, cost the annotator the item for good, and
    a round without spare items stalled short of its size.
    """
    mine = aliased(Assignment)
    given_back = (mine.stage == 0) & or_(
        mine.status.in_((AssignmentStatus.released, AssignmentStatus.expired)),
        (mine.status == AssignmentStatus.leased) & (mine.lease_expires_at <= now),
    )
    return (
        select(GoldItem, mine)
        .join(Clip, Clip.id == GoldItem.clip_id)
        .outerjoin(mine, (mine.clip_id == GoldItem.clip_id) & (mine.annotator_id == annotator_id))
        .where(
            GoldItem.project_id == project.id,
            GoldItem.purpose.in_(_QUALIFICATION_PURPOSES),
            Clip.status == ClipStatus.gold,
            mine.id.is_(None) | given_back,
        )
        .order_by(GoldItem.id)
    )


def next_qualification_item(
    session: Session, project: Project, annotator_id: int, *, now: datetime,
    state: dict[str, Any] | None = None,
) -> tuple[GoldItem, Assignment | None] | None:
    """The next qualification gold item for an annotator whose round is still open, else None.

    With it, the annotator's given-back lease on that clip, to be leased again (None: a new lease).
    """
    if state is None:
        state = qualification_state(session, project, annotator_id)
    if state["passed"] is not None or state["answered"] >= state["required"]:
        return None
    if _qualification_row(session, project, annotator_id) is None:
        session.add(Qualification(project_id=project.id, annotator_id=annotator_id))
        session.flush()
    servable = _servable_qualification_gold(project, annotator_id, now).limit(1)
    row = session.execute(servable.execution_options(populate_existing=True)).first()
    return None if row is None else (row[0], row[1])


def close_qualification_round(
    session: Session, project: Project, annotator_id: int, *, now: datetime
) -> dict[str, Any]:
    """Decide an open round that has as many answers as it now asks for; returns the new state.

    A round is otherwise decided by its last answer (:func:`record_answer`); this covers a round
    whose size dropped below what the annotator had answered, which no answer would ever close.
    """
    row = _qualification_row(session, project, annotator_id)
    required = qualification_required(session, project)
    if row is not None and row.passed is None and required:
        size = required if row.round_size is None else min(required, row.round_size)
        if row.answered >= size:
            _decide(session, project, row, round_verdict(project, row.correct, row.answered, size) is True, now=now)
    return qualification_state(session, project, annotator_id, required=required)


def qualification_stall(session: Session, project: Project, annotator_id: int, *, now: datetime) -> str | None:
    """Why an annotator in an open round is offered nothing, or None when a qualification clip is
    there for them; also why a failed annotator whose retake is due gets none (read only; the
    annotator's page shows it)."""
    state = qualification_state(session, project, annotator_id)
    if retake_due(state, now):
        if _unseen_count(session, project, annotator_id, now):
            return None
        return (f"qualification not passed ({state['correct']}/{state['answered']} correct) and no qualification "
                "clip you have not seen is left for a retake; ask your curator to add qualification gold clips "
                "or to waive the round")
    if state["passed"] is not None or state["answered"] >= state["required"]:
        return None  # decided, no round, or decided at the next request (close_qualification_round)
    if session.execute(_servable_qualification_gold(project, annotator_id, now).limit(1)).first() is not None:
        return None
    return (f"qualification: {state['answered']} of {state['required']} answered and no qualification clip "
            "is left to show you; ask your curator to add qualification gold clips")


def _unit_hash(*parts: object) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def draw_hidden_gold(session: Session, project: Project, annotator_id: int, n_served: int) -> GoldItem | None:
    """A hidden gold item for this request (probability ``gold_rate``), or None."""
    if project.gold_rate <= 0 or _unit_hash("gold", project.id, annotator_id, n_served) >= project.gold_rate:
        return None
    candidates = session.scalars(_unseen_gold(project, annotator_id, _HIDDEN_PURPOSES)).all()
    if not candidates:
        return None
    return min(candidates, key=lambda g: _unit_hash("pick", annotator_id, g.id))


def record_answer(
    session: Session, project: Project, assignment: Assignment, judgement: Judgement, *, now: datetime
) -> dict[str, Any] | None:
    """Score a judgement on a gold clip; returns the qualification progress for stage-0 work."""
    item = session.scalar(select(GoldItem).where(GoldItem.clip_id == assignment.clip_id))
    if item is None:
        return None
    correct = judgement.label_id is not None and judgement.label_id == item.label_id and not judgement.cant_judge
    context = "qualification" if assignment.stage == 0 else "hidden"
    result = GoldResult(gold_item_id=item.id, annotator_id=assignment.annotator_id, judgement_id=judgement.id,
                        label_id=judgement.label_id, correct=correct, context=context, created_at=now)
    try:
        with session.begin_nested():
            session.add(result)
            session.flush()
    except IntegrityError:
        pass  # already scored (a correction of a gold answer keeps the first score)
    if context == "qualification":
        row = _qualification_row(session, project, assignment.annotator_id)
        if row is None:
            row = Qualification(project_id=project.id, annotator_id=assignment.annotator_id, answered=0, correct=0)
            session.add(row)
        row.answered = (row.answered or 0) + 1
        row.correct = (row.correct or 0) + int(correct)
        project_required = qualification_required(session, project)
        required = project_required if row.round_size is None else min(project_required, row.round_size)
        if row.passed is None:
            verdict = round_verdict(project, row.correct, row.answered, required)
            if verdict is not None:
                _decide(session, project, row, verdict, now=now)
        session.flush()
        # The same view as qualification_state's, so that a retried submit (answered from the stored
        # row) gets back exactly what the first one did.
        return round_view(project, project_required, answered=row.answered, correct=row.correct,
                          passed=row.passed, completed_at=row.completed_at, attempt=row.attempt,
                          round_size=row.round_size, waived=row.waived)
    _check_quality_floor(session, project, assignment.annotator_id, now=now)
    return None


def _decide(session: Session, project: Project, row: Qualification, passed: bool, *, now: datetime) -> None:
    row.passed = passed
    row.completed_at = now
    audit.record(session, "qualification.complete", project_id=project.id, target_type="user",
                 target_id=row.annotator_id,
                 details={"answered": row.answered, "correct": row.correct, "passed": row.passed,
                          "attempt": row.attempt, "rule": project.qualification_rule})
    session.flush()


def quality_test(project: Project) -> SequentialTest:
    """The sequential test of hidden-gold answers against the project's quality floor."""
    floor = float(project.quality_floor)
    rate = project.quality_error_rate if project.quality_error_rate is not None else 0.1
    return SequentialTest(good_accuracy=min(floor + QUALITY_MARGIN, 0.99), poor_accuracy=max(floor - QUALITY_MARGIN, 0.01),
                          false_alarm=float(rate), miss=float(rate))


def below_quality_floor(project: Project, hidden_correct: int, hidden_answers: int) -> bool:
    """Whether hidden-gold results put an annotator below the project's quality floor: the
    sequential test rejects them (strong evidence of accuracy at or below floor - margin).

    >>> project = Project(quality_floor=0.5, quality_error_rate=0.1)
    >>> below_quality_floor(project, 0, 3), below_quality_floor(project, 0, 2), below_quality_floor(project, 2, 5)
    (True, False, False)
    """
    if project.quality_floor <= 0 or hidden_answers <= 0:
        return False
    return quality_test(project).decide(hidden_correct, hidden_answers - hidden_correct) is Verdict.reject


def agreement_test(project: Project) -> SequentialTest | None:
    """The sequential test of an annotator's agreement with the labels their clips were decided as
    (None: the check is off, as the quality floor is at 0).

    Its "poor" accuracy is chance, ``1 / labels``: what a random spammer, or one who always gives the
    same label, agrees at when the labels are spread evenly. Its "good" accuracy is the quality
    floor, but at least ``QUALITY_MARGIN`` above chance (two labels: 0.7 against 0.5). Error rates:
    ``quality_error_rate``, the curator's one setting for how strong the evidence of any pause must be.
    """
    if project.quality_floor <= 0:
        return None
    chance = 1 / max(len(project.labels), 2)
    good = min(max(float(project.quality_floor), chance + QUALITY_MARGIN), 0.99)
    rate = float(project.quality_error_rate if project.quality_error_rate is not None else 0.1)
    return SequentialTest(good_accuracy=good, poor_accuracy=chance, false_alarm=rate, miss=rate)


def decided_answers(session: Session, project: Project, annotator_id: int) -> tuple[int, int]:
    """(agreed, disagreed): the annotator's crowd labels on decided clips, each right when it is the
    label the clip was decided as (``Clip.final_label_id`` of a resolved clip, by the crowd or the
    expert). Live, not excluded, labelled stage-1/2 judgements on clips that are not gold; an open
    clip is no evidence yet, and a can't-judge is no answer (``quality.decided_agreement``, the
    same count reliability's agreement half uses).
    """
    agreed, answers = quality.decided_agreement(session, project, [annotator_id]).get(annotator_id, (0, 0))
    return agreed, answers - agreed


def check_agreement(
    session: Session, project: Project, annotator_id: int, clip_id: int, label_id: int | None, *, now: datetime,
    decided: bool = False,
) -> bool:
    """After the annotator labelled an open clip: pause them (as hidden gold does, audited
    ``annotator.auto_pause`` with rule "agreement") when the sequential test (:func:`agreement_test`)
    says their agreement with the decided labels (:func:`decided_answers`) is at chance level.
    Returns whether it paused.

    The answers are counted when this submission decided the clip (``decided``: new evidence at
    once), and otherwise on a share ``AGREEMENT_RECHECK_RATE`` of their submissions, drawn by a hash
    of (annotator, clip) as hidden gold is: clips they labelled earlier are decided later, as the
    others label them or the expert decides. The count is one aggregate over the annotator's
    judgements, on a quarter of an annotator's submissions and on those that decide a clip.
    """
    test = agreement_test(project)
    if test is None or label_id is None:
        return False
    if not decided and _unit_hash("agreement", annotator_id, clip_id) >= AGREEMENT_RECHECK_RATE:
        return False
    agreed, disagreed = decided_answers(session, project, annotator_id)
    if test.decide(agreed, disagreed) is not Verdict.reject:
        return False
    answers = agreed + disagreed
    return _auto_pause(session, project, annotator_id, now=now,
                reason=(f"agreement with the decided labels {agreed / answers:.0%} ({agreed} of {answers} decided "
                        f"clips): near chance ({test.poor_accuracy:.0%}), not the "
                        f"{test.good_accuracy:.0%} expected (sequential test, error rate {test.false_alarm:g})"),
                details={"rule": "agreement", "agreement": agreed / answers, "answers": answers})


def _check_quality_floor(session: Session, project: Project, annotator_id: int, *, now: datetime) -> None:
    rows = session.execute(
        select(GoldResult.correct).join(GoldItem, GoldItem.id == GoldResult.gold_item_id).where(
            GoldItem.project_id == project.id, GoldResult.annotator_id == annotator_id,
            GoldResult.context == "hidden")
    ).scalars().all()
    correct = sum(bool(r) for r in rows)
    if not below_quality_floor(project, correct, len(rows)):
        return
    accuracy = correct / len(rows)
    _auto_pause(session, project, annotator_id, now=now,
                reason=(f"hidden gold accuracy {accuracy:.0%} ({correct} of {len(rows)}): below the quality floor "
                        f"{project.quality_floor:.0%} (sequential test, error rate {quality_test(project).false_alarm:g})"),
                details={"rule": "hidden gold", "hidden_gold_accuracy": accuracy, "answers": len(rows)})


def _auto_pause(session: Session, project: Project, annotator_id: int, *, reason: str, details: dict[str, Any],
                now: datetime) -> bool:
    """Pause an annotator a sequential test rejected: no new work, leases given back, labels withdrawn
    from open clips; the pause reason and the audit entry (``annotator.auto_pause``) tell the curator."""
    user = session.get(User, annotator_id)
    if user is None or user.paused:
        return False
    user.paused = True
    # The annotator is mid-submit: only leases other than the one being submitted can be live.
    for lease in session.scalars(select(Assignment).where(
            Assignment.annotator_id == annotator_id, Assignment.status == AssignmentStatus.leased)):
        lease.status = AssignmentStatus.released
    withdrawn, rechecked = withdraw_from_open_clips(session, project, annotator_id, now=now)
    user.pause_reason = f"{reason}; {withdrawn} label(s) on {len(rechecked)} open clip(s) withdrawn from consensus"
    audit.record(session, "annotator.auto_pause", project_id=project.id, target_type="user",
                 target_id=annotator_id, details={**details, "labels_withdrawn": withdrawn,
                                                  "open_clips_rechecked": rechecked})
    session.flush()
    return True


def withdraw_from_open_clips(
    session: Session, project: Project, annotator_id: int, *, now: datetime
) -> tuple[int, list[int]]:
    """Take a paused annotator's labels out of the consensus of the clips still open (active, in
    stage 1 or 2), whatever paused them (hidden gold, agreement, a curator): the judgements are
    marked excluded, their slots given back, and each clip is re-checked in the stage it is in
    (``stages.reopen``), so a spammer's votes never decide a clip that has not been decided yet.
    Gold clips are never touched: a gold answer is not a vote, and its score (``GoldResult``) is
    the evidence the pause rests on. Decided clips keep their labels: the curator sees the pause
    (audit, pause reason) and may exclude the annotator's work there (``curator.exclude_annotator``).
    Returns (labels withdrawn, clip ids re-checked). Does not commit.
    """
    gold_clips = select(GoldItem.clip_id).where(GoldItem.project_id == project.id)
    rows = session.execute(
        select(Judgement, Clip.id).join(Clip, Clip.id == Judgement.clip_id).where(
            Judgement.project_id == project.id, Judgement.annotator_id == annotator_id,
            Judgement.excluded.is_(False), Judgement.live.is_(True), Judgement.stage.in_(stages.OPEN_STAGES),
            Clip.status == ClipStatus.active, Judgement.clip_id.not_in(gold_clips))
    ).all()
    by_clip: dict[int, list[Judgement]] = {}
    for judgement, clip_id in rows:
        by_clip.setdefault(clip_id, []).append(judgement)
    rechecked: list[int] = []
    withdrawn = 0
    # Clip locks in id order, as every multi-clip service takes them.
    for clip_id in sorted(by_clip):
        clip = lock_clip(session, clip_id)
        if clip is None or clip.status != ClipStatus.active:
            continue  # decided meanwhile: the curator's exclusion covers it
        for judgement in by_clip[clip_id]:
            judgement.excluded = True
            withdrawn += 1
        for slot in session.scalars(select(Assignment).where(
                Assignment.clip_id == clip_id, Assignment.annotator_id == annotator_id,
                Assignment.status == AssignmentStatus.submitted)):
            slot.status = AssignmentStatus.released
        session.flush()
        stages.reopen(session, project, clip, now=now)
        rechecked.append(clip_id)
    return withdrawn, rechecked
