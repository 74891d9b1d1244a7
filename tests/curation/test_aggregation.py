from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import curation.aggregation as aggregation
from curation.aggregation import Consensus, DawidSkene, MajorityVote, WeightedVote, consensus, resolve
from curation.errors import CurationError, InsufficientDataError
from tests.curation.conftest import load_crowd, make_crowd

# ---------------------------------------------------------------------------------------------- consensus


def test_consensus_three_of_five_resolves_at_default_threshold() -> None:
    c = consensus(["Fear", "Neutral", "Fear", "Sadness", "Fear"])
    assert c == Consensus(
        label="Fear", share=0.6, counts={"Fear": 3.0, "Neutral": 1.0, "Sadness": 1.0}, is_tie=False, resolved=True
    )


def test_consensus_two_of_five_is_below_threshold_but_keeps_top_label() -> None:
    c = consensus(["Fear", "Fear", "Neutral", "Sadness", "Tension"])
    assert (c.label, c.share, c.is_tie, c.resolved) == ("Fear", 0.4, False, False)


def test_consensus_tie_gives_no_label_and_is_never_resolved() -> None:
    c = consensus(["Fear", "Fear", "Neutral", "Neutral"], threshold=0.5)
    assert (c.label, c.is_tie, c.resolved, c.share) == (None, True, False, 0.5)


def test_consensus_weights_break_the_count_and_skip_cant_judge() -> None:
    c = consensus(["Fear", "Neutral", "Neutral", None, ""], weights=[0.9, 0.3, 0.3, 1.0, 1.0])
    assert c.label == "Fear"
    assert c.counts == {"Fear": 0.9, "Neutral": 0.6}
    assert c.share == pytest.approx(0.6)
    assert c.resolved  # 0.9 / 1.5 = 0.6 exactly at the threshold, despite float sums


def test_consensus_errors() -> None:
    with pytest.raises(InsufficientDataError):
        consensus([])
    with pytest.raises(CurationError, match="2 labels but 1 weights"):
        consensus(["Fear", "Neutral"], weights=[1.0])
    with pytest.raises(CurationError, match="threshold"):
        consensus(["Fear"], threshold=0.0)
    with pytest.raises(InsufficientDataError, match="sum to zero"):
        consensus(["Fear"], weights=[0.0])


def test_consensus_is_frozen() -> None:
    c = consensus(["Fear"])
    with pytest.raises(AttributeError):
        c.label = "Neutral"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- resolve


def test_resolve_toy_table_every_way_of_resolving(toy_judgements: pd.DataFrame) -> None:
    r = resolve(toy_judgements)
    assert list(r.columns) == [
        "label", "confidence", "n_judgements", "n_crowd_judgements", "resolving_stage", "resolved_by",
        "is_resolved", "unanimous", "agreement_pattern",
    ]
    assert r.index.name == "clip_id"
    expected = {
        "c1": ("Fear", 1.0, 5, 5, 1, "unanimous", True, True, "5/5"),
        "c2": ("Fear", 0.6, 5, 5, 1, "consensus", True, False, "3/5"),
        "c3": ("Fear", 5 / 8, 8, 8, 2, "consensus", True, False, "stage 2"),
        # The expert's label had 3 of the 8 crowd labels: the crowd's share, not 4 of 9 with the expert.
        "c4": ("Neutral", 3 / 8, 9, 8, 3, "adjudicated", True, False, "expert"),
        "c5": (None, 0.2, 5, 5, None, "tie", False, False, "unresolved"),
        "c6": (None, 0.4, 5, 5, None, "below-threshold", False, False, "unresolved"),
    }
    for clip, (label, conf, n, n_crowd, stage, how, ok, unanimous, pattern) in expected.items():
        row = r.loc[clip]
        assert row["label"] == label, clip
        assert row["confidence"] == pytest.approx(conf), clip
        assert row["n_judgements"] == n
        assert row["n_crowd_judgements"] == n_crowd, clip
        assert (pd.isna(row["resolving_stage"]) if stage is None else row["resolving_stage"] == stage), clip
        assert row["resolved_by"] == how
        assert row["is_resolved"] == ok
        assert row["unanimous"] == unanimous
        assert row["agreement_pattern"] == pattern, clip


def test_resolve_threshold_is_a_parameter(toy_judgements: pd.DataFrame) -> None:
    r = resolve(toy_judgements, threshold=0.4)
    assert r.loc["c6", "label"] == "Fear" and r.loc["c6", "resolved_by"] == "consensus"
    strict = resolve(toy_judgements, threshold=1.0)
    assert strict["is_resolved"].tolist() == [True, False, False, True, False, False]


