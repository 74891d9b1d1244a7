"""Label aggregation: from many judgements per clip to one label, its confidence, and how it was reached.

Aggregators follow Toloka crowd-kit's shape: hyper-parameters are constructor fields, learned state
ends in ``_``, ``fit(df)`` returns ``self``, ``fit_predict(df)`` gives a label per clip and
``fit_predict_proba(df)`` a clips × labels table. Unlike crowd-kit, ties are reported (label
``None``), never broken silently, unless ``on_tie="first"`` asks for the first tied label in
label-set order. That is *not* crowd-kit's rule: crowd-kit 1.4.2 takes ``idxmax`` over columns in
the order its ``value_counts()`` first lists each label (largest single clip-and-label count
first), so on tied clips the two can pick different labels (4 of s_face's tasks, 32 of s_dog's);
off ties they agree.

>>> import pandas as pd
>>> df = pd.DataFrame({"clip_id": ["c1"] * 3 + ["c2"] * 2, "annotator_id": ["a", "b", "c", "a", "b"],
...                    "label": ["Fear", "Fear", "Neutral", "Fear", "Neutral"]})
>>> MajorityVote().fit_predict(df).to_dict()
{'c1': 'Fear', 'c2': None}
>>> consensus(["Fear", "Fear", "Fear", "Neutral", "Sadness"])
Consensus(label='Fear', share=0.6, counts={'Fear': 3.0, 'Neutral': 1.0, 'Sadness': 1.0}, is_tie=False, resolved=True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from curation.errors import CurationError, InsufficientDataError, InvalidTableError
from curation.judgements import (
    JudgementCodes,
    LabelsArg,
    _require_labelled,
    encode_judgements,
    validate_judgements,
)

__all__ = [
    "Consensus",
    "consensus",
    "resolve",
    "RESOLVED_BY",
    "EXPERT_ROLES",
    "agreement_patterns",
    "keep_decisions",
    "pattern_sort_key",
    "MajorityVote",
    "DawidSkene",
    "WeightedVote",
    "METHODS",
]

OnTie = Literal["report", "first"]
ExpertRole = Literal["override", "source"]
EXPERT_ROLES: tuple[str, ...] = ("override", "source")
RESOLVED_BY = ("unanimous", "consensus", "adjudicated", "tie", "below-threshold", "below-margin")
METHODS = ("majority", "dawid-skene", "weighted")
EXPERT_STAGE = 3

# Shares are sums of float weights: compare with a little slack so 3 of 5 is "0.6" whatever the
# order of additions.
_SLACK = 1e-9
# crowd-kit clips probabilities at 1e-10 before taking logs; we do the same to match its numbers.
_EPS = 1e-10
_LN2 = math.log(2.0)


def _check_threshold(threshold: float) -> None:
    if not (0.0 < threshold <= 1.0) or math.isnan(threshold):
        raise CurationError(f"threshold must be in (0, 1], not {threshold}")


def _check_on_tie(on_tie: str) -> None:
    if on_tie not in ("report", "first"):
        raise CurationError(f"on_tie must be 'report' or 'first', not {on_tie!r}")


# --------------------------------------------------------------------------------------------------
# One clip: the stage machine's consensus check


@dataclass(frozen=True)
class Consensus:
    """The consensus on one clip: the top label (None on a tie), its share, the (weighted) counts."""

    label: str | None
    share: float
    counts: dict[str, float] = field(default_factory=dict)
    is_tie: bool = False
    resolved: bool = False


def consensus(
    labels: Sequence[str | None],
    *,
    weights: Sequence[float] | None = None,
    threshold: float = 0.6,
) -> Consensus:
    """Share of the top label among one clip's judgements; resolved iff share ≥ threshold and no tie.

    Empty / None labels ("can't judge") are skipped. ``weights`` (one per label, e.g. annotator
    reliability) turn counts into sums of weights.

    >>> consensus(["Fear", "Neutral"]).is_tie, consensus(["Fear", "Neutral"]).label
    (True, None)
    >>> consensus(["Fear", "Neutral", "Neutral"], weights=[3.0, 1.0, 1.0]).label
    'Fear'
    """
    _check_threshold(threshold)
    labels = list(labels)
    if weights is None:
        weight_list = [1.0] * len(labels)
    else:
        weight_list = [float(w) for w in weights]
        if len(weight_list) != len(labels):
            raise CurationError(f"consensus got {len(labels)} labels but {len(weight_list)} weights")
        if any(not math.isfinite(w) or w < 0 for w in weight_list):
            raise CurationError("consensus weights must be finite and ≥ 0")
    counts: dict[str, float] = {}
    for label, weight in zip(labels, weight_list, strict=True):
        if label is None or (isinstance(label, float) and math.isnan(label)) or str(label).strip() == "":
            continue
        counts[str(label)] = counts.get(str(label), 0.0) + weight
    total = sum(counts.values())
    if not counts:
        raise InsufficientDataError("consensus needs at least one label; got none")
    if total <= 0:
        raise InsufficientDataError("consensus weights of the labels sum to zero")
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    top = next(iter(ordered.values()))
    leaders = [name for name, c in ordered.items() if c >= top - _SLACK * max(1.0, top)]
    share = top / total
    is_tie = len(leaders) > 1
    return Consensus(
        label=None if is_tie else leaders[0],
        share=share,
        counts=ordered,
        is_tie=is_tie,
        resolved=(not is_tie) and share >= threshold - _SLACK,
    )


# --------------------------------------------------------------------------------------------------
# Aggregators


def _top_and_ties(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise argmax (first on ties), top value, and whether the top is shared. scores: (clips, labels)."""
    top_index = np.argmax(scores, axis=1)
    top = scores[np.arange(len(scores)), top_index]
    tol = _SLACK * np.maximum(1.0, np.abs(top))
    is_tie = ((scores >= (top - tol)[:, None]).sum(axis=1) > 1) & (top > 0)
    return top_index, top, is_tie


