"""Demo material: distinct clips, and a confusion model that behaves as specified."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from curation.demo import ConfusionModel, SimulatedAnnotator, demo_clip_specs
from curation.errors import MediaError
from curation.ffmpeg import ffmpeg_binary

LABELS = ["Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension"]
POLARITIES = ["positive", "negative", "neutral", "positive", "negative", "negative"]


def test_ffmpeg_is_found_without_a_system_install() -> None:
    path = ffmpeg_binary()
    assert os.access(path, os.X_OK)


def test_configured_ffmpeg_must_exist() -> None:
    with pytest.raises(MediaError, match="not an executable"):
        ffmpeg_binary("/nonexistent/ffmpeg")


def test_specs_are_distinct_and_share_uploaders() -> None:
    specs = demo_clip_specs(30)
    assert len({(s.visual, s.hue_degrees, s.tone_hz) for s in specs}) == 30
    per_uploader = Counter(s.uploader for s in specs)
    assert max(per_uploader.values()) >= 2
    assert all(s.uploader.startswith(s.platform) for s in specs)


def test_skill_sets_the_accuracy() -> None:
    model = ConfusionModel(LABELS, POLARITIES, seed=3)
    person = SimulatedAnnotator("a", skill=0.7)
    answers = [model.judge(person, "Fear") for _ in range(4000)]
    accuracy = answers.count("Fear") / len(answers)
    assert 0.67 < accuracy < 0.73


def test_mistakes_stay_mostly_within_polarity() -> None:
    model = ConfusionModel(LABELS, POLARITIES, within_polarity=0.8, seed=4)
    person = SimulatedAnnotator("a", skill=0.0)
    wrong = [model.judge(person, "Fear") for _ in range(4000)]
    negative = sum(POLARITIES[LABELS.index(w)] == "negative" for w in wrong) / len(wrong)
    assert "Fear" not in wrong
    assert 0.76 < negative < 0.84


def test_careless_annotators() -> None:
    model = ConfusionModel(LABELS, POLARITIES, seed=5)
    constant = SimulatedAnnotator("c", skill=0.9, careless="constant", favourite=2)
    answers = Counter(model.judge(constant, "Fear") for _ in range(2000))
    assert answers.most_common(1)[0][0] == "Neutral" and answers["Neutral"] > 1600
    crowd = model.crowd(20)
    assert sum(p.careless is not None for p in crowd) == 3
    assert all(0.55 <= p.skill <= 0.95 for p in crowd)
