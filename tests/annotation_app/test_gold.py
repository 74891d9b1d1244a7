"""Qualification round, hidden gold and the quality floor, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, InvalidInputError
from annotation_app.models import AuditEntry, ClipStatus, GoldResult
from annotation_app.services import gold, work
from tests.annotation_app.factories import make_annotator, make_clips, make_gold, make_project, unique

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _answer(session: Session, project, annotator, label: str):  # noqa: ANN001, ANN202
    item = work.next_item(session, project, annotator, now=T0)
    result = work.submit(session, project, annotator, assignment_id=item.assignment_id, label=label,
                         client_request_id=unique("req"), now=T0)
    return item, result


def test_qualification_comes_first_and_passing_opens_real_work(session: Session) -> None:
    project = make_project(session, qualification_size=3, qualification_pass_mark=0.6)
    golds = make_gold(session, project, 4, label="Fear")
    [real] = make_clips(session, project, 1)
    annotator = make_annotator(session)
    served = []
    for label, expected in (("Fear", 1), ("Neutral", 1), ("Fear", 2)):
        item, result = _answer(session, project, annotator, label)
        assert item.is_qualification and item.stage == 0
        served.append(item.clip_id)
        assert result.qualification["answered"] == len(served)
        assert result.qualification["correct"] == expected
    assert result.qualification == {"required": 3, "answered": 3, "correct": 2, "passed": True}
    assert set(served) <= {g.clip_id for g in golds} and len(set(served)) == 3
    item = work.next_item(session, project, annotator, now=T0)
    assert (item.clip_id, item.stage, item.is_qualification) == (real.id, 1, False)


def test_failing_qualification_blocks_real_work(session: Session) -> None:
    project = make_project(session, qualification_size=2, qualification_pass_mark=0.7)
    make_gold(session, project, 2, label="Fear")
    make_clips(session, project, 3)
    annotator = make_annotator(session)
    _answer(session, project, annotator, "Fear")
    _, result = _answer(session, project, annotator, "Sadness")
    assert result.qualification["passed"] is False
    assert work.next_item(session, project, annotator, now=T0) is None
    assert work.progress(session, project, annotator)["blocked_reason"] == "qualification not passed (1/2 correct)"
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "qualification.complete")).all()
    assert [e.details["passed"] for e in audit if e.target_id == str(annotator.id)] == [False]


def test_unqualified_annotators_are_not_in_the_balance_pool(session: Session) -> None:
    project = make_project(session, qualification_size=1, overlap_k=3, balance_attributes=["gender"])
    make_gold(session, project, 1)
    [clip] = make_clips(session, project, 1)
    men = [make_annotator(session, gender="male") for _ in range(3)]
    make_annotator(session, gender="female")  # never qualified: cannot balance anything
    for man in men:
        _answer(session, project, man, "Fear")
    got = [work.next_item(session, project, m, now=T0) for m in men]
    assert [g.clip_id for g in got] == [clip.id] * 3  # the ceiling yields: no eligible woman


def test_hidden_gold_looks_like_stage_one_and_is_scored(session: Session) -> None:
    project = make_project(session, gold_rate=1.0)
    [item_gold] = make_gold(session, project, 1, label="Tension", purpose="hidden")
    make_clips(session, project, 2)
    annotator = make_annotator(session)
    item, result = _answer(session, project, annotator, "Tension")
    assert (item.clip_id, item.stage, item.is_qualification, result.qualification) == (item_gold.clip_id, 1, False, None)
    [score] = session.scalars(select(GoldResult).where(GoldResult.annotator_id == annotator.id)).all()
    assert (score.context, score.correct) == ("hidden", True)
    # Out of unseen gold: real work is served, never the same gold twice.
    assert work.next_item(session, project, annotator, now=T0).clip_id != item_gold.clip_id


def test_no_hidden_gold_when_the_rate_is_zero(session: Session) -> None:
    project = make_project(session, gold_rate=0.0)
    golds = make_gold(session, project, 3, purpose="hidden")
    make_clips(session, project, 3)
    annotator = make_annotator(session)
    served = {_answer(session, project, annotator, "Fear")[0].clip_id for _ in range(3)}
    assert served.isdisjoint({g.clip_id for g in golds})


def test_below_the_quality_floor_is_paused(session: Session) -> None:
    project = make_project(session, gold_rate=1.0, quality_floor=0.5)
    make_gold(session, project, gold.FLOOR_MIN_ANSWERS, label="Fear", purpose="hidden")
    make_clips(session, project, 3)
    annotator = make_annotator(session)
    for _ in range(gold.FLOOR_MIN_ANSWERS):
        _answer(session, project, annotator, "Neutral")
    session.refresh(annotator)
    assert annotator.paused and "quality floor" in annotator.pause_reason
    assert work.next_item(session, project, annotator, now=T0) is None
    assert session.scalar(select(AuditEntry).where(
        AuditEntry.action == "annotator.auto_pause", AuditEntry.target_id == str(annotator.id))) is not None


def test_add_gold_checks_its_input(session: Session) -> None:
    project = make_project(session)
    clip, labelled = make_clips(session, project, 2)
    with pytest.raises(InvalidInputError, match="unknown label"):
        gold.add_gold(session, project, clip, "Joy")
    item = gold.add_gold(session, project, clip, "Fear", purpose="qualification")
    assert clip.status == ClipStatus.gold and item.purpose.value == "qualification"
    with pytest.raises(ConflictError, match="already a gold clip"):
        gold.add_gold(session, project, clip, "Fear")
    annotator = make_annotator(session)
    _answer(session, project, annotator, "Fear")
    with pytest.raises(ConflictError, match="already has judgements"):
        gold.add_gold(session, project, labelled, "Fear")


def test_hidden_gold_draw_follows_the_rate(session: Session) -> None:
    project = make_project(session, gold_rate=0.05)
    make_gold(session, project, 1, purpose="hidden")
    # The draw is a hash of (annotator, items served): reproducible, and about 5% of requests.
    draws = [gold.draw_hidden_gold(session, project, annotator_id, n) is not None
             for annotator_id in range(1, 5) for n in range(500)]
    assert 0.03 < sum(draws) / len(draws) < 0.07
    assert draws == [gold.draw_hidden_gold(session, project, a, n) is not None
                     for a in range(1, 5) for n in range(500)]
