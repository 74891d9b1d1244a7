from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model.avcpnet import PRESETS
from model.data import CachedClipDataset, DecodingClipDataset, cache_spec_for, sample_clip
from model.export_reader import read_export
from model.features import CacheMismatchError, ClipFeatures, prepare_features

TINY = replace(PRESETS["tiny"], num_classes=3)


def test_sample_clip_crops_squares_and_tiles_mfcc() -> None:
    spec = cache_spec_for(TINY, jitter=2)
    frames = np.arange(4 * 4 * 40 * 32 * 3, dtype=np.int64).reshape(4, 4, 40, 32, 3).astype(np.uint8)
    features = ClipFeatures(frames=frames, mfcc=np.arange(100 * 32, dtype=np.float32).reshape(100, 32),
                            has_audio=True, source_frames=50)
    video, audio = sample_clip(features, spec, train=False)
    assert video.shape == (4, 3, 2, 32, 32) and video.dtype == torch.uint8
    # evaluation: centre offset (1 of 0..2) and the centre square (rows 4..35)
    expected = torch.from_numpy(frames[:, 1:3, 4:36]).permute(0, 4, 1, 2, 3)
    assert torch.equal(video, expected)
    assert audio.shape == (256, 32)
    assert torch.equal(audio[100:200], audio[:100]) and torch.equal(audio[200:], audio[:56])
    torch.manual_seed(0)
    trained = [sample_clip(features, spec, train=True, augment_probability=1.0)[0] for _ in range(4)]
    assert all(t.shape == (4, 3, 2, 32, 32) for t in trained)


def test_cached_dataset_matches_decoding_dataset(tiny_export: Path, tmp_path: Path) -> None:
    table = read_export(tiny_export)
    clips = table.split("validation")
    prepare_features([(c.clip_id, c.media_path) for c in clips], tmp_path / "cache", cache_spec_for(TINY))
    cached = CachedClipDataset(clips, tmp_path / "cache", TINY, train=False)
    decoded = DecodingClipDataset(clips, TINY, train=False)
    item, direct = cached[1], decoded[1]
    assert item["frames"].shape == (4, 3, 2, 32, 32)
    assert torch.equal(item["frames"], direct["frames"]) and torch.equal(item["mfcc"], direct["mfcc"])
    assert item["label"] == clips[1].label_index and bool(item["has_audio"])
    with pytest.raises(CacheMismatchError):
        CachedClipDataset(clips, tmp_path / "cache", PRESETS["full"], train=False)


def test_a_training_item_depends_on_seed_epoch_and_clip_only(tiny_export: Path, tmp_path: Path) -> None:
    """The same (epoch, clip) draws the same sample whatever the global RNG and the DataLoader workers;
    another epoch draws another (so a resumed run, or one with more workers, sees what the first saw)."""
    from torch.utils.data import DataLoader

    from model.data import EpochSampler

    clips = read_export(tiny_export).split("train")
    prepare_features([(c.clip_id, c.media_path) for c in clips], tmp_path / "cache", cache_spec_for(TINY))
    dataset = CachedClipDataset(clips, tmp_path / "cache", TINY, train=True, augment_probability=1.0, seed=3)
    torch.manual_seed(0)
    first = dataset[(2, 1)]["frames"]
    torch.manual_seed(12345)
    assert torch.equal(dataset[(2, 1)]["frames"], first)
    assert any(not torch.equal(dataset[(epoch, 1)]["frames"], first) for epoch in (3, 4, 5))

    def epoch_frames(workers: int) -> torch.Tensor:
        sampler = EpochSampler(dataset, seed=3)
        sampler.set_epoch(7)
        loader = DataLoader(dataset, batch_size=3, sampler=sampler, num_workers=workers)
        return torch.cat([batch["frames"] for batch in loader])

    assert torch.equal(epoch_frames(0), epoch_frames(2))
