"""The stage machine: what happens to a clip when its judgements come in (DESIGN §3).

Rules (call these with the clip row locked; ``work.submit`` does):

- **Slots.** Stage 1 asks for ``overlap_k`` judgements, stage 2 for ``stage2_extra`` more. A slot is
  filled by any submitted judgement, including *can't judge* and *broken*: the annotator looked at
  the clip, and a clip nobody can judge must not circulate for ever. Only labelled judgements are
  *votes*.
- **Broken.** As soon as ``BROKEN_FLAGS`` (2) live, non-excluded judgements flag a clip broken, the
  clip's status becomes ``broken`` and its open leases are released (the decision does not wait for
  the stage to fill).
- **Consensus check** when a stage's slots are all submitted: ``curation.aggregation.consensus`` over
  the votes of stages ≤ the current one (weights = annotator reliability when
  ``project.weighted_consensus``; threshold ``project.consensus_threshold``).
  Resolved (top share ≥ threshold and no tie) → status ``resolved``, ``final_label``,
  ``resolved_stage`` = the stage, ``resolution_confidence`` = the share.
  Otherwise — below the threshold, a **tie** (never broken silently), or no votes at all — stage 1
  moves to stage 2 (``clip.stage = 2``; if ``stage2_extra`` is 0, straight to the expert), and stage
  2 moves to the expert queue (status ``expert``, ``clip.stage = 3``).
- **Stage 3.** An expert picks the final label (``resolved_stage = 3``, confidence 1.0) or discards
  the clip with a reason (``adjudication.adjudicate``).
- **Policies** (``project.policy``). ``staged``: the rules above. ``fixed``: stage 1 only (no stage
  2 whatever ``stage2_extra`` says), then the consensus check, then the expert. ``adaptive``: stage 1
  asks for ``k_min`` slots, and once they are submitted for one more at a time (never more than one
  live lease beyond ``k_min``, so a clip never holds a slot the rule may not need), up to ``k_max``
  (:func:`slots_asked`). After each submission from ``k_min`` on, the clip is resolved as soon as the
  top label leads the next by ``margin`` votes (:func:`lead`; weighted by ``weighting``), so a tie
  never resolves; a clip still short of the margin at ``k_max`` goes to the expert queue. A policy
  change applies to every undecided clip at once (:func:`reapply`).
- **Re-opening** (a curator excluded an annotator, or a pause withdrew their labels): the decision
  is cleared and the clip is re-checked by :func:`advance` in the stage it is in (open) or had
  reached (decided): a stage whose slots are still all submitted is re-checked at once, one with a
  freed slot waits for a new annotator. Clips an expert already decided stay decided.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from annotation_app.db import run_prebuilt
from annotation_app.models import (
    Adjudication,
    Assignment,
    AssignmentStatus,
    Clip,
    ClipStatus,
    Judgement,
    Label,
    Project,
    utcnow,
)
from annotation_app.services import quality
from annotation_app.services._common import forget, stage_slot_counts
from curation.aggregation import Consensus, consensus

__all__ = ["BROKEN_FLAGS", "StageOutcome", "LockedClip", "slots_needed", "slots_asked", "grows_to", "votes", "check",
           "lead", "advance", "reopen", "reapply"]

BROKEN_FLAGS = 2
OPEN_STAGES = (1, 2)


@dataclass(frozen=True)
class StageOutcome:
    """What :func:`advance` did: ``action`` is one of waiting, resolved, stage2, expert, broken."""

    clip_id: int
    action: str
    stage: int
    consensus: Consensus | None = None


def slots_needed(project: Project, stage: int) -> int:
    """Judgements a stage asks for at first: ``overlap_k`` in stage 1 (``k_min`` when adaptive),
    ``stage2_extra`` in stage 2 (none unless staged)."""
    if stage == 1:
        return project.k_min if project.policy == "adaptive" else project.overlap_k
    if stage == 2:
        return project.stage2_extra if project.policy == "staged" else 0
    return 0


def grows_to(project: Project, stage: int) -> int:
    """The most slots a stage may come to ask for one at a time (``k_max`` in an adaptive stage 1);
    0 when the stage's ask is fixed."""
    return project.k_max if project.policy == "adaptive" and stage == 1 else 0


