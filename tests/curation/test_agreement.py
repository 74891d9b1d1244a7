"""Agreement against the field's published values (../shared/benchmarks/agreement_examples.md)."""

from __future__ import annotations

import doctest
import json

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

import curation.agreement as agreement
from curation.agreement import (
    agreement_report,
    alpha_by,
    alpha_per_label,
    alpha_with_ci,
    annotator_agreement,
    cohen_kappa,
    consensus_confusion,
    fleiss_kappa,
    fleiss_kappa_from_counts,
    gold_accuracy,
    krippendorff_alpha,
    pairwise_cohen_kappa,
    value_counts,
)
from curation.errors import CurationError, InsufficientDataError
from tests.curation.conftest import load_crowd, make_crowd


def long_table(rows: dict[str, str]) -> pd.DataFrame:
    """Observers × units rows (``.`` = missing) as a judgements table."""
    records = []
    for observer, line in rows.items():
        for unit, value in enumerate(line.split()):
            if value != ".":
                records.append({"clip_id": f"u{unit + 1:02d}", "annotator_id": observer, "label": value})
    return pd.DataFrame(records)


EXAMPLE_A = {"Meg": "0 1 0 0 0 0 0 0 1 0", "Owen": "1 1 1 0 0 1 0 0 0 0"}
EXAMPLE_B = {"Ben": "a a b b d c c c e d d a", "Gerry": "b a b b b c c c e d d d"}
EXAMPLE_C = {
    "A": "1 2 3 3 2 1 4 1 2 . . .",
    "B": "1 2 3 3 2 2 4 1 2 5 . 3",
    "C": ". 3 3 3 2 3 4 2 2 5 1 .",
    "D": "1 2 3 3 2 4 4 1 2 5 1 .",
}
EXAMPLE_D = {
    "A": ". . . . . 3 4 1 2 1 1 3 3 . 3",
    "B": "1 . 2 1 3 3 4 3 . . . . . . .",
    "C": ". . 2 1 3 4 4 . 2 1 1 3 3 . 4",
}
EXAMPLE_E = {"c1": "1 1 2 4 1 2 1 3 2", "c2": "1 2 2 4 4 2 2 3 2", "c3": "1 2 2 4 4 2 3 3 2"}
EXAMPLE_F = {"c1": "a a b b b b b c c c c c", "c2": "a b b b b b c c c c c c"}
# Hayes & Krippendorff (2007): one row per unit, observers 1..5.
HAYES_UNITS = """
1 1 2 . 2 | 1 1 0 1 . | 2 3 3 3 . | . 0 0 . 0 | 0 0 0 . 0 | 0 0 0 . 0 | 1 0 2 . 1 | 1 . 2 0 . | 2 2 2 . 2 | 2 1 1 1 .
. 1 0 0 . | 0 0 0 0 . | 1 2 2 2 . | 3 3 2 2 3 | 1 1 1 . 1 | 1 1 1 . 1 | 2 1 2 . 2 | 1 2 3 3 . | 1 1 0 1 . | 0 0 0 . 0
0 0 1 1 . | 0 0 . 0 0 | 2 3 3 3 . | 0 0 0 0 . | 1 2 . 2 2 | 0 1 1 1 . | 0 0 0 1 0 | 1 2 1 2 . | 1 1 2 2 . | 1 1 2 . 2
1 1 0 . 0 | 2 1 2 1 . | 2 2 . 2 2 | 3 2 2 2 . | 2 2 2 . 2 | 2 2 3 . 2 | 2 2 2 . 2 | 2 2 . 1 2 | 2 2 2 2 . | 1 1 1 . 1
"""
FLEISS_1971 = """
4 4 4 4 4 4 | 2 2 2 5 5 5 | 2 3 3 3 3 5 | 5 5 5 5 5 5 | 2 2 2 4 4 4 | 1 1 3 3 3 3 | 3 3 3 3 5 5 | 1 1 3 3 3 4 | 1 1 4 4 4 4 | 5 5 5 5 5 5
1 4 4 4 4 4 | 1 2 4 4 4 4 | 2 2 2 3 3 3 | 1 4 4 4 4 4 | 2 2 4 4 4 5 | 3 3 3 3 3 5 | 1 1 1 4 5 5 | 1 1 1 1 1 2 | 2 2 4 4 4 4 | 1 3 3 5 5 5
5 5 5 5 5 5 | 2 4 4 4 4 4 | 2 2 4 5 5 5 | 1 1 4 4 4 4 | 1 4 4 4 4 5 | 2 2 2 2 2 4 | 1 1 1 1 5 5 | 2 2 4 4 4 4 | 1 3 3 3 3 3 | 5 5 5 5 5 5
"""


