"""An export loads with Hugging Face ``datasets`` as a video folder, with the right splits and labels.

``datasets`` (≥ 4) decodes video with ``torchcodec``; where it is not installed the rows are read with
decoding off (``Video(decode=False)`` gives the file path), which is what this test checks. Where
torchcodec is installed, the first clip is decoded too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from curation.aggregation import resolve
from curation.judgements import load_judgements
from curation.variants import build_variants, candidate_clips, load_recipes
from tests.curation.variants_fixtures import LABELS, make_inputs, make_media

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    media = tmp_path_factory.mktemp("media")
    make_media(media, 2)
    judgements, clips = make_inputs(90, media_files=["src0.mp4", "src1.mp4"], seed=5)
    resolution = resolve(load_judgements(judgements, labels=LABELS), labels=LABELS)
    out = tmp_path_factory.mktemp("exports")
    (build,) = build_variants(candidate_clips(clips, resolution, LABELS), LABELS, out,
                              recipes=load_recipes(variants=["full"]), seed=0, media_root=media)
    return build.path


def test_videofolder_loads_splits_and_labels(export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    loaded = datasets.load_dataset("videofolder", data_dir=str(export), cache_dir=str(tmp_path / "hf-cache"))
    manifest = pd.read_csv(export / "manifest.csv", dtype={"clip_id": str})
    assert set(loaded.keys()) == {"train", "validation", "test"}
    for split, part in loaded.items():
        rows = part.cast_column("video", datasets.Video(decode=False))
        expected = manifest.loc[manifest["split"] == split]
        assert rows.num_rows == len(expected)
        got = pd.DataFrame({"clip_id": rows["clip_id"], "label": rows["label"], "label_index": rows["label_index"]})
        pd.testing.assert_frame_equal(
            got.sort_values("clip_id").reset_index(drop=True),
            expected[["clip_id", "label", "label_index"]].sort_values("clip_id").reset_index(drop=True),
        )
        first = rows[0]
        path = Path(first["video"]["path"])
        assert path.resolve() == (export / expected.set_index("clip_id").loc[first["clip_id"], "media_path"]).resolve()
    assert set(loaded["train"]["label"]) == {d["name"] for d in LABELS}


@pytest.mark.skipif(importlib.util.find_spec("torchcodec") is None, reason="decoding video in datasets needs torchcodec")
def test_videofolder_decodes_a_clip(export: Path, tmp_path: Path) -> None:  # pragma: no cover - needs torchcodec
    loaded = datasets.load_dataset("videofolder", data_dir=str(export), cache_dir=str(tmp_path / "hf-cache"))
    decoder = loaded["test"][0]["video"]
    assert decoder.metadata.height == 112 and decoder.metadata.width == 64