def _label_series(codes: JudgementCodes, top_index: np.ndarray, mask_none: np.ndarray) -> pd.Series:
    names = np.asarray(codes.labels, dtype=object)[top_index]
    names[mask_none] = None
    return pd.Series(names, index=codes.clips, name="label", dtype=object)


def _labelled_clips(codes: JudgementCodes) -> np.ndarray:
    """Boolean mask over codes.clips: clips with at least one labelled judgement."""
    return np.bincount(codes.clip[codes.label >= 0], minlength=len(codes.clips)) > 0


class _Aggregator:
    """Shared plumbing: encode the table, keep learned state, shape outputs like crowd-kit."""

    on_tie: OnTie
    probas_: pd.DataFrame
    labels_: pd.Series
    ties_: pd.Series

    def _encode(self, data: pd.DataFrame, labels: LabelsArg) -> JudgementCodes:
        codes = encode_judgements(data, labels=labels)
        if not (codes.label >= 0).any():
            raise InsufficientDataError(f"{type(self).__name__} needs at least one labelled judgement; the table has none")
        return codes

    def _finish(self, codes: JudgementCodes, probas: np.ndarray) -> None:
        keep = _labelled_clips(codes)
        top_index, _, is_tie = _top_and_ties(probas)
        frame = pd.DataFrame(probas, index=codes.clips, columns=pd.Index(codes.labels, name="label"))
        self.probas_ = frame[keep]
        self.ties_ = pd.Series(is_tie, index=codes.clips, name="is_tie")[keep]
        labels = _label_series(codes, top_index, is_tie if self.on_tie == "report" else np.zeros_like(is_tie))
        self.labels_ = labels[keep]

    def fit(self, data: pd.DataFrame, labels: LabelsArg = None) -> _Aggregator:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_predict(self, data: pd.DataFrame, labels: LabelsArg = None, *, on_tie: OnTie | None = None) -> pd.Series:
        """Fit and return the label per clip (index ``clip_id``; None where tied, unless ``on_tie="first"``)."""
        self.fit(data, labels)
        if on_tie is None or on_tie == self.on_tie:
            return self.labels_
        _check_on_tie(on_tie)
        if on_tie == "first":
            first = self.probas_.to_numpy().argmax(axis=1)
            return pd.Series(np.asarray(self.probas_.columns, dtype=object)[first], index=self.probas_.index, name="label")
        return self.labels_.where(~self.ties_, None)

    def fit_predict_proba(self, data: pd.DataFrame, labels: LabelsArg = None) -> pd.DataFrame:
        """Fit and return the clips × labels probability table (rows sum to 1)."""
        self.fit(data, labels)
        return self.probas_