def slots_asked(project: Project, stage: int, submitted: int) -> int:
    """Slots a clip's stage asks for now, with ``submitted`` of them submitted.

    >>> p = Project(policy="adaptive", k_min=3, k_max=5, overlap_k=5, stage2_extra=3)
    >>> [slots_asked(p, 1, n) for n in range(6)]
    [3, 3, 3, 4, 5, 5]
    """
    if grows_to(project, stage):
        return min(project.k_max, max(project.k_min, submitted + 1))
    return slots_needed(project, stage)


_VOTES = (
    select(Judgement.annotator_id, Label.name)
    .join(Label, Label.id == Judgement.label_id)
    .where(
        Judgement.clip_id == bindparam("clip_id"),
        Judgement.live.is_(True),
        Judgement.excluded.is_(False),
        Judgement.stage.between(1, bindparam("max_stage")),
    )
    .order_by(Judgement.id)
)


def votes(session: Session, clip_id: int, *, max_stage: int = 2) -> list[tuple[int, str]]:
    """(annotator id, label name) of the clip's live, non-excluded labelled judgements up to a stage."""
    rows = run_prebuilt(session, _VOTES, {"clip_id": clip_id, "max_stage": max_stage}).all()
    return [(int(a), str(n)) for a, n in rows]


def check(session: Session, project: Project, clip_id: int, *, max_stage: int = 2) -> Consensus | None:
    """The consensus over the clip's votes up to ``max_stage``; None when there is no vote."""
    cast = votes(session, clip_id, max_stage=max_stage)
    if not cast:
        return None
    weights = None
    if project.weighted_consensus:
        rel = quality.reliability(session, project, {a for a, _ in cast})
        weights = [rel[a] for a, _ in cast]
        if sum(weights) <= 0:
            weights = None
    return consensus([n for _, n in cast], weights=weights, threshold=project.consensus_threshold)


def vote_weights(project: Project, reliability: list[float]) -> list[float]:
    """Each vote's weight under ``project.weighting``, scaled so a newcomer's vote counts 1.

    ``gold``: the annotator's reliability (gold answers pooled with agreement, ``quality``) over the
    newcomer's prior. ``dawid-skene``: the one-coin Dawid–Skene log-odds of that reliability,
    ``log((L - 1) r / (1 - r))`` for L labels — what a vote adds to the log posterior odds of its
    label — over a newcomer's; a vote at or below chance weighs 0. ``none``: 1 each.

    >>> p = Project(weighting="dawid-skene")  # no label set: counted as two labels
    >>> [round(w, 2) for w in vote_weights(p, [quality.PRIOR, 0.9, 1 / 6])]
    [1.0, 2.59, 0.0]
    """
    if project.weighting == "gold":
        return [r / quality.PRIOR for r in reliability]
    if project.weighting == "dawid-skene":
        n_labels = max(len(project.labels), 2)

        def log_odds(r: float) -> float:
            r = min(max(r, 1e-6), 1 - 1e-6)
            return max(0.0, math.log((n_labels - 1) * r / (1 - r)))

        unit = log_odds(quality.PRIOR)
        return [log_odds(r) / unit for r in reliability]
    return [1.0] * len(reliability)


def lead(session: Session, project: Project, clip_id: int) -> tuple[str | None, float, float]:
    """The adaptive rule's reading of a clip's stage-1 votes: (top label or None on a tie or no vote,
    its lead over the next label, its share), votes weighted by ``project.weighting``."""
    cast = votes(session, clip_id, max_stage=2)
    if not cast:
        return None, 0.0, 0.0
    weights = [1.0] * len(cast)
    if project.weighting != "none":
        rel = quality.reliability(session, project, {a for a, _ in cast})
        weights = vote_weights(project, [rel[a] for a, _ in cast])
    tally: dict[str, float] = {}
    for (_, name), weight in zip(cast, weights, strict=True):
        tally[name] = tally.get(name, 0.0) + weight
    ranked = sorted(tally.values(), reverse=True)
    top = ranked[0]
    gap = top - (ranked[1] if len(ranked) > 1 else 0.0)
    total = sum(ranked)
    leaders = [name for name, w in tally.items() if math.isclose(w, top)]
    share = top / total if total > 0 else 0.0
    return (leaders[0] if len(leaders) == 1 and top > 0 else None), gap, share


