"""Inter-annotator agreement on a judgements table: Krippendorff's α, Fleiss' κ, Cohen's κ and friends.

Everything is a plain function of a judgements table (see :mod:`curation.judgements`). Gold
judgements and "can't judge" rows are left out of agreement by default.

α is computed by the ``krippendorff`` package from a clips × labels matrix of value counts (never
the annotators × clips matrix, which is mostly empty and grows with the crowd), so it scales to
millions of judgements. Bootstrap intervals resample clips (seeded) and reuse the additivity of
Krippendorff's coincidence matrix over clips, so a thousand replicates cost a few matrix products.

>>> import pandas as pd
>>> df = pd.DataFrame({"clip_id": [1, 1, 2, 2, 3, 3], "annotator_id": ["a", "b"] * 3,
...                    "label": ["Fear", "Fear", "Calm", "Calm", "Fear", "Calm"]})
>>> round(krippendorff_alpha(df), 3)
0.444
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import krippendorff
import numpy as np
import pandas as pd

from curation.errors import CurationError, InsufficientDataError
from curation.judgements import JudgementCodes, LabelsArg, encode_judgements, validate_judgements

__all__ = [
    "LEVELS",
    "AlphaResult",
    "value_counts",
    "krippendorff_alpha",
    "alpha_with_ci",
    "alpha_by",
    "alpha_per_label",
    "fleiss_kappa",
    "fleiss_kappa_from_counts",
    "cohen_kappa",
    "pairwise_cohen_kappa",
    "annotator_agreement",
    "consensus_confusion",
    "gold_accuracy",
    "interpret_alpha",
    "agreement_report",
    "GROUP_COLUMNS",
]

Level = Literal["nominal", "ordinal", "interval", "ratio"]
LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval", "ratio")
# Above this many (clips × V²) cells the bootstrap builds each replicate's coincidences from the
# counts instead of keeping a per-clip matrix (160 MB at this size).
_PER_CLIP_LIMIT = 20_000_000
_EXPERT_STAGE = 3
# Annotator attributes the report breaks agreement down by when the table has them (DESIGN §3).
GROUP_COLUMNS: tuple[str, ...] = ("gender", "age_band", "region", "language", "background")


class _Undefined(InsufficientDataError):
    """An agreement coefficient that is undefined on this data (one label only, no overlap)."""


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise CurationError(f"unknown level of measurement {level!r} (choose from {', '.join(LEVELS)})")


def _agreement_rows(df: pd.DataFrame, labels: LabelsArg, include_gold: bool) -> pd.DataFrame:
    table = validate_judgements(df, labels)
    if not include_gold and table["is_gold"].any():
        table = table[~table["is_gold"].to_numpy()]
    return table


def _numeric_domain(names: Sequence[str]) -> np.ndarray:
    """Values of the labels for interval / ratio α: the names when all numeric, else their positions."""
    try:
        return np.asarray([float(n) for n in names])
    except ValueError:
        return np.arange(len(names), dtype=float)


def value_counts(
    df: pd.DataFrame, *, labels: LabelsArg = None, include_gold: bool = False
) -> tuple[np.ndarray, list[str], pd.Index]:
    """Clips × labels matrix of judgement counts (the input α needs), the label names and the clip ids.

    >>> import pandas as pd
    >>> counts, names, clips = value_counts(pd.DataFrame(
    ...     {"clip_id": [1, 1, 2], "annotator_id": ["a", "b", "a"], "label": ["x", "y", "y"]}))
    >>> counts.tolist(), names
    ([[1.0, 1.0], [0.0, 1.0]], ['x', 'y'])
    """
    codes = encode_judgements(_agreement_rows(df, labels, include_gold))
    return codes.counts(), codes.labels, codes.clips


@dataclass(frozen=True)
class AlphaResult:
    """α with its bootstrap interval (``low``/``high`` are None without one) and what it rests on."""

    alpha: float | None
    low: float | None = None
    high: float | None = None
    n_clips: int = 0
    n_judgements: int = 0
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pairable(counts: np.ndarray) -> np.ndarray:
    return counts[counts.sum(axis=1) >= 2]


def _alpha_from_counts(counts: np.ndarray, domain: np.ndarray, level: str) -> float:
    pairable = _pairable(counts)
    if len(pairable) == 0:
        raise _Undefined("α needs at least one clip judged by two or more annotators")
    used = pairable.sum(axis=0) > 0
    if used.sum() < 2:
        raise _Undefined("α is undefined: every pairable judgement has the same label")
    if level == "nominal":
        # Unused labels add nothing to a nominal α; dropping them keeps the package's (clips, V, V)
        # temporaries small.
        pairable, domain = pairable[:, used], domain[used]
    return float(krippendorff.alpha(value_counts=pairable, value_domain=domain, level_of_measurement=level))


def _distance_matrix(domain: np.ndarray, marginals: np.ndarray, level: str) -> np.ndarray:
    """Krippendorff's squared difference δ²(c, k) for each pair of values: (V, V)."""
    v1, v2 = domain[:, None], domain[None, :]
    if level == "nominal":
        return (v1 != v2).astype(float)
    if level == "interval":
        return (v1 - v2) ** 2
    if level == "ratio":
        total = v1 + v2
        return np.divide(v1 - v2, total, out=np.zeros((len(domain), len(domain))), where=total != 0) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(marginals)])
    i = np.arange(len(domain))
    lo, hi = np.minimum(i[:, None], i[None, :]), np.maximum(i[:, None], i[None, :])
    between = cumulative[hi + 1] - cumulative[lo]
    return (between - (marginals[:, None] + marginals[None, :]) / 2) ** 2


