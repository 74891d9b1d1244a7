"""bench/bench_policies.py drives the simulated crowd through the real services and counts what it says (#15)."""

from __future__ import annotations

from pathlib import Path

from bench._simulated_crowd import CrowdSpec
from bench.bench_policies import run_policy


def test_each_policy_spends_the_judgements_it_promises(tmp_path: Path) -> None:
    # Skilled enough that the qualification round leaves more people than k_max on every clip.
    spec = CrowdSpec(n_annotators=16, n_clips=20, n_gold=10, spammer_share=0.0, skill_low=0.8, skill_high=0.95, seed=3)
    fixed = run_policy("fixed-3", spec, tmp_path)
    # Fixed: every clip exactly k crowd judgements; the expert took the clips short of 0.6.
    assert fixed["judgements_per_clip"] == 3.0
    assert fixed["not_resolved"] == 0 and 0 <= fixed["expert_share"] <= 1
    adaptive = run_policy("adaptive", spec, tmp_path)
    assert 3.0 <= adaptive["judgements_per_clip"] <= 8.0
    # Every clip ended decided (by the crowd or the expert), and curate aggregate agreed with the
    # stage machine's labels on this crowd of honest annotators more often than chance.
    assert adaptive["not_resolved"] == 0
    assert adaptive["accuracy_aggregate"] > 0.5 and adaptive["accuracy_final_label"] > 0.5
    assert set(adaptive["balance"]) == {"clips", "over_ceiling", "legitimate", "violations"}