@dataclass
class MajorityVote(_Aggregator):
    """Majority vote: the share of each label among a clip's judgements.

    ``on_tie="report"`` (default) gives label None on a tie; ``"first"`` takes the first tied label
    in label-set order (not crowd-kit's rule on ties: see the module docstring). ``ties_`` marks
    tied clips either way.
    """

    on_tie: OnTie = "report"

    def __post_init__(self) -> None:
        _check_on_tie(self.on_tie)

    def fit(self, data: pd.DataFrame, labels: LabelsArg = None, *, weights: pd.Series | None = None) -> MajorityVote:
        codes = self._encode(data, labels)
        judgement_weights = None
        if weights is not None:
            judgement_weights = weights.reindex(codes.annotators).to_numpy(dtype=float)[codes.annotator]
            if np.isnan(judgement_weights).any():
                missing = list(codes.annotators[np.isnan(weights.reindex(codes.annotators).to_numpy(dtype=float))])
                raise CurationError(f"no weight for annotator(s) {missing[:5]}")
        counts = codes.counts(weights=judgement_weights)
        totals = counts.sum(axis=1, keepdims=True)
        probas = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        self.counts_ = pd.DataFrame(counts, index=codes.clips, columns=pd.Index(codes.labels, name="label"))
        self._finish(codes, probas)
        self.counts_ = self.counts_.loc[self.probas_.index]
        return self


def _annotator_accuracy(codes: JudgementCodes, clip_labels: np.ndarray) -> np.ndarray:
    """Share of each annotator's judgements that match ``clip_labels`` (-1 = skip that clip)."""
    reference = clip_labels[codes.clip]
    use = (codes.label >= 0) & (reference >= 0)
    hits = np.bincount(codes.annotator[use], weights=(codes.label[use] == reference[use]).astype(float), minlength=len(codes.annotators))
    seen = np.bincount(codes.annotator[use], minlength=len(codes.annotators))
    return np.divide(hits, seen, out=np.full(len(hits), np.nan), where=seen > 0)


@dataclass
class WeightedVote(_Aggregator):
    """Reliability-weighted vote: each judgement counts with its annotator's skill.

    Skills come from ``fit(df, skills=...)`` (a Series indexed by annotator_id, e.g. gold accuracy);
    otherwise each annotator's agreement with the majority vote on untied clips (crowd-kit's Wawa).
    Annotators without a skill get ``default_skill`` (None: the median of the known skills).
    """

    on_tie: OnTie = "report"
    default_skill: float | None = None

    def __post_init__(self) -> None:
        _check_on_tie(self.on_tie)

    def fit(self, data: pd.DataFrame, labels: LabelsArg = None, *, skills: pd.Series | None = None) -> WeightedVote:
        codes = self._encode(data, labels)
        if skills is None:
            counts = codes.counts()
            top_index, _, is_tie = _top_and_ties(counts)
            skill = _annotator_accuracy(codes, np.where(is_tie | (counts.sum(axis=1) == 0), -1, top_index))
        else:
            skill = skills.reindex(codes.annotators).to_numpy(dtype=float)
            if (skill[~np.isnan(skill)] < 0).any():
                raise CurationError("annotator skills must be ≥ 0")
        known = skill[~np.isnan(skill)]
        fallback = self.default_skill if self.default_skill is not None else (float(np.median(known)) if len(known) else 1.0)
        skill = np.where(np.isnan(skill), fallback, skill)
        self.skills_ = pd.Series(skill, index=codes.annotators, name="skill")
        counts = codes.counts(weights=skill[codes.annotator])
        totals = counts.sum(axis=1, keepdims=True)
        probas = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        self.counts_ = pd.DataFrame(counts, index=codes.clips, columns=pd.Index(codes.labels, name="label"))
        self._finish(codes, probas)
        self.counts_ = self.counts_.loc[self.probas_.index]
        return self