def hayes_table() -> pd.DataFrame:
    units = [u.split() for line in HAYES_UNITS.strip().splitlines() for u in line.split("|")]
    # The published table is laid out in four columns of ten units (u01–u10 down the first column):
    # our lines run across, so unit k of line r is u(10*k + r + 1) — the order does not change α.
    assert len(units) == 40
    rows = {f"obs{o + 1}": " ".join(unit[o] for unit in units) for o in range(5)}
    return long_table(rows)


def fleiss_table() -> pd.DataFrame:
    subjects = [s.split() for line in FLEISS_1971.strip().splitlines() for s in line.split("|")]
    assert len(subjects) == 30 and all(len(s) == 6 for s in subjects)
    return pd.DataFrame(
        [{"clip_id": i, "annotator_id": f"r{j}", "label": v} for i, s in enumerate(subjects) for j, v in enumerate(s)]
    )


# ------------------------------------------------------------------------------------------ Krippendorff's α


@pytest.mark.parametrize(
    ("example", "level", "expected"),
    [
        (EXAMPLE_A, "nominal", 1 - 19 * 4 / 84),  # 0.095
        (EXAMPLE_B, "nominal", 155 / 224),  # 0.692
        (EXAMPLE_C, "nominal", 0.743),
        (EXAMPLE_C, "ordinal", 0.815),
        (EXAMPLE_C, "interval", 0.849),
        (EXAMPLE_C, "ratio", 0.797),
        (EXAMPLE_D, "nominal", 0.691),
        (EXAMPLE_D, "interval", 0.811),
        (EXAMPLE_E, "nominal", 0.642),
        (EXAMPLE_E, "interval", 0.547),
        (EXAMPLE_E, "ratio", 0.483),
        (EXAMPLE_F, "nominal", 0.734),
    ],
)
def test_krippendorff_published_examples(example: dict[str, str], level: str, expected: float) -> None:
    assert krippendorff_alpha(long_table(example), level=level) == pytest.approx(expected, abs=5e-4)


def test_krippendorff_binary_example_is_exact() -> None:
    assert krippendorff_alpha(long_table(EXAMPLE_A)) == pytest.approx(1 - 19 * 4 / 84, abs=1e-12)
    assert krippendorff_alpha(long_table(EXAMPLE_B)) == pytest.approx(155 / 224, abs=1e-12)


def test_hayes_krippendorff_2007_ordinal() -> None:
    assert krippendorff_alpha(hayes_table(), level="ordinal") == pytest.approx(0.7598, abs=5e-5)


def test_value_counts_match_the_reliability_matrix_route() -> None:
    """Our value counts give the package the same α as its observers × units matrix."""
    table = long_table(EXAMPLE_C)
    matrix = np.array([[np.nan if v == "." else float(v) for v in line.split()] for line in EXAMPLE_C.values()])
    counts, names, clips = value_counts(table)
    assert names == ["1", "2", "3", "4", "5"] and len(clips) == 12
    assert counts.sum() == np.count_nonzero(~np.isnan(matrix))
    for level in ("nominal", "ordinal", "interval", "ratio"):
        ours = krippendorff_alpha(table, level=level)
        theirs = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
        assert ours == pytest.approx(theirs, abs=1e-12)


def test_bootstrap_coincidence_route_equals_package() -> None:
    """The bootstrap's coincidence arithmetic, with every clip once, gives the package's α."""
    counts, names, _ = value_counts(hayes_table())
    pairable = counts[counts.sum(axis=1) >= 2]
    o = sum((np.outer(c, c) - np.diag(c)) / (c.sum() - 1) for c in pairable)
    for level in ("nominal", "ordinal", "interval", "ratio"):
        domain = np.arange(len(names), dtype=float) + (1.0 if level == "ratio" else 0.0)
        expected = krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level)
        assert agreement._alpha_from_coincidences(o, domain, level) == pytest.approx(expected, abs=1e-12)


def test_crowd_alpha_matches_reference(crowd_dir) -> None:
    answers, _ = load_crowd(crowd_dir, "s_face")
    assert krippendorff_alpha(answers) == pytest.approx(0.4949, abs=5e-5)