def _alpha_from_coincidences(o: np.ndarray, domain: np.ndarray, level: str) -> float:
    # o: (V, V) coincidence matrix; α = 1 - (n - 1) Σ o δ² / Σ n_c n_k δ² (Krippendorff 2011).
    marginals = o.sum(axis=0)
    n = marginals.sum()
    delta = _distance_matrix(domain, marginals, level)
    expected = (np.outer(marginals, marginals) * delta).sum()
    if expected <= 0:
        return math.nan
    return float(1.0 - (n - 1) * (o * delta).sum() / expected)


def _resample_weights(n_units: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Multiplicities of each clip in ``n_boot`` resamples with replacement, in (b, n_units) chunks."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 4_000_000 // max(n_units, 1)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n_units, size=(b, n_units))
        offsets = (np.arange(b, dtype=np.int64) * n_units)[:, None]
        yield np.bincount((draws + offsets).ravel(), minlength=b * n_units).reshape(b, n_units).astype(float)


def _bootstrap_alphas(
    counts: np.ndarray, domain: np.ndarray, level: str, n_boot: int, seed: int
) -> np.ndarray:
    """α on ``n_boot`` resamples of the clips (with replacement): (n_boot,), NaN where undefined.

    The coincidence matrix is a sum over clips, so a resample with multiplicities w is a weighted
    sum. For nominal, interval and ratio data δ² is fixed, so each clip reduces to its label counts
    plus one number (its observed disagreement Σ n_uc n_uk δ²_ck / (m_u - 1)) and a chunk of
    replicates costs one (b, clips) @ (clips, V + 1) product. Ordinal δ² depends on the resample's
    marginals, so there each replicate gets its full coincidence matrix.
    """
    pairable = _pairable(counts)
    n_units, n_values = pairable.shape
    scale = 1.0 / (pairable.sum(axis=1) - 1.0)
    alphas = np.empty(n_boot)
    done = 0
    if level != "ordinal":
        delta = _distance_matrix(domain, np.zeros(n_values), level)  # (V, V), independent of marginals
        disagreement = np.einsum("uc,ck,uk->u", pairable, delta, pairable) * scale  # diagonal δ² is 0
        features = np.concatenate([pairable, disagreement[:, None]], axis=1)  # (clips, V + 1)
        for weights in _resample_weights(n_units, n_boot, seed):
            summed = weights @ features  # (b, V + 1)
            marginals, observed = summed[:, :n_values], summed[:, n_values]
            n = marginals.sum(axis=1)
            expected = np.einsum("bc,ck,bk->b", marginals, delta, marginals)
            with np.errstate(divide="ignore", invalid="ignore"):
                alphas[done : done + len(weights)] = np.where(expected > 0, 1.0 - (n - 1) * observed / expected, np.nan)
            done += len(weights)
        return alphas
    per_clip = None
    if n_units * n_values * n_values <= _PER_CLIP_LIMIT:
        outer = pairable[:, :, None] * pairable[:, None, :]
        outer[:, np.arange(n_values), np.arange(n_values)] -= pairable
        per_clip = (outer * scale[:, None, None]).reshape(n_units, n_values * n_values)
    for weights in _resample_weights(n_units, n_boot, seed):
        b = len(weights)
        if per_clip is not None:
            coincidences = (weights @ per_clip).reshape(b, n_values, n_values)
        else:
            coincidences = np.empty((b, n_values, n_values))
            for r in range(b):
                s = weights[r] * scale
                coincidences[r] = (pairable * s[:, None]).T @ pairable - np.diag(s @ pairable)
        for r in range(b):
            alphas[done + r] = _alpha_from_coincidences(coincidences[r], domain, level)
        done += b
    return alphas


def _bootstrap_one_vs_rest(counts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Nominal α of every label against the rest on the same ``n_boot`` resamples: (n_boot, V).

    Equals :func:`_bootstrap_alphas` on each label's (label, rest) counts with the same seed, in one
    (b, clips) @ (clips, 2V + 1) product per chunk instead of V separate passes.
    """
    pairable = _pairable(counts)
    n_units, n_values = pairable.shape
    m = pairable.sum(axis=1)
    # Observed disagreement of label i vs rest on clip u: 2 x (m - x) / (m - 1).
    disagreement = 2.0 * pairable * (m[:, None] - pairable) / (m[:, None] - 1.0)
    features = np.concatenate([pairable, m[:, None], disagreement], axis=1)
    alphas = np.empty((n_boot, n_values))
    done = 0
    for weights in _resample_weights(n_units, n_boot, seed):
        summed = weights @ features  # (b, 2V + 1)
        label, total, observed = summed[:, :n_values], summed[:, n_values : n_values + 1], summed[:, n_values + 1 :]
        expected = 2.0 * label * (total - label)
        with np.errstate(divide="ignore", invalid="ignore"):
            alphas[done : done + len(weights)] = np.where(expected > 0, 1.0 - (total - 1) * observed / expected, np.nan)
        done += len(weights)
    return alphas


def _interval(boot: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    boot = boot[~np.isnan(boot)]
    if not len(boot):
        return None, None
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return float(low), float(high)


def _domain_for(names: Sequence[str], level: str) -> np.ndarray:
    return _numeric_domain(names) if level in ("interval", "ratio") else np.arange(len(names), dtype=float)


def krippendorff_alpha(
    df: pd.DataFrame, *, level: Level = "nominal", labels: LabelsArg = None, include_gold: bool = False
) -> float:
    """Krippendorff's α over all clips (nominal by default; ``ordinal`` follows label-set order,
    ``interval``/``ratio`` use the label names as numbers when they all are, else their positions).

    Raises :class:`InsufficientDataError` when α is undefined: no clip with two judgements, or a
    single label used throughout.
    """
    _check_level(level)
    counts, names, _ = value_counts(df, labels=labels, include_gold=include_gold)
    if len(names) < 2:
        raise _Undefined("α is undefined: the label set has a single label")
    return _alpha_from_counts(counts, _domain_for(names, level), level)


def _alpha_result(
    counts: np.ndarray, domain: np.ndarray, level: str, n_boot: int, confidence: float, seed: int
) -> AlphaResult:
    pairable = _pairable(counts)
    n_clips, n_judgements = len(pairable), int(pairable.sum())
    try:
        alpha = _alpha_from_counts(counts, domain, level)
    except _Undefined as exc:
        return AlphaResult(None, n_clips=n_clips, n_judgements=n_judgements, reason=str(exc))
    low, high = _interval(_bootstrap_alphas(counts, domain, level, n_boot, seed), confidence) if n_boot > 0 else (None, None)
    return AlphaResult(alpha, low, high, n_clips=n_clips, n_judgements=n_judgements)


def alpha_with_ci(
    df: pd.DataFrame,
    *,
    level: Level = "nominal",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    labels: LabelsArg = None,
    include_gold: bool = False,
) -> AlphaResult:
    """α with a percentile bootstrap interval over clips (seeded: the same seed gives the same interval).

    Undefined α gives ``AlphaResult(alpha=None, reason=...)`` rather than an error.
    """
    _check_level(level)
    if not 0 < confidence < 1:
        raise CurationError(f"confidence must be in (0, 1), not {confidence}")
    counts, names, _ = value_counts(df, labels=labels, include_gold=include_gold)
    if len(names) < 2:
        return AlphaResult(None, reason="α is undefined: the label set has a single label")
    return _alpha_result(counts, _domain_for(names, level), level, n_boot, confidence, seed)


def alpha_by(
    df: pd.DataFrame,
    by: str,
    *,
    level: Level = "nominal",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    labels: LabelsArg = None,
    include_gold: bool = False,
) -> dict[Hashable, AlphaResult]:
    """α (with interval) within each value of a column: ``by="stage"`` or an annotator attribute
    such as ``"gender"`` (then only judgements by annotators of that group count)."""
    table = _agreement_rows(df, labels, include_gold)
    if by not in table.columns:
        raise CurationError(f"judgements table has no column {by!r} to break agreement down by")
    out: dict[Hashable, AlphaResult] = {}
    for value, part in table.groupby(by, sort=True, observed=True):
        out[value] = alpha_with_ci(part, level=level, n_boot=n_boot, confidence=confidence, seed=seed, include_gold=True)
    return out


def alpha_per_label(
    df: pd.DataFrame,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    labels: LabelsArg = None,
    include_gold: bool = False,
) -> dict[str, AlphaResult]:
    """Nominal α of each label against the rest (one-vs-rest), with bootstrap intervals."""
    counts, names, _ = value_counts(df, labels=labels, include_gold=include_gold)
    totals = counts.sum(axis=1)
    out: dict[str, AlphaResult] = {}
    boot = _bootstrap_one_vs_rest(counts, n_boot, seed) if n_boot > 0 and len(_pairable(counts)) else None
    for i, name in enumerate(names):
        binary = np.stack([counts[:, i], totals - counts[:, i]], axis=1)
        result = _alpha_result(binary, np.arange(2.0), "nominal", 0, confidence, seed)
        if boot is not None and result.alpha is not None:
            low, high = _interval(boot[:, i], confidence)
            result = AlphaResult(result.alpha, low, high, result.n_clips, result.n_judgements)
        out[name] = result
    return out


def fleiss_kappa_from_counts(counts: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Fleiss' κ from a subjects × categories matrix of counts, the same number of raters per subject.

    >>> round(fleiss_kappa_from_counts([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
    ...     [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]), 3)
    0.21
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or len(table) == 0:
        raise InsufficientDataError("Fleiss' κ needs a non-empty subjects × categories table")
    raters = table.sum(axis=1)
    if raters.min() != raters.max():
        raise InsufficientDataError(
            f"Fleiss' κ needs the same number of judgements on every clip (found {int(raters.min())} to "
            f"{int(raters.max())}); use Krippendorff's α instead"
        )
    m = raters[0]
    if m < 2:
        raise InsufficientDataError("Fleiss' κ needs at least two judgements per clip")
    p_subject = ((table**2).sum(axis=1) - m) / (m * (m - 1))
    p_category = table.sum(axis=0) / table.sum()
    expected = float((p_category**2).sum())
    if expected >= 1.0:
        raise _Undefined("Fleiss' κ is undefined: every judgement has the same label")
    return float((p_subject.mean() - expected) / (1.0 - expected))


def fleiss_kappa(df: pd.DataFrame, *, labels: LabelsArg = None, include_gold: bool = False) -> float:
    """Fleiss' κ over clips with labelled judgements; every clip must have the same number of them."""
    counts, _, _ = value_counts(df, labels=labels, include_gold=include_gold)
    return fleiss_kappa_from_counts(counts[counts.sum(axis=1) > 0])


def _kappa_from_confusion(confusion: np.ndarray, weights: str | None = None) -> np.ndarray:
    """Cohen's κ of (..., V, V) confusion matrices, as scikit-learn computes it; NaN where undefined."""
    n_values = confusion.shape[-1]
    total = confusion.sum(axis=(-1, -2), keepdims=True)
    expected = confusion.sum(axis=-1, keepdims=True) * confusion.sum(axis=-2, keepdims=True) / np.where(total > 0, total, 1)
    i, j = np.meshgrid(np.arange(n_values), np.arange(n_values), indexing="ij")
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j).astype(float)
    elif weights == "quadratic":
        w = ((i - j) ** 2).astype(float)
    else:
        raise CurationError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    observed = (w * confusion).sum(axis=(-1, -2))
    chance = (w * expected).sum(axis=(-1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance > 0, 1.0 - observed / np.where(chance > 0, chance, 1.0), np.nan)


def cohen_kappa(
    rater_a: Sequence[Any],
    rater_b: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    weights: Literal["linear", "quadratic"] | None = None,
) -> float:
    """Cohen's κ between two raters' labels on the same items (equal to scikit-learn's
    ``cohen_kappa_score``); ``labels`` fixes the category order for weighted κ.

    >>> cohen_kappa(["y"] * 25 + ["n"] * 25, ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15)
    0.4
    """
    a, b = list(rater_a), list(rater_b)
    if len(a) != len(b):
        raise CurationError(f"Cohen's κ needs paired labels; got {len(a)} and {len(b)}")
    if not a:
        raise InsufficientDataError("Cohen's κ needs at least one item judged by both raters")
    order = list(labels) if labels is not None else sorted(set(a) | set(b), key=str)
    index = {v: i for i, v in enumerate(order)}
    unknown = (set(a) | set(b)) - set(index)
    if unknown:
        raise CurationError(f"labels {sorted(map(str, unknown))} are not in the given label order")
    confusion = np.zeros((len(order), len(order)))
    np.add.at(confusion, ([index[v] for v in a], [index[v] for v in b]), 1.0)
    return round(float(_kappa_from_confusion(confusion, weights)), 12)


def _judgement_pairs(codes: JudgementCodes, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j) of kept judgements on the same clip, as two index arrays."""
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(codes.clip[idx], kind="stable")]
    clip = codes.clip[idx]
    per_clip = np.bincount(clip) if len(clip) else np.zeros(0, dtype=np.int64)
    max_m = int(per_clip.max()) if len(per_clip) else 0
    firsts, seconds = [], []
    for d in range(1, max_m):
        same = clip[:-d] == clip[d:]
        firsts.append(idx[:-d][same])
        seconds.append(idx[d:][same])
    if not firsts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(firsts), np.concatenate(seconds)


def pairwise_cohen_kappa(
    df: pd.DataFrame, *, min_shared: int = 10, labels: LabelsArg = None, include_gold: bool = False
) -> pd.DataFrame:
    """Cohen's κ for every annotator pair with at least ``min_shared`` clips judged by both.

    Columns: ``annotator_a``, ``annotator_b`` (a < b), ``n_shared``, ``kappa`` (NaN where undefined,
    e.g. both gave one label only), ``observed_agreement``.
    """
    codes = encode_judgements(_agreement_rows(df, labels, include_gold))
    first, second = _judgement_pairs(codes, codes.label >= 0)
    columns = ["annotator_a", "annotator_b", "n_shared", "kappa", "observed_agreement"]
    if len(first) == 0:
        return pd.DataFrame(columns=columns)
    a, b = codes.annotator[first], codes.annotator[second]
    la, lb = codes.label[first], codes.label[second]
    swap = a > b
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    la, lb = np.where(swap, lb, la), np.where(swap, la, lb)
    pair_key, pairs = pd.factorize(a * len(codes.annotators) + b, sort=True)
    n_values = codes.n_labels
    confusion = np.bincount((pair_key * n_values + la) * n_values + lb, minlength=len(pairs) * n_values * n_values)
    confusion = confusion.reshape(len(pairs), n_values, n_values).astype(float)
    shared = confusion.sum(axis=(1, 2))
    keep = shared >= min_shared
    confusion, pairs, shared = confusion[keep], np.asarray(pairs)[keep], shared[keep]
    return pd.DataFrame(
        {
            "annotator_a": codes.annotators[pairs // len(codes.annotators)],
            "annotator_b": codes.annotators[pairs % len(codes.annotators)],
            "n_shared": shared.astype(np.int64),
            "kappa": _kappa_from_confusion(confusion),
            "observed_agreement": np.trace(confusion, axis1=1, axis2=2) / shared,
        },
        columns=columns,
    )


def _leave_one_out(codes: JudgementCodes, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each kept judgement: credit for matching the others' consensus, the share of the others who
    agree, and the others' unique top label (-1 when tied or alone). Judgements alone on their clip get NaN."""
    counts = codes.counts(mask=keep)  # (clips, labels)
    idx = np.flatnonzero(keep & (codes.label >= 0))
    n_agree = np.full(len(codes.label), np.nan)
    share = np.full(len(codes.label), np.nan)
    top_label = np.full(len(codes.label), -1, dtype=np.int64)
    for start in range(0, len(idx), 1_000_000):  # bounds the (judgements, labels) temporary
        j = idx[start : start + 1_000_000]
        others = counts[codes.clip[j]].copy()
        others[np.arange(len(j)), codes.label[j]] -= 1.0
        n_others = others.sum(axis=1)
        top = others.max(axis=1)
        leaders = (others == top[:, None]).sum(axis=1)
        own = others[np.arange(len(j)), codes.label[j]]
        alone = n_others == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            credit = np.where(own == top, 1.0 / leaders, 0.0)
            agree_share = own / n_others
        n_agree[j] = np.where(alone, np.nan, credit)
        share[j] = np.where(alone, np.nan, agree_share)
        top_label[j] = np.where(alone | (leaders > 1), -1, others.argmax(axis=1))
    return n_agree, share, top_label


def annotator_agreement(df: pd.DataFrame, *, labels: LabelsArg = None, include_gold: bool = False) -> pd.DataFrame:
    """Per annotator, agreement with the leave-one-out consensus of the *other* annotators of each clip.

    Index ``annotator_id``; columns ``n_judgements``, ``n_compared`` (judgements on clips that others
    judged too), ``loo_agreement`` (mean credit for matching the others' top label; a tie among k
    labels including one's own gives 1/k) and ``pairwise_agreement`` (mean share of the others who
    gave the same label).
    """
    codes = encode_judgements(_agreement_rows(df, labels, include_gold))
    keep = codes.label >= 0
    credit, share, _ = _leave_one_out(codes, keep)
    n_annotators = len(codes.annotators)
    compared = ~np.isnan(credit)
    count = np.bincount(codes.annotator[keep], minlength=n_annotators)
    n_compared = np.bincount(codes.annotator[compared], minlength=n_annotators)
    sum_credit = np.bincount(codes.annotator[compared], weights=credit[compared], minlength=n_annotators)
    sum_share = np.bincount(codes.annotator[compared], weights=share[compared], minlength=n_annotators)
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame(
            {
                "n_judgements": count,
                "n_compared": n_compared,
                "loo_agreement": np.where(n_compared > 0, sum_credit / n_compared, np.nan),
                "pairwise_agreement": np.where(n_compared > 0, sum_share / n_compared, np.nan),
            },
            index=codes.annotators,
        )


def consensus_confusion(df: pd.DataFrame, *, labels: LabelsArg = None, include_gold: bool = False) -> pd.DataFrame:
    """Annotators' labels against the leave-one-out consensus of the others (untied clips only).

    Rows: consensus label; columns: the annotator's label; cells: judgement counts.
    """
    codes = encode_judgements(_agreement_rows(df, labels, include_gold))
    _, _, top = _leave_one_out(codes, codes.label >= 0)
    use = top >= 0
    n_values = codes.n_labels
    matrix = np.bincount(top[use] * n_values + codes.label[use], minlength=n_values * n_values).reshape(n_values, n_values)
    index = pd.Index(codes.labels, name="consensus")
    return pd.DataFrame(matrix, index=index, columns=pd.Index(codes.labels, name="annotator"))


def gold_accuracy(
    df: pd.DataFrame, gold: Mapping[Any, str] | pd.Series | None = None, *, labels: LabelsArg = None
) -> pd.DataFrame:
    """Per annotator accuracy on clips with a known answer.

    The answers come from ``gold`` (clip_id → label) or else from the table's ``gold_label``
    column. Index ``annotator_id``; columns ``n_gold``, ``n_correct``, ``gold_accuracy``. An empty
    table when there is no gold.
    """
    table = validate_judgements(df, labels)
    columns = ["n_gold", "n_correct", "gold_accuracy"]
    if gold is not None:
        answers = pd.Series(gold, dtype=object).astype(str)
        truth = table["clip_id"].map(answers)
    elif "gold_label" in table.columns:
        truth = table["gold_label"].astype(object)
    else:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="annotator_id"))
    use = truth.notna() & table["label"].notna()
    if not use.any():
        return pd.DataFrame(columns=columns, index=pd.Index([], name="annotator_id"))
    said = table.loc[use, "label"].astype(str).to_numpy()
    right = pd.Series(said == truth[use].astype(str).to_numpy(), index=table.loc[use, "annotator_id"].to_numpy())
    grouped = right.groupby(level=0, sort=True)
    out = pd.DataFrame({"n_gold": grouped.size(), "n_correct": grouped.sum().astype(np.int64)})
    out["gold_accuracy"] = out["n_correct"] / out["n_gold"]
    out.index.name = "annotator_id"
    return out


