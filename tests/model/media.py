"""Tiny real media and exports for the model tests, made with FFmpeg (the imageio-ffmpeg binary).

Each class has its own colour and tone so a model can tell them apart; one clip has no audio track.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import imageio_ffmpeg

__all__ = ["make_clip", "make_export", "EXPORT_LABELS"]

# (name, polarity, colour, tone Hz)
EXPORT_LABELS: tuple[tuple[str, str, str, int], ...] = (
    ("Excitation", "positive", "0xD03020", 440),
    ("Neutral", "neutral", "0x20B040", 880),
    ("Sadness", "negative", "0x3040D0", 1760),
)

MANIFEST_COLUMNS = (
    "clip_id", "media_path", "label", "label_index", "polarity", "split", "confidence", "n_judgements",
    "resolving_stage", "platform", "uploader_hash", "duration_s", "has_audio",
)


def make_clip(path: Path, colour: str, tone: int | None, *, seconds: float = 2.0, size: str = "72x128", fps: int = 10) -> Path:
    """A 9:16 H.264 clip of one colour with a moving box; AAC sine tone unless ``tone`` is None.

    The box is overlaid (drawbox has no time variable: its ``t`` is the thickness), so frames differ
    over time and across the frame, and crops and temporal offsets change what a sample shows.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
               "-f", "lavfi", "-i", f"color=c={colour}:s={size}:r={fps}:d={seconds}",
               "-f", "lavfi", "-i", f"color=c=white:s=16x16:r={fps}:d={seconds}"]
    if tone is not None:
        command += ["-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=22050:duration={seconds}"]
    command += ["-filter_complex", "[0:v][1:v]overlay=x='mod(t*40\\,W-w)':y='mod(t*60\\,H-h)'[v]", "-map", "[v]",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    command += ["-map", "2:a", "-c:a", "aac", "-shortest"] if tone is not None else ["-an"]
    subprocess.run([*command, str(path)], check=True)
    return path


def make_export(root: Path, per_split: Sequence[tuple[str, int]] = (("train", 2), ("validation", 1), ("test", 1)),
                *, silent_clip: bool = True) -> Path:
    """An export folder in docs/ARCHITECTURE.md's format; the first test clip has no audio."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (name, polarity, colour, tone) in enumerate(EXPORT_LABELS):
        for split, count in per_split:
            for number in range(count):
                clip_id = f"{name.lower()}-{split}-{number}"
                relative = f"{split}/{name}/{clip_id}.mp4"
                silent = silent_clip and split == "test" and index == 0 and number == 0
                make_clip(root / relative, colour, None if silent else tone)
                rows.append({
                    "clip_id": clip_id, "media_path": relative, "label": name, "label_index": index,
                    "polarity": polarity, "split": split, "confidence": 1.0, "n_judgements": 3,
                    "resolving_stage": 1, "platform": "test", "uploader_hash": f"u{number}", "duration_s": 2.0,
                    "has_audio": not silent,
                })
    lines = [",".join(MANIFEST_COLUMNS)]
    lines += [",".join(str(row[column]) for column in MANIFEST_COLUMNS) for row in rows]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    labels = [{"index": i, "name": name, "polarity": polarity} for i, (name, polarity, _, _) in enumerate(EXPORT_LABELS)]
    (root / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    (root / "classInd.txt").write_text("".join(f"{i + 1} {label['name']}\n" for i, label in enumerate(labels)))
    for split, stem in (("train", "trainlist01"), ("validation", "vallist01"), ("test", "testlist01")):
        (root / f"{stem}.txt").write_text(
            "".join(f"{row['media_path']} {row['label_index'] + 1}\n" for row in rows if row["split"] == split)
        )
    return root