def test_bootstrap_interval_is_seeded_and_brackets_alpha() -> None:
    table = hayes_table()
    a = alpha_with_ci(table, level="ordinal", n_boot=300, seed=7)
    b = alpha_with_ci(table, level="ordinal", n_boot=300, seed=7)
    c = alpha_with_ci(table, level="ordinal", n_boot=300, seed=8)
    assert a == b and a != c
    assert a.low < a.alpha < a.high and a.high - a.low < 0.4
    assert a.n_clips == 40
    no_ci = alpha_with_ci(table, n_boot=0)
    assert no_ci.low is None and no_ci.alpha == pytest.approx(krippendorff_alpha(table))


def test_alpha_by_stage_group_and_label(toy_judgements: pd.DataFrame) -> None:
    by_stage = alpha_by(toy_judgements, "stage", n_boot=50)
    assert set(by_stage) == {1, 2, 3}
    assert by_stage[3].alpha is None and "two or more" in by_stage[3].reason  # one expert judgement
    stage1 = toy_judgements[toy_judgements["stage"] == 1]
    assert by_stage[1].alpha == pytest.approx(krippendorff_alpha(stage1))
    by_gender = alpha_by(toy_judgements, "gender", n_boot=0)
    women = toy_judgements[toy_judgements["gender"] == "f"]
    assert by_gender["f"].alpha == pytest.approx(krippendorff_alpha(women))
    per_label = alpha_per_label(toy_judgements, n_boot=0)
    fear = toy_judgements.assign(label=np.where(toy_judgements["label"] == "Fear", "Fear", "other"))
    assert per_label["Fear"].alpha == pytest.approx(krippendorff_alpha(fear))
    with pytest.raises(CurationError, match="no column 'region'"):
        alpha_by(toy_judgements, "region")


def test_degenerate_data_gives_clear_answers() -> None:
    one_label = pd.DataFrame({"clip_id": [1, 1, 2, 2], "annotator_id": ["a", "b"] * 2, "label": ["x"] * 4})
    with pytest.raises(InsufficientDataError, match="same label|single label"):
        krippendorff_alpha(one_label)
    assert alpha_with_ci(one_label).alpha is None
    one_annotator = pd.DataFrame({"clip_id": [1, 2], "annotator_id": ["a", "a"], "label": ["x", "y"]})
    with pytest.raises(InsufficientDataError, match="two or more annotators"):
        krippendorff_alpha(one_annotator)
    assert pairwise_cohen_kappa(one_annotator).empty
    assert annotator_agreement(one_annotator)["loo_agreement"].isna().all()
    with pytest.raises(InsufficientDataError):
        fleiss_kappa(one_label)
    with pytest.raises(CurationError, match="level of measurement"):
        krippendorff_alpha(one_annotator, level="cardinal")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ κ


def test_fleiss_1971() -> None:
    table = fleiss_table()
    assert fleiss_kappa(table) == pytest.approx(0.4302, abs=5e-5)
    assert krippendorff_alpha(table) == pytest.approx(0.4334, abs=5e-5)


def test_fleiss_wikipedia_counts_and_unequal_raters() -> None:
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa_from_counts(counts) == pytest.approx(0.210, abs=5e-4)
    uneven = fleiss_table().iloc[1:]
    with pytest.raises(InsufficientDataError, match="same number of judgements on every clip .found 5 to 6"):
        fleiss_kappa(uneven)


def test_cohen_kappa_published_and_equal_to_sklearn() -> None:
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # contingency [[0,4,1],[0,8,0],[0,1,5]] → 0.4842, linear-weighted 0.4701
    cells = {(0, 1): 4, (0, 2): 1, (1, 1): 8, (2, 1): 1, (2, 2): 5}
    x = [i for (i, _), n in cells.items() for _ in range(n)]
    y = [j for (_, j), n in cells.items() for _ in range(n)]
    assert cohen_kappa(x, y, labels=[0, 1, 2]) == pytest.approx(0.4842, abs=5e-5)
    assert cohen_kappa(x, y, labels=[0, 1, 2], weights="linear") == pytest.approx(0.4701, abs=5e-5)
    rng = np.random.default_rng(0)
    for weights in (None, "linear", "quadratic"):
        r1 = rng.integers(0, 4, 200)
        r2 = np.where(rng.random(200) < 0.6, r1, rng.integers(0, 4, 200))
        assert cohen_kappa(r1, r2, weights=weights) == pytest.approx(cohen_kappa_score(r1, r2, weights=weights), abs=1e-12)


