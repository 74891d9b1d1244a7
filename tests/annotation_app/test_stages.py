"""The stage machine and submit's bad-input handling, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, InvalidInputError, LeaseError, NotFoundError
from annotation_app.models import Assignment, AssignmentStatus, Clip, ClipStatus, GoldResult, Judgement
from annotation_app.services import work
from tests.annotation_app.factories import (
    make_annotator,
    make_annotators,
    make_clips,
    make_gold,
    make_project,
    unique,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _label_clip(session: Session, project, clip, annotators, labels, *, now=T0) -> list[int]:  # noqa: ANN001
    """Each annotator in turn takes the clip and gives the next label (None = can't judge, "broken")."""
    ids = []
    for annotator, label in zip(annotators, labels, strict=True):
        item = work.next_item(session, project, annotator, now=now)
        assert item is not None and item.clip_id == clip.id, f"{annotator.username} was not served clip {clip.id}"
        broken = label == "broken"
        result = work.submit(session, project, annotator, assignment_id=item.assignment_id,
                             label=None if label in (None, "broken") else label, cant_judge=label is None,
                             broken=broken, time_on_task_s=4.0, client_request_id=unique("req"), now=now)
        ids.append(result.judgement_id)
    session.refresh(clip)
    return ids


def _world(session: Session, n_annotators: int = 8, **settings):  # noqa: ANN001, ANN202
    settings.setdefault("balance_attributes", [])
    project = make_project(session, **settings)
    [clip] = make_clips(session, project, 1)
    return project, clip, make_annotators(session, n_annotators)


def test_stage_one_resolves_at_the_threshold(session: Session) -> None:
    project, clip, people = _world(session)
    _label_clip(session, project, clip, people[:4], ["Fear", "Fear", "Neutral", "Fear"])
    assert clip.status == ClipStatus.active  # 4 of 5: still waiting
    _label_clip(session, project, clip, people[4:5], ["Sadness"])
    assert (clip.status, clip.final_label.name, clip.resolved_stage) == (ClipStatus.resolved, "Fear", 1)
    assert clip.resolution_confidence == pytest.approx(0.6)


def test_a_tie_goes_to_stage_two_never_broken_silently(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=4, stage2_extra=1)
    _label_clip(session, project, clip, people[:4], ["Fear", "Fear", "Neutral", "Neutral"])
    assert (clip.status, clip.stage, clip.final_label_id) == (ClipStatus.active, 2, None)
    _label_clip(session, project, clip, people[4:5], ["Fear"])
    assert (clip.status, clip.final_label.name, clip.resolved_stage) == (ClipStatus.resolved, "Fear", 2)


def test_unresolved_after_stage_two_goes_to_the_expert(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=3, stage2_extra=2)
    _label_clip(session, project, clip, people[:3], ["Fear", "Neutral", "Sadness"])
    assert clip.stage == 2
    _label_clip(session, project, clip, people[3:5], ["Tension", "Relaxation"])
    assert (clip.status, clip.stage, clip.final_label_id) == (ClipStatus.expert, 3, None)
    assert work.next_item(session, project, people[5], now=T0) is None  # nothing left to serve


def test_without_stage_two_a_contested_clip_goes_straight_to_the_expert(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=2, stage2_extra=0)
    _label_clip(session, project, clip, people[:2], ["Fear", "Neutral"])
    assert (clip.status, clip.stage) == (ClipStatus.expert, 3)


def test_cant_judge_fills_a_slot_but_is_no_vote(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=3)
    _label_clip(session, project, clip, people[:3], ["Fear", None, "Fear"])
    assert (clip.status, clip.final_label.name) == (ClipStatus.resolved, "Fear")
    assert clip.resolution_confidence == pytest.approx(1.0)


def test_nobody_can_judge_means_more_eyes_then_expert(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=2, stage2_extra=1)
    _label_clip(session, project, clip, people[:2], [None, None])
    assert clip.stage == 2
    _label_clip(session, project, clip, people[2:3], [None])
    assert clip.status == ClipStatus.expert


def test_two_broken_flags_close_the_clip_and_release_its_leases(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=5)
    waiting = work.next_item(session, project, people[4], now=T0)
    _label_clip(session, project, clip, people[:1], ["broken"])
    assert clip.status == ClipStatus.active  # one flag is not enough
    _label_clip(session, project, clip, people[1:2], ["broken"])
    assert clip.status == ClipStatus.broken
    assert session.get(Assignment, waiting.assignment_id).status == AssignmentStatus.released
    with pytest.raises(NotFoundError, match="no longer open"):
        work.submit(session, project, people[4], assignment_id=waiting.assignment_id, label="Fear",
                    client_request_id=unique("req"), now=T0)


def test_weighted_consensus_follows_reliable_annotators(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=3, weighted_consensus=True)
    [item] = make_gold(session, project, 1)
    reliable, sloppy1, sloppy2 = people[:3]
    for person, correct in ((reliable, True), (sloppy1, False), (sloppy2, False)):
        for _ in range(10):  # a track record on gold: the reliable one is always right
            session.add(GoldResult(gold_item_id=item.id, annotator_id=person.id, correct=correct,
                                   context=unique("ctx")[:16]))
    session.flush()
    _label_clip(session, project, clip, [sloppy1, reliable, sloppy2], ["Neutral", "Fear", "Neutral"])
    assert (clip.status, clip.final_label.name) == (ClipStatus.resolved, "Fear")
    assert clip.resolution_confidence > 0.7


# ---------------------------------------------------------------------------------------------
# Bad input: each a specific error, nothing lost or duplicated


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Judgement))


