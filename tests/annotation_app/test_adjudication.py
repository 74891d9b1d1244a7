"""Stage 3: the expert queue, anonymised evidence and decisions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from annotation_app.models import AuditEntry, Clip, ClipStatus, Judgement
from annotation_app.services import adjudication, attention, work
from tests.annotation_app.factories import make_annotator, make_annotators, make_clips, make_project, unique

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _contested(session: Session):  # noqa: ANN202
    """A project with two clips sent to the expert by a 1-1 tie (k=2, no stage 2)."""
    project = make_project(session, overlap_k=2, stage2_extra=0, balance_attributes=[])
    clips = make_clips(session, project, 2)
    people = make_annotators(session, 2)
    for person in people:
        for _ in clips:
            item = work.next_item(session, project, person, now=T0)
            label = "Fear" if person is people[0] else "Sadness"
            work.submit(session, project, person, assignment_id=item.assignment_id, label=label,
                        client_request_id=unique("req"), now=T0)
    expert = make_annotator(session, role="expert")
    return project, clips, people, expert


def test_queue_and_evidence_are_anonymised(session: Session) -> None:
    project, clips, people, expert = _contested(session)
    queue = adjudication.expert_queue(session, project)
    assert [q["clip_id"] for q in queue] == sorted(c.id for c in clips)
    assert all(q["n_judgements"] == 2 for q in queue)
    evidence = adjudication.clip_evidence(session, project, clips[0].id, viewer=expert)
    assert evidence["distribution"] == {"Excitation": 0, "Fear": 1, "Neutral": 0, "Relaxation": 0, "Sadness": 1,
                                        "Tension": 0}
    assert evidence["reliability"]["Fear"] == pytest.approx(0.7)  # the prior: no track record yet
    assert evidence["reliability"]["Neutral"] is None
    text = repr(evidence)
    assert all(p.username not in text for p in people)
    with pytest.raises(NotFoundError):
        adjudication.clip_evidence(session, project, 10**9, viewer=expert)


def test_evidence_is_blind_for_anyone_who_may_still_label_or_did_label(session: Session) -> None:
    project, clips, people, expert = _contested(session)
    # Someone who labelled the clip in stage 1 sees nobody else's vote, even once it is queued.
    with pytest.raises(PermissionDeniedError, match="stay hidden from you"):
        adjudication.clip_evidence(session, project, clips[0].id, viewer=people[0])
    # A clip still in stage 1 or 2 may yet be served to this expert: no votes before that.
    fresh = make_clips(session, project, 1)[0]
    with pytest.raises(ConflictError, match="not waiting for an expert"):
        adjudication.clip_evidence(session, project, fresh.id, viewer=expert)


def test_expert_picks_the_final_label_once(session: Session) -> None:
    project, clips, _, expert = _contested(session)
    decision = adjudication.adjudicate(session, project, expert, clip_id=clips[0].id, label="Fear", discard=False,
                                       reason="the scream at 0:03", now=T0)
    clip = clips[0]
    session.refresh(clip)
    assert (clip.status, clip.final_label.name, clip.resolved_stage, clip.resolution_confidence) == (
        ClipStatus.resolved, "Fear", 3, 1.0)
    assert decision.label_distribution["Sadness"] == 1
    final = session.scalar(select(Judgement).where(Judgement.clip_id == clip.id, Judgement.stage == 3))
    assert (final.annotator_id, final.label.name) == (expert.id, "Fear")
    assert [q["clip_id"] for q in adjudication.expert_queue(session, project)] == [clips[1].id]
    with pytest.raises(ConflictError, match="not waiting for an expert"):
        adjudication.adjudicate(session, project, expert, clip_id=clip.id, label="Sadness", discard=False, reason="")
    assert session.scalar(select(AuditEntry).where(AuditEntry.action == "clip.adjudicate",
                                                   AuditEntry.target_id == str(clip.id))) is not None


def test_discard_needs_a_reason(session: Session) -> None:
    project, clips, _, expert = _contested(session)
    with pytest.raises(InvalidInputError, match="needs a reason"):
        adjudication.adjudicate(session, project, expert, clip_id=clips[1].id, label=None, discard=True, reason=" ")
    adjudication.adjudicate(session, project, expert, clip_id=clips[1].id, label=None, discard=True,
                            reason="ambiguous: sarcasm")
    session.refresh(clips[1])
    assert (clips[1].status, clips[1].final_label_id) == (ClipStatus.discarded, None)


def test_bad_adjudications(session: Session) -> None:
    project, clips, people, expert = _contested(session)
    with pytest.raises(PermissionDeniedError):
        adjudication.adjudicate(session, project, people[0], clip_id=clips[0].id, label="Fear", discard=False, reason="")
    with pytest.raises(InvalidInputError, match="unknown label"):
        adjudication.adjudicate(session, project, expert, clip_id=clips[0].id, label="Joy", discard=False, reason="")
    with pytest.raises(InvalidInputError, match="not both"):
        adjudication.adjudicate(session, project, expert, clip_id=clips[0].id, label="Fear", discard=True, reason="x")
    with pytest.raises(NotFoundError):
        adjudication.adjudicate(session, project, expert, clip_id=10**9, label="Fear", discard=False, reason="")


def _labelled_by_an_expert(session: Session):  # noqa: ANN202
    """A clip sent to stage 3 by a 1-1 tie between an annotator and an expert (k=2, no stage 2)."""
    project = make_project(session, overlap_k=2, stage2_extra=0, balance_attributes=[])
    [clip] = make_clips(session, project, 1)
    annotator = make_annotator(session)
    labeller = make_annotator(session, role="expert", is_simulated=False)
    for person, label in ((annotator, "Fear"), (labeller, "Sadness")):
        item = work.next_item(session, project, person, now=T0)
        work.submit(session, project, person, assignment_id=item.assignment_id, label=label,
                    client_request_id=unique("req"), now=T0)
    session.refresh(clip)
    assert clip.status == ClipStatus.expert
    return project, clip, labeller


def test_an_expert_never_decides_a_clip_they_labelled(session: Session) -> None:
    project, clip, labeller = _labelled_by_an_expert(session)
    assert [q["clip_id"] for q in adjudication.expert_queue(session, project, expert=labeller)] == []
    assert [q["clip_id"] for q in adjudication.expert_queue(
        session, project, expert=labeller, labelled_by_expert=True)] == [clip.id]
    with pytest.raises(PermissionDeniedError, match="you labelled clip .* in stage 1: another expert decides it"):
        adjudication.adjudicate(session, project, labeller, clip_id=clip.id, label="Fear", now=T0)
    assert session.scalar(select(Clip.status).where(Clip.id == clip.id)) == ClipStatus.expert
    # The only expert labelled it: the curator is told, and an admin (who never annotates) may decide.
    assert adjudication.clips_without_eligible_expert(session, project) == [clip.id]
    [notice] = attention.notices(session, project)
    assert f"({clip.id})" in notice and "every active expert labelled it" in notice
    admin = make_annotator(session, role="admin", is_simulated=False)
    adjudication.adjudicate(session, project, admin, clip_id=clip.id, label="Fear", now=T0)
    assert attention.notices(session, project) == []


def test_another_expert_gets_the_clip(session: Session) -> None:
    project, clip, labeller = _labelled_by_an_expert(session)
    other = make_annotator(session, role="expert", is_simulated=False)
    assert adjudication.clips_without_eligible_expert(session, project) == []
    assert attention.notices(session, project) == []
    assert [q["clip_id"] for q in adjudication.expert_queue(session, project, expert=other)] == [clip.id]
    decision = adjudication.adjudicate(session, project, other, clip_id=clip.id, label="Sadness", now=T0)
    assert decision.expert_id == other.id


def test_without_any_expert_the_curator_is_told(session: Session) -> None:
    project, clips, _, expert = _contested(session)
    expert.is_active = False
    session.flush()
    [notice] = attention.notices(session, project)
    assert "no active expert" in notice and all(str(c.id) in notice for c in clips)
