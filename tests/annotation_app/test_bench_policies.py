"""bench/bench_policies.py drives the simulated crowd through the real services and counts what it says (#15)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from annotation_app.models import ClipStatus
from annotation_app.services import allocation, gold, work
from bench._simulated_crowd import CampaignResult, CrowdSpec, SimulatedPerson, balance_audit
from bench.bench_policies import policy_settings, run_policy, summarise
from curation.demo import SimulatedAnnotator
from tests.annotation_app.factories import make_annotator, make_clips, make_project, unique

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_each_policy_spends_the_judgements_it_promises(tmp_path: Path) -> None:
    # Skilled enough that the qualification round leaves more people than k_max on every clip.
    spec = CrowdSpec(n_annotators=16, n_clips=20, n_gold=10, spammer_share=0.0, skill_low=0.8, skill_high=0.95, seed=3)
    fixed = run_policy("fixed-3", spec, tmp_path)
    # Fixed: every clip exactly k crowd judgements; the expert took the clips short of 0.6.
    assert fixed["judgements_per_clip"] == 3.0
    assert fixed["not_resolved"] == 0 and 0 <= fixed["expert_share"] <= 1
    adaptive = run_policy("adaptive", spec, tmp_path)
    assert 3.0 <= adaptive["judgements_per_clip"] <= 8.0
    # Every clip ended decided (by the crowd or the expert), and curate aggregate, run as a curator
    # runs it (the project's own rule), gives every clip the label the stage machine gave it.
    assert adaptive["not_resolved"] == 0
    for row in (fixed, adaptive):
        assert row["aggregate_differs_from_final"] == 0
        assert row["accuracy_aggregate"] == row["accuracy_final_label"] > 0.5
    assert {"clips", "over_ceiling", "legitimate", "violations", "slots"} <= set(adaptive["balance"])


def test_adaptive_variants_are_named_settings() -> None:
    assert policy_settings("adaptive:margin=3,weighting=gold") == {
        "policy": "adaptive", "k_min": 3, "margin": 3.0, "k_max": 8, "weighting": "gold"}
    with pytest.raises(SystemExit, match="unknown adaptive setting"):
        policy_settings("adaptive:spread=2")


def test_balance_audit_tells_a_yielded_rule_from_a_broken_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nearly all women: clips end with more women than the ceiling, and with the real allocator
    every such slot was given when no man who never had the clip was free (legitimate). With a few
    more men, an allocator that ignores the balance rules gives such slots while men are free
    (violations)."""
    few_men = CrowdSpec(n_annotators=12, n_clips=12, n_gold=10, spammer_share=0.0, skill_low=0.85, skill_high=0.95,
                        female_share=0.92, seed=5)
    real = run_policy("fixed-5", few_men, tmp_path / "real")
    assert real["balance"]["violations"] == 0 and real["balance"]["slots"]["violations"] == 0
    assert real["balance"]["over_ceiling"] > 0 and real["balance"]["legitimate"] == real["balance"]["over_ceiling"]
    # Rules ignored when ranking and when re-checking under the clip lock (but no repeats, no overfill).
    monkeypatch.setattr(allocation, "refusal", lambda person, clip, *args: (
        "already assigned this clip" if person.id in clip.ever else
        "no open slot in this stage" if (clip.filled or 0) >= clip.needed else None))
    monkeypatch.setattr(allocation, "verdict", lambda *args: (allocation.refusal(*args), []))
    some_men = CrowdSpec(n_annotators=14, n_clips=12, n_gold=10, spammer_share=0.0, skill_low=0.85, skill_high=0.95,
                         female_share=0.7, seed=5)
    broken = run_policy("fixed-5", some_men, tmp_path / "broken")
    assert broken["balance"]["violations"] > 0 and broken["balance"]["slots"]["violations"] > 0
    assert "free and eligible" in broken["balance"]["examples"][0]["why"]


def test_an_open_clip_is_held_to_the_ceiling_of_the_slots_asked_not_filled(session) -> None:  # noqa: ANN001
    """A clip left with 4 of its 5 slots may hold 3 women (the ceiling of 5 is 3): not over the
    ceiling, though 3 > ⌈4/2⌉. (The last session's one "violation" on a small staged run was such
    a clip, open at the end of a campaign whose clock had left every clip short of its wait.)"""
    from datetime import UTC, datetime

    from annotation_app.services import work
    from bench._simulated_crowd import CampaignResult, SimulatedPerson, balance_audit
    from curation.demo import SimulatedAnnotator
    from tests.annotation_app.factories import make_annotator, make_clips, make_project, unique

    project = make_project(session, overlap_k=5, stage2_extra=0, policy="fixed", balance_attributes=["gender"])
    clip = make_clips(session, project, 1)[0]
    genders = ["female", "female", "female", "male"]
    people = [make_annotator(session, gender=g) for g in genders]
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for person in people:
        item = work.next_item(session, project, person, now=now)
        work.submit(session, project, person, assignment_id=item.assignment_id, label="Fear",
                    client_request_id=unique("r"), now=now)
    session.flush()
    crowd = {p.id: SimulatedPerson(SimulatedAnnotator(p.username, 0.9), g, "30-44", ("en",))
             for p, g in zip(people, genders, strict=True)}
    audit = balance_audit(session, CampaignResult(project.id, {clip.id: "Fear"}, crowd))
    assert (audit["clips"], audit["over_ceiling"], audit["violations"]) == (1, 0, 0)


