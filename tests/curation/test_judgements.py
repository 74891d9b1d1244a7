from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import curation.judgements as judgements
from curation.errors import InvalidTableError
from curation.judgements import encode_judgements, load_judgements, validate_judgements


def test_defaults_and_dtypes(toy_judgements: pd.DataFrame, emotions: list[str]) -> None:
    df = validate_judgements(toy_judgements.drop(columns=["stage"]), emotions)
    assert list(df["label"].cat.categories) == emotions
    assert (df["stage"] == 1).all() and df["stage"].dtype == np.int64
    assert df["is_gold"].dtype == bool and not df["is_gold"].any()


def test_label_set_found_in_file_is_sorted_numerically_when_numeric() -> None:
    df = validate_judgements(pd.DataFrame({"clip_id": [1, 2, 3], "annotator_id": [1, 1, 1], "label": [10, 9, 2]}))
    assert list(df["label"].cat.categories) == ["2", "9", "10"]
    words = validate_judgements(pd.DataFrame({"clip_id": [1, 2], "annotator_id": [1, 1], "label": ["b", "a"]}))
    assert list(words["label"].cat.categories) == ["a", "b"]


def test_label_set_from_label_dicts() -> None:
    labels = [{"name": "Fear", "polarity": "negative"}, {"name": "Calm", "polarity": "positive"}]
    df = validate_judgements(pd.DataFrame({"clip_id": [1], "annotator_id": [1], "label": ["Calm"]}), labels)
    assert list(df["label"].cat.categories) == ["Fear", "Calm"]


def test_missing_column_is_named() -> None:
    with pytest.raises(InvalidTableError, match=r"missing column\(s\) 'annotator_id'"):
        validate_judgements(pd.DataFrame({"clip_id": [1], "label": ["Fear"]}))


def test_unknown_label_names_label_and_rows(emotions: list[str]) -> None:
    df = pd.DataFrame({"clip_id": [1, 2, 3], "annotator_id": ["a", "a", "a"], "label": ["Fear", "Joy", "Joy"]})
    with pytest.raises(InvalidTableError, match=r"unknown label\(s\) 'Joy' in row\(s\) 1, 2"):
        validate_judgements(df, emotions)


def test_duplicate_judgement_is_refused_but_other_stages_are_fine() -> None:
    df = pd.DataFrame({"clip_id": ["c", "c"], "annotator_id": ["a", "a"], "label": ["Fear", "Fear"], "stage": [1, 2]})
    assert len(validate_judgements(df)) == 2
    df.loc[1, "stage"] = 1
    with pytest.raises(InvalidTableError, match=r"duplicate judgement: annotator 'a' judged clip 'c'.*row\(s\) 0, 1"):
        validate_judgements(df)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("stage", 0, "stage"),
        ("stage", "two", "stage"),
        ("time_on_task_s", -3, "time_on_task_s"),
        ("is_gold", "maybe", "is_gold"),
        ("clip_id", None, "empty clip_id"),
        ("submitted_at", "yesterday", "submitted_at"),
    ],
)
def test_bad_values_are_named(column: str, value: object, message: str) -> None:
    df = pd.DataFrame({"clip_id": ["c1", "c2"], "annotator_id": ["a", "a"], "label": ["Fear", "Fear"]})
    df[column] = pd.Series(["2026-01-01T00:00:00Z" if column == "submitted_at" else 1, value], dtype=object)
    with pytest.raises(InvalidTableError, match=message):
        validate_judgements(df)


def test_cant_judge_is_kept_as_missing_label() -> None:
    df = validate_judgements(pd.DataFrame({"clip_id": [1, 2], "annotator_id": [1, 1], "label": ["Fear", ""]}))
    assert df["label"].isna().tolist() == [False, True]
    assert list(df["label"].cat.categories) == ["Fear"]


def test_csv_and_parquet_round_trip(tmp_path: Path, toy_judgements: pd.DataFrame) -> None:
    toy = toy_judgements.assign(clip_id=toy_judgements["clip_id"].str.replace("c", "00"), is_gold="false")
    toy.to_csv(tmp_path / "j.csv", index=False)
    toy.to_parquet(tmp_path / "j.parquet")
    from_csv = load_judgements(tmp_path / "j.csv")
    from_parquet = load_judgements(tmp_path / "j.parquet")
    assert from_csv["clip_id"].iloc[0] == "001"  # ids stay strings
    assert from_csv["label"].tolist() == from_parquet["label"].tolist()
    assert not from_csv["is_gold"].any()
    with pytest.raises(InvalidTableError, match="not found"):
        load_judgements(tmp_path / "absent.csv")
    (tmp_path / "j.xlsx").write_text("x")
    with pytest.raises(InvalidTableError, match="must be .csv"):
        load_judgements(tmp_path / "j.xlsx")


def test_encode_codes_and_counts(toy_judgements: pd.DataFrame, emotions: list[str]) -> None:
    codes = encode_judgements(toy_judgements, labels=emotions)
    assert list(codes.clips) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    counts = codes.counts()
    assert counts.shape == (6, 6)
    assert counts[2].tolist() == [0, 5, 2, 0, 1, 0]  # c3: Fear 5, Neutral 2, Sadness 1
    assert counts.sum() == len(toy_judgements)


def test_validated_table_is_not_revalidated(toy_judgements: pd.DataFrame) -> None:
    df = validate_judgements(toy_judgements)
    assert validate_judgements(df) is df
    assert validate_judgements(df[df["stage"] == 1]).attrs.get("curation.judgements.validated")


def test_docstring_examples_run() -> None:
    assert doctest.testmod(judgements).failed == 0
