"""The database as tables: what the curation library, the CLI and the dashboard read; and
:func:`table_page`, the sorting and paging of the curator pages' tables (annotators, clips).

The columns follow the contracts in ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from annotation_app.errors import InvalidInputError
from annotation_app.models import Clip, GoldItem, Judgement, Label, User
from annotation_app.services import quality, stages
from annotation_app.services.projects import get_project

__all__ = ["judgements_table", "clips_table", "label_set", "decision_rule", "table_page"]

JUDGEMENT_COLUMNS = [
    "judgement_id", "clip_id", "annotator_id", "annotator", "label", "stage", "confidence",
    "cant_judge", "broken", "time_on_task_s", "submitted_at", "is_gold",
    "gender", "age_band", "region", "language", "background", "gold_label",
]


def label_set(session: Session, project_name: str | None = None) -> list[dict]:
    project = get_project(session, project_name)
    return [{"index": lab.index, "name": lab.name, "polarity": lab.polarity.value, "hotkey": lab.hotkey}
            for lab in project.labels]


def decision_rule(session: Session, project_name: str | None = None) -> dict[str, Any]:
    """The project's labelling policy's decision rule, in the terms of ``curation.aggregation.resolve``:
    what ``curate aggregate`` applies to a project's database unless told otherwise, so that the
    labels it gives are the ones the stage machine gives (and the dataset export carries).

    ``staged`` and ``fixed``: the top label's share reaches ``threshold`` (the project's
    ``consensus_threshold``). ``adaptive``: the top label leads the next by ``margin`` votes. Votes
    count 1 each (``method`` "majority"), or with the weights the stage machine gives them
    (``method`` "weighted", ``skills``: annotator id → weight): reliability for a staged or fixed
    project with ``weighted_consensus``, ``stages.vote_weights`` of it under an adaptive project's
    ``weighting``. The weights are today's reliabilities, not those the stage machine saw when it
    decided a clip earlier, so with weighting clips can read otherwise than they were decided: not
    a few. A weight is scaled so a newcomer's vote counts 1 and falls below 1 as most annotators'
    reliability is measured, so a lead of 2 weighted votes that decided a clip early is often short
    of 2 later (bench_policies, 1,000 clips: 11–20 % of the clips of ``weighting`` gold or
    dawid-skene read unresolved or otherwise here; none without weighting). ``curate aggregate``
    therefore keeps a weighted project's decisions (``curation.aggregation.keep_decisions``).
    Returns ``policy``, ``method``, ``threshold`` or ``margin``, ``skills`` (None unless weighted)
    and ``text`` (the rule in words).
    """
    project = get_project(session, project_name)
    adaptive = project.policy == "adaptive"
    rule: dict[str, Any] = {"policy": project.policy, "method": "majority", "skills": None}
    if adaptive:
        rule["margin"] = float(project.margin)
        text = f"adaptive: top label leads by {project.margin:g}"
    else:
        rule["threshold"] = float(project.consensus_threshold)
        text = f"{project.policy}: top share ≥ {project.consensus_threshold:g}"
    weighted = project.weighting != "none" if adaptive else bool(project.weighted_consensus)
    if weighted:
        ids = sorted({int(a) for a in session.scalars(select(Judgement.annotator_id).where(
            Judgement.project_id == project.id, Judgement.stage.between(1, 2)).distinct())})
        reliability = quality.reliability(session, project, ids)
        weights = [reliability[a] for a in ids]
        if adaptive:
            weights = stages.vote_weights(project, weights)
        rule["method"] = "weighted"
        rule["skills"] = pd.Series(weights, index=pd.Index(ids, dtype="int64"), dtype=float, name="skill")
        text += f", votes weighted ({project.weighting if adaptive else 'reliability'})"
    rule["text"] = text
    return rule


def judgements_table(
    session: Session,
    project_name: str | None = None,
    *,
    include_excluded: bool = False,
    include_flagged: bool = False,
    include_qualification: bool = False,
) -> pd.DataFrame:
    """Live judgements, a row each; annotator attributes joined.

    Left out by default: excluded work, flag-only rows (can't judge / broken) and qualification
    answers (stage 0: tests of the annotator, not votes on the clip).
    """
    project = get_project(session, project_name)
    gold_label = aliased(Label)
    stmt = (
        select(
            Judgement.id, Judgement.clip_id, Judgement.annotator_id, User.username, Label.name,
            Judgement.stage, Judgement.confidence, Judgement.cant_judge, Judgement.broken,
            Judgement.time_on_task_s, Judgement.submitted_at, GoldItem.id.is_not(None),
            User.gender, User.age_band, User.region, User.languages, User.background, gold_label.name,
        )
        .join(User, User.id == Judgement.annotator_id)
        .outerjoin(Label, Label.id == Judgement.label_id)
        .outerjoin(GoldItem, (GoldItem.clip_id == Judgement.clip_id) & (GoldItem.project_id == project.id))
        .outerjoin(gold_label, gold_label.id == GoldItem.label_id)
        .where(Judgement.project_id == project.id, Judgement.live.is_(True))
        .order_by(Judgement.id)
    )
    if not include_excluded:
        stmt = stmt.where(Judgement.excluded.is_(False))
    if not include_qualification:
        stmt = stmt.where(Judgement.stage >= 1)
    if not include_flagged:
        stmt = stmt.where(Judgement.label_id.is_not(None))
    rows = session.execute(stmt).all()
    df = pd.DataFrame(rows, columns=JUDGEMENT_COLUMNS)
    # An annotator's first language stands for them in per-group agreement.
    df["language"] = [langs[0] if langs else None for langs in df["language"]]
    df["submitted_at"] = pd.to_datetime(df["submitted_at"], utc=True)
    return df


def clips_table(session: Session, project_name: str | None = None) -> pd.DataFrame:
    """Every clip with its metadata and the stage machine's decision (final label, stage, confidence)."""
    project = get_project(session, project_name)
    final, true = aliased(Label), aliased(Label)
    stmt = (
        select(
            Clip.id, Clip.media_path, Clip.platform, Clip.uploader, Clip.duplicate_cluster,
            Clip.duration_s, Clip.has_audio, Clip.language, Clip.status, Clip.stage,
            final.name, Clip.resolved_stage, Clip.resolution_confidence, true.name,
            Clip.width, Clip.height, Clip.fps, Clip.sha256, Clip.source_url, Clip.external_id, Clip.title,
        )
        .outerjoin(final, final.id == Clip.final_label_id)
        .outerjoin(true, true.id == Clip.true_label_id)
        .where(Clip.project_id == project.id)
        .order_by(Clip.id)
    )
    df = pd.DataFrame(
        session.execute(stmt).all(),
        columns=[
            "clip_id", "media_path", "platform", "uploader", "duplicate_cluster", "duration_s", "has_audio",
            "language", "status", "stage", "final_label", "resolved_stage", "resolution_confidence",
            "true_label", "width", "height", "fps", "sha256", "source_url", "external_id", "title",
        ],
    )
    df["status"] = df["status"].map(lambda s: s.value if hasattr(s, "value") else s)
    df["duplicate_cluster"] = df["duplicate_cluster"].astype("Int64")
    df["resolved_stage"] = df["resolved_stage"].astype("Int64")
    return df


def table_page(
    rows: Sequence[dict[str, Any]],
    *,
    sort: str,
    sorts: Sequence[str],
    descending: bool = False,
    keep: Callable[[dict[str, Any]], bool] | None = None,
    page: int = 1,
    per_page: int = 25,
    what: str = "rows",
) -> tuple[list[dict[str, Any]], int]:
    """``rows`` kept by ``keep``, sorted by the column ``sort`` (one of ``sorts``) and cut to one
    page; and how many were kept. What a curator's table shows, decided on the server.

    Unknown values (``None``) sort last either way, so "lowest first" shows the real low values, not
    the empty ones; text sorts without regard to case.

    >>> rows = [{"name": "b", "n": 2}, {"name": "A", "n": None}, {"name": "c", "n": 1}]
    >>> [r["name"] for r in table_page(rows, sort="n", sorts=("name", "n"))[0]]
    ['c', 'b', 'A']
    >>> [r["name"] for r in table_page(rows, sort="name", sorts=("name", "n"), descending=True, per_page=2)[0]]
    ['c', 'b']
    """
    if sort not in sorts:
        raise InvalidInputError(f"cannot sort {what} by {sort!r}; one of {', '.join(sorts)}")
    kept = [r for r in rows if keep is None or keep(r)]
    known = [r for r in kept if r.get(sort) is not None]
    known.sort(key=lambda r: (r[sort].casefold() if isinstance(r[sort], str) else r[sort]), reverse=descending)
    ordered = known + [r for r in kept if r.get(sort) is None]
    start = (max(page, 1) - 1) * per_page
    return ordered[start:start + per_page], len(kept)