def _broken_flags(session: Session, clip_id: int) -> int:
    return int(session.scalar(
        select(func.count()).select_from(Judgement).where(
            Judgement.clip_id == clip_id, Judgement.live.is_(True), Judgement.excluded.is_(False),
            Judgement.broken.is_(True), Judgement.stage.in_(OPEN_STAGES))
    ) or 0)


def release_leases(session: Session, clip_id: int) -> int:
    """Release the clip's open leases (it left the open stages); returns how many."""
    rows = session.scalars(select(Assignment).where(
        Assignment.clip_id == clip_id, Assignment.status == AssignmentStatus.leased)).all()
    for row in rows:
        row.status = AssignmentStatus.released
    return len(rows)


def _label_id(project: Project, name: str) -> int:
    return next(lab.id for lab in project.labels if lab.name == name)


@dataclass
class LockedClip:
    """The columns of a locked clip the stage machine reads and changes, for callers that read the
    clip with a plain statement (``work.submit``) rather than as an ORM ``Clip``."""

    id: int
    status: ClipStatus
    stage: int


@functools.cache
def _update_clip(columns: frozenset[str]) -> Any:
    table = Clip.__table__
    return (update(table).where(table.c.id == bindparam("clip_id"))
            .values({name: bindparam(name, type_=table.c[name].type) for name in sorted(columns)}))


def _save(session: Session, clip: Clip | LockedClip, now: datetime | None = None, **changes: Any) -> None:
    """Write ``changes`` to the clip's row (one prebuilt UPDATE) and show them on ``clip``.

    ``updated_at`` (when the clip entered its stage: the allocator's balance wait counts from it)
    is stamped with the caller's clock ``now``, the one the allocator compares it with, so a
    simulated day (the benches) or a test's clock waits as long as the real one.

    An ORM ``Clip`` takes them as its loaded state (they are in the database already, nothing is
    left to flush); for a :class:`LockedClip`, any ORM copy of the row in the session is expired.
    """
    # ``updated_at`` given (the column's onupdate): then the statement runs prebuilt.
    values = {**changes, "updated_at": now or utcnow()}
    run_prebuilt(session, _update_clip(frozenset(values)), {"clip_id": clip.id, **values})
    if isinstance(clip, Clip):
        for name, value in values.items():
            set_committed_value(clip, name, value)
        return
    for name, value in changes.items():
        setattr(clip, name, value)
    forget(session, Clip, clip.id)


def advance(
    session: Session, project: Project, clip: Clip | LockedClip, *, now: datetime, flags_changed: bool = True,
    submitted: int | None = None,
) -> StageOutcome:
    """Apply the rules to an open clip after its judgements changed (clip row locked by the caller).

    ``flags_changed=False`` (a new judgement without a broken flag): the broken-flag count cannot
    have grown since the last call, which already applied the broken rule, so it is not re-counted.
    ``submitted``: the clip's submitted slots in its current stage, when the caller counted them
    under the clip lock (``work.submit`` does, with the judgement's insert); else counted here.
    """
    if clip.status != ClipStatus.active or clip.stage not in OPEN_STAGES:
        return StageOutcome(clip.id, "waiting", clip.stage)
    if flags_changed and _broken_flags(session, clip.id) >= BROKEN_FLAGS:
        _save(session, clip, now, status=ClipStatus.broken)
        release_leases(session, clip.id)
        session.flush()
        return StageOutcome(clip.id, "broken", clip.stage)
    while True:
        stage = clip.stage
        if submitted is None:
            _, submitted = stage_slot_counts(session, clip.id, stage, now)
        if grows_to(project, stage):
            return _adaptive(session, project, clip, submitted, now)
        if submitted < slots_needed(project, stage):
            return StageOutcome(clip.id, "waiting", stage)
        result = check(session, project, clip.id, max_stage=stage)
        if result is not None and result.resolved and result.label is not None:
            _save(session, clip, now, status=ClipStatus.resolved, final_label_id=_label_id(project, result.label),
                  resolved_stage=stage, resolution_confidence=float(result.share))
            return StageOutcome(clip.id, "resolved", stage, result)
        if stage == 1 and slots_needed(project, 2) > 0:
            _save(session, clip, now, stage=2)
            submitted = None
            continue  # stage 2 may already be full after a re-open
        _save(session, clip, now, status=ClipStatus.expert, stage=3)
        release_leases(session, clip.id)
        session.flush()
        return StageOutcome(clip.id, "expert", 3, result)