def interpret_alpha(alpha: float | None) -> str:
    """Krippendorff's reading: ≥ 0.800 reliable, ≥ 0.667 tentative conclusions only, else unreliable."""
    if alpha is None or math.isnan(alpha):
        return "undefined"
    if alpha >= 0.800:
        return "reliable"
    if alpha >= 0.667:
        return "tentative"
    return "unreliable"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_jsonable(row) for row in frame.reset_index().to_dict("records")]


def _fleiss_or_reason(rows: pd.DataFrame) -> dict[str, Any]:
    try:
        return {"value": fleiss_kappa(rows, include_gold=True), "reason": None}
    except InsufficientDataError as exc:
        return {"value": None, "reason": str(exc)}


def agreement_report(
    df: pd.DataFrame,
    *,
    labels: LabelsArg = None,
    level: Level = "nominal",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    group_columns: Sequence[str] | None = None,
    min_shared: int = 10,
    include_gold: bool = False,
) -> dict[str, Any]:
    """Everything the CLI and the dashboard show about agreement, as a JSON-ready dict.

    Crowd coders only: stage-3 (expert) rows are left out and counted in
    ``summary.n_expert_judgements_left_out``.

    Keys: ``summary`` (counts, label set, level), ``alpha`` (overall, with interval and reading),
    ``alpha_by_stage``, ``alpha_by_label`` (one-vs-rest), ``alpha_by_group`` (per annotator
    attribute), ``fleiss_kappa`` (value or reason, over all crowd judgements),
    ``fleiss_kappa_by_stage`` (per stage, so a stage with complete overlap gets its κ even when
    stage 2 adds labels to some clips), ``pairwise_kappa`` (list of pairs),
    ``annotators`` (the reliability report, see :mod:`curation.reliability`), ``gold``,
    ``consensus_confusion`` (labels and matrix).
    """
    from curation.reliability import annotator_report  # reliability builds on this module

    table = validate_judgements(df, labels)
    if not table["label"].notna().any():
        raise InsufficientDataError("agreement needs at least one labelled judgement; the table has none")
    # Agreement is the crowd's: an expert's stage-3 decision is a final call, not one more coder
    # (counting it made Fleiss' κ "undefined" on a stage 1 with complete overlap).
    expert_rows = table["stage"].to_numpy() >= _EXPERT_STAGE
    n_expert = int((expert_rows & table["label"].notna().to_numpy()).sum())
    table = table[~expert_rows]
    if not table["label"].notna().any():
        raise InsufficientDataError("agreement needs at least one labelled crowd (stage 1-2) judgement; the table has none")
    rows = _agreement_rows(table, None, include_gold)
    names = [str(c) for c in table["label"].cat.categories]
    labelled = rows["label"].notna()
    ci = {"n_boot": n_boot, "confidence": confidence, "seed": seed}

    def result(r: AlphaResult) -> dict[str, Any]:
        return _jsonable({**r.to_dict(), "reading": interpret_alpha(r.alpha)})

    overall = alpha_with_ci(rows, level=level, include_gold=True, **ci)
    by_stage = alpha_by(rows, "stage", level=level, include_gold=True, **ci)
    groups = [c for c in (GROUP_COLUMNS if group_columns is None else group_columns) if c in rows.columns]
    by_group = {g: {str(k): result(v) for k, v in alpha_by(rows, g, level=level, include_gold=True, **ci).items()} for g in groups}
    fleiss = _fleiss_or_reason(rows)
    fleiss_by_stage = {str(stage): _fleiss_or_reason(part)
                       for stage, part in rows.groupby("stage", sort=True, observed=True)}
    gold = gold_accuracy(table)
    confusion = consensus_confusion(rows, include_gold=True)
    report = {
        "summary": {
            "n_judgements": int(labelled.sum()),
            "n_cant_judge": int((~labelled).sum()),
            "n_clips": int(rows.loc[labelled, "clip_id"].nunique()),
            "n_annotators": int(rows.loc[labelled, "annotator_id"].nunique()),
            "n_gold_judgements": int(table["is_gold"].sum()),
            "n_expert_judgements_left_out": n_expert,
            "labels": names,
            "level": level,
            "stages": sorted(int(s) for s in rows["stage"].unique()),
            "bootstrap": ci,
            "include_gold": include_gold,
        },
        "alpha": result(overall),
        "alpha_by_stage": {str(k): result(v) for k, v in by_stage.items()},
        "alpha_by_label": {k: result(v) for k, v in alpha_per_label(rows, include_gold=True, **ci).items()},
        "alpha_by_group": by_group,
        "fleiss_kappa": _jsonable(fleiss),
        "fleiss_kappa_by_stage": _jsonable(fleiss_by_stage),
        "pairwise_kappa": _records(pairwise_cohen_kappa(rows, min_shared=min_shared, include_gold=True).set_index("annotator_a")),
        "min_shared": min_shared,
        "annotators": _records(annotator_report(table, include_gold=include_gold)),
        "gold": {
            "n_judgements": int(gold["n_gold"].sum()) if len(gold) else 0,
            "accuracy": float(gold["n_correct"].sum() / gold["n_gold"].sum()) if len(gold) else None,
        },
        "consensus_confusion": {"labels": names, "matrix": confusion.to_numpy().tolist()},
    }
    return _jsonable(report)