def test_pairwise_cohen_kappa_equals_sklearn_per_pair() -> None:
    df, _ = make_crowd(300, 5, n_annotators=8, seed=5)
    pairs = pairwise_cohen_kappa(df, min_shared=30)
    assert len(pairs) > 0 and (pairs["n_shared"] >= 30).all()
    assert (pairs["annotator_a"] < pairs["annotator_b"]).all()
    wide = df.pivot(index="clip_id", columns="annotator_id", values="label")
    for row in pairs.head(6).itertuples():
        both = wide[[row.annotator_a, row.annotator_b]].dropna()
        assert row.n_shared == len(both)
        expected = cohen_kappa_score(both[row.annotator_a], both[row.annotator_b])
        assert row.kappa == pytest.approx(expected, abs=1e-12)
    assert pairwise_cohen_kappa(df, min_shared=10_000).empty


# ------------------------------------------------------------------------------------------ annotators


def test_leave_one_out_agreement_by_hand(toy_judgements: pd.DataFrame) -> None:
    table = annotator_agreement(toy_judgements)
    # a6: c3 (others Fear 4, Neutral 2, Sadness 1 → Fear; a6 said Fear: 1) and c4 (others Fear 2,
    # Neutral 3 incl. e1, Sadness 2, Tension 1 → Neutral; a6 said Neutral: 1) → 1.0
    assert table.loc["a6", "loo_agreement"] == pytest.approx(1.0)
    # a8: c3 → Fear (1); c4 said Tension, others' top Neutral (0) → 0.5
    assert table.loc["a8", "loo_agreement"] == pytest.approx(0.5)
    # e1 on c4: others Fear 2, Neutral 3, Sadness 2, Tension 1 → Neutral, e1 said Neutral
    assert table.loc["e1", "loo_agreement"] == pytest.approx(1.0)
    assert table.loc["e1", "pairwise_agreement"] == pytest.approx(3 / 8)
    assert table.loc["a1", "n_judgements"] == 6


def test_consensus_confusion_counts(toy_judgements: pd.DataFrame) -> None:
    confusion = consensus_confusion(toy_judgements)
    # c1: everyone's others-consensus is Fear and everyone said Fear
    assert confusion.loc["Fear", "Fear"] >= 5
    assert confusion.to_numpy().sum() <= len(toy_judgements)


def test_gold_accuracy_from_column_and_mapping() -> None:
    df = pd.DataFrame(
        {
            "clip_id": ["g1", "g1", "g2", "g2", "c1"],
            "annotator_id": ["a", "b", "a", "b", "a"],
            "label": ["x", "y", "x", "x", "y"],
            "is_gold": [True, True, True, True, False],
            "gold_label": ["x", "x", "x", "x", None],
        }
    )
    acc = gold_accuracy(df)
    assert acc.loc["a"].tolist() == [2, 2, 1.0] and acc.loc["b", "gold_accuracy"] == 0.5
    from_mapping = gold_accuracy(df.drop(columns=["gold_label"]), {"g1": "y"})
    assert from_mapping.loc["b", "gold_accuracy"] == 1.0 and from_mapping.loc["a", "gold_accuracy"] == 0.0
    assert gold_accuracy(df.drop(columns=["gold_label"])).empty


def test_agreement_report_is_json_ready(toy_judgements: pd.DataFrame) -> None:
    report = agreement_report(toy_judgements, n_boot=50, min_shared=2)
    text = json.dumps(report)  # no numpy scalars, no NaN
    assert "NaN" not in text
    crowd = toy_judgements[toy_judgements["stage"] < 3]
    # Crowd coders only: the expert's decision (e1, stage 3) is left out and counted apart.
    assert report["summary"]["n_judgements"] == len(crowd) == len(toy_judgements) - 1
    assert report["summary"]["n_expert_judgements_left_out"] == 1
    assert report["alpha"]["alpha"] == pytest.approx(krippendorff_alpha(crowd))
    assert set(report["alpha_by_stage"]) == {"1", "2"}
    assert set(report["alpha_by_group"]) == {"gender"}
    assert report["fleiss_kappa"]["value"] is None and "same number" in report["fleiss_kappa"]["reason"]
    assert len(report["consensus_confusion"]["matrix"]) == 5  # the labels found (no Relaxation)
    assert {a["annotator_id"] for a in report["annotators"]} == {f"a{i}" for i in range(1, 9)}
    # Stage 1 has complete 5-way overlap and stage 2 complete 3-way: each gets its Fleiss' κ.
    stage_one = crowd[crowd["stage"] == 1]
    assert report["fleiss_kappa_by_stage"]["1"]["value"] == pytest.approx(fleiss_kappa(stage_one))
    assert report["fleiss_kappa_by_stage"]["2"]["value"] == pytest.approx(fleiss_kappa(crowd[crowd["stage"] == 2]))
    assert report["pairwise_kappa"] and all(p["n_shared"] >= 2 for p in report["pairwise_kappa"])


