from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import curation.reliability as reliability
from curation.errors import InsufficientDataError
from curation.reliability import FLAGS, ReliabilityRules, annotator_report
from tests.curation.conftest import make_crowd


@pytest.fixture
def crowd_with_bad_workers() -> pd.DataFrame:
    """400 clips × 5 by 12 careful annotators, plus three bad ones on the same clips:
    'lazy' always says L0, 'random' clicks uniformly, 'rusher' is right but takes 0.5 s."""
    df, truth = make_crowd(400, 5, n_labels=4, n_annotators=12, accuracy=0.85, seed=11)
    rng = np.random.default_rng(0)
    # skewed truth makes uniform clicking distinguishable from honest labelling
    truth = pd.Series(np.where(rng.random(len(truth)) < 0.6, "L1", truth.to_numpy()), index=truth.index)
    df["label"] = np.where(rng.random(len(df)) < 0.85, truth.reindex(df["clip_id"]).to_numpy(), df["label"])
    clips = truth.index[:200]
    extra = [
        pd.DataFrame({"clip_id": clips, "annotator_id": "lazy", "label": "L0"}),
        pd.DataFrame({"clip_id": clips, "annotator_id": "random", "label": rng.choice(["L0", "L1", "L2", "L3"], len(clips))}),
        pd.DataFrame({"clip_id": clips, "annotator_id": "rusher", "label": truth[clips].to_numpy()}),
    ]
    out = pd.concat([df, *extra], ignore_index=True)
    out["time_on_task_s"] = np.where(out["annotator_id"] == "rusher", 0.5, rng.uniform(6, 20, len(out)))
    return out


def test_flags_find_the_bad_workers(crowd_with_bad_workers: pd.DataFrame) -> None:
    report = annotator_report(crowd_with_bad_workers)
    assert report.index.name == "annotator_id"
    assert report.loc["lazy", "near-constant"] and report.loc["lazy", "top_label"] == "L0"
    assert report.loc["random", "near-uniform"]
    assert report.loc["lazy", "low-agreement"] and report.loc["random", "low-agreement"]
    assert report.loc["rusher", "implausibly-fast"] and not report.loc["rusher", "low-agreement"]
    careful = report.drop(index=["lazy", "random", "rusher"])
    assert not careful[list(FLAGS)].any().any(), careful[careful["flags"] != ""]
    assert report.index[0] in {"lazy", "random"}  # worst first
    assert report.loc["lazy", "flags"].startswith("near-constant")


def test_a_header_only_table_is_refused() -> None:
    header_only = pd.DataFrame({"clip_id": [], "annotator_id": [], "label": []}, dtype=str)
    with pytest.raises(InsufficientDataError, match="the annotator report needs at least one labelled"):
        annotator_report(header_only)


def test_gold_accuracy_flag() -> None:
    df = pd.DataFrame(
        {
            "clip_id": [f"g{i}" for i in range(6)] * 2,
            "annotator_id": ["good"] * 6 + ["bad"] * 6,
            "label": ["x"] * 6 + ["y"] * 6,
            "is_gold": True,
            "gold_label": "x",
        }
    )
    report = annotator_report(df, rules=ReliabilityRules(min_gold=5))
    assert report.loc["bad", "low-gold-accuracy"] and not report.loc["good", "low-gold-accuracy"]
    assert report.loc["bad", "gold_accuracy"] == 0.0 and report.loc["good", "n_gold"] == 6


def test_small_annotators_are_not_flagged(toy_judgements: pd.DataFrame) -> None:
    report = annotator_report(toy_judgements)  # nobody has 20 judgements
    assert not report[list(FLAGS)].any().any()
    assert report.loc["a1", "median_time_s"] > 0


def test_docstring_examples_run() -> None:
    assert doctest.testmod(reliability).failed == 0
