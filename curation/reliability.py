"""Annotator reliability: who labels well, who labels the same thing always, who clicks at random or
too fast, and whose agreement with the others is far below the crowd's.

>>> import pandas as pd
>>> df = pd.DataFrame({"clip_id": [1, 1, 1, 2, 2, 2], "annotator_id": ["a", "b", "c"] * 2,
...                    "label": ["x", "x", "y", "y", "y", "y"]})
>>> annotator_report(df, min_judgements=1)["loo_agreement"].round(2).to_dict()
{'c': 0.5, 'a': 0.75, 'b': 0.75}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from curation.agreement import annotator_agreement, gold_accuracy
from curation.judgements import LabelsArg, _require_labelled, encode_judgements, validate_judgements

__all__ = ["ReliabilityRules", "annotator_report", "FLAGS"]

FLAGS = ("near-constant", "near-uniform", "low-agreement", "low-gold-accuracy", "implausibly-fast")


@dataclass(frozen=True)
class ReliabilityRules:
    """Thresholds of the flags (defaults are ours; the paper publishes none).

    - ``near-constant``: one label makes up ≥ ``constant_share`` of the annotator's judgements and
      they use the other labels at most a quarter as often as the crowd does.
    - ``near-uniform``: the annotator's label entropy (0–1, normalised by log K) is ≥
      ``uniform_entropy`` and their label mix is much closer to uniform than to the crowd's
      (KL to uniform < half the KL to the crowd): random clicking on a skewed label set.
    - ``low-agreement``: robust z-score of the leave-one-out agreement ≤ ``-agreement_z``
      (median / MAD over annotators with enough compared judgements).
    - ``low-gold-accuracy``: gold accuracy below ``gold_floor`` on ≥ ``min_gold`` gold judgements.
    - ``implausibly-fast``: median time on task below ``fast_fraction`` × the crowd's median time
      on task, or below ``fast_seconds``.
    Flags need ≥ ``min_judgements`` judgements (gold and agreement flags: compared/gold judgements).
    """

    min_judgements: int = 20
    constant_share: float = 0.9
    uniform_entropy: float = 0.97
    agreement_z: float = 3.0
    gold_floor: float = 0.7
    min_gold: int = 5
    fast_fraction: float = 0.25
    fast_seconds: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _robust_z(values: np.ndarray) -> np.ndarray:
    finite = values[~np.isnan(values)]
    if len(finite) < 3:
        return np.full(len(values), np.nan)
    median = np.median(finite)
    mad = 1.4826 * np.median(np.abs(finite - median))
    if mad == 0:  # most annotators identical: fall back on the mean absolute deviation
        mad = 1.2533 * np.mean(np.abs(finite - median))
    if mad == 0:
        return np.zeros(len(values))
    return (values - median) / mad


def annotator_report(
    df: pd.DataFrame,
    *,
    gold: Mapping[Any, str] | pd.Series | None = None,
    labels: LabelsArg = None,
    include_gold: bool = False,
    rules: ReliabilityRules | None = None,
    min_judgements: int | None = None,
) -> pd.DataFrame:
    """One row per annotator (index ``annotator_id``), with the flags that need a curator's look.

    Columns: ``n_judgements``, ``n_gold``, ``gold_accuracy``, ``n_compared``, ``loo_agreement``,
    ``pairwise_agreement``, ``agreement_z``, ``top_label``, ``top_label_share``, ``label_entropy``,
    ``median_time_s``, one boolean column per flag in :data:`FLAGS`, and ``flags`` (the raised
    flags, comma-separated). Sorted worst-first by leave-one-out agreement.
    """
    rules = rules or ReliabilityRules()
    if min_judgements is not None:
        rules = ReliabilityRules(**{**rules.to_dict(), "min_judgements": min_judgements})
    table = validate_judgements(df, labels)
    codes = encode_judgements(table)
    _require_labelled(codes, "the annotator report")
    agreement_rows = table if include_gold else table[~table["is_gold"].to_numpy()]
    agreement = annotator_agreement(agreement_rows)
    n_labels = codes.n_labels
    keep = codes.label >= 0
    per_label = np.bincount(
        codes.annotator[keep] * n_labels + codes.label[keep], minlength=len(codes.annotators) * n_labels
    ).reshape(len(codes.annotators), n_labels).astype(float)
    n = per_label.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = per_label / n[:, None]
        plogp = np.where(share > 0, share * np.log(np.where(share > 0, share, 1.0)), 0.0)
    log_k = math.log(n_labels) if n_labels > 1 else 1.0
    entropy = np.where(n > 0, np.maximum(-plogp.sum(axis=1) / log_k, 0.0), np.nan)
    crowd = per_label.sum(axis=0)
    crowd_share = crowd / crowd.sum() if crowd.sum() else crowd

    report = pd.DataFrame(index=codes.annotators)
    report["n_judgements"] = n.astype(np.int64)
    golds = gold_accuracy(table, gold)
    report["n_gold"] = golds["n_gold"].reindex(report.index).fillna(0).astype(np.int64)
    report["gold_accuracy"] = golds["gold_accuracy"].reindex(report.index).astype(float)
    report = report.join(agreement[["n_compared", "loo_agreement", "pairwise_agreement"]])
    report["n_compared"] = report["n_compared"].fillna(0).astype(np.int64)
    eligible = (report["n_compared"] >= rules.min_judgements).to_numpy()
    z = np.full(len(report), np.nan)
    z[eligible] = _robust_z(report["loo_agreement"].to_numpy(dtype=float)[eligible])
    report["agreement_z"] = z
    top = np.argmax(per_label, axis=1)
    report["top_label"] = [codes.labels[t] if c > 0 else None for t, c in zip(top, n, strict=True)]
    report["top_label_share"] = np.where(n > 0, per_label[np.arange(len(n)), top] / np.maximum(n, 1), np.nan)
    report["label_entropy"] = entropy

    if "time_on_task_s" in table.columns:
        times = table.groupby("annotator_id", sort=False)["time_on_task_s"].median()
        report["median_time_s"] = times.reindex(report.index).astype(float)
        crowd_median = float(table["time_on_task_s"].median()) if table["time_on_task_s"].notna().any() else math.nan
    else:
        report["median_time_s"] = np.nan
        crowd_median = math.nan

    enough = (report["n_judgements"] >= rules.min_judgements).to_numpy()
    # Near-constant: one label nearly always, and the other labels used far less than the crowd uses
    # them (so an honest annotator on a skewed task, e.g. 80 % "no match", is not flagged).
    top_share = report["top_label_share"].to_numpy()
    crowd_other = 1.0 - crowd_share[top] if len(crowd_share) else np.ones(len(top))
    report["near-constant"] = enough & (top_share >= rules.constant_share) & ((1.0 - top_share) <= 0.25 * crowd_other)
    # Near-uniform: high entropy and closer (in KL) to uniform clicking than to the crowd's mix, so an
    # honest annotator on a balanced label set is not flagged.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_uniform = np.where(share > 0, share * n_labels, 1.0)
        ratio_crowd = np.where(share > 0, share / np.where(crowd_share > 0, crowd_share, np.inf), 1.0)
        kl_uniform = (np.where(share > 0, share, 0.0) * np.log(ratio_uniform)).sum(axis=1)
        kl_crowd = (np.where(share > 0, share, 0.0) * np.log(ratio_crowd)).sum(axis=1)
    report["near-uniform"] = (
        enough & (entropy >= rules.uniform_entropy) & (kl_uniform < 0.5 * kl_crowd) & (n_labels > 2)
    )
    report["low-agreement"] = eligible & (np.nan_to_num(z, nan=0.0) <= -rules.agreement_z)
    report["low-gold-accuracy"] = (report["n_gold"] >= rules.min_gold).to_numpy() & (
        report["gold_accuracy"].fillna(1.0).to_numpy() < rules.gold_floor
    )
    fast_limit = max(rules.fast_seconds, rules.fast_fraction * crowd_median) if not math.isnan(crowd_median) else rules.fast_seconds
    report["implausibly-fast"] = enough & (report["median_time_s"].fillna(np.inf).to_numpy() < fast_limit)
    flag_matrix = report[list(FLAGS)].to_numpy()
    report["flags"] = [", ".join(f for f, on in zip(FLAGS, row, strict=True) if on) for row in flag_matrix]
    report.index.name = "annotator_id"
    report.attrs["rules"] = rules.to_dict()
    report.attrs["fast_limit_s"] = fast_limit
    return report.sort_values(["loo_agreement", "n_judgements"], ascending=[True, False], na_position="last")
