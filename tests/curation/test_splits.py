"""Grouped, stratified, seeded splits (curation.splits)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from curation.errors import CurationError, InsufficientDataError
from curation.splits import assign_splits, find_leaks, fold_plan, leakage_groups, stratified_group_folds


def test_groups_join_clips_through_uploaders_and_clusters() -> None:
    # c0 and c1 share uploader u1, c2 shares cluster k1 with c0: {c0, c1, c2}; c3 alone; c4 and c5 have no uploader but share cluster k2; c6 has nothing: its own group.
    groups = leakage_groups(
        ["u1", "u1", "u2", "u3", None, "", np.nan],
        ["k1", None, "k1", None, "k2", "k2", None],
    )
    assert groups.tolist() == [0, 0, 0, 1, 2, 2, 3]


def test_chained_links_make_one_group() -> None:
    # u1 -k1- u2 -k2- u3: one component although no two ends share anything directly.
    groups = leakage_groups(["u1", "u2", "u2", "u3", "u4"], ["k1", "k1", "k2", "k2", None])
    assert groups.tolist() == [0, 0, 0, 0, 1]


def test_missing_values_never_link_clips() -> None:
    groups = leakage_groups([None, None, None], [pd.NA, None, ""])
    assert groups.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("fractions", "expected"),
    [
        ({"train": 0.7, "validation": 0.1, "test": 0.2}, (10, {"train": 7, "validation": 1, "test": 2})),
        ({"train": 0.6, "validation": 0.2, "test": 0.2}, (5, {"train": 3, "validation": 1, "test": 1})),
        ({"train": 0.875, "validation": 0.125, "test": 0.0}, (8, {"train": 7, "validation": 1, "test": 0})),
        ({"train": 1.0, "validation": 0.0, "test": 0.0}, (1, {"train": 1, "validation": 0, "test": 0})),
    ],
)
def test_fold_plan(fractions: dict[str, float], expected: tuple[int, dict[str, int]]) -> None:
    assert fold_plan(fractions) == expected


def test_fold_plan_rejects_shares_not_summing_to_one() -> None:
    with pytest.raises(CurationError, match="sum to 1"):
        fold_plan({"train": 0.7, "validation": 0.1, "test": 0.1})


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_folds_match_sklearn_stratified_group_kfold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 1500
    groups = rng.integers(0, 400, n)
    labels = rng.integers(0, 6, n)
    labels[groups % 5 == 0] = 2  # skewed groups, so the greedy order matters
    expected = np.empty(n, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splitter = StratifiedGroupKFold(n_splits=10, shuffle=True, random_state=seed)
        for fold, (_, test_index) in enumerate(splitter.split(np.zeros(n), labels, groups)):
            expected[test_index] = fold
    assert np.array_equal(stratified_group_folds(labels, groups, 10, seed), expected)


def test_splits_keep_groups_whole_and_follow_the_label_mix() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    labels = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    groups = rng.integers(0, 900, n)
    fractions = {"train": 0.7, "validation": 0.1, "test": 0.2}
    splits = assign_splits(labels, groups, fractions, seed=5)
    table = pd.DataFrame({"label": labels, "group": groups, "split": splits})
    assert (table.groupby("group")["split"].nunique() == 1).all()
    shares = table["split"].value_counts(normalize=True)
    for name, share in fractions.items():
        assert shares[name] == pytest.approx(share, abs=0.02)
    overall = table["label"].value_counts(normalize=True)
    for name in fractions:
        part = table.loc[table["split"] == name, "label"].value_counts(normalize=True)
        assert (part - overall).abs().max() < 0.03


def test_splits_are_seeded() -> None:
    rng = np.random.default_rng(0)
    labels, groups = rng.integers(0, 3, 600), rng.integers(0, 200, 600)
    fractions = {"train": 0.7, "validation": 0.1, "test": 0.2}
    first = assign_splits(labels, groups, fractions, seed=11)
    assert np.array_equal(first, assign_splits(labels, groups, fractions, seed=11))
    assert not np.array_equal(first, assign_splits(labels, groups, fractions, seed=12))


def test_too_few_groups_is_insufficient_data() -> None:
    with pytest.raises(InsufficientDataError, match="at least 10 independent groups .* found 4"):
        assign_splits([0, 1, 0, 1, 0, 1], [1, 1, 2, 3, 4, 4], {"train": 0.7, "validation": 0.1, "test": 0.2}, seed=0)


def test_find_leaks_names_uploaders_and_clusters_in_two_splits() -> None:
    table = pd.DataFrame({
        "uploader": ["u1", "u1", "u2", None, None],
        "duplicate_cluster": [None, "k1", "k1", "k2", "k2"],
        "split": ["train", "test", "test", "train", "validation"],
    })
    assert find_leaks(table) == {"uploader": ["u1"], "duplicate_cluster": ["k2"]}
    table["split"] = ["test", "test", "test", "train", "train"]
    assert find_leaks(table) == {"uploader": [], "duplicate_cluster": []}
