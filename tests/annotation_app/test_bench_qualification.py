"""bench/bench_qualification.py: its exact pass rates are the hand-checkable ones, and its run
through the real services counts what happened (#15)."""

from __future__ import annotations

import math

from bench.bench_qualification import DEFAULT_RULE, RULES, round_outcome, simulate


def test_the_exact_rates_match_the_binomial_and_the_wald_bounds() -> None:
    before = RULES["fixed 10 at 0.7 (before)"]
    tail = sum(math.comb(10, k) * 0.6**k * 0.4 ** (10 - k) for k in range(7, 11))
    p, clips = round_outcome(0.6, before)
    assert math.isclose(p, tail, rel_tol=1e-12) and math.isclose(clips, 10.0)  # 0.382: 7 or more right of 10
    default = RULES[DEFAULT_RULE]
    # Always right: passes at the 4th clip (4 × log(0.3/0.6) = -2.77 <= -log 9); always wrong:
    # fails at the 4th (4 × log(0.7/0.4) = 2.24 >= log 9).
    assert round_outcome(1.0, default) == (1.0, 4.0)
    assert round_outcome(0.0, default) == (0.0, 4.0)
    p, clips = round_outcome(0.6, default)
    assert 0.9 <= p < 1 and 4 < clips < 20


def test_the_simulated_crowd_goes_through_the_real_rounds() -> None:
    run = simulate(DEFAULT_RULE, 8, 1)
    assert run["annotators"] == 8 and run["honest"] + run["spammers"] == 8
    assert 4 <= run["honest_first_round_clips"] <= 20  # a sequential round: between its bounds
    assert 0 <= run["honest_first_round_pass"] <= run["honest_pass_within_attempts"] <= 1
