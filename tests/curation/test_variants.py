"""Recipes and the three variant selectors (curation.variants), on tables without media."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from curation.aggregation import resolve
from curation.errors import InsufficientDataError, InvalidTableError
from curation.judgements import load_judgements
from curation.splits import find_leaks
from curation.variants import (
    InvalidRecipeError,
    Recipe,
    candidate_clips,
    hash_uploader,
    labels_from_names,
    load_recipes,
    resolution_from_clips,
    select_variant,
)
from tests.curation.variants_fixtures import LABELS, NAMES, make_inputs


def _candidates(n_clips: int = 240, **kwargs) -> pd.DataFrame:
    judgements, clips = make_inputs(n_clips, **kwargs)
    resolution = resolve(load_judgements(judgements, labels=LABELS), labels=LABELS)
    return candidate_clips(clips, resolution, LABELS)


@pytest.fixture(scope="module")
def candidates() -> pd.DataFrame:
    return _candidates(240)


def _recipe(name: str, **override) -> Recipe:
    return load_recipes({name: override} if override else None, variants=[name])[0]


# ---------------------------------------------------------------------------------- recipes


def test_shipped_recipes() -> None:
    full, balanced, test_oriented = load_recipes()
    assert (full.name, balanced.name, test_oriented.name) == ("full", "balanced", "test-oriented")
    assert full.splits == {"train": 0.7, "validation": 0.1, "test": 0.2}
    assert balanced.balance == {"per_label": 0, "on_shortfall": "fail", "keep_platform_mix": True}
    assert test_oriented.test["on_shortfall"] == "fail"  # nothing shrinks silently by default
    assert test_oriented.test["reliable"] == ["unanimous", "adjudicated"]
    assert test_oriented.splits["test"] == 0.0
    assert full.uploader_salt == balanced.uploader_salt == test_oriented.uploader_salt != ""


def test_recipe_file_overrides_only_the_keys_it_names(tmp_path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text('[balanced.balance]\nper_label = 40\n\n["test-oriented".test]\nmin_confidence = 0.95\n')
    recipes = {r.name: r for r in load_recipes(path)}
    assert recipes["balanced"].balance["per_label"] == 40
    assert recipes["balanced"].balance["on_shortfall"] == "fail"
    assert recipes["test-oriented"].test["min_confidence"] == 0.95
    assert recipes["full"] == _recipe("full")


def test_recipe_file_can_add_a_variant() -> None:
    recipes = load_recipes({"balanced-small": {"selector": "balanced", "balance": {"per_label": 5}}})
    assert [r.name for r in recipes] == ["full", "balanced", "test-oriented", "balanced-small"]
    assert recipes[-1].balance["per_label"] == 5 and recipes[-1].selector == "balanced"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"full": {"splits": {"train": 0.5}}}, "sum to 1"),
        ({"full": {"spilts": {}}}, "unknown recipe key"),
        ({"balanced": {"balance": {"on_shortfall": "ignore"}}}, "on_shortfall"),
        ({"test-oriented": {"test": {"reliable": ["vibes"]}}}, "test.reliable"),
        ({"mystery": {"splits": {}}}, "needs selector"),
    ],
)
def test_bad_recipes_are_rejected(override: dict, message: str) -> None:
    with pytest.raises(InvalidRecipeError, match=message):
        load_recipes(override)


def test_unknown_variant_is_named() -> None:
    with pytest.raises(InvalidRecipeError, match="no recipe for variant.*everything"):
        load_recipes(variants=["everything"])


# -------------------------------------------------------------------------------- clip table


def test_candidates_are_resolved_non_discarded_clips() -> None:
    judgements, clips = make_inputs(60)
    resolution = resolve(load_judgements(judgements, labels=LABELS), labels=LABELS)
    clips.loc[clips["clip_id"] == "clip00003", "status"] = "discarded"
    clips.loc[clips["clip_id"] == "clip00004", "status"] = "gold"  # a quality check, never a dataset clip
    table = candidate_clips(clips, resolution, LABELS)
    resolved = set(resolution.index[resolution["is_resolved"]].astype(str))
    assert {"clip00003", "clip00004"} <= resolved
    assert set(table["clip_id"]) == resolved - {"clip00003", "clip00004"}
    assert table["clip_id"].is_monotonic_increasing
    row = table.iloc[0]
    assert row["label_index"] == NAMES.index(row["label"])
    assert row["polarity"] == LABELS[row["label_index"]]["polarity"]


def test_every_resolved_clip_needs_a_clips_row() -> None:
    judgements, clips = make_inputs(30)
    resolution = resolve(load_judgements(judgements, labels=LABELS), labels=LABELS)
    with pytest.raises(InvalidTableError, match="not in the clips table: clip00000"):
        candidate_clips(clips.iloc[1:], resolution, LABELS)


def test_database_decisions_win_over_re_resolving() -> None:
    judgements, clips = make_inputs(12)
    resolution = resolve(load_judgements(judgements, labels=LABELS), labels=LABELS)
    clips["status"] = "resolved"
    clips["final_label"] = "Tension"
    clips["resolved_stage"] = 2
    clips["resolution_confidence"] = 0.75
    clips.loc[0, "status"] = "in_progress"
    decisions = resolution_from_clips(clips, resolution)
    table = candidate_clips(clips, decisions, LABELS)
    assert len(table) == 11 and set(table["label"]) == {"Tension"}
    assert set(table["confidence"]) == {0.75} and set(table["resolving_stage"]) == {2}
    # Judgement counts and unanimity still come from the judgements.
    assert table["n_judgements"].min() >= 5


def test_labels_from_names_are_sorted_and_neutral() -> None:
    assert labels_from_names(["b", "a", "b"]) == [
        {"index": 0, "name": "a", "polarity": "neutral"},
        {"index": 1, "name": "b", "polarity": "neutral"},
    ]


def test_uploader_hash_is_salted_and_stable() -> None:
    assert hash_uploader("alice", "s") == hash_uploader("alice", "s")
    assert hash_uploader("alice", "s") != hash_uploader("alice", "t")
    assert len(hash_uploader("alice", "s") or "") == 16
    assert hash_uploader(None, "s") is None and hash_uploader("  ", "s") is None


# ---------------------------------------------------------------------------------- selectors


def test_full_variant_keeps_every_candidate(candidates: pd.DataFrame) -> None:
    selection = select_variant(candidates, _recipe("full"), LABELS, seed=0)
    assert list(selection.clips["clip_id"]) == list(candidates["clip_id"])
    shares = selection.clips["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.08) and shares["test"] == pytest.approx(0.2, abs=0.08)


@pytest.mark.parametrize("variant", ["full", "balanced", "test-oriented"])
def test_no_uploader_or_near_duplicate_cluster_spans_two_splits(candidates: pd.DataFrame, variant: str) -> None:
    clips = select_variant(candidates, _recipe(variant), LABELS, seed=4).clips
    assert clips["duplicate_cluster"].notna().sum() > 10  # the fixture does have clusters
    for column in ("uploader", "duplicate_cluster"):
        keyed = clips.loc[clips[column].notna()]
        assert (keyed.groupby(column)["split"].nunique() == 1).all()
    assert find_leaks(clips) == {"uploader": [], "duplicate_cluster": []}


def test_balanced_variant_has_equal_counts_chosen_by_confidence(candidates: pd.DataFrame) -> None:
    selection = select_variant(candidates, _recipe("balanced"), LABELS, seed=0)
    clips = selection.clips
    smallest = int(candidates["label"].value_counts().min())
    assert (clips["label"].value_counts().reindex(NAMES) == smallest).all()
    assert selection.shortfalls == {}
    # Within a label and platform the most confident clips were taken.
    chosen = set(clips["clip_id"])
    for (_, _), part in candidates.groupby(["label", "platform"]):
        taken = part.loc[part["clip_id"].isin(chosen), "confidence"]
        left = part.loc[~part["clip_id"].isin(chosen), "confidence"]
        if len(taken) and len(left):
            assert taken.min() >= left.max()
    # Each label keeps its platform mix (largest remainder: within one clip per platform).
    for label, part in candidates.groupby("label"):
        expected = part["platform"].value_counts(normalize=True) * smallest
        got = clips.loc[clips["label"] == label, "platform"].value_counts().reindex(expected.index, fill_value=0)
        assert (got - expected).abs().max() < 1.0


def test_balanced_cap_takes_that_many_per_label(candidates: pd.DataFrame) -> None:
    clips = select_variant(candidates, _recipe("balanced", balance={"per_label": 20}), LABELS, seed=0).clips
    assert (clips["label"].value_counts().reindex(NAMES) == 20).all()


def test_balanced_shortfall_names_labels_and_amounts() -> None:
    # Fear is rare: 2 / 11 of the weight of the common labels.
    candidates = _candidates(300, label_weights=[1, 0.2, 1, 1, 1, 1], seed=2)
    counts = candidates["label"].value_counts()
    recipe = _recipe("balanced", balance={"per_label": 40, "on_shortfall": "shrink"})
    selection = select_variant(candidates, recipe, LABELS, seed=0)
    expected = {name: 40 - int(counts[name]) for name in NAMES if counts[name] < 40}
    assert "Fear" in expected and selection.shortfalls == expected
    fear = next(d for d in selection.shortfall_details if d["label"] == "Fear")
    assert fear["split"] == "all" and fear["missing"] == expected["Fear"] and fear["available"] == int(counts["Fear"])
    assert "balance.per_label = 40" in fear["rule"]
    assert (selection.clips["label"].value_counts() == int(counts.min())).all()
    assert any("Fear short by" in note for note in selection.notes)
    for strict in (_recipe("balanced", balance={"per_label": 40}), _recipe("balanced", balance={"per_label": 40, "on_shortfall": "error"})):
        with pytest.raises(InsufficientDataError, match=f"Fear short by {expected['Fear']}"):
            select_variant(candidates, strict, LABELS, seed=0)
    with pytest.raises(InvalidRecipeError, match="borrow"):
        _recipe("balanced", balance={"on_shortfall": "borrow"})


def test_test_oriented_test_split_is_reliable_and_balanced(candidates: pd.DataFrame) -> None:
    recipe = _recipe("test-oriented")
    selection = select_variant(candidates, recipe, LABELS, seed=0)
    clips = selection.clips
    test = clips.loc[clips["split"] == "test"]
    counts = test["label"].value_counts().reindex(NAMES, fill_value=0)
    assert counts.nunique() == 1 and counts.iloc[0] >= 5
    adjudicated = test["resolved_by"] == "adjudicated"
    unanimous_ok = test["unanimous"] & (test["confidence"] >= 0.8) & (test["n_judgements"] >= 3)
    assert (adjudicated | unanimous_ok).all()
    # The rest: train and validation, with clips that are not reliable among them.
    rest = clips.loc[clips["split"] != "test"]
    assert set(rest["split"]) == {"train", "validation"}
    assert (~rest["unanimous"] & (rest["resolved_by"] != "adjudicated")).any()
    # Larger than the full variant's test split (30% of the clips against 20%).
    full_test = (select_variant(candidates, _recipe("full"), LABELS, seed=0).clips["split"] == "test").sum()
    assert len(test) > full_test
    assert sum(selection.dropped.values()) == len(candidates) - len(clips)


def test_test_oriented_per_label_request_reports_shortfall(candidates: pd.DataFrame) -> None:
    recipe = _recipe("test-oriented", test={"per_label": 500, "on_shortfall": "shrink"})
    selection = select_variant(candidates, recipe, LABELS, seed=0)
    assert set(selection.shortfalls) == set(NAMES)
    assert all(0 < v < 500 for v in selection.shortfalls.values())
    with pytest.raises(InsufficientDataError, match="500 reliable test clips per label requested"):
        select_variant(candidates, _recipe("test-oriented", test={"per_label": 500}), LABELS)


def _without_on_shortfall(name: str, **override) -> Recipe:
    """The shipped recipe with its on_shortfall key left out (the shipped files write "fail")."""
    data = _recipe(name, **override).as_dict()
    for part in ("balance", "test"):
        if part in data:
            data[part] = {k: v for k, v in data[part].items() if k != "on_shortfall"}
    recipe = Recipe.from_dict(data)
    assert "on_shortfall" not in recipe.balance and "on_shortfall" not in recipe.test
    return recipe


def test_a_recipe_that_names_no_on_shortfall_fails_loudly() -> None:
    """#23 item 2: the default, for a recipe of one's own that does not say, is fail."""
    thin = _candidates(300, label_weights=[1, 0.2, 1, 1, 1, 1], seed=2)
    with pytest.raises(InsufficientDataError, match="Fear short by"):
        select_variant(thin, _without_on_shortfall("balanced", balance={"per_label": 40}), LABELS, seed=0)
    reliable_kind = thin["unanimous"] | (thin["resolved_by"] == "adjudicated")
    thin.loc[thin.index[reliable_kind].difference(thin.loc[reliable_kind].groupby("label").head(2).index),
             ["unanimous", "resolved_by"]] = [False, "consensus"]
    with pytest.raises(InsufficientDataError, match="reliable test clips per label requested"):
        select_variant(thin, _without_on_shortfall("test-oriented"), LABELS, seed=0)


