"""Hand-checkable toy judgements for the curation engine's tests, and the shared benchmarks path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EMOTIONS = ["Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension"]


def _rows(clip: str, stage: int, pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"clip_id": clip, "annotator_id": a, "label": lab, "stage": stage} for a, lab in pairs]


@pytest.fixture
def emotions() -> list[str]:
    return list(EMOTIONS)


@pytest.fixture
def toy_judgements() -> pd.DataFrame:
    """Six clips that exercise every way of resolving (threshold 0.6):

    c1 unanimous Fear (5/5, stage 1)       c2 consensus Fear (3/5, stage 1)
    c3 stage-1 tie, Fear 5/8 after stage 2   c4 still 3/8 after stage 2, expert e1 says Neutral
    c5 five-way tie                          c6 Fear 2/5, below threshold
    """
    rows: list[dict] = []
    rows += _rows("c1", 1, [("a1", "Fear"), ("a2", "Fear"), ("a3", "Fear"), ("a4", "Fear"), ("a5", "Fear")])
    rows += _rows("c2", 1, [("a1", "Fear"), ("a2", "Fear"), ("a3", "Fear"), ("a4", "Neutral"), ("a5", "Sadness")])
    rows += _rows("c3", 1, [("a1", "Fear"), ("a2", "Fear"), ("a3", "Neutral"), ("a4", "Neutral"), ("a5", "Sadness")])
    rows += _rows("c3", 2, [("a6", "Fear"), ("a7", "Fear"), ("a8", "Fear")])
    rows += _rows("c4", 1, [("a1", "Fear"), ("a2", "Fear"), ("a3", "Neutral"), ("a4", "Neutral"), ("a5", "Sadness")])
    rows += _rows("c4", 2, [("a6", "Neutral"), ("a7", "Sadness"), ("a8", "Tension")])
    rows += _rows("c4", 3, [("e1", "Neutral")])
    rows += _rows("c5", 1, [("a1", "Fear"), ("a2", "Neutral"), ("a3", "Sadness"), ("a4", "Tension"), ("a5", "Excitation")])
    rows += _rows("c6", 1, [("a1", "Fear"), ("a2", "Fear"), ("a3", "Neutral"), ("a4", "Sadness"), ("a5", "Tension")])
    df = pd.DataFrame(rows)
    gender = {"a1": "f", "a2": "m", "a3": "f", "a4": "m", "a5": "f", "a6": "m", "a7": "f", "a8": "m", "e1": "f"}
    df["gender"] = df["annotator_id"].map(gender)
    df["time_on_task_s"] = 10.0 + np.arange(len(df)) % 7
    return df


def make_crowd(
    n_clips: int,
    n_per_clip: int,
    *,
    n_labels: int = 4,
    n_annotators: int = 20,
    accuracy: float | list[float] = 0.8,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.Series]:
    """A small synthetic crowd: annotator i right with ``accuracy`` (or ``accuracy[i]``), else a uniform wrong label."""
    rng = np.random.default_rng(seed)
    labels = [f"L{i}" for i in range(n_labels)]
    truth = rng.integers(0, n_labels, n_clips)
    clip = np.repeat(np.arange(n_clips), n_per_clip)
    annotator = np.concatenate([rng.choice(n_annotators, n_per_clip, replace=False) for _ in range(n_clips)])
    skill = np.broadcast_to(np.asarray(accuracy, dtype=float), (n_annotators,))
    right = rng.random(len(clip)) < skill[annotator]
    wrong = (truth[clip] + rng.integers(1, n_labels, len(clip))) % n_labels
    said = np.where(right, truth[clip], wrong)
    df = pd.DataFrame(
        {
            "clip_id": [f"c{c:05d}" for c in clip],
            "annotator_id": [f"a{a:03d}" for a in annotator],
            "label": np.asarray(labels)[said],
        }
    )
    return df, pd.Series(np.asarray(labels)[truth], index=[f"c{c:05d}" for c in range(n_clips)])


@pytest.fixture
def crowd_dir(shared_dir: Path) -> Path:
    """../shared/benchmarks/crowd (skips only when ../shared is absent)."""
    path = Path(os.environ.get("EMOTIONS_SHARED_DIR", shared_dir)) / "benchmarks" / "crowd"
    assert path.is_dir(), f"{path} is missing from ../shared"
    return path


def load_crowd(crowd_dir: Path, name: str) -> tuple[pd.DataFrame, pd.Series]:
    """One crowd benchmark as a judgements table plus its truth Series (index clip_id)."""
    answers = pd.read_csv(crowd_dir / name / "answer.csv", dtype=str).rename(
        columns={"question": "clip_id", "worker": "annotator_id", "answer": "label"}
    )
    truth = pd.read_csv(crowd_dir / name / "truth.csv", dtype=str).set_index("question")["truth"]
    return answers, truth