def test_balance_audit_tells_a_withdrawal_from_a_violation(session: Session) -> None:
    """Adaptive (k_min 3, margin 2): woman A, man B, woman A, man B, woman A, each slot within the
    ceiling of the slots asked when it was given (2 of 3, 2 of 4, 3 of 5). The first man is paused
    and his label withdrawn: A, A, B, A leads by 2, so the clip is decided on four labels, three of
    them women's, over the ceiling of 4. No slot broke the rule: the audit says "after withdrawal",
    not "violation"."""
    project = make_project(session, policy="adaptive", k_min=3, margin=2.0, k_max=8, balance_attributes=["gender"])
    [clip] = make_clips(session, project, 1)
    genders = ["female", "male", "female", "male", "female"]
    people = [make_annotator(session, gender=g) for g in genders]
    for person, label in zip(people, ["Fear", "Neutral", "Fear", "Neutral", "Fear"], strict=True):
        item = work.next_item(session, project, person, now=T0)
        assert item is not None and item.clip_id == clip.id
        work.submit(session, project, person, assignment_id=item.assignment_id, label=label,
                    client_request_id=unique("req"), now=T0)
    session.refresh(clip)
    assert clip.status == ClipStatus.active  # 3-2: a sixth annotator is asked for
    gold.withdraw_from_open_clips(session, project, people[1].id, now=T0)
    session.refresh(clip)
    assert clip.status == ClipStatus.resolved
    result = CampaignResult(project.id, {clip.id: "Fear"}, {
        p.id: SimulatedPerson(SimulatedAnnotator(name=p.username, skill=0.9), gender=g, age_band="18-29",
                              languages=("en",)) for p, g in zip(people, genders, strict=True)})
    audit = balance_audit(session, result)
    assert (audit["over_ceiling"], audit["after_withdrawal"], audit["violations"], audit["unexplained"]) == (1, 1, 0, [])


def test_the_summary_compares_each_policy_with_staged_crowd_by_crowd() -> None:
    """Means and ranges over the seeds; against staged, the differences on the same crowds and the
    issue's target: within half a point with 15 % fewer judgements, or better at no more."""
    def row(policy: str, seed: int, accuracy: float, per_clip: float) -> dict:
        return {"policy": policy, "seed": seed, "accuracy_aggregate": accuracy, "judgements_per_clip": per_clip,
                "expert_share": 0.1, "balance": {"violations": 0}}
    rows = [row("staged", 0, 0.88, 5.0), row("staged", 1, 0.90, 5.4),
            row("adaptive", 0, 0.876, 4.2), row("adaptive", 1, 0.898, 4.5),  # -0.3 point, 16 % fewer
            row("fixed-5", 0, 0.86, 5.0), row("fixed-5", 1, 0.95, 5.4),  # +1.5 points at the same cost
            row("fixed-3", 0, 0.80, 3.0), row("fixed-3", 1, 0.82, 3.0)]  # 40 % fewer, 8 points worse
    rows += [row("adaptive:margin=3", 0, 0.878, 4.8), row("adaptive:margin=3", 1, 0.898, 5.1)]  # -0.2, 4.8 % fewer
    summary = {item["policy"]: item for item in summarise(rows)}
    assert summary["staged"]["seeds"] == [0, 1] and "vs_staged" not in summary["staged"]
    assert summary["staged"]["accuracy_aggregate"] == pytest.approx(0.89)
    assert summary["staged"]["accuracy_aggregate_range"] == [0.88, 0.90]
    adaptive = summary["adaptive"]["vs_staged"]
    assert adaptive["accuracy_points"] == pytest.approx([-0.004, -0.002])
    assert adaptive["mean_judgement_saving"] == pytest.approx((0.16 + 1 - 4.5 / 5.4) / 2)
    assert adaptive["target_met"] is True
    assert summary["fixed-5"]["vs_staged"]["target_met"] is True
    assert summary["fixed-3"]["vs_staged"]["target_met"] is False
    assert summary["adaptive:margin=3"]["vs_staged"]["target_met"] is False  # as accurate, too few saved
    # Its expert share is staged's (0.1 each): no cost of the expert's time makes up the crowd's.
    assert summary["adaptive:margin=3"]["vs_staged"]["expert_saving"] == 0.0
    assert summary["adaptive:margin=3"]["vs_staged"]["expert_cost_for_target"] is None
    assert summary["adaptive"]["vs_staged"]["expert_cost_for_target"] == 0.0


def test_doctests() -> None:
    import doctest

    import bench.bench_policies

    result = doctest.testmod(bench.bench_policies)
    assert result.attempted >= 2 and result.failed == 0