def test_pool_too_small_for_the_test_oriented_recipe() -> None:
    """#23 item 2: few reliable clips (most clips 3/5 or 4/5) against test.fraction 0.3. The default
    fails naming every short label; shrink builds and names each shortfall (label, split, count,
    rule); borrow fills the test split from the short labels' most confident consensus clips."""
    candidates = _candidates(240, seed=5)
    thin = candidates.copy()
    reliable_kind = thin["unanimous"] | (thin["resolved_by"] == "adjudicated")
    # Keep 4 reliable clips per label, the rest become plain consensus clips.
    keep = thin.loc[reliable_kind].groupby("label").head(4).index
    demote = thin.index[reliable_kind].difference(keep)
    thin.loc[demote, "unanimous"] = False
    thin.loc[demote, "resolved_by"] = "consensus"
    thin.loc[demote, "resolving_stage"] = 1
    requested = int(0.3 * len(thin) // len(NAMES))
    assert requested > 4
    with pytest.raises(InsufficientDataError) as failure:
        select_variant(thin, _recipe("test-oriented"), LABELS, seed=0)
    assert all(f"{name} short by" in str(failure.value) for name in NAMES)
    assert f"{requested} reliable test clips per label requested" in str(failure.value)

    shrunk = select_variant(thin, _recipe("test-oriented", test={"on_shortfall": "shrink"}), LABELS, seed=0)
    assert {d["label"] for d in shrunk.shortfall_details} == set(NAMES)
    for d in shrunk.shortfall_details:
        assert d["split"] == "test" and d["requested"] == requested and d["missing"] == requested - d["available"] > 0
        assert "test.fraction = 0.3" in d["rule"] and "shrink" in d["rule"]
    test_counts = shrunk.clips.loc[shrunk.clips["split"] == "test", "label"].value_counts()
    assert test_counts.max() <= 4

    borrowed = select_variant(thin, _recipe("test-oriented", test={"on_shortfall": "borrow"}), LABELS, seed=0)
    borrowed_test = borrowed.clips.loc[borrowed.clips["split"] == "test"]
    assert borrowed_test["label"].value_counts().min() > 4  # more than the reliable pool gave
    assert (borrowed_test["resolved_by"] == "consensus").any()
    assert any(note.startswith("borrowed for test") for note in borrowed.notes)


def test_shortfall_that_appears_only_after_grouping_fails_by_default(candidates: pd.DataFrame) -> None:
    """Fear has enough reliable clips, but all except two share one uploader whose group is larger
    than max_fraction lets the test split take: the shortfall appears only once uploader groups
    stay whole. The default fails naming it; shrink builds with two test clips per label."""
    pooled = candidates.copy()
    fear = pooled["label"] == "Fear"
    strong = fear & pooled["unanimous"] & (pooled["confidence"] >= 0.8) & (pooled["n_judgements"] >= 3)
    free = pooled.index[strong][:2]
    weak_other = pooled.index[~fear & ~pooled["unanimous"] & (pooled["resolved_by"] == "consensus")]
    prolific = pooled.index[fear].difference(free).union(weak_other[:60])
    pooled.loc[prolific, "uploader"] = "one prolific uploader"
    pooled.loc[free, "uploader"] = ["a second uploader", "a third uploader"]
    pooled.loc[free, "duplicate_cluster"] = None
    test = {"per_label": 6, "max_fraction": 0.3}
    assert len(prolific) > 0.3 * len(pooled) and strong.sum() >= 6  # short only after grouping

    with pytest.raises(InsufficientDataError, match="Fear short by 4 once uploaders and near-duplicate clusters stay whole"):
        select_variant(pooled, _recipe("test-oriented", test=test), LABELS, seed=0)
    shrunk = select_variant(pooled, _recipe("test-oriented", test={**test, "on_shortfall": "shrink"}), LABELS, seed=0)
    assert [(d["label"], d["requested"], d["available"]) for d in shrunk.shortfall_details] == [("Fear", 6, 2)]
    assert shrunk.clips.loc[shrunk.clips["split"] == "test", "label"].value_counts().to_dict() == dict.fromkeys(NAMES, 2)


@pytest.mark.parametrize("variant", ["full", "balanced", "test-oriented"])
def test_selection_is_seeded(candidates: pd.DataFrame, variant: str) -> None:
    first = select_variant(candidates, _recipe(variant), LABELS, seed=3).clips
    again = select_variant(candidates, _recipe(variant), LABELS, seed=3).clips
    other = select_variant(candidates, _recipe(variant), LABELS, seed=4).clips
    pd.testing.assert_frame_equal(first, again)
    assert not first[["clip_id", "split"]].equals(other[["clip_id", "split"]])


@pytest.mark.parametrize("variant", ["full", "balanced", "test-oriented"])
def test_missing_label_is_named(candidates: pd.DataFrame, variant: str) -> None:
    without_fear = candidates.loc[candidates["label"] != "Fear"].reset_index(drop=True)
    with pytest.raises(InsufficientDataError, match="Fear has 0"):
        select_variant(without_fear, _recipe(variant), LABELS, seed=0)


def test_one_uploader_cannot_be_split(candidates: pd.DataFrame) -> None:
    one_uploader = candidates.assign(uploader="everyone")
    with pytest.raises(InsufficientDataError, match="independent groups .* found 1"):
        select_variant(one_uploader, _recipe("full"), LABELS, seed=0)


def test_no_reliable_clip_is_named(candidates: pd.DataFrame) -> None:
    shaky = candidates.assign(unanimous=False, resolved_by="consensus", resolving_stage=1)
    with pytest.raises(InsufficientDataError, match="no clip meets the test reliability rule"):
        select_variant(shaky, _recipe("test-oriented"), LABELS, seed=0)


def test_empty_input_is_insufficient() -> None:
    empty = _candidates(30).iloc[0:0]
    with pytest.raises(InsufficientDataError, match="no resolved clips"):
        select_variant(empty, _recipe("full"), LABELS)


def test_seeded_tie_break_on_equal_confidence() -> None:
    candidates = _candidates(240).assign(confidence=1.0)
    a = select_variant(candidates, _recipe("balanced"), LABELS, seed=1).clips["clip_id"]
    b = select_variant(candidates, _recipe("balanced"), LABELS, seed=2).clips["clip_id"]
    assert set(a) != set(b)
    assert np.array_equal(a, select_variant(candidates, _recipe("balanced"), LABELS, seed=1).clips["clip_id"])


def test_docstring_examples_run() -> None:
    import doctest

    import curation.export
    import curation.splits
    import curation.variants

    for module in (curation.variants, curation.splits, curation.export):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_test_oriented_test_split_follows_each_labels_platform_mix() -> None:
    candidates = _candidates(2000, seed=6)
    clips = select_variant(candidates, _recipe("test-oriented"), LABELS, seed=0).clips
    test = clips.loc[clips["split"] == "test"]
    per_label = int(test["label"].value_counts().iloc[0])
    expected = pd.crosstab(candidates["label"], candidates["platform"], normalize="index") * per_label
    got = pd.crosstab(test["label"], test["platform"]).reindex_like(expected).fillna(0)
    assert per_label >= 50 and (got - expected).abs().to_numpy().max() <= 3.0  # ~100 test clips per label