@dataclass
class DawidSkene(_Aggregator):
    """Dawid & Skene (1979): EM over per-annotator confusion matrices; a posterior per clip.

    Follows crowd-kit 1.4's ``DawidSkene`` step for step (majority-vote initialisation, priors = mean
    posterior, error matrices normalised per true label and clipped at 1e-10, stop when the ELBO per
    judgement gains less than ``tol`` or after ``n_iter`` steps), so labels agree with crowd-kit's;
    vectorised with a sparse clips × (annotator, label) matrix, so millions of judgements take seconds.

    Learned state: ``probas_`` (clips × labels posterior), ``labels_``, ``priors_`` (per true label),
    ``errors_`` (annotators × observed × true, ``errors_[a, k, c] = P(a says k | truth c)``; zero
    for labels nobody used),
    ``loss_history_``, ``n_iter_``.
    """

    n_iter: int = 100
    tol: float = 1e-5
    on_tie: OnTie = "report"

    def __post_init__(self) -> None:
        _check_on_tie(self.on_tie)
        if self.n_iter < 0:
            raise CurationError(f"n_iter must be ≥ 0, not {self.n_iter}")

    def fit(self, data: pd.DataFrame, labels: LabelsArg = None) -> DawidSkene:
        codes = self._encode(data, labels)
        use = codes.label >= 0
        clip = codes.clip[use]
        # EM runs over the labels that occur (as crowd-kit's does): a label nobody used gets
        # probability 0 rather than a prior that EM would slowly inflate.
        present = np.flatnonzero(np.bincount(codes.label[use], minlength=codes.n_labels) > 0)
        to_present = np.full(codes.n_labels, -1, dtype=np.int64)
        to_present[present] = np.arange(len(present))
        said = to_present[codes.label[use]]
        n_clips, n_labels, n_annotators = len(codes.clips), len(present), len(codes.annotators)
        # Row j of `by_key` is clip j's count of each (annotator, observed label) pair:
        # (clips, annotators * labels), one nonzero per judgement.
        key = codes.annotator[use] * n_labels + said
        by_key = sparse.csr_matrix(
            (np.ones(len(key)), (clip, key)), shape=(n_clips, n_annotators * n_labels)
        )
        key_to_clip = by_key.T.tocsr()
        observed = np.bincount(key, minlength=n_annotators * n_labels).reshape(n_annotators, n_labels) > 0
        judgements_per_clip = np.asarray(by_key.sum(axis=1)).ravel()

        counts = codes.counts()[:, present]
        totals = counts.sum(axis=1, keepdims=True)
        probas = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)  # (clips, labels)
        labelled = totals.ravel() > 0
        n_labelled = int(labelled.sum())

        def m_step(probas: np.ndarray) -> np.ndarray:
            # errors[a, k, c] = Σ posterior of truth c over a's judgements that said k: (annotators, labels, labels)
            errors = np.asarray(key_to_clip @ probas).reshape(n_annotators, n_labels, n_labels)
            errors = np.where(observed[:, :, None], np.maximum(errors, _EPS), 0.0)
            return errors / errors.sum(axis=1, keepdims=True)

        def log_errors(errors: np.ndarray, log: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
            # Unobserved (annotator, label) rows are never looked up: 0 instead of -inf keeps the
            # sparse products finite.
            out = np.zeros_like(errors)
            np.copyto(out, log(np.where(errors > 0, errors, 1.0)), where=observed[:, :, None])
            return out.reshape(n_annotators * n_labels, n_labels)

        def clip_log2_likelihood(errors: np.ndarray) -> np.ndarray:
            # Σ over each clip's judgements of log2 P(said | truth c): (clips, labels). Used by the
            # ELBO after an M-step and by the next E-step, so one sparse product serves both.
            return by_key @ log_errors(errors, np.log2)

        def e_step(priors: np.ndarray, log2_likelihood: np.ndarray) -> np.ndarray:
            log_posterior = np.log2(np.maximum(priors, _EPS))[None, :] + log2_likelihood
            log_posterior -= log_posterior.max(axis=1, keepdims=True)
            scaled = np.exp2(log_posterior)
            return scaled / scaled.sum(axis=1, keepdims=True)

        def elbo(probas: np.ndarray, priors: np.ndarray, log2_likelihood: np.ndarray) -> float:
            # crowd-kit's loss: E_q[log p(judgements, truth)] with the prior counted once per
            # judgement, plus the entropy of q, per judgement (natural logs).
            expected = float((probas * log2_likelihood).sum()) * _LN2
            expected += float((judgements_per_clip @ probas) @ np.log(np.maximum(priors, _EPS)))
            clipped = np.maximum(probas[labelled], _EPS)
            entropy = -float((np.log(clipped) * clipped).sum())
            return (expected + entropy) / len(key)

        priors = probas[labelled].mean(axis=0)
        errors = m_step(probas)
        log2_likelihood = clip_log2_likelihood(errors)
        loss = -np.inf
        self.loss_history_: list[float] = []
        steps = 0
        for _ in range(self.n_iter):
            steps += 1
            probas = e_step(priors, log2_likelihood)
            probas[~labelled] = 0.0
            priors = probas[labelled].mean(axis=0)
            errors = m_step(probas)
            log2_likelihood = clip_log2_likelihood(errors)
            new_loss = elbo(probas, priors, log2_likelihood)
            self.loss_history_.append(new_loss)
            if new_loss - loss < self.tol:
                break
            loss = new_loss
        self.n_iter_ = steps
        full_priors = np.zeros(codes.n_labels)
        full_priors[present] = priors
        full_errors = np.zeros((n_annotators, codes.n_labels, codes.n_labels))
        full_errors[np.ix_(np.arange(n_annotators), present, present)] = errors
        full_probas = np.zeros((n_clips, codes.n_labels))
        full_probas[:, present] = probas
        self.priors_ = pd.Series(full_priors, index=pd.Index(codes.labels, name="label"), name="prior")
        self.errors_ = full_errors
        self.annotators_ = codes.annotators
        self.n_clips_ = n_labelled
        self._finish(codes, full_probas)
        return self

    def errors_frame(self) -> pd.DataFrame:
        """``errors_`` as crowd-kit's table: index (annotator_id, observed label), a column per true label."""
        n_annotators, n_labels, _ = self.errors_.shape
        labels = list(self.priors_.index)
        index = pd.MultiIndex.from_product([self.annotators_, labels], names=["annotator_id", "label"])
        return pd.DataFrame(self.errors_.reshape(n_annotators * n_labels, n_labels), index=index, columns=labels)


# --------------------------------------------------------------------------------------------------
# Per-clip resolution (the stage machine's decisions, recomputed from a judgements table)


def resolve(
    judgements: pd.DataFrame,
    *,
    threshold: float = 0.6,
    method: str = "majority",
    labels: LabelsArg = None,
    skills: pd.Series | None = None,
    expert: ExpertRole = "override",
    expert_weight: float = 1.0,
    include_gold: bool = False,
    margin: float | None = None,
) -> pd.DataFrame:
    """Resolve every clip of a judgements table: its label, confidence and how it was reached.

    Returns a table indexed by ``clip_id`` with ``label`` (None if unresolved), ``confidence`` (the
    crowd's share of the label — weighted for ``method="weighted"`` — or its Dawid–Skene posterior),
    ``n_judgements`` (labelled judgements, all stages, expert rows included),
    ``n_crowd_judgements`` (labelled stage-1/2 judgements: the crowd), ``resolving_stage`` (the
    highest crowd stage that resolved it; 3 for an expert's call; <NA> if unresolved),
    ``resolved_by`` (one of :data:`RESOLVED_BY`), ``is_resolved``, ``unanimous`` (≥ 2 crowd
    judgements, all alike) and ``agreement_pattern`` (one of :data:`AGREEMENT_PATTERNS`' kinds:
    ``"k/n"`` for a clip resolved at stage 1 by k of its n crowd labels, ``"stage 2"``,
    ``"expert"``, or ``"unresolved"``: where label noise sits).

    **Crowd and expert are kept apart.** The aggregators (weighted vote skills, Dawid–Skene's
    confusion matrices) are fitted on crowd judgements only (stages 1–2); a stage-3 judgement is
    an expert's final decision. With ``expert="override"`` (default) it wins (two experts who
    disagree make a "tie"), and the clip's ``confidence`` is the crowd's share (or posterior) of
    the expert's label, so an expert who overrules the crowd shows a low one (1.0 when no crowd
    label exists). With ``expert="source"`` the expert's label is one more vote of weight
    ``expert_weight`` added to the crowd's scores (counts, weighted counts or the posterior, which
    sums to 1), and the clip resolves by the usual check; "adjudicated" then means the expert's
    label won. Other clips are resolved on all their crowd judgements when the top share reaches
    ``threshold`` without a tie; their ``confidence`` is that top share even when unresolved.
    "Can't judge" rows (no label) count nowhere; a clip with only such rows is kept with
    ``n_judgements`` 0.

    **The adaptive policy's rule.** With ``margin`` (votes: counts for ``majority``, summed skills
    for ``weighted``) a clip resolves when its top label leads the next by at least ``margin``,
    as the stage machine's adaptive policy decides (``annotation_app.services.stages``), and
    ``threshold`` is not used: a 4-2-1 clip is resolved at margin 2 although its share is 0.57.
    Ties never resolve; an unresolved clip is ``"below-margin"``. Dawid–Skene posteriors are not
    votes, so ``margin`` does not go with it.

    **Gold clips are not dataset clips.** Rows with ``is_gold`` are left out unless
    ``include_gold=True``; the result then has an ``is_gold`` column flagging them.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"clip_id": ["c1", "c1", "c1", "c2", "c2"], "annotator_id": ["a", "b", "c", "a", "b"],
    ...                    "label": ["Fear", "Fear", "Fear", "Fear", "Neutral"]})
    >>> resolve(df)[["label", "resolved_by", "agreement_pattern"]].to_dict("index")
    {'c1': {'label': 'Fear', 'resolved_by': 'unanimous', 'agreement_pattern': '3/3'}, 'c2': {'label': None, 'resolved_by': 'tie', 'agreement_pattern': 'unresolved'}}
    >>> split = pd.DataFrame({"clip_id": ["c"] * 7, "annotator_id": list("abcdefg"),
    ...                       "label": ["Fear"] * 4 + ["Neutral"] * 2 + ["Sadness"]})
    >>> resolve(split)["resolved_by"].item(), resolve(split, margin=2)["label"].item()
    ('below-threshold', 'Fear')
    """
    _check_threshold(threshold)
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not (math.isfinite(margin) and margin > 0):
            raise CurationError(f"margin must be a number of votes above 0, not {margin!r}")
        if method == "dawid-skene":
            raise CurationError("margin counts votes: use it with majority or weighted, not dawid-skene")
    if method not in METHODS:
        raise CurationError(f"unknown aggregation method {method!r} (choose from {', '.join(METHODS)})")
    if expert not in EXPERT_ROLES:
        raise CurationError(f"expert must be one of {', '.join(EXPERT_ROLES)}, not {expert!r}")
    if isinstance(expert_weight, bool) or not isinstance(expert_weight, int | float) or not (
            math.isfinite(expert_weight) and expert_weight > 0):
        raise CurationError(f"expert_weight must be a number above 0, not {expert_weight!r}")
    table = validate_judgements(judgements, labels)
    gold_rows = table["is_gold"].to_numpy(dtype=bool)
    if not include_gold and gold_rows.any():
        table = table[~gold_rows]
    codes = encode_judgements(table)
    # An empty (or header-only) table has nothing to resolve; without this, the label set found in
    # it is empty and the arg-max below fails on zero columns.
    _require_labelled(codes, "resolving clips")
    n_clips, n_labels = len(codes.clips), codes.n_labels
    labelled = codes.label >= 0
    expert_rows = codes.stage >= EXPERT_STAGE
    crowd_rows = ~expert_rows

    crowd_counts = codes.counts(mask=crowd_rows)  # (clips, labels)
    n_judgements = codes.counts().sum(axis=1).astype(np.int64)
    n_crowd = crowd_counts.sum(axis=1).astype(np.int64)
    crowd_table = table[table["stage"].to_numpy() < EXPERT_STAGE]
    crowd_labelled = bool((labelled & crowd_rows).any())

    if method == "majority" or not crowd_labelled:
        crowd_scores = crowd_counts
    elif method == "weighted":
        model = WeightedVote().fit(crowd_table, skills=skills)
        # Experts who only adjudicate have no crowd skill; their rows are masked out anyway.
        weight = model.skills_.reindex(codes.annotators).fillna(0.0).to_numpy()[codes.annotator]
        crowd_scores = codes.counts(mask=crowd_rows, weights=weight)
    else:
        model = DawidSkene().fit(crowd_table)
        crowd_scores = model.probas_.reindex(codes.clips).fillna(0.0).to_numpy()

    # Expert calls: the (normally single) stage-3 label; several disagreeing experts are a tie.
    expert_counts = codes.counts(mask=expert_rows)
    has_expert = expert_counts.sum(axis=1) > 0
    expert_index, _, expert_tie = _top_and_ties(expert_counts)

    scores = crowd_scores + expert_weight * expert_counts if expert == "source" else crowd_scores
    totals = scores.sum(axis=1)
    share = np.divide(scores, totals[:, None], out=np.zeros_like(scores), where=totals[:, None] > 0)
    top_index, top_share, is_tie = _top_and_ties(share)
    if margin is None:
        vote_resolved = (~is_tie) & (top_share >= threshold - _SLACK) & (totals > 0)
    else:
        ranked = np.sort(scores, axis=1)
        lead = ranked[:, -1] - (ranked[:, -2] if n_labels > 1 else 0.0)
        vote_resolved = (~is_tie) & (lead >= margin - _SLACK) & (totals > 0)

    unanimous = (n_crowd >= 2) & ((crowd_counts > 0).sum(axis=1) == 1)
    max_stage = np.zeros(n_clips, dtype=np.int64)
    np.maximum.at(max_stage, codes.clip[labelled & crowd_rows], codes.stage[labelled & crowd_rows])

    if expert == "override":
        decides = has_expert  # the expert's decision is final
        label_index = np.where(decides, expert_index, top_index)
        is_resolved = np.where(decides, ~expert_tie, vote_resolved)
        crowd_totals = crowd_scores.sum(axis=1)
        crowd_share_of_expert = np.divide(
            crowd_scores[np.arange(n_clips), expert_index], crowd_totals,
            out=np.ones(n_clips), where=crowd_totals > 0)
        confidence = np.where(decides, crowd_share_of_expert, top_share)
        adjudicated = decides & ~expert_tie
    else:
        decides = np.zeros(n_clips, dtype=bool)
        label_index, is_resolved, confidence = top_index, vote_resolved, top_share
        adjudicated = has_expert & ~expert_tie & vote_resolved & (top_index == expert_index)
    resolved_by = np.full(n_clips, "below-threshold" if margin is None else "below-margin", dtype=object)
    resolved_by[~decides & is_tie] = "tie"
    resolved_by[~decides & vote_resolved] = "consensus"
    resolved_by[~decides & vote_resolved & unanimous] = "unanimous"
    resolved_by[adjudicated] = "adjudicated"
    resolved_by[decides & expert_tie] = "tie"
    stage = np.where(adjudicated, EXPERT_STAGE, max_stage)

    top_count = crowd_counts.max(axis=1) if n_labels else np.zeros(n_clips)
    pattern = np.full(n_clips, "unresolved", dtype=object)
    at_stage_one = is_resolved & ~adjudicated & (max_stage <= 1)
    pattern[at_stage_one] = [f"{int(k)}/{int(n)}" for k, n in zip(top_count[at_stage_one], n_crowd[at_stage_one], strict=True)]
    pattern[is_resolved & ~adjudicated & (max_stage >= 2)] = "stage 2"
    pattern[adjudicated] = "expert"

    names = np.asarray(codes.labels, dtype=object)[label_index] if n_labels else np.full(n_clips, None, dtype=object)
    names[~is_resolved] = None
    out = pd.DataFrame(
        {
            "label": pd.Series(names, index=codes.clips, dtype=object),
            "confidence": confidence.astype(float),
            "n_judgements": n_judgements,
            "n_crowd_judgements": n_crowd,
            "resolving_stage": pd.array(np.where(is_resolved, stage, 0), dtype="Int64"),
            "resolved_by": resolved_by,
            "is_resolved": is_resolved.astype(bool),
            "unanimous": unanimous.astype(bool),
            "agreement_pattern": pattern,
        },
        index=codes.clips,
    )
    out.loc[~is_resolved, "resolving_stage"] = pd.NA
    if include_gold:
        gold_clips = set(table.loc[table["is_gold"].to_numpy(dtype=bool), "clip_id"])
        out["is_gold"] = out.index.isin(list(gold_clips))
    out.attrs["method"] = method
    out.attrs["threshold"] = threshold
    out.attrs["margin"] = margin
    out.attrs["expert"] = expert
    out.attrs["labels"] = list(codes.labels)
    return out


def keep_decisions(
    resolution: pd.DataFrame, decisions: pd.DataFrame, judgements: pd.DataFrame
) -> tuple[pd.DataFrame, list[Any]]:
    """``resolution`` (from :func:`resolve`) with the crowd decisions a project already made where it
    reads otherwise; returns it and the ids of the clips changed.

    A weighted vote counted again with today's reliabilities is not the vote that decided a clip:
    reliability is measured as the work goes on, and a lead of 2 weighted votes early in a campaign
    is often short of 2 later (``annotation_app.services.tables.decision_rule``). The project's
    decision stands: ``decisions`` (``clip_id``, ``label``, ``resolving_stage`` 1 or 2,
    ``confidence``) sets the clip's label, ``resolved_by`` "consensus", its stage and confidence, and
    its ``agreement_pattern`` ("k/n" of its crowd labels at stage 1, "stage 2"); ``judgements`` (the
    table ``resolve`` read) gives k. An expert's decision needs none of this (``resolve`` takes it
    from the stage-3 judgement), nor a clip ``resolution`` does not hold.

    >>> votes = pd.DataFrame({"clip_id": [1, 1, 1, 2, 2, 2], "annotator_id": list("abcabc"),
    ...                       "label": ["F", "F", "N", "F", "F", "F"], "stage": [1] * 6})
    >>> decided = pd.DataFrame({"clip_id": [1, 2], "label": ["F", "F"], "resolving_stage": [1, 1],
    ...                         "confidence": [0.81, 1.0]})
    >>> kept, changed = keep_decisions(resolve(votes, margin=2), decided, votes)
    >>> changed, kept.loc[1, ["label", "resolved_by", "agreement_pattern"]].tolist(), float(kept.loc[1, "confidence"])
    ([1], ['F', 'consensus', '2/3'], 0.81)
    """
    out = resolution.copy()
    key = {str(cid): cid for cid in out.index}
    crowd = judgements[judgements["label"].notna()]
    if "stage" in crowd.columns:  # a table without stages is all crowd
        crowd = crowd[crowd["stage"].between(1, 2)]
    votes = crowd.groupby([crowd["clip_id"].astype(str), crowd["label"]]).size()
    changed: list[Any] = []
    for row in decisions.itertuples(index=False):
        cid = key.get(str(row.clip_id))
        if cid is None or pd.isna(row.label):
            continue
        if bool(out.at[cid, "is_resolved"]) and out.at[cid, "label"] == row.label:
            continue
        stage = int(row.resolving_stage)
        out.at[cid, "label"] = row.label
        out.at[cid, "is_resolved"] = True
        out.at[cid, "resolved_by"] = "consensus"
        out.at[cid, "resolving_stage"] = stage
        if not pd.isna(row.confidence):
            out.at[cid, "confidence"] = float(row.confidence)
        out.at[cid, "agreement_pattern"] = (
            f"{int(votes.get((str(cid), row.label), 0))}/{int(out.at[cid, 'n_crowd_judgements'])}"
            if stage == 1 else "stage 2")
        changed.append(cid)
    return out, changed


def agreement_patterns(resolution: pd.DataFrame, truth: Mapping[Any, str] | pd.Series | None = None) -> pd.DataFrame:
    """Resolved clips by agreement pattern ("3/5", "4/5", "5/5", "stage 2", "expert" …): counts,
    share, mean confidence and, given the true labels (``truth``: clip_id → label, e.g. gold or a
    simulation's), the accuracy of each kind, so a curator sees where label noise sits.

    Rows are ordered stage-1 patterns first (by n, then k), then stage 2, expert, unresolved.

    >>> import pandas as pd
    >>> r = resolve(pd.DataFrame({"clip_id": list("aaabbb"), "annotator_id": list("xyzxyz"),
    ...                           "label": ["F", "F", "F", "F", "F", "N"]}))
    >>> agreement_patterns(r)["clips"].to_dict()
    {'2/3': 1, '3/3': 1}
    """
    if "agreement_pattern" not in resolution.columns:
        raise InvalidTableError("the resolution table has no 'agreement_pattern' column (from curation.aggregation.resolve)")
    patterns = resolution["agreement_pattern"].astype(str)
    groups = sorted(patterns.unique(), key=pattern_sort_key)
    out = pd.DataFrame(index=pd.Index(groups, name="agreement_pattern"))
    out["clips"] = patterns.value_counts().reindex(groups).astype(np.int64)
    out["share"] = out["clips"] / max(len(resolution), 1)
    out["mean_confidence"] = pd.to_numeric(resolution["confidence"], errors="coerce").groupby(patterns).mean().reindex(groups)
    if truth is not None:
        known = pd.Series(truth, dtype=object)
        known.index = known.index.astype(str)
        true_label = pd.Series(resolution.index.astype(str), index=resolution.index).map(known)
        right = (resolution["label"].astype(object) == true_label) & true_label.notna() & resolution["label"].notna()
        n_known = (true_label.notna() & resolution["label"].notna()).groupby(patterns).sum()
        out["n_with_truth"] = n_known.reindex(groups).fillna(0).astype(np.int64)
        out["accuracy"] = (right.groupby(patterns).sum().reindex(groups) / out["n_with_truth"].where(out["n_with_truth"] > 0))
    return out


def pattern_sort_key(pattern: str) -> tuple[int, int, int]:
    """Report order of agreement patterns: stage-1 "k/n" (by n, then k), "stage 2", "expert", the rest."""
    if "/" in pattern:
        k, n = pattern.split("/", 1)
        if k.isdigit() and n.isdigit():
            return (0, int(n), int(k))
    return ({"stage 2": 1, "expert": 2}.get(pattern, 3), 0, 0)
