"""Train / validation / test splits that are stratified by label and never leak a group.

A *group* is everything that must stay on one side of a split: all clips of one uploader and all
clips of one near-duplicate cluster. Because an uploader's clips can sit in several clusters and a
cluster can hold clips of several uploaders, the groups are the connected components of the graph
that links each clip to its uploader and to its cluster (:func:`leakage_groups`).

Splitting uses scikit-learn's ``StratifiedGroupKFold`` algorithm (greedy: most label-skewed groups
first, each into the fold that keeps the per-label fold shares most even), folds then mapped onto
splits by their fractions: 0.7 / 0.1 / 0.2 gives 10 folds, 2 for test, 1 for validation, 7 for
train. :func:`stratified_group_folds` computes exactly sklearn's assignment, but scores all folds
of a group in one array operation (a test checks it against sklearn).

>>> import numpy as np
>>> groups = leakage_groups(["u1", "u1", "u2", "u3"], ["c1", None, "c1", None])
>>> groups.tolist()
[0, 0, 0, 1]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.errors import CurationError, InsufficientDataError, InvalidTableError

__all__ = [
    "SPLITS",
    "fold_plan",
    "leakage_groups",
    "stratified_group_folds",
    "assign_splits",
    "find_leaks",
]

#: Split names, in the order every table and listing uses.
SPLITS: tuple[str, str, str] = ("train", "validation", "test")

_MAX_FOLDS = 20


def fold_plan(fractions: Mapping[str, float]) -> tuple[int, dict[str, int]]:
    """Smallest fold count that expresses the split fractions, and how many folds each split gets.

    >>> fold_plan({"train": 0.7, "validation": 0.1, "test": 0.2})
    (10, {'train': 7, 'validation': 1, 'test': 2})
    """
    values = {name: float(fractions.get(name, 0.0)) for name in SPLITS}
    if any(v < 0 for v in values.values()) or abs(sum(values.values()) - 1.0) > 1e-6:
        raise CurationError(
            "split fractions must be non-negative and sum to 1, got "
            + ", ".join(f"{k}={v}" for k, v in values.items())
        )
    shares = {k: Fraction(v).limit_denominator(_MAX_FOLDS) for k, v in values.items()}
    n_folds = 1
    for share in shares.values():
        n_folds = n_folds * share.denominator // math.gcd(n_folds, share.denominator)
    n_folds = min(max(n_folds, 1), _MAX_FOLDS)
    per_split = {k: int(round(float(v) * n_folds)) for k, v in shares.items()}
    per_split["train"] = n_folds - per_split["validation"] - per_split["test"]
    return n_folds, per_split


def _codes(values: Sequence[object] | pd.Series) -> np.ndarray:
    """Integer codes per value; missing values (None, NaN, "") get -1 so they link nothing."""
    series = pd.Series(values, dtype="object")
    missing = series.isna() | (series.astype(str).str.strip() == "")
    codes, _ = pd.factorize(series.where(~missing, None).astype("object"), sort=True)
    codes = np.asarray(codes, dtype=np.int64)
    codes[missing.to_numpy()] = -1
    return codes


def leakage_groups(
    uploaders: Sequence[object] | pd.Series, clusters: Sequence[object] | pd.Series
) -> np.ndarray:
    """Group id per clip: connected components of clip–uploader and clip–cluster links.

    A clip without uploader and without cluster is a group of its own. Group ids are numbered in
    order of first appearance, so the same clip order gives the same ids.
    """
    uploader_codes = _codes(uploaders)
    cluster_codes = _codes(clusters)
    n = len(uploader_codes)
    if len(cluster_codes) != n:
        raise InvalidTableError("uploaders and clusters must have one entry per clip")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    n_uploaders = int(uploader_codes.max()) + 1
    n_clusters = int(cluster_codes.max()) + 1
    # Nodes: clips [0, n), uploaders [n, n + U), clusters [n + U, n + U + C).
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    clip_nodes = np.arange(n, dtype=np.int64)
    has_uploader = uploader_codes >= 0
    rows.append(clip_nodes[has_uploader])
    cols.append(n + uploader_codes[has_uploader])
    has_cluster = cluster_codes >= 0
    rows.append(clip_nodes[has_cluster])
    cols.append(n + n_uploaders + cluster_codes[has_cluster])
    row = np.concatenate(rows)
    col = np.concatenate(cols)
    size = n + max(n_uploaders, 0) + max(n_clusters, 0)
    graph = coo_matrix((np.ones(len(row), dtype=np.int8), (row, col)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    clip_component = component[:n]
    # Renumber by first appearance so ids do not depend on scipy's internal numbering.
    _, first_index, inverse = np.unique(clip_component, return_index=True, return_inverse=True)
    order = np.argsort(first_index, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64)


def stratified_group_folds(
    labels: Sequence[object] | np.ndarray, groups: Sequence[object] | np.ndarray, n_folds: int, seed: int
) -> np.ndarray:
    """Fold index per clip, as ``StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)``.

    Same algorithm and same random stream as scikit-learn (≥ 1.8), so the assignment matches
    theirs; only the scoring of candidate folds is vectorised.
    """
    y = np.asarray(labels)
    groups_array = np.asarray(groups)
    if len(y) != len(groups_array):
        raise InvalidTableError("labels and groups must have one entry per clip")
    _, y_inv, y_cnt = np.unique(y, return_inverse=True, return_counts=True)
    _, groups_inv, groups_cnt = np.unique(groups_array, return_inverse=True, return_counts=True)
    n_groups = len(groups_cnt)
    if n_folds > n_groups:
        raise InsufficientDataError(
            f"a {n_folds}-fold split needs at least {n_folds} independent groups "
            f"(uploaders / near-duplicate clusters), found {n_groups}"
        )
    n_classes = len(y_cnt)
    y_counts_per_group = np.zeros((n_groups, n_classes))
    np.add.at(y_counts_per_group, (groups_inv, y_inv), 1)
    rng = np.random.RandomState(seed)
    perm = np.arange(n_groups)
    rng.shuffle(perm)
    y_counts_per_group = y_counts_per_group[perm]
    inv_perm = np.empty_like(perm)
    inv_perm[perm] = np.arange(perm.size)
    groups_inv = inv_perm[groups_inv]
    sorted_groups_idx = np.argsort(-np.std(y_counts_per_group, axis=1), kind="stable")

    # sklearn scores candidate fold i by mean_c std_f(count[f, c] / y_cnt[c]) with the group
    # added to row i, one candidate at a time. Scoring all K candidates as one (K, K, C) array
    # reduces over the same axis layout, so the scores are bit-identical to sklearn's (exact ties
    # are common, and float noise decides them) while the Python loop over folds disappears.
    y_cnt_row = y_cnt.reshape(1, 1, -1)
    diagonal = np.arange(n_folds)
    counts = np.zeros((n_folds, n_classes))
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    candidates = np.empty((n_folds, n_folds, n_classes))
    for group_idx in sorted_groups_idx:
        g = y_counts_per_group[group_idx]
        candidates[...] = counts  # (K candidates, K folds, C)
        candidates[diagonal, diagonal] += g
        evals = np.mean(np.std(candidates / y_cnt_row, axis=1), axis=1).tolist()  # (K,)
        sizes = counts.sum(axis=1).tolist()  # (K,)
        # sklearn keeps a fold if it scores lower, or about the same with fewer clips, walking the
        # folds in order; replay that walk. "About the same" is np.isclose's rule (rtol 1e-5,
        # atol 1e-8), written out because np.isclose on scalars dominated the run time.
        best = 0
        min_eval = evals[0]
        min_size = sizes[0]
        for i in range(1, n_folds):
            e = evals[i]
            if e < min_eval or (abs(e - min_eval) <= 1e-8 + 1e-5 * abs(min_eval) and sizes[i] < min_size):
                best, min_eval, min_size = i, e, sizes[i]
        counts[best] += g
        fold_of_group[group_idx] = best
    return fold_of_group[groups_inv]


def assign_splits(
    labels: Sequence[object] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    fractions: Mapping[str, float],
    seed: int,
) -> np.ndarray:
    """Split name per clip: stratified by label, each group wholly in one split, seeded.

    Folds are numbered by the greedy assignment; the first folds go to test, the next to
    validation, the rest to train.
    """
    n_folds, per_split = fold_plan(fractions)
    n = len(labels)
    if n == 0:
        return np.array([], dtype=object)
    if n_folds == 1:
        only = next(name for name in SPLITS if per_split[name] == 1)
        return np.full(n, only, dtype=object)
    folds = stratified_group_folds(labels, groups, n_folds, seed)
    fold_to_split = np.empty(n_folds, dtype=object)
    start = 0
    for name in ("test", "validation", "train"):
        fold_to_split[start : start + per_split[name]] = name
        start += per_split[name]
    return fold_to_split[folds]


def find_leaks(table: pd.DataFrame, keys: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Uploaders and near-duplicate clusters whose clips sit in more than one split.

    ``table`` needs a ``split`` column and the key columns (default ``uploader`` and
    ``duplicate_cluster``); returns ``{column: [offending values]}``, empty lists when clean.
    """
    keys = dict(keys or {"uploader": "uploader", "duplicate_cluster": "duplicate_cluster"})
    leaks: dict[str, list[str]] = {}
    for name, column in keys.items():
        if column not in table.columns:
            leaks[name] = []
            continue
        values = table[column]
        present = values.notna() & (values.astype(str).str.strip() != "")
        n_splits = table.loc[present].groupby(values[present].astype(str))["split"].nunique()
        leaks[name] = sorted(n_splits.index[n_splits > 1].tolist())
    return leaks
