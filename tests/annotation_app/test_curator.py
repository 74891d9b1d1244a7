"""Curator views and actions: progress, quality, clip lists, pause, exclusion, audit, export."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import InvalidInputError, PermissionDeniedError
from annotation_app.models import Assignment, AssignmentStatus, ClipStatus, Judgement
from annotation_app.services import curator, work
from tests.annotation_app.factories import (
    label_until_done,
    make_annotator,
    make_annotators,
    make_clips,
    make_gold,
    make_project,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _labelled_world(session: Session):  # noqa: ANN202
    """3 clips, k=3, no stage 2: clip 0 unanimous Fear, clip 1 2-1 Sadness, clip 2 three-way (expert).

    ``people[2]`` agrees on clip 0 only; ``people[0]`` agrees with every resolved clip.
    """
    project = make_project(session, overlap_k=3, stage2_extra=0, consensus_threshold=0.6, balance_attributes=[])
    clips = make_clips(session, project, 3)
    people = make_annotators(session, 3)
    plan = {
        clips[0].id: ["Fear", "Fear", "Fear"],
        clips[1].id: ["Sadness", "Sadness", "Fear"],
        clips[2].id: ["Fear", "Neutral", "Tension"],
    }
    label_until_done(session, project, people, lambda cid, a: plan[cid][people.index(a)], now=T0, commit=False)
    for clip in clips:
        session.refresh(clip)
    boss = make_annotator(session, role="curator")
    return project, clips, people, boss


def test_progress_counts_by_status_stage_and_label(session: Session) -> None:
    project, clips, _, _ = _labelled_world(session)
    make_gold(session, project, 1)
    progress = curator.project_progress(session, project)
    assert progress["clips"] == 3 and progress["gold_clips"] == 1
    assert progress["by_status"] == {"resolved": 2, "expert": 1, "gold": 1}
    assert progress["resolved_by_stage"] == {1: 2}
    assert progress["final_labels"]["Fear"] == 1 and progress["final_labels"]["Sadness"] == 1
    assert progress["judgements_by_stage"] == {1: 9}
    assert progress["expert_queue"] == 1
    assert progress["done_share"] == pytest.approx(2 / 3)


def test_annotator_quality(session: Session) -> None:
    project, _, people, _ = _labelled_world(session)
    rows = {r["annotator_id"]: r for r in curator.annotator_quality(session, project, now=T0)}
    odd = rows[people[2].id]
    assert odd["agreement_with_consensus"] == 0.5 and odd["agreement_clips"] == 2
    assert rows[people[0].id]["agreement_with_consensus"] == 1.0
    assert odd["label_distribution"]["Fear"] == 2 and odd["label_distribution"]["Tension"] == 1
    assert odd["median_time_on_task_s"] == 5.0 and odd["n_judgements"] == 3 and odd["done_today"] == 3
    assert odd["reliability"] < rows[people[0].id]["reliability"]
    assert odd["gold_accuracy"] is None and odd["paused"] is False


def test_list_clips_filters(session: Session) -> None:
    project, clips, _, _ = _labelled_world(session)
    assert [c["clip_id"] for c in curator.list_clips(session, project, status="expert")] == [clips[2].id]
    assert [c["clip_id"] for c in curator.list_clips(session, project, label="Sadness")] == [clips[1].id]
    low = curator.list_clips(session, project, max_agreement=0.7)
    assert [(c["clip_id"], round(c["agreement"], 3)) for c in low] == [(clips[1].id, 0.667), (clips[2].id, 0.333)]
    assert [c["clip_id"] for c in curator.list_clips(session, project, limit=1, offset=1)] == [clips[1].id]
    assert curator.list_clips(session, project, stage=3)[0]["distribution"] == {"Fear": 1, "Neutral": 1, "Tension": 1}
    with pytest.raises(InvalidInputError):
        curator.list_clips(session, project, status="lost")


def test_pause_and_resume_are_audited(session: Session) -> None:
    project = make_project(session)
    make_clips(session, project, 2)
    annotator, boss = make_annotator(session), make_annotator(session, role="curator")
    lease = work.next_item(session, project, annotator, now=T0)
    with pytest.raises(PermissionDeniedError):
        curator.pause_annotator(session, project, annotator, boss.id, paused=True, reason="x")
    with pytest.raises(InvalidInputError):
        curator.pause_annotator(session, project, boss, annotator.id, paused=True, reason="")
    curator.pause_annotator(session, project, boss, annotator.id, paused=True, reason="random clicking")
    assert session.get(Assignment, lease.assignment_id).status == AssignmentStatus.released
    assert work.next_item(session, project, annotator, now=T0) is None
    curator.pause_annotator(session, project, boss, annotator.id, paused=False, reason="talked to them")
    assert work.next_item(session, project, annotator, now=T0) is not None
    trail = curator.audit_trail(session, project)
    assert [e["action"] for e in trail[:2]] == ["annotator.resume", "annotator.pause"]
    assert trail[1]["actor"] == boss.username and trail[1]["details"]["leases_released"] == 1


def test_exclusion_reopens_clips_and_new_eyes_decide_again(session: Session) -> None:
    project, clips, people, boss = _labelled_world(session)
    reopened = curator.exclude_annotator(session, project, boss, people[0].id, reason="bot-like timing", now=T0)
    assert reopened == [c.id for c in clips]
    for clip in clips:
        session.refresh(clip)
    assert [c.status for c in clips] == [ClipStatus.active] * 3 and clips[0].final_label_id is None
    excluded = session.scalars(select(Judgement.excluded).where(Judgement.annotator_id == people[0].id)).all()
    assert excluded == [True, True, True]
    session.refresh(people[0])
    assert people[0].paused
    # A fresh annotator fills each freed slot, and the stage machine decides again.
    newcomer = make_annotator(session)
    label_until_done(session, project, [newcomer], lambda cid, a: "Fear", now=T0, commit=False)
    for clip in clips:
        session.refresh(clip)
    assert [(c.status, c.final_label.name if c.final_label else None) for c in clips] == [
        (ClipStatus.resolved, "Fear"),  # Fear, Fear + Fear
        (ClipStatus.resolved, "Fear"),  # Sadness, Fear + Fear: the excluded Sadness no longer counts
        (ClipStatus.expert, None),  # Neutral, Tension + Fear: still three ways
    ]
    entry = curator.audit_trail(session, project)[0]
    assert entry["action"] == "annotator.exclude" and entry["details"]["clips_reopened"] == reopened


def test_exclusion_leaves_expert_decisions_alone(session: Session) -> None:
    from annotation_app.services import adjudication

    project, clips, people, boss = _labelled_world(session)
    expert = make_annotator(session, role="expert")
    adjudication.adjudicate(session, project, expert, clip_id=clips[2].id, label="Neutral", discard=False, reason="")
    reopened = curator.exclude_annotator(session, project, boss, people[1].id, reason="x", now=T0)
    assert clips[2].id not in reopened
    session.refresh(clips[2])
    assert (clips[2].status, clips[2].final_label.name) == (ClipStatus.resolved, "Neutral")


def test_excluding_an_expert_keeps_their_stage_three_decisions(session: Session) -> None:
    # #22: the decision row was marked excluded; it vanished from the export, the clip stayed resolved.
    from annotation_app.services import adjudication

    project, clips, people, boss = _labelled_world(session)
    expert = make_annotator(session, role="expert")
    adjudication.adjudicate(session, project, expert, clip_id=clips[2].id, label="Neutral", discard=False, reason="")
    curator.exclude_annotator(session, project, boss, expert.id, reason="left the team", now=T0)
    [decision] = session.scalars(select(Judgement).where(Judgement.annotator_id == expert.id)).all()
    assert (decision.stage, decision.excluded) == (3, False)
    export = pd.read_csv(io.BytesIO(curator.judgements_export(session, project)))
    assert ((export["clip_id"] == clips[2].id) & (export["stage"] == 3)).sum() == 1
    entry = curator.audit_trail(session, project)[0]
    assert entry["action"] == "annotator.exclude" and entry["details"]["expert_decisions_kept"] == [clips[2].id]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_judgements_export(session: Session, fmt: str) -> None:
    project, clips, people, boss = _labelled_world(session)
    data = curator.judgements_export(session, project, fmt=fmt)
    df = pd.read_csv(io.BytesIO(data)) if fmt == "csv" else pd.read_parquet(io.BytesIO(data))
    assert list(df.columns) == curator.EXPORT_COLUMNS and len(df) == 9
    assert set(df["annotator_id"]) == {p.id for p in people}
    assert (df["stage"] == 1).all() and (df["time_on_task_s"] == 5.0).all()
    assert df["submitted_at"].notna().all() and df["leased_at"].notna().all()
    curator.exclude_annotator(session, project, boss, people[0].id, reason="x", now=T0)
    assert len(pd.read_csv(io.BytesIO(curator.judgements_export(session, project)))) == 6
    everything = pd.read_csv(io.BytesIO(curator.judgements_export(session, project, include_excluded=True)))
    assert len(everything) == 9 and everything["excluded"].sum() == 3
    with pytest.raises(InvalidInputError):
        curator.judgements_export(session, project, fmt="xlsx")




def test_reliability_matches_the_quality_view(session: Session) -> None:
    from annotation_app.services import quality

    project, _, people, _ = _labelled_world(session)
    rows = {r["annotator_id"]: r["reliability"] for r in curator.annotator_quality(session, project, now=T0)}
    fast = quality.reliability(session, project, [p.id for p in people] + [10**9])
    assert {p.id: fast[p.id] for p in people} == pytest.approx({p.id: rows[p.id] for p in people})
    assert fast[10**9] == pytest.approx(quality.PRIOR)
    # people[0] agreed on both resolved clips: (2 + 2 * 0.7) / (2 + 2)
    assert fast[people[0].id] == pytest.approx(0.85)


def test_exclusion_rechecks_a_clip_decided_in_stage_two_in_stage_two(session: Session) -> None:
    """#23: a clip resolved in stage 2 that loses a stage-1 vote is re-checked in stage 2 on the
    votes left (its stage-2 labels count); it had gone back to stage 1 and waited there for a new
    stage-1 label with its stage-2 labels live and uncounted."""
    project = make_project(session, overlap_k=3, stage2_extra=2, consensus_threshold=0.6, balance_attributes=[])
    [clip] = make_clips(session, project, 1)
    boss = make_annotator(session, role="curator")
    people = [make_annotator(session) for _ in range(5)]
    label_until_done(session, project, people,
                     lambda cid, a: dict(zip([p.id for p in people], ["Fear", "Neutral", "Sadness", "Neutral", "Neutral"],
                                             strict=True))[a.id], now=T0, commit=False)
    session.refresh(clip)
    assert (clip.status, clip.resolved_stage, clip.resolution_confidence) == (ClipStatus.resolved, 2, 0.6)
    reopened = curator.exclude_annotator(session, project, boss, people[2].id, reason="x", now=T0)
    assert reopened == [clip.id]
    session.refresh(clip)
    # Neutral, Fear + Neutral, Neutral: 3 of 4 in stage 2, decided at once.
    assert (clip.status, clip.stage, clip.resolved_stage, clip.final_label.name) == (ClipStatus.resolved, 2, 2, "Neutral")
    assert clip.resolution_confidence == 0.75
