"""#23 item 4: the sequential test on agreement with the other annotators' consensus (leave one
out), which pauses a spammer without waiting for hidden gold, on SQLite and PostgreSQL."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.models import AuditEntry, Clip, ClipStatus, Judgement, Label, Project
from annotation_app.services import gold, work
from tests.annotation_app.factories import make_annotator, make_clips, make_gold, make_project, unique

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
TRUTH = ("Sadness", "Neutral", "Tension")


def test_doctests() -> None:
    assert doctest.testmod(gold, extraglobs={"Counter": __import__("collections").Counter}).failed == 0


def _world(session: Session, n_clips: int, **settings):  # noqa: ANN003, ANN202
    """Four honest annotators who label every clip with its true label; overlap 6, so each clip
    stays open with the fifth label (the one under test)."""
    settings = {"overlap_k": 6, "balance_attributes": [], "gold_rate": 0.0, **settings}
    project = make_project(session, **settings)
    clips = make_clips(session, project, n_clips)
    truth = {c.id: TRUTH[i % len(TRUTH)] for i, c in enumerate(clips)}
    for person in [make_annotator(session) for _ in range(4)]:
        while (item := work.next_item(session, project, person, now=T0)) is not None:
            _submit(session, project, person, item, truth[item.clip_id])
    return project, clips, truth


def _submit(session: Session, project: Project, person, item, label: str) -> None:  # noqa: ANN001
    work.submit(session, project, person, assignment_id=item.assignment_id, label=label,
                client_request_id=unique("req"), now=T0)


def _label_until_paused(session: Session, project: Project, person, choose) -> list[bool]:  # noqa: ANN001
    """The annotator labels what they are served; after each label, whether they are paused."""
    paused = []
    while (item := work.next_item(session, project, person, now=T0)) is not None:
        _submit(session, project, person, item, choose(item.clip_id))
        session.refresh(person)
        paused.append(person.paused)
    return paused


@pytest.mark.parametrize(("error_rate", "answers"), [(0.1, 5), (0.01, 9)])
def test_a_constant_label_spammer_is_paused_by_agreement_alone(
    session: Session, error_rate: float, answers: int
) -> None:
    """No gold at all: a spammer who always says "Fear" disagrees with the others' clear consensus
    every time and is paused after as many answers as the curator's quality_error_rate asks for
    (5 at 0.1, 9 at 0.01), their labels withdrawn from the open clips, the curator told."""
    project, clips, _ = _world(session, 10, quality_error_rate=error_rate)
    assert gold.agreement_test(project).fewest_answers_to_reject() == answers
    spammer = make_annotator(session)
    paused = _label_until_paused(session, project, spammer, lambda clip_id: "Fear")
    assert paused == [False] * (answers - 1) + [True]
    reason = spammer.pause_reason
    assert reason.startswith(f"agreement with the other annotators 0% (0 of {answers} clips")
    assert f"{answers} label(s) on {answers} open clip(s) withdrawn from consensus" in reason
    entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "annotator.auto_pause",
                                                    AuditEntry.target_id == str(spammer.id)))
    assert entry.details["rule"] == "agreement" and entry.details["answers"] == answers
    assert entry.details["labels_withdrawn"] == answers
    votes = session.scalars(select(Judgement).where(Judgement.annotator_id == spammer.id)).all()
    assert len(votes) == answers and all(v.excluded for v in votes)
    touched = session.scalars(select(Clip).where(Clip.id.in_([v.clip_id for v in votes]))).all()
    assert {(c.status, c.stage) for c in touched} == {(ClipStatus.active, 1)}
    assert work.next_item(session, project, spammer, now=T0) is None


def test_an_annotator_who_mostly_agrees_is_not_paused(session: Session) -> None:
    """Wrong on four of ten clear clips (60 % agreement, above the floor 0.5): never paused."""
    project, clips, truth = _world(session, 10)
    honest = make_annotator(session)
    wrong = set(sorted(truth)[:4])
    paused = _label_until_paused(session, project, honest,
                                 lambda clip_id: "Fear" if clip_id in wrong else truth[clip_id])
    assert paused == [False] * 10
    assert gold.consensus_answers(session, project, honest.id) == (6, 4)


def _split_world(session: Session) -> Project:
    """Six clips that five others label Fear, Fear, Fear, Neutral, Neutral: a lead of one, not clear.
    (The Neutral ones label first: later, against the three Fears, they would be wrong each time.)"""
    project = make_project(session, overlap_k=8, balance_attributes=[], gold_rate=0.0)
    make_clips(session, project, 6)
    for label in ("Neutral", "Neutral", "Fear", "Fear", "Fear"):
        person = make_annotator(session)
        while (item := work.next_item(session, project, person, now=T0)) is not None:
            _submit(session, project, person, item, label)
    return project


@pytest.mark.parametrize("label", ["Neutral", "Fear"])
def test_only_a_clear_consensus_of_the_others_counts(session: Session, label: str) -> None:
    """Clips where the others lead by one vote (3-2) are no evidence either way, and the annotator's
    own vote never joins the consensus it is scored against: "Neutral" on each is no wrong answer
    (nobody is paused), "Fear" no right one (with their own vote Fear would lead 4-2)."""
    project = _split_world(session)
    person = make_annotator(session)
    assert _label_until_paused(session, project, person, lambda clip_id: label) == [False] * 6
    assert gold.consensus_answers(session, project, person.id) == (0, 0)


def test_gold_clips_and_a_floor_of_zero_are_left_out(session: Session) -> None:
    """Hidden gold answers are not pseudo-gold (gold has its own test), and a quality floor of 0
    pauses nobody by agreement either."""
    project, clips, truth = _world(session, 6, quality_floor=0.0)
    assert gold.agreement_test(project) is None
    spammer = make_annotator(session)
    assert _label_until_paused(session, project, spammer, lambda clip_id: "Fear") == [False] * 6
    assert gold.consensus_answers(session, project, spammer.id) == (0, 6)

    with_gold = make_project(session, overlap_k=1, gold_rate=1.0, balance_attributes=[])
    make_gold(session, with_gold, 2, label="Fear", purpose="hidden")
    make_clips(session, with_gold, 1)
    people = [make_annotator(session) for _ in range(4)]
    for person in people:
        for _ in range(2):  # both gold clips, each the others answer Fear
            item = work.next_item(session, with_gold, person, now=T0)
            assert item is not None and item.stage == 1
            _submit(session, with_gold, person, item, "Fear" if person is not people[0] else "Neutral")
    assert gold.consensus_answers(session, with_gold, people[0].id) == (0, 0)


def test_the_test_weighs_chance_against_the_floor() -> None:
    """Chance is 1 / labels; the good accuracy is the floor, but at least 0.2 above chance."""
    six = Project(quality_floor=0.5, quality_error_rate=0.1, labels=[Label(name=str(i)) for i in range(6)])
    test = gold.agreement_test(six)
    assert (test.poor_accuracy, test.good_accuracy, test.false_alarm, test.miss) == (1 / 6, 0.5, 0.1, 0.1)
    two = Project(quality_floor=0.5, quality_error_rate=0.05, labels=[Label(name=str(i)) for i in range(2)])
    assert (gold.agreement_test(two).poor_accuracy, gold.agreement_test(two).good_accuracy) == (0.5, 0.7)


def test_a_spammer_who_labels_first_is_caught_when_the_others_agree_later(session: Session) -> None:
    """A constant-label spammer who is always a clip's first label never meets a clear consensus
    at their own submission; the recount on a share of their submissions finds the clips the others
    agreed on since, and pauses them (the chance of no recount in the 34 submissions after the
    evidence suffices is 0.75**34, about 6e-5)."""
    project = make_project(session, overlap_k=5, balance_attributes=[], gold_rate=0.0)
    spammer = make_annotator(session)
    honest = [make_annotator(session) for _ in range(4)]
    for i in range(40):
        [clip] = make_clips(session, project, 1)
        item = work.next_item(session, project, spammer, now=T0)
        if item is None:
            break
        assert item.clip_id == clip.id
        _submit(session, project, spammer, item, "Fear")
        session.refresh(spammer)
        if spammer.paused:
            break
        for person in honest:
            item = work.next_item(session, project, person, now=T0)
            _submit(session, project, person, item, TRUTH[i % len(TRUTH)])
    assert spammer.paused and spammer.pause_reason.startswith("agreement with the other annotators 0%")
    entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "annotator.auto_pause",
                                                    AuditEntry.target_id == str(spammer.id)))
    assert entry.details["rule"] == "agreement" and entry.details["answers"] >= 5
    # Paused on a clip nobody else had labelled yet: its own label was withdrawn, the clip is open.
    assert entry.details["labels_withdrawn"] == 1 and len(entry.details["open_clips_rechecked"]) == 1
