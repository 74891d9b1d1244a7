"""The labelling policies (``stages``: staged, fixed, adaptive), on SQLite and PostgreSQL (#15)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import InvalidInputError
from annotation_app.models import AuditEntry, ClipStatus
from annotation_app.services import attention, projects, work
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


def test_a_stage_change_is_stamped_on_the_callers_clock(session: Session) -> None:
    """The balance wait counts from ``clips.updated_at`` against the request's ``now``: the stage
    machine stamps it with that clock, not the machine's (a simulated day had never waited)."""
    from annotation_app.models import Clip

    project = make_project(session, overlap_k=2, stage2_extra=2, balance_attributes=[])
    clip = make_clips(session, project, 1)[0]
    people = make_annotators(session, 2)
    for person, label in zip(people, ["Fear", "Neutral"], strict=True):
        _give(session, project, person, label)
    session.flush()
    row = session.execute(select(Clip.stage, Clip.updated_at).where(Clip.id == clip.id)).one()
    stamped = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    assert (row.stage, stamped) == (2, T0)


@pytest.mark.parametrize(("settings", "method", "rule", "weight"), [
    ({"policy": "adaptive", "margin": 3.0}, "majority", {"margin": 3.0}, None),
    ({"policy": "staged", "consensus_threshold": 0.7}, "majority", {"threshold": 0.7}, None),
    ({"policy": "adaptive", "weighting": "dawid-skene"}, "weighted", {"margin": 2.0}, "vote weights"),
    ({"policy": "fixed", "weighted_consensus": True}, "weighted", {"threshold": 0.6}, "reliability"),
])
def test_the_decision_rule_curate_aggregate_applies_is_the_projects(
    session: Session, settings: dict, method: str, rule: dict, weight: object,
) -> None:
    """``tables.decision_rule``: what ``curate aggregate`` resolves a project's database by (#15).
    Weighted: the weights the stage machine gives the votes (adaptive: ``vote_weights`` of the
    reliability under the project's weighting; a weighted consensus: the reliability itself)."""
    from annotation_app.services import quality, stages, tables

    project = make_project(session, balance_attributes=[], **settings)
    make_clips(session, project, 1)
    people = make_annotators(session, 3)
    for person in people:
        _give(session, project, person, "Fear")
    session.flush()
    got = tables.decision_rule(session, project.name)
    assert got["method"] == method and {k: got.get(k) for k in rule} == rule
    assert ("margin" in got) == (settings["policy"] == "adaptive")
    if weight is None:
        assert got["skills"] is None
    else:
        reliability = quality.reliability(session, project, [p.id for p in people])
        raw = [reliability[p.id] for p in people]
        expected = stages.vote_weights(project, raw) if weight == "vote weights" else raw
        assert expected != pytest.approx(raw) or weight == "reliability"  # the two readings differ here
        assert got["skills"].to_dict() == pytest.approx(dict(zip([p.id for p in people], expected, strict=True)))


def test_new_projects_are_adaptive_as_the_bench_chose(session: Session) -> None:
    """bench/bench_policies.py measured adaptive with Dawid-Skene weights against staged on the same
    crowds (#15): new projects get it; a project keeps the policy it was made with."""
    project = projects.create_project(session, unique("defaults"))
    session.flush()
    assert (project.policy, project.k_min, project.margin, project.k_max, project.weighting) == (
        "adaptive", 3, 2.0, 8, "dawid-skene")
    staged = projects.create_project(session, unique("staged"), policy="staged")
    session.flush()
    assert staged.policy == "staged"


def test_a_clip_everyone_had_is_named_until_a_lower_k_max_sends_it_to_the_expert(session: Session) -> None:
    """Three annotators, adaptive up to 8: a clip they split three ways asks for a fourth annotator
    nobody can be (nobody gets a clip twice). The curator is told which clip and what to do; a
    k_max of 3 applies the rules again and the clip goes to the expert."""
    project = make_project(session, policy="adaptive", k_min=3, margin=2.0, k_max=8, balance_attributes=[])
    [clip] = make_clips(session, project, 1)
    people = make_annotators(session, 3)
    for person, label in zip(people, ["Fear", "Neutral", "Sadness"], strict=True):
        _give(session, project, person, label)
    session.refresh(clip)
    assert clip.status == ClipStatus.active
    assert attention.clips_everyone_had(session, project) == [clip.id]
    [notice] = [n for n in attention.notices(session, project) if "everyone who labels" in n]
    assert f"1 open clip ({clip.id}) still needs an annotator" in notice and "lower k_max" in notice
    projects.update_settings(session, project, k_max=3)
    session.refresh(clip)
    assert clip.status == ClipStatus.expert
    assert attention.clips_everyone_had(session, project) == []
