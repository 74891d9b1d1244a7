from __future__ import annotations

import json

import pytest

from model.labels import EKMAN_6, VIDEOEMOTION_8, LabelSet, UnknownLabelError


def test_emotions_six_polarities_come_from_the_label_set() -> None:
    labels = LabelSet.emotions()
    assert dict(zip(labels.names, labels.polarities, strict=True)) == {
        "Excitation": "positive", "Fear": "negative", "Neutral": "neutral",
        "Relaxation": "positive", "Sadness": "negative", "Tension": "negative",
    }
    assert labels.polarity_indices == (0, 2, 1, 0, 2, 2)


def test_videoemotion8_and_ekman6_polarities() -> None:
    ve8 = LabelSet.from_names(VIDEOEMOTION_8)
    assert {n for n, p in zip(ve8.names, ve8.polarities, strict=True) if p == "positive"} == {
        "Anticipation", "Joy", "Surprise", "Trust"}
    ekman = LabelSet.from_names(EKMAN_6)
    assert ekman.polarities == ("negative", "negative", "negative", "positive", "negative", "positive")


def test_release_spelling_sad_maps_to_sadness_and_unknown_needs_a_polarity(tmp_path) -> None:
    labels = LabelSet.emotions()
    assert labels.index_of("Sad") == labels.index_of("sadness") == 4
    with pytest.raises(UnknownLabelError):
        LabelSet.from_names(["Joy", "Boredom"])
    path = tmp_path / "labels.json"
    path.write_text(json.dumps([{"index": 0, "name": "Boredom", "polarity": "negative"},
                                {"index": 1, "name": "Joy", "polarity": "positive"}]))
    assert LabelSet.from_json(path).polarities == ("negative", "positive")
