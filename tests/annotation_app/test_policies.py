"""The labelling policies (``stages``: staged, fixed, adaptive), on SQLite and PostgreSQL (#15)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import InvalidInputError
from annotation_app.models import AuditEntry, ClipStatus
from annotation_app.services import projects, work
from tests.annotation_app.factories import make_annotators, make_clips, make_project, unique

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _serve(session: Session, project, annotator):  # noqa: ANN001, ANN202
    return work.next_item(session, project, annotator, now=T0)


def _give(session: Session, project, annotator, label: str):  # noqa: ANN001, ANN202
    item = _serve(session, project, annotator)
    assert item is not None, f"{annotator.username} got no work"
    work.submit(session, project, annotator, assignment_id=item.assignment_id, label=label,
                client_request_id=unique("req"), now=T0)
    return item


def _adaptive(session: Session, **settings):  # noqa: ANN003, ANN202
    project = make_project(session, policy="adaptive", k_min=3, margin=2.0, k_max=5, balance_attributes=[],
                           **settings)
    clip = make_clips(session, project, 1)[0]
    return project, clip, make_annotators(session, 8)


def test_adaptive_resolves_as_soon_as_the_top_label_leads_by_the_margin(session: Session) -> None:
    project, clip, people = _adaptive(session)
    for person, label in zip(people, ["Fear", "Fear", "Neutral", "Fear"], strict=False):
        _give(session, project, person, label)
    session.refresh(clip)
    assert clip.status == ClipStatus.resolved and clip.final_label.name == "Fear"
    assert clip.resolution_confidence == pytest.approx(0.75)
    assert _serve(session, project, people[4]) is None  # decided at 4: no fifth slot


def test_adaptive_asks_for_one_more_slot_at_a_time(session: Session) -> None:
    project, clip, people = _adaptive(session)
    for person, label in zip(people, ["Fear", "Neutral", "Sadness"], strict=False):
        _give(session, project, person, label)
    first = _serve(session, project, people[3])
    assert first is not None and first.clip_id == clip.id
    # The fourth slot is out: the rule may not need a fifth, so nobody else gets the clip meanwhile.
    assert _serve(session, project, people[4]) is None


def test_adaptive_never_breaks_a_tie_and_sends_it_to_the_expert_at_k_max(session: Session) -> None:
    project, clip, people = _adaptive(session)
    for person, label in zip(people, ["Fear", "Neutral", "Fear", "Neutral", "Sadness"], strict=False):
        _give(session, project, person, label)
    session.refresh(clip)
    assert clip.status == ClipStatus.expert and clip.final_label_id is None


def test_fixed_has_no_stage_two(session: Session) -> None:
    project = make_project(session, policy="fixed", overlap_k=3, stage2_extra=3, balance_attributes=[])
    clip = make_clips(session, project, 1)[0]
    people = make_annotators(session, 4)
    for person, label in zip(people, ["Fear", "Neutral", "Sadness"], strict=False):
        _give(session, project, person, label)
    session.refresh(clip)
    assert clip.status == ClipStatus.expert


def test_a_policy_change_applies_to_undecided_clips_and_is_audited(session: Session) -> None:
    project = make_project(session, overlap_k=5, stage2_extra=3, balance_attributes=[])
    clip = make_clips(session, project, 1)[0]
    people = make_annotators(session, 6)
    for person, label in zip(people, ["Fear", "Fear", "Fear", "Neutral"], strict=False):
        _give(session, project, person, label)
    session.refresh(clip)
    assert clip.status == ClipStatus.active  # staged: waits for its fifth
    projects.update_settings(session, project, policy="adaptive", k_min=3, margin=2.0, k_max=8)
    session.refresh(clip)
    assert clip.status == ClipStatus.resolved and clip.final_label.name == "Fear"  # 3 to 1: decided now
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "project.settings",
                                                   AuditEntry.project_id == project.id)).one()
    assert entry.details["before"]["policy"] == "staged" and entry.details["after"]["policy"] == "adaptive"


def test_bad_policy_settings_are_refused_and_change_nothing(session: Session) -> None:
    project = make_project(session)
    with pytest.raises(InvalidInputError, match="policy"):
        projects.update_settings(session, project, policy="greedy")
    with pytest.raises(InvalidInputError, match="k_max"):
        projects.update_settings(session, project, policy="adaptive", k_min=5, k_max=4)
    with pytest.raises(InvalidInputError, match="weighting"):
        projects.update_settings(session, project, weighting="median")
    session.refresh(project)
    assert (project.policy, project.k_min, project.k_max, project.weighting) == ("staged", 3, 8, "none")