def test_resolve_stage_two_tie_after_stage_one_tie() -> None:
    df = pd.DataFrame(
        {"clip_id": ["x"] * 4, "annotator_id": list("abcd"), "label": ["Fear", "Fear", "Sadness", "Sadness"], "stage": [1, 1, 2, 2]}
    )
    r = resolve(df)
    assert r.loc["x", "resolved_by"] == "tie" and r.loc["x", "label"] is None


def test_resolve_dawid_skene_and_weighted_methods(toy_judgements: pd.DataFrame) -> None:
    ds = resolve(toy_judgements, method="dawid-skene")
    assert ds.loc["c1", "label"] == "Fear" and ds.loc["c1", "resolved_by"] == "unanimous"
    assert ds.loc["c4", "label"] == "Neutral" and ds.loc["c4", "resolved_by"] == "adjudicated"
    assert ((ds["confidence"] >= 0) & (ds["confidence"] <= 1)).all()
    weighted = resolve(toy_judgements, method="weighted", skills=pd.Series({"a1": 1.0, "a2": 1.0}), threshold=0.5)
    # with a1 and a2 the only skilled annotators (others get the median skill, 1.0) nothing changes...
    assert weighted.loc["c2", "label"] == "Fear"
    skewed = pd.Series({f"a{i}": 0.1 for i in range(1, 9)} | {"a3": 5.0})
    w = resolve(toy_judgements, method="weighted", skills=skewed)
    # ...while a heavy a3 carries c6 (a3 said Neutral): 5.0 / (5.0 + 0.4)
    assert w.loc["c6", "label"] == "Neutral"
    assert w.loc["c6", "confidence"] == pytest.approx(5.0 / 5.4)
    with pytest.raises(CurationError, match="unknown aggregation method"):
        resolve(toy_judgements, method="median")


def test_resolve_keeps_clips_without_a_usable_label() -> None:
    df = pd.DataFrame({"clip_id": ["x", "y"], "annotator_id": ["a", "a"], "label": ["Fear", None]})
    r = resolve(df)
    assert r.loc["y", "n_judgements"] == 0 and r.loc["y", "resolved_by"] == "below-threshold"
    assert r.loc["x", "label"] == "Fear"


# ---------------------------------------------------------------------------------------------- aggregators


def test_majority_vote_reports_ties_and_can_take_first(toy_judgements: pd.DataFrame, emotions: list[str]) -> None:
    mv = MajorityVote().fit(toy_judgements, emotions)
    assert mv.labels_["c3"] == "Fear"  # 5 of 8 over both stages
    assert mv.labels_["c5"] is None and bool(mv.ties_["c5"])
    assert list(mv.probas_.columns) == emotions
    np.testing.assert_allclose(mv.probas_.sum(axis=1), 1.0)
    first = MajorityVote(on_tie="first").fit_predict(toy_judgements, emotions)
    assert first["c5"] == "Excitation"  # first of the tied labels in label-set order
    assert MajorityVote().fit_predict(toy_judgements, emotions, on_tie="first")["c5"] == "Excitation"
    with pytest.raises(CurationError):
        MajorityVote(on_tie="random")  # type: ignore[arg-type]


def test_weighted_vote_learns_skills_from_majority() -> None:
    df, truth = make_crowd(300, 5, accuracy=0.75, seed=3)
    wv = WeightedVote(on_tie="first").fit(df)
    assert wv.skills_.between(0.5, 1.0).all()
    acc = (wv.labels_.reindex(truth.index) == truth).mean()
    assert acc > 0.85


def test_dawid_skene_recovers_truth_and_is_deterministic() -> None:
    # ten careful annotators and ten near-random ones: DS learns whom to trust, MV cannot
    df, truth = make_crowd(400, 5, accuracy=[0.9] * 10 + [0.35] * 10, seed=1)
    a = DawidSkene().fit(df)
    b = DawidSkene().fit(df.sample(frac=1.0, random_state=4))  # row order must not matter
    pd.testing.assert_frame_equal(a.probas_, b.probas_)
    ds_acc = (a.labels_.reindex(truth.index) == truth).mean()
    mv_acc = (MajorityVote(on_tie="first").fit_predict(df).reindex(truth.index) == truth).mean()
    assert ds_acc > 0.9 and ds_acc > mv_acc + 0.03
    np.testing.assert_allclose(a.errors_.sum(axis=1), 1.0)  # columns of each confusion matrix sum to 1
    assert a.errors_.shape == (20, 4, 4)
    assert 1 <= a.n_iter_ <= 100 and len(a.loss_history_) == a.n_iter_
    assert a.priors_.sum() == pytest.approx(1.0)
    frame = a.errors_frame()
    assert frame.shape == (80, 4)