def _adaptive(
    session: Session, project: Project, clip: Clip | LockedClip, submitted: int, now: datetime,
) -> StageOutcome:
    """The adaptive rule on a clip's stage 1 with ``submitted`` slots submitted (see the module doc)."""
    if submitted < project.k_min:
        return StageOutcome(clip.id, "waiting", 1)
    label, gap, share = lead(session, project, clip.id)
    if label is not None and gap >= project.margin - 1e-9:
        _save(session, clip, now, status=ClipStatus.resolved, final_label_id=_label_id(project, label),
              resolved_stage=1, resolution_confidence=float(share))
        # Only a policy change can leave a lease open here (the rule asks one slot at a time).
        release_leases(session, clip.id)
        session.flush()
        return StageOutcome(clip.id, "resolved", 1)
    if submitted < project.k_max:
        return StageOutcome(clip.id, "waiting", 1)  # the allocator now offers one more slot
    _save(session, clip, now, status=ClipStatus.expert, stage=3)
    release_leases(session, clip.id)
    session.flush()
    return StageOutcome(clip.id, "expert", 3)


def reapply(session: Session, project: Project, *, now: datetime | None = None) -> list[StageOutcome]:
    """Run the project's (changed) rules over every clip not yet decided, each under its lock.

    A clip in stage 2 of a policy without one is checked on all its votes by the new policy's rule
    (resolved or to the expert); an adaptive clip that has its k_min or more is checked at once.
    Returns what changed."""
    when = now or utcnow()
    ids = session.scalars(select(Clip.id).where(
        Clip.project_id == project.id, Clip.status == ClipStatus.active, Clip.stage.in_(OPEN_STAGES))
        .order_by(Clip.id)).all()
    changed = []
    for clip_id in ids:
        clip = session.scalars(select(Clip).where(Clip.id == clip_id).with_for_update()
                               .execution_options(populate_existing=True)).one()
        if clip.stage == 2 and slots_needed(project, 2) == 0:
            _save(session, clip, when, stage=1)
        outcome = advance(session, project, clip, now=when, flags_changed=False)
        if outcome.action != "waiting":
            changed.append(outcome)
    return changed


def _stage_reached(session: Session, project: Project, clip: Clip) -> int:
    """The open stage a clip is re-checked in: the one it is in while open, else the furthest stage
    its live, non-excluded judgements reached (1 without any), within the stages the policy has."""
    if clip.status == ClipStatus.active and clip.stage in OPEN_STAGES:
        reached = clip.stage
    else:
        reached = session.scalar(select(func.max(Judgement.stage)).where(
            Judgement.clip_id == clip.id, Judgement.live.is_(True), Judgement.excluded.is_(False),
            Judgement.stage.in_(OPEN_STAGES))) or 1
    return 2 if reached == 2 and slots_needed(project, 2) > 0 else 1


def reopen(session: Session, project: Project, clip: Clip, *, now: datetime) -> StageOutcome | None:
    """Send a clip whose judgements were excluded back through the stages; None if it stays as is.

    The clip is re-checked in the stage it is in (an open clip) or had reached (a decided one), not
    from stage 1: a stage-2 clip sent back to stage 1 waited there for a new stage-1 label while its
    stage-2 labels stayed live and uncounted, and its stage-1 check then ignored them. In its own
    stage, :func:`advance` counts every live vote up to it: a label withdrawn from that stage frees a
    slot a new annotator fills; one withdrawn from stage 1 of a stage-2 clip is not asked again (the
    stage-2 check reads the votes left).
    """
    if clip.status in (ClipStatus.gold, ClipStatus.pending, ClipStatus.discarded, ClipStatus.example):
        return None  # an example clip stays out of the work (services.guidelines)
    if session.scalar(select(Adjudication.id).where(Adjudication.clip_id == clip.id)) is not None:
        return None
    stage = _stage_reached(session, project, clip)
    clip.final_label_id = None
    clip.resolved_stage = None
    clip.resolution_confidence = None
    clip.status = ClipStatus.active
    clip.stage = stage
    session.flush()
    return advance(session, project, clip, now=now)