def test_bad_submissions_raise_specific_errors(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=3)
    me, other = people[:2]
    mine = work.next_item(session, project, me, now=T0)
    before = _count(session)

    def send(item, annotator=me, label="Fear", request_id=None, now=T0, **kw):  # noqa: ANN001, ANN202
        return work.submit(session, project, annotator, assignment_id=item.assignment_id, label=label,
                           client_request_id=request_id or unique("req"), now=now, **kw)

    with pytest.raises(InvalidInputError, match="unknown label 'Joy'"):
        send(mine, label="Joy")
    with pytest.raises(InvalidInputError, match="needs a label"):
        send(mine, label=None)
    with pytest.raises(InvalidInputError, match="confidence"):
        send(mine, confidence=9)
    with pytest.raises(LeaseError, match="not leased to you"):
        send(mine, annotator=other)
    assert _count(session) == before

    first = send(mine, request_id="r-1")
    retry = send(mine, request_id="r-1")
    assert (retry.judgement_id, retry.duplicate, first.duplicate) == (first.judgement_id, True, False)
    with pytest.raises(LeaseError, match="already submitted"):
        send(mine, request_id="r-2")
    # The same key with another payload is not a retry (#22): refused, naming the key.
    with pytest.raises(ConflictError, match="'r-1' was already used .*label differ"):
        send(mine, request_id="r-1", label="Sadness")
    with pytest.raises(ConflictError, match="'r-1' was already used .*assignment_id differ"):
        work.submit(session, project, me, assignment_id=mine.assignment_id + 1000, label="Fear",
                    client_request_id="r-1", now=T0)
    with pytest.raises(ConflictError, match="'r-1' was already used .*replaces_id differ"):
        work.correct(session, project, me, judgement_id=first.judgement_id, label="Fear",
                     client_request_id="r-1", now=T0)
    assert _count(session) == before + 1

    late = work.next_item(session, project, other, now=T0)
    with pytest.raises(LeaseError, match="expired"):
        send(late, annotator=other, now=T0 + timedelta(hours=1))
    assert _count(session) == before + 1


def test_submitting_for_a_removed_clip_is_not_found(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=3)
    item = work.next_item(session, project, people[0], now=T0)
    session.delete(session.get(Clip, clip.id))
    session.flush()
    with pytest.raises(NotFoundError, match="removed"):
        work.submit(session, project, people[0], assignment_id=item.assignment_id, label="Fear",
                    client_request_id=unique("req"), now=T0)


def test_submitting_for_a_withdrawn_clip_is_not_found(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=3)
    item = work.next_item(session, project, people[0], now=T0)
    clip.status = ClipStatus.pending  # the curator took it out of labelling meanwhile
    session.flush()
    with pytest.raises(NotFoundError, match="no longer open"):
        work.submit(session, project, people[0], assignment_id=item.assignment_id, label="Fear",
                    client_request_id=unique("req"), now=T0)
    assert _count(session) == 0


def test_a_lease_on_a_withdrawn_clip_is_replaced_on_the_next_request(session: Session) -> None:
    project = make_project(session, overlap_k=3, balance_attributes=[])
    first, second = make_clips(session, project, 2)
    annotator = make_annotator(session)
    item = work.next_item(session, project, annotator, now=T0)
    session.get(Clip, item.clip_id).status = ClipStatus.pending
    session.flush()
    again = work.next_item(session, project, annotator, now=T0)
    assert again.clip_id != item.clip_id and again.clip_id in (first.id, second.id)
    assert session.get(Assignment, item.assignment_id).status == AssignmentStatus.released


def test_correction_is_a_new_row_while_the_stage_is_open(session: Session) -> None:
    project, clip, people = _world(session, overlap_k=2)
    [first_id] = _label_clip(session, project, clip, people[:1], ["Fear"])
    fixed = work.correct(session, project, people[0], judgement_id=first_id, label="Sadness",
                         client_request_id="fix-1", now=T0)
    again = work.correct(session, project, people[0], judgement_id=first_id, label="Sadness",
                         client_request_id="fix-1", now=T0)
    assert again.duplicate and again.judgement_id == fixed.judgement_id
    old, new = session.get(Judgement, first_id), session.get(Judgement, fixed.judgement_id)
    session.refresh(old)
    assert (old.live, new.live, new.replaces_id, new.label.name) == (None, True, first_id, "Sadness")
    with pytest.raises(ConflictError, match="already corrected"):
        work.correct(session, project, people[0], judgement_id=first_id, label="Fear", client_request_id="fix-2")
    recent = work.recent_judgements(session, project, people[0])
    assert [(r["judgement_id"], r["label"], r["correctable"]) for r in recent] == [(fixed.judgement_id, "Sadness", True)]
    _label_clip(session, project, clip, people[1:2], ["Sadness"])
    assert clip.final_label.name == "Sadness"  # the correction counted, the replaced row did not
    with pytest.raises(ConflictError, match="closed"):
        work.correct(session, project, people[0], judgement_id=fixed.judgement_id, label="Fear",
                     client_request_id="fix-3")
    assert work.recent_judgements(session, project, people[0])[0]["correctable"] is False


def test_stage_two_is_served_to_the_under_represented_group(session: Session) -> None:
    project = make_project(session, overlap_k=3, stage2_extra=2, balance_attributes=["gender"])
    [clip] = make_clips(session, project, 1)
    women = [make_annotator(session, gender="female") for _ in range(4)]
    men = [make_annotator(session, gender="male") for _ in range(3)]
    _label_clip(session, project, clip, [women[0], men[0], women[1]], ["Fear", "Neutral", "Sadness"])
    assert clip.stage == 2  # 2 women, 1 man so far
    assert work.next_item(session, project, women[2], now=T0) is None
    _label_clip(session, project, clip, [men[1]], ["Fear"])
    # 2 and 2 now: either group may take the last slot.
    assert work.next_item(session, project, women[2], now=T0).clip_id == clip.id