def test_dawid_skene_iteration_cap() -> None:
    df, _ = make_crowd(200, 5, accuracy=0.6, seed=2)
    assert DawidSkene(n_iter=1).fit(df).n_iter_ == 1


def test_aggregators_refuse_empty_tables() -> None:
    df = pd.DataFrame({"clip_id": ["x"], "annotator_id": ["a"], "label": [None]})
    with pytest.raises(InsufficientDataError):
        DawidSkene().fit(df)
    with pytest.raises(InsufficientDataError):
        MajorityVote().fit(df)


@pytest.mark.parametrize("method", ["majority", "dawid-skene", "weighted"])
def test_resolve_refuses_a_header_only_table(method: str) -> None:
    # What a header-only judgements CSV reads as: the columns and no rows, so no label set either.
    header_only = pd.DataFrame({"clip_id": [], "annotator_id": [], "label": []}, dtype=str)
    with pytest.raises(InsufficientDataError, match="resolving clips needs at least one labelled judgement"):
        resolve(header_only, method=method)
    with pytest.raises(InsufficientDataError, match="resolving clips"):
        resolve(header_only, labels=["Fear", "Sadness"], method=method)


def test_single_annotator_single_label_is_a_clear_result() -> None:
    df = pd.DataFrame({"clip_id": ["x", "y"], "annotator_id": ["a", "a"], "label": ["Fear", "Fear"]})
    assert DawidSkene().fit_predict(df).tolist() == ["Fear", "Fear"]
    assert MajorityVote().fit_predict_proba(df)["Fear"].tolist() == [1.0, 1.0]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(aggregation)
    assert result.failed == 0 and result.attempted >= 4


# ---------------------------------------------------------------------------------------------- the field's numbers


def test_crowd_d_product_reference_accuracy(crowd_dir) -> None:
    """crowd-kit 1.4.2 / its JOSS paper on d_product: DS 0.9397, MV 0.8966."""
    answers, truth = load_crowd(crowd_dir, "d_product")
    ds = DawidSkene(on_tie="first").fit_predict(answers)
    mv = MajorityVote(on_tie="first").fit_predict(answers)
    ds_acc = (ds.reindex(truth.index) == truth).mean()
    mv_acc = (mv.reindex(truth.index) == truth).mean()
    assert ds_acc == pytest.approx(0.9397, abs=0.002)
    assert mv_acc == pytest.approx(0.8966, abs=0.0005)


@pytest.mark.parametrize(("name", "reference"), [("s_face", 0.6404), ("s_dog", 0.8426), ("d_duck", 0.8889)])
def test_crowd_other_sets_dawid_skene_reference_accuracy(crowd_dir, name: str, reference: float) -> None:
    answers, truth = load_crowd(crowd_dir, name)
    ds = DawidSkene(on_tie="first").fit_predict(answers)
    assert (ds.reindex(truth.index) == truth).mean() == pytest.approx(reference, abs=0.002)


def test_majority_vote_with_annotator_weights(toy_judgements: pd.DataFrame) -> None:
    weights = pd.Series({a: 1.0 for a in toy_judgements["annotator_id"].unique()})
    weights["a3"] = 10.0
    mv = MajorityVote().fit(toy_judgements, weights=weights)
    assert mv.labels_["c6"] == "Neutral"  # a3's heavy vote
    assert mv.counts_.loc["c6", "Neutral"] == 10.0
    with pytest.raises(CurationError, match="no weight for annotator"):
        MajorityVote().fit(toy_judgements, weights=weights.drop("a3"))


def test_dawid_skene_keeps_unused_labels_of_the_label_set(emotions: list[str]) -> None:
    df, _ = make_crowd(100, 5, n_labels=4, seed=6)
    labels = ["L0", "L1", "L2", "L3", "Unused"]
    ds = DawidSkene().fit(df, labels)
    assert list(ds.probas_.columns) == labels
    assert ds.priors_["Unused"] == 0.0 and (ds.probas_["Unused"] == 0.0).all()
    assert ds.errors_.shape == (20, 5, 5) and (ds.errors_[:, :, 4] == 0).all()
