from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.features import (
    CacheMismatchError,
    CacheSpec,
    DecodeError,
    decode_clip,
    load_cached_clip,
    mel_filterbank,
    mfcc,
    prepare_features,
    segment_windows,
)

TINY_SPEC = CacheSpec(segments=4, frames_per_segment=2, jitter=1, frame_size=32, mfcc_frames=256)


def test_mfcc_equals_librosa_defaults() -> None:
    # Reference values from librosa 0.11 `librosa.feature.mfcc(y=y, sr=44100, n_mfcc=32).T`.
    t = np.arange(44100) / 44100
    y = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    m = mfcc(y)
    assert m.shape == (87, 32) and m.dtype == np.float32
    np.testing.assert_allclose(m[0, :6], [-190.2363, 160.9951, -4.8805, 80.0852, 51.5936, -26.106], atol=2e-3)
    np.testing.assert_allclose(m[40, :6], [-461.0103, 67.7638, 32.4174, 41.5308, 39.3135, -13.0489], atol=2e-3)
    np.testing.assert_allclose(m[86, :6], [-190.9157, 161.3051, -4.8338, 80.2824, 51.8659, -26.1952], atol=2e-3)
    bank = mel_filterbank(44100, 2048, 128)
    assert bank.shape == (128, 1025)
    assert bank.sum() == pytest.approx(5.941555, rel=1e-5)
    # truncating to the frames kept does not change them
    np.testing.assert_allclose(mfcc(y, max_frames=10), m[:10], atol=1e-3)


def test_segment_windows_centre_and_loop_short_clips() -> None:
    windows = segment_windows(160, 16, 8, 12)
    assert windows.shape == (16, 12)
    assert windows[0].tolist() == list(range(0, 12))  # segment 0 spans 0..9, its window is clamped to the start
    assert windows[5].tolist() == list(range(49, 61))  # centre 55, window 49..60
    looped = segment_windows(20, 16, 8, 8)  # fewer than 128 frames: the sequence is looped
    assert looped.max() < 20 and looped[-1].tolist() == [(120 + i) % 20 for i in range(8)]


def test_decode_clip_keeps_sampled_frames_and_mfcc(tiny_export: Path) -> None:
    clip = tiny_export / "train/Excitation/excitation-train-0.mp4"
    features = decode_clip(clip, TINY_SPEC)
    assert features.frames.shape == (4, 3, 57, 32, 3) and features.frames.dtype == np.uint8  # 9:16, short side 32
    assert features.source_frames == 20 and features.has_audio
    assert 172 <= features.mfcc.shape[0] <= 180 and features.mfcc.shape[1] == 32  # 2 s at 44.1 kHz, hop 512 (+ AAC padding)
    red = features.frames[0, 0, 50, 25]  # far from the moving white box early in the clip
    assert red[0] > 150 and red[2] < 100  # the class colour 0xD03020 survives decoding


def test_clip_without_audio_gets_zeros_and_a_flag(tiny_export: Path) -> None:
    features = decode_clip(tiny_export / "test/Excitation/excitation-test-0.mp4", TINY_SPEC)
    assert not features.has_audio
    assert not features.mfcc.any()
    with pytest.raises(DecodeError):
        decode_clip(tiny_export / "missing.mp4", TINY_SPEC)


def test_prepare_features_is_resumable_and_checks_its_settings(tiny_export: Path, tmp_path: Path) -> None:
    clips = [("a", tiny_export / "train/Neutral/neutral-train-0.mp4"), ("b", tiny_export / "broken.mp4")]
    report = prepare_features(clips, tmp_path / "cache", TINY_SPEC)
    assert report.written == 1 and set(report.failed) == {"b"}
    again = prepare_features(clips[:1], tmp_path / "cache", TINY_SPEC)
    assert (again.written, again.skipped) == (0, 1)
    assert load_cached_clip(tmp_path / "cache", "a").frames.shape[:2] == (4, 3)
    assert not list((tmp_path / "cache").glob("*.tmp"))
    with pytest.raises(CacheMismatchError):
        prepare_features(clips[:1], tmp_path / "cache", CacheSpec())


def test_prepare_features_in_worker_processes(tiny_export: Path, tmp_path: Path) -> None:
    clips = [(f"c{i}", p) for i, p in enumerate(sorted(tiny_export.glob("validation/*/*.mp4")))]
    seen: list[str] = []
    report = prepare_features(clips, tmp_path / "cache", TINY_SPEC, workers=2, on_clip=seen.append)
    assert report.written == 3 and sorted(seen) == ["c0", "c1", "c2"]


def test_prepare_features_on_a_dask_cluster(tiny_export: Path, tmp_path: Path) -> None:
    from distributed import get_task_stream

    from curation.cluster import dask_executor

    clips = [(f"c{i}", p) for i, p in enumerate(sorted(tiny_export.glob("validation/*/*.mp4")))]
    clips.append(("broken", tiny_export / "broken.mp4"))
    seen: list[str] = []
    with dask_executor(workers=2) as (executor, slots), get_task_stream() as tasks:
        report = prepare_features(clips, tmp_path / "dask", TINY_SPEC, on_clip=seen.append, executor=executor)
    assert slots == 2 and len([t for t in tasks.data if "_prepare_one" in t["key"]]) == 4, "decoded on the workers"
    assert report.written == 3 and set(report.failed) == {"broken"} and sorted(seen) == ["broken", "c0", "c1", "c2"]
    local = prepare_features(clips[:1], tmp_path / "local", TINY_SPEC)
    assert local.written == 1
    np.testing.assert_array_equal(load_cached_clip(tmp_path / "dask", "c0").frames,
                                  load_cached_clip(tmp_path / "local", "c0").frames)