def test_gold_judgements_are_left_out_of_agreement_by_default() -> None:
    df = pd.DataFrame(
        {"clip_id": [1, 1, 2, 2], "annotator_id": ["a", "b"] * 2, "label": ["x", "y", "x", "x"], "is_gold": [True, True, False, False]}
    )
    with pytest.raises(InsufficientDataError):  # only clip 2 remains, one label
        krippendorff_alpha(df)
    assert krippendorff_alpha(df, include_gold=True) == pytest.approx(0.0, abs=0.5)


def test_docstring_examples_run() -> None:
    assert doctest.testmod(agreement).failed == 0


def test_bootstrap_low_memory_route_gives_the_same_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Big tables skip the (clips, V²) matrix; both routes give the same replicates."""
    counts, names, _ = value_counts(hayes_table())
    domain = np.arange(len(names), dtype=float)
    fast = agreement._bootstrap_alphas(counts, domain, "ordinal", 64, seed=3)
    monkeypatch.setattr(agreement, "_PER_CLIP_LIMIT", 0)
    slow = agreement._bootstrap_alphas(counts, domain, "ordinal", 64, seed=3)
    np.testing.assert_allclose(fast, slow, rtol=1e-10)
    assert np.std(fast) > 0


@pytest.mark.parametrize("level", ["nominal", "interval", "ratio"])
def test_bootstrap_shortcut_equals_full_coincidences(level: str) -> None:
    """Nominal / interval / ratio replicates from (counts, disagreement) equal the full V × V route."""
    counts, names, _ = value_counts(long_table(EXAMPLE_C))
    domain = np.arange(1.0, len(names) + 1.0)
    fast = agreement._bootstrap_alphas(counts, domain, level, 40, seed=5)
    pairable = counts[counts.sum(axis=1) >= 2]
    per_clip = [(np.outer(c, c) - np.diag(c)) / (c.sum() - 1) for c in pairable]
    weights = np.concatenate(list(agreement._resample_weights(len(pairable), 40, 5)))
    slow = [agreement._alpha_from_coincidences(sum(w * o for w, o in zip(row, per_clip, strict=True)), domain, level) for row in weights]
    np.testing.assert_allclose(fast, slow, rtol=1e-9)


def test_one_vs_rest_bootstrap_equals_per_label_runs(toy_judgements: pd.DataFrame) -> None:
    counts, names, _ = value_counts(toy_judgements)
    joint = agreement._bootstrap_one_vs_rest(counts, 60, seed=2)
    totals = counts.sum(axis=1)
    for i in range(len(names)):
        binary = np.stack([counts[:, i], totals - counts[:, i]], axis=1)
        alone = agreement._bootstrap_alphas(binary, np.arange(2.0), "nominal", 60, seed=2)
        np.testing.assert_allclose(joint[:, i], alone, rtol=1e-9, equal_nan=True)


@pytest.mark.parametrize(
    "table",
    [
        pd.DataFrame({"clip_id": [1, 1, 2, 2], "annotator_id": ["a", "b"] * 2, "label": ["x"] * 4}),
        pd.DataFrame({"clip_id": [1, 2, 3], "annotator_id": ["a"] * 3, "label": ["x", "y", "x"]}),
    ],
    ids=["one-label", "one-annotator"],
)
def test_report_on_degenerate_data_explains_instead_of_crashing(table: pd.DataFrame) -> None:
    report = agreement_report(table, n_boot=20)
    assert report["alpha"]["alpha"] is None and report["alpha"]["reading"] == "undefined"
    assert report["alpha"]["reason"]
    assert report["fleiss_kappa"]["value"] is None and report["fleiss_kappa"]["reason"]
    json.dumps(report)


def test_agreement_report_refuses_a_header_only_table() -> None:
    header_only = pd.DataFrame({"clip_id": [], "annotator_id": [], "label": []}, dtype=str)
    with pytest.raises(InsufficientDataError, match="agreement needs at least one labelled judgement"):
        agreement_report(header_only)
    with pytest.raises(InsufficientDataError, match="agreement needs"):
        agreement_report(header_only, labels=["Fear", "Sadness"], n_boot=0)
