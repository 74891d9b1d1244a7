"""A sequential test on gold answers: decide "good" or "poor" as soon as the answers say so.

Wald's sequential probability ratio test (SPRT) between two accuracies, from counts of right and
wrong answers. A fixed number of answers (the old quality floor waited for 5) wastes evidence both
ways: three wrong answers out of three already say "spammer" strongly, while an annotator at 50 %
needs many answers before anyone should pause them. The test reads, after every answer,

    llr = right * log(poor / good) + wrong * log((1 - poor) / (1 - good))

(the log-likelihood ratio of "accuracy is ``poor_accuracy``" over "accuracy is ``good_accuracy``")
and stops at Wald's bounds:

- ``llr >= log((1 - miss) / false_alarm)``  → ``reject``: the annotator is poor;
- ``llr <= log(miss / (1 - false_alarm))``  → ``accept``: the annotator is good;
- otherwise ``continue``: ask for more answers.

``false_alarm`` is the chance of rejecting an annotator whose accuracy is ``good_accuracy``;
``miss`` the chance of accepting one at ``poor_accuracy``. Smaller rates ask for stronger evidence,
hence more answers. Wald's bounds keep both error rates at most about these values.

A round with a fixed end (a qualification round of N clips) calls :meth:`SequentialTest.decide`
with ``final=True`` on the last answer: the test then says which of the two accuracies the answers
favour (ties go to ``accept``: no one is turned away without evidence against them).

>>> test = SequentialTest(good_accuracy=0.8, poor_accuracy=0.3, false_alarm=0.05, miss=0.05)
>>> [test.decide(right=0, wrong=3), test.decide(right=5, wrong=1), test.decide(right=2, wrong=2)]
[<Verdict.reject: 'reject'>, <Verdict.accept: 'accept'>, <Verdict.continue_: 'continue'>]
>>> test.fewest_answers_to_reject(), test.fewest_answers_to_accept()
(3, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from annotation_app.errors import InvalidInputError

__all__ = ["SequentialTest", "Verdict"]


class Verdict(StrEnum):
    accept = "accept"
    reject = "reject"
    continue_ = "continue"


@dataclass(frozen=True)
class SequentialTest:
    """Wald's SPRT of ``good_accuracy`` against ``poor_accuracy`` (both strictly between 0 and 1)."""

    good_accuracy: float
    poor_accuracy: float
    false_alarm: float = 0.05
    miss: float = 0.05

    def __post_init__(self) -> None:
        for name in ("good_accuracy", "poor_accuracy", "false_alarm", "miss"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidInputError(f"{name} must be a number, not {value!r}")
        if not 0 < self.poor_accuracy < self.good_accuracy < 1:
            raise InvalidInputError(
                "the sequential test needs 0 < poor_accuracy < good_accuracy < 1, got "
                f"poor_accuracy={self.poor_accuracy}, good_accuracy={self.good_accuracy}")
        for name in ("false_alarm", "miss"):
            if not 0 < getattr(self, name) < 0.5:
                raise InvalidInputError(f"{name} must be above 0 and below 0.5, not {getattr(self, name)}")

    @property
    def _step_right(self) -> float:
        return math.log(self.poor_accuracy / self.good_accuracy)  # < 0: a right answer speaks for "good"

    @property
    def _step_wrong(self) -> float:
        return math.log((1 - self.poor_accuracy) / (1 - self.good_accuracy))  # > 0

    @property
    def reject_bound(self) -> float:
        return math.log((1 - self.miss) / self.false_alarm)

    @property
    def accept_bound(self) -> float:
        return math.log(self.miss / (1 - self.false_alarm))

    def log_likelihood_ratio(self, right: int, wrong: int) -> float:
        """log P(answers | poor) - log P(answers | good)."""
        for name, count in (("right", right), ("wrong", wrong)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise InvalidInputError(f"{name} must be a count (an integer >= 0), not {count!r}")
        return right * self._step_right + wrong * self._step_wrong

    def decide(self, right: int, wrong: int, *, final: bool = False) -> Verdict:
        """The verdict after ``right`` right and ``wrong`` wrong answers.

        ``final=True``: no more answers will come, so never ``continue``; the answers' likelihood
        ratio picks the hypothesis they favour.
        """
        llr = self.log_likelihood_ratio(right, wrong)
        # A hair of tolerance: k wrong answers landing exactly on the bound must reject.
        if llr >= self.reject_bound - 1e-12:
            return Verdict.reject
        if llr <= self.accept_bound + 1e-12:
            return Verdict.accept
        if final:
            return Verdict.reject if llr > 0 else Verdict.accept
        return Verdict.continue_

    def fewest_answers_to_reject(self) -> int:
        """How many answers, all wrong, the test needs before it can reject."""
        return max(1, math.ceil(self.reject_bound / self._step_wrong - 1e-9))

    def fewest_answers_to_accept(self) -> int:
        """How many answers, all right, the test needs before it can accept."""
        return max(1, math.ceil(self.accept_bound / self._step_right - 1e-9))
