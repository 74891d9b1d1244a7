"""Issue #23 in the aggregation: crowd and expert apart, gold out unless asked, agreement patterns,
and the two tie rules against crowd-kit's."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from curation import aggregation
from curation.aggregation import MajorityVote, agreement_patterns, resolve
from curation.errors import CurationError
from tests.curation.conftest import load_crowd, make_crowd


def _with_expert(df: pd.DataFrame, clips: list[str], label: str, expert: str = "expert1") -> pd.DataFrame:
    rows = pd.DataFrame({"clip_id": clips, "annotator_id": expert, "label": label, "stage": 3})
    return pd.concat([df.assign(stage=1), rows], ignore_index=True)


@pytest.mark.parametrize("method", ["dawid-skene", "weighted"])
def test_expert_rows_do_not_move_the_crowd_model(method: str) -> None:
    """The aggregators fit crowd judgements only: an expert deciding 30 clips (always "L0", so a
    very odd "annotator" to Dawid–Skene) changes nothing on the other clips."""
    crowd, _ = make_crowd(300, 5, accuracy=[0.9] * 10 + [0.5] * 10, seed=4)
    decided = sorted(crowd["clip_id"].unique())[:30]
    both = resolve(_with_expert(crowd, decided, "L0"), method=method)
    alone = resolve(crowd.assign(stage=1), method=method)
    others = alone.index.difference(decided)
    pd.testing.assert_series_equal(both.loc[others, "confidence"], alone.loc[others, "confidence"])
    pd.testing.assert_series_equal(both.loc[others, "label"], alone.loc[others, "label"])
    assert (both.loc[decided, "label"] == "L0").all() and (both.loc[decided, "resolved_by"] == "adjudicated").all()
    assert (both.loc[decided, "agreement_pattern"] == "expert").all()
    # The manifest's crowd count leaves the expert's row out; n_judgements keeps it.
    assert (both.loc[decided, "n_crowd_judgements"] == 5).all() and (both.loc[decided, "n_judgements"] == 6).all()


def test_expert_override_confidence_is_the_crowds_share_of_the_experts_label() -> None:
    df = pd.DataFrame({"clip_id": ["x"] * 6, "annotator_id": list("abcde") + ["e1"],
                       "label": ["Fear", "Fear", "Neutral", "Sadness", "Tension", "Neutral"],
                       "stage": [1, 1, 1, 1, 1, 3]})
    row = resolve(df).loc["x"]
    assert (row["label"], row["resolved_by"], row["resolving_stage"]) == ("Neutral", "adjudicated", 3)
    assert row["confidence"] == pytest.approx(1 / 5)  # overruled the crowd: a low confidence


def test_expert_as_a_weighted_source() -> None:
    # Crowd: Fear 3, Neutral 2; the expert says Neutral.
    df = pd.DataFrame({"clip_id": ["x"] * 6, "annotator_id": list("abcde") + ["e1"],
                       "label": ["Fear", "Fear", "Fear", "Neutral", "Neutral", "Neutral"],
                       "stage": [1, 1, 1, 1, 1, 3]})
    weak = resolve(df, expert="source", expert_weight=2.0).loc["x"]  # Neutral 4 of 7 < 0.6
    assert (weak["label"], weak["resolved_by"], weak["agreement_pattern"]) == (None, "below-threshold", "unresolved")
    strong = resolve(df, expert="source", expert_weight=3.0).loc["x"]  # Neutral 5 of 8
    assert (strong["label"], strong["resolved_by"], strong["resolving_stage"]) == ("Neutral", "adjudicated", 3)
    assert strong["confidence"] == pytest.approx(5 / 8)
    assert resolve(df).loc["x", "label"] == "Neutral"  # the default: the expert's decision is final
    with pytest.raises(CurationError, match="expert must be one of"):
        resolve(df, expert="vote")  # type: ignore[arg-type]
    with pytest.raises(CurationError, match="expert_weight"):
        resolve(df, expert="source", expert_weight=0)


def test_gold_clips_stay_out_of_resolution_unless_asked_and_are_flagged_then() -> None:
    df = pd.DataFrame({"clip_id": ["x", "x", "x", "g", "g", "g"], "annotator_id": list("abcabc"),
                       "label": ["Fear"] * 6, "is_gold": [False] * 3 + [True] * 3})
    plain = resolve(df)
    assert list(plain.index) == ["x"] and "is_gold" not in plain.columns
    flagged = resolve(df, include_gold=True)
    assert flagged["is_gold"].to_dict() == {"g": True, "x": False}


def test_agreement_patterns_count_and_score_each_kind(toy_judgements: pd.DataFrame) -> None:
    r = resolve(toy_judgements)
    truth = {"c1": "Fear", "c2": "Neutral", "c3": "Fear", "c4": "Neutral"}
    table = agreement_patterns(r, truth)
    assert list(table.index) == ["3/5", "5/5", "stage 2", "expert", "unresolved"]
    assert table["clips"].tolist() == [1, 1, 1, 1, 2]
    assert table.loc["3/5", "accuracy"] == 0.0 and table.loc["5/5", "accuracy"] == 1.0
    assert table.loc["expert", "accuracy"] == 1.0 and pd.isna(table.loc["unresolved", "accuracy"])
    assert table["share"].sum() == pytest.approx(1.0)


def test_docstrings() -> None:
    assert doctest.testmod(aggregation).failed == 0


def _crowd_kit_majority_vote(answers: pd.DataFrame) -> pd.Series:
    """crowd-kit 1.4.2's ``MajorityVote.fit`` (unweighted), written out: its three lines are
    ``scores = data[["task", "label"]].value_counts()``,
    ``probas_ = normalize_rows(scores.unstack("label", fill_value=0))`` and
    ``labels_ = probas_.idxmax(axis="columns")``. crowd-kit itself is not a test dependency: it
    pulls in transformers, tokenizers and nltk. Checked once against the real package (1.4.2,
    installed aside): the same labels on all four public sets."""
    data = answers.rename(columns={"clip_id": "task", "annotator_id": "worker"})[["task", "worker", "label"]]
    scores = data[["task", "label"]].value_counts()
    table = scores.unstack("label", fill_value=0)
    probas = table.div(table.sum(axis=1), axis=0)
    return probas.idxmax(axis="columns")


@pytest.mark.parametrize(("name", "n_ties", "n_differ"), [("s_face", 28, 4), ("s_dog", 50, 32), ("d_product", 0, 0)])
def test_both_tie_rules_against_crowd_kit(crowd_dir, name: str, n_ties: int, n_differ: int) -> None:
    answers, _ = load_crowd(crowd_dir, name)
    theirs = _crowd_kit_majority_vote(answers)
    report = MajorityVote().fit(answers)
    first = MajorityVote(on_tie="first").fit_predict(answers)
    theirs = theirs.reindex(first.index)
    ties = report.ties_.to_numpy()
    assert int(ties.sum()) == n_ties
    # Off ties, both rules give crowd-kit's label.
    assert (report.labels_[~ties] == theirs[~ties]).all() and (first[~ties] == theirs[~ties]).all()
    # On ties, "report" gives None; "first" gives the first tied label in label-set order, which is
    # crowd-kit's pick only sometimes.
    assert report.labels_[ties].isna().all()
    assert int((first[ties] != theirs[ties]).sum()) == n_differ
    counts = report.counts_.loc[ties]
    for clip in counts.index:
        tied = [lab for lab in counts.columns if counts.loc[clip, lab] == counts.loc[clip].max()]
        assert first[clip] == tied[0] and theirs[clip] in tied


def test_first_tie_rule_follows_the_label_set_not_the_alphabet() -> None:
    df = pd.DataFrame({"clip_id": ["x", "x"], "annotator_id": ["a", "b"], "label": ["Fear", "Calm"]})
    assert MajorityVote(on_tie="first").fit_predict(df, ["Fear", "Calm"])["x"] == "Fear"
    assert MajorityVote(on_tie="first").fit_predict(df, ["Calm", "Fear"])["x"] == "Calm"
    assert np.isnan(MajorityVote().fit(df).probas_.to_numpy()).sum() == 0


def test_margin_rule_resolves_by_the_lead_in_votes_not_the_share() -> None:
    """The adaptive policy's rule (#15): resolved when the top label leads the next by the margin,
    whatever its share; ties never; weighted votes lead by summed skills; the expert still decides."""
    rows = [("c", "Fear", 4), ("c", "Neutral", 2), ("c", "Sadness", 1),  # 4-2-1: lead 2, share 0.57
            ("t", "Fear", 2), ("t", "Neutral", 2),  # a tie
            ("w", "Fear", 1), ("w", "Neutral", 2),  # counts: Neutral by 1; weights below flip it
            ("e", "Fear", 1), ("e", "Neutral", 1)]
    data = [(clip, f"{clip}{label}{i}", label, 1) for clip, label, n in rows for i in range(n)]
    data.append(("e", "expert", "Sadness", 3))
    df = pd.DataFrame(data, columns=["clip_id", "annotator_id", "label", "stage"])
    by_share = resolve(df)
    assert by_share.loc["c", "resolved_by"] == "below-threshold"
    by_margin = resolve(df, margin=2)
    assert (by_margin.loc["c", "label"], by_margin.loc["c", "resolved_by"]) == ("Fear", "consensus")
    assert (by_margin.loc["t", "label"], by_margin.loc["t", "resolved_by"]) == (None, "tie")
    assert (by_margin.loc["w", "label"], by_margin.loc["w", "resolved_by"]) == (None, "below-margin")
    assert (by_margin.loc["e", "label"], by_margin.loc["e", "resolved_by"]) == ("Sadness", "adjudicated")
    assert resolve(df, margin=3).loc["c", "resolved_by"] == "below-margin"
    skills = pd.Series(1.0, index=df["annotator_id"].unique())
    skills["wFear0"] = 4.0  # one trusted vote: 4 against 2
    weighted = resolve(df, margin=2, method="weighted", skills=skills)
    assert weighted.loc["w", "label"] == "Fear"
    assert weighted.attrs["margin"] == 2
    with pytest.raises(CurationError, match="margin counts votes"):
        resolve(df, margin=2, method="dawid-skene")
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(CurationError, match="margin must be"):
            resolve(df, margin=bad)
