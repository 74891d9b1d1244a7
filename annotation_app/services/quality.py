"""Annotator quality: gold accuracy, agreement with consensus, speed, label mix, and one reliability.

Reliability is what weighted consensus and the expert's evidence use. It pools the two signals we
have, each a count of hits out of tries, under a Beta prior so a newcomer is neither trusted nor
distrusted much:

    reliability = (gold_correct + agreed + PRIOR_WEIGHT * PRIOR) / (gold_n + agreed_n + PRIOR_WEIGHT)

``gold_*`` counts every gold answer (qualification and hidden); ``agreed_*`` counts the annotator's
labelled stage-1/2 judgements on clips the stage machine resolved, hit when the label is the clip's
final label. With no data, reliability is ``PRIOR`` for everyone, so weighted consensus equals the
plain vote until evidence accumulates.

>>> round(_smoothed(8, 10, 0, 0), 3)  # 8 of 10 gold right: (8 + 1.4) / 12
0.783
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from annotation_app.models import Clip, ClipStatus, GoldItem, GoldResult, Judgement, Label, Project

__all__ = ["PRIOR", "PRIOR_WEIGHT", "AnnotatorStats", "annotator_stats", "reliability"]

PRIOR = 0.7
PRIOR_WEIGHT = 2.0


def _smoothed(gold_correct: int, gold_n: int, agreed: int, agreed_n: int) -> float:
    return (gold_correct + agreed + PRIOR_WEIGHT * PRIOR) / (gold_n + agreed_n + PRIOR_WEIGHT)


@dataclass
class AnnotatorStats:
    annotator_id: int
    gold_correct: int = 0
    gold_n: int = 0
    agreed: int = 0
    agreed_n: int = 0
    # Of the gold answers, those on hidden gold (the quality floor's evidence, ``gold.below_quality_floor``).
    hidden_gold_correct: int = 0
    hidden_gold_n: int = 0
    n_judgements: int = 0
    times: list[float] = field(default_factory=list)
    label_counts: Counter[str] = field(default_factory=Counter)

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_n if self.gold_n else None

    @property
    def hidden_gold_accuracy(self) -> float | None:
        return self.hidden_gold_correct / self.hidden_gold_n if self.hidden_gold_n else None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.agreed_n if self.agreed_n else None

    @property
    def median_time_on_task_s(self) -> float | None:
        return float(statistics.median(self.times)) if self.times else None

    @property
    def reliability(self) -> float:
        return _smoothed(self.gold_correct, self.gold_n, self.agreed, self.agreed_n)


def annotator_stats(
    session: Session, project: Project, annotator_ids: Iterable[int] | None = None
) -> dict[int, AnnotatorStats]:
    """Quality figures per annotator who has work in ``project`` (or just ``annotator_ids``)."""
    ids = None if annotator_ids is None else sorted(set(annotator_ids))
    stats: dict[int, AnnotatorStats] = {}

    def of(aid: int) -> AnnotatorStats:
        return stats.setdefault(aid, AnnotatorStats(aid))

    if ids is not None:
        for aid in ids:
            of(aid)
        if not ids:
            return stats

    gold_q = (
        select(GoldResult.annotator_id, GoldResult.correct, GoldResult.context)
        .join(GoldItem, GoldItem.id == GoldResult.gold_item_id)
        .where(GoldItem.project_id == project.id)
    )
    if ids is not None:
        gold_q = gold_q.where(GoldResult.annotator_id.in_(ids))
    for aid, correct, context in session.execute(gold_q):
        s = of(aid)
        s.gold_n += 1
        s.gold_correct += int(bool(correct))
        if context == "hidden":
            s.hidden_gold_n += 1
            s.hidden_gold_correct += int(bool(correct))

    gold_clips = select(GoldItem.clip_id).where(GoldItem.project_id == project.id)
    j_q = (
        select(Judgement.annotator_id, Judgement.stage, Label.name, Judgement.label_id,
               Judgement.time_on_task_s, Clip.final_label_id, Clip.status)
        .join(Clip, Clip.id == Judgement.clip_id)
        .outerjoin(Label, Label.id == Judgement.label_id)
        .where(
            Judgement.project_id == project.id,
            Judgement.live.is_(True),
            Judgement.excluded.is_(False),
            Judgement.stage.in_((1, 2)),
            Judgement.clip_id.not_in(gold_clips),
        )
    )
    if ids is not None:
        j_q = j_q.where(Judgement.annotator_id.in_(ids))
    for aid, _stage, name, label_id, tot, final_id, status in session.execute(j_q):
        s = of(aid)
        s.n_judgements += 1
        if tot is not None:
            s.times.append(float(tot))
        if name is not None:
            s.label_counts[name] += 1
            if final_id is not None and status == ClipStatus.resolved:
                s.agreed_n += 1
                s.agreed += int(label_id == final_id)
    return stats


def reliability(session: Session, project: Project, annotator_ids: Iterable[int]) -> dict[int, float]:
    """Reliability in [0, 1] per annotator id (``PRIOR`` for one without evidence).

    Two grouped queries (no per-judgement rows): the stage machine calls this on every consensus
    check of a weighted project.
    """
    ids = sorted(set(annotator_ids))
    if not ids:
        return {}
    gold_rows = session.execute(
        select(GoldResult.annotator_id, func.count(), func.sum(case((GoldResult.correct.is_(True), 1), else_=0)))
        .join(GoldItem, GoldItem.id == GoldResult.gold_item_id)
        .where(GoldItem.project_id == project.id, GoldResult.annotator_id.in_(ids))
        .group_by(GoldResult.annotator_id)
    ).all()
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for aid, n, hits in gold_rows:
        counts[aid][0], counts[aid][1] = int(hits or 0), int(n)
    for aid, (agreed, answers) in decided_agreement(session, project, ids).items():
        counts[aid][2], counts[aid][3] = agreed, answers
    return {aid: _smoothed(*counts[aid]) for aid in ids}


def decided_agreement(session: Session, project: Project, annotator_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Per annotator id, (labels that are their clips' decided label, labels on decided clips): live,
    not excluded, labelled stage-1/2 judgements on resolved clips that are not gold. One grouped
    query; reliability's agreement half and the agreement test's evidence (``gold.decided_answers``)."""
    ids = sorted(set(annotator_ids))
    if not ids:
        return {}
    # A resolved clip is never gold (a gold clip has status "gold" and the stage machine never runs on
    # it), so the status alone leaves gold out: no NOT IN over the gold items, on a quarter of the queue's
    # submissions (the agreement test).
    rows = session.execute(
        select(Judgement.annotator_id, func.count(),
               func.sum(case((Judgement.label_id == Clip.final_label_id, 1), else_=0)))
        .join(Clip, Clip.id == Judgement.clip_id)
        .where(
            Judgement.project_id == project.id, Judgement.annotator_id.in_(ids),
            Judgement.live.is_(True), Judgement.excluded.is_(False), Judgement.stage.in_((1, 2)),
            Judgement.label_id.is_not(None), Clip.status == ClipStatus.resolved, Clip.final_label_id.is_not(None),
        )
        .group_by(Judgement.annotator_id)
    ).all()
    return {int(aid): (int(hits or 0), int(n)) for aid, n, hits in rows}
