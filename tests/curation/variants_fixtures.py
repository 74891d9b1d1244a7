"""Shared inputs for the variant, split and export tests (a plain module: import what you need).

``make_inputs`` builds a deterministic judgements table and clips table: each clip has a true label,
five stage-1 judgements (some unanimous, some 3/5 or 4/5, a few ties settled by an expert in stage
3), an uploader, sometimes a near-duplicate cluster, a platform and a media file. Media are a few
tiny real H.264 files made with FFmpeg; many clips point at the same file (exports hard-link them).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from curation.ffmpeg import ffmpeg_binary

LABELS: list[dict] = [
    {"index": 0, "name": "Excitation", "polarity": "positive"},
    {"index": 1, "name": "Fear", "polarity": "negative"},
    {"index": 2, "name": "Neutral", "polarity": "neutral"},
    {"index": 3, "name": "Relaxation", "polarity": "positive"},
    {"index": 4, "name": "Sadness", "polarity": "negative"},
    {"index": 5, "name": "Tension", "polarity": "negative"},
]
NAMES = [d["name"] for d in LABELS]
PLATFORMS = ["douyin", "kuaishou", "tiktok"]


def make_media(folder: Path, n_files: int = 3, *, audio: bool = True) -> list[str]:
    """``n_files`` one-second 64×112 H.264 clips (with a sine tone when ``audio``); their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n_files):
        name = f"src{i}.mp4"
        cmd = [ffmpeg_binary(), "-y", "-loglevel", "error",
               "-f", "lavfi", "-i", f"testsrc=size=64x112:rate=10:duration=1,hue=h={40 * i}"]
        if audio:
            cmd += ["-f", "lavfi", "-i", f"sine=frequency={300 + 100 * i}:duration=1", "-c:a", "aac", "-shortest"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", str(folder / name)]
        subprocess.run(cmd, check=True, capture_output=True)
        names.append(name)
    return names


def make_inputs(
    n_clips: int = 240,
    *,
    seed: int = 0,
    label_weights: list[float] | None = None,
    clips_per_uploader: int = 3,
    cluster_share: float = 0.15,
    media_files: list[str] | None = None,
    n_annotators: int = 12,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(judgements, clips) for ``n_clips`` clips; label mix from ``label_weights`` (default even)."""
    rng = np.random.default_rng(seed)
    weights = np.asarray(label_weights or [1.0] * len(NAMES), dtype=float)
    truth = rng.choice(len(NAMES), size=n_clips, p=weights / weights.sum())
    clip_ids = [f"clip{i:05d}" for i in range(n_clips)]
    rows = []
    for cid, t in zip(clip_ids, truth, strict=True):
        kind = rng.random()
        annotators = rng.choice(n_annotators, size=5, replace=False)
        if kind < 0.45:  # unanimous
            votes = [t] * 5
        elif kind < 0.85:  # 3 or 4 of 5
            agree = 4 if kind < 0.65 else 3
            others = [(t + 1 + int(rng.integers(0, len(NAMES) - 1))) % len(NAMES) for _ in range(5 - agree)]
            votes = [t] * agree + others
        else:  # split 2/2/1: an expert decides in stage 3
            a, b = (t + 1) % len(NAMES), (t + 2) % len(NAMES)
            votes = [t, t, a, a, b]
            rows.append({"clip_id": cid, "annotator_id": "expert1", "label": NAMES[t], "stage": 3})
        for annotator, vote in zip(annotators, votes, strict=True):
            rows.append({"clip_id": cid, "annotator_id": f"a{annotator:02d}", "label": NAMES[vote], "stage": 1})
    judgements = pd.DataFrame(rows)
    uploaders = [f"user{i // clips_per_uploader:04d}" for i in rng.permutation(n_clips)]
    cluster = np.where(rng.random(n_clips) < cluster_share, rng.integers(0, max(1, n_clips // 6), n_clips), -1)
    media = media_files or ["src0.mp4"]
    clips = pd.DataFrame({
        "clip_id": clip_ids,
        "media_path": [media[i % len(media)] for i in range(n_clips)],
        "platform": [PLATFORMS[i] for i in rng.choice(3, size=n_clips, p=[0.5, 0.3, 0.2])],
        "uploader": uploaders,
        "duplicate_cluster": [None if c < 0 else f"dup{c}" for c in cluster],
        "duration_s": np.round(rng.uniform(3, 60, n_clips), 3),
        "has_audio": rng.random(n_clips) < 0.9,
        "language": "zh",
        "status": "pending",
    })
    return judgements, clips
