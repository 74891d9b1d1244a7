"""The sequential test on gold answers (services/sequential.py): verdicts, error rates, bad input."""

from __future__ import annotations

import doctest
import math

import pytest

from annotation_app.errors import InvalidInputError
from annotation_app.services import sequential
from annotation_app.services.sequential import SequentialTest, Verdict


def test_doctests() -> None:
    assert doctest.testmod(sequential).failed == 0


def test_verdicts_follow_wald_bounds_by_hand() -> None:
    # good 0.8, poor 0.3, both rates 0.05: a wrong answer adds log(0.7/0.2) = 1.253, a right one
    # log(0.3/0.8) = -0.981; the bounds are +-log(19) = +-2.944.
    test = SequentialTest(good_accuracy=0.8, poor_accuracy=0.3, false_alarm=0.05, miss=0.05)
    assert test.log_likelihood_ratio(1, 2) == pytest.approx(math.log(0.375) + 2 * math.log(3.5))
    assert test.decide(0, 2) is Verdict.continue_  # 2.506 < 2.944
    assert test.decide(0, 3) is Verdict.reject  # 3.758
    assert test.decide(1, 4) is Verdict.reject  # 4.030
    assert test.decide(1, 3) is Verdict.continue_  # 2.777
    assert test.decide(3, 0) is Verdict.continue_  # -2.942, a hair inside the bound
    assert test.decide(4, 0) is Verdict.accept
    assert test.decide(5, 1) is Verdict.accept  # -3.651
    assert test.decide(0, 0) is Verdict.continue_


def test_final_never_continues_and_favours_the_likelier_accuracy() -> None:
    test = SequentialTest(good_accuracy=0.8, poor_accuracy=0.3)
    for right in range(8):
        for wrong in range(8):
            verdict = test.decide(right, wrong, final=True)
            assert verdict is not Verdict.continue_
            llr = test.log_likelihood_ratio(right, wrong)
            assert verdict is (Verdict.reject if llr > 0 else Verdict.accept)
    assert test.decide(0, 0, final=True) is Verdict.accept  # no evidence: nobody turned away


def test_fewest_answers_match_a_walk_over_counts() -> None:
    for good, poor, rate in ((0.8, 0.3, 0.05), (0.9, 1 / 6, 0.01), (0.7, 0.5, 0.1), (0.75, 0.2, 0.2)):
        test = SequentialTest(good_accuracy=good, poor_accuracy=poor, false_alarm=rate, miss=rate)
        first_reject = next(n for n in range(1, 500) if test.decide(0, n) is Verdict.reject)
        first_accept = next(n for n in range(1, 500) if test.decide(n, 0) is Verdict.accept)
        assert test.fewest_answers_to_reject() == first_reject
        assert test.fewest_answers_to_accept() == first_accept


def test_stricter_rates_ask_for_more_evidence() -> None:
    lax = SequentialTest(good_accuracy=0.8, poor_accuracy=1 / 6, false_alarm=0.1, miss=0.1)
    strict = SequentialTest(good_accuracy=0.8, poor_accuracy=1 / 6, false_alarm=0.001, miss=0.001)
    assert lax.fewest_answers_to_reject() < strict.fewest_answers_to_reject()
    assert lax.fewest_answers_to_accept() < strict.fewest_answers_to_accept()


def _operating_characteristic(test: SequentialTest, accuracy: float, horizon: int = 400) -> tuple[float, float]:
    """Exact P(reject), P(accept) for an annotator at ``accuracy`` within ``horizon`` answers.

    Dynamic programming over the still-undecided (right, wrong) counts: no sampling, no flakiness.
    """
    alive = {(0, 0): 1.0}
    rejected = accepted = 0.0
    for _ in range(horizon):
        nxt: dict[tuple[int, int], float] = {}
        for (right, wrong), mass in alive.items():
            for state, p in (((right + 1, wrong), accuracy), ((right, wrong + 1), 1 - accuracy)):
                verdict = test.decide(*state)
                if verdict is Verdict.reject:
                    rejected += mass * p
                elif verdict is Verdict.accept:
                    accepted += mass * p
                else:
                    nxt[state] = nxt.get(state, 0.0) + mass * p
        alive = nxt
    return rejected, accepted


@pytest.mark.parametrize(("good", "poor", "false_alarm", "miss"),
                         [(0.8, 0.3, 0.05, 0.05), (0.85, 1 / 6, 0.01, 0.1), (0.7, 0.4, 0.1, 0.02)])
def test_error_rates_stay_within_walds_guarantee(good: float, poor: float, false_alarm: float, miss: float) -> None:
    test = SequentialTest(good_accuracy=good, poor_accuracy=poor, false_alarm=false_alarm, miss=miss)
    rejected_good, accepted_good = _operating_characteristic(test, good)
    rejected_poor, accepted_poor = _operating_characteristic(test, poor)
    assert rejected_good + accepted_good == pytest.approx(1, abs=1e-9)  # the test ends
    # Wald: alpha' <= alpha / (1 - beta), beta' <= beta / (1 - alpha), and alpha' + beta' <= alpha + beta.
    assert rejected_good <= false_alarm / (1 - miss)
    assert accepted_poor <= miss / (1 - false_alarm)
    assert rejected_good + accepted_poor <= false_alarm + miss + 1e-12
    # ...and it is a real test, not one that just never rejects.
    assert rejected_poor > 1 - miss / (1 - false_alarm) - 1e-9


@pytest.mark.parametrize("kwargs", [
    {"good_accuracy": 0.3, "poor_accuracy": 0.8},
    {"good_accuracy": 1.0, "poor_accuracy": 0.3},
    {"good_accuracy": 0.8, "poor_accuracy": 0.0},
    {"good_accuracy": 0.8, "poor_accuracy": 0.8},
    {"good_accuracy": 0.8, "poor_accuracy": 0.3, "false_alarm": 0},
    {"good_accuracy": 0.8, "poor_accuracy": 0.3, "miss": 0.5},
    {"good_accuracy": float("nan"), "poor_accuracy": 0.3},
    {"good_accuracy": "0.8", "poor_accuracy": 0.3},
])
def test_impossible_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(InvalidInputError):
        SequentialTest(**kwargs)


@pytest.mark.parametrize(("right", "wrong"), [(-1, 0), (0, 1.5), (True, 0)])
def test_counts_must_be_counts(right: object, wrong: object) -> None:
    with pytest.raises(InvalidInputError, match="count"):
        SequentialTest(good_accuracy=0.8, poor_accuracy=0.3).decide(right, wrong)  # type: ignore[arg-type]
