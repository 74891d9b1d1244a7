"""Loader speed: training items read from the feature cache versus decoded from the media every time.

    python bench/bench_feature_loader.py                       # 6 portrait 720x1280 30 fps 10 s clips
    python bench/bench_feature_loader.py --clips 12 --seconds 20 --size 1080x1920

Both sides produce the same full-preset training items (16 segments x 8 frames at 112x112 with
augmentation, 4096x32 MFCC), in one process (a DataLoader with W workers scales both sides alike).
Target: the cache is at least 10x faster. Prints a table and writes JSON
(default bench/results/feature_loader.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio_ffmpeg  # noqa: E402
import torch  # noqa: E402

from model.avcpnet import PRESETS  # noqa: E402
from model.data import CachedClipDataset, DecodingClipDataset, cache_spec_for  # noqa: E402
from model.export_reader import ClipRecord  # noqa: E402
from model.features import prepare_features  # noqa: E402


def make_clips(folder: Path, count: int, size: str, fps: int, seconds: float) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"clip{i}.mp4"
        if not path.exists():
            subprocess.run([
                imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
                "-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={seconds}",
                "-f", "lavfi", "-i", f"sine=frequency={300 + 100 * i}:sample_rate=44100:duration={seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
            ], check=True)
        paths.append(path)
    return paths


def _rate(dataset: torch.utils.data.Dataset, passes: int) -> float:
    started = time.perf_counter()
    for _ in range(passes):
        for i in range(len(dataset)):  # type: ignore[arg-type]
            dataset[i]
    return passes * len(dataset) / (time.perf_counter() - started)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotions-loader-bench"))
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--size", default="720x1280")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--passes", type=int, default=3, help="passes over the cache (decoding: one)")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "feature_loader.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    config = replace(PRESETS["full"], num_classes=2)
    media = make_clips(args.work / f"media-{args.size}-{args.fps}-{args.seconds:g}", args.clips, args.size, args.fps, args.seconds)
    clips = [ClipRecord(f"clip{i}", path, i % 2, "train") for i, path in enumerate(media)]
    cache = args.work / f"cache-{args.size}-{args.fps}-{args.seconds:g}"
    started = time.perf_counter()
    prepare_features([(c.clip_id, c.media_path) for c in clips], cache, cache_spec_for(config))
    prepare_seconds = time.perf_counter() - started

    cached = CachedClipDataset(clips, cache, config, train=True)
    decoding = DecodingClipDataset(clips, config, train=True)
    cached[0]  # warm the page cache and lazy imports alike
    decoding_rate = _rate(decoding, 1)
    cached_rate = _rate(cached, args.passes)
    cache_mb = sum(p.stat().st_size for p in cache.glob("*.npz")) / len(clips) / 1e6
    result = {
        "clips": args.clips, "size": args.size, "fps": args.fps, "seconds": args.seconds,
        "decode_clips_per_s": decoding_rate, "cache_clips_per_s": cached_rate,
        "speedup": cached_rate / decoding_rate, "cache_mb_per_clip": cache_mb,
        "prepare_seconds_per_clip": prepare_seconds / len(clips),
    }
    print(f"{args.clips} clips, {args.size} at {args.fps} fps, {args.seconds:g} s; full-preset training items, one process")
    print(f"{'source':<22} {'clips/s':>9}")
    print(f"{'decode on the fly':<22} {decoding_rate:>9.2f}")
    print(f"{'feature cache':<22} {cached_rate:>9.2f}")
    print(f"speed-up {result['speedup']:.1f}x; cache {cache_mb:.1f} MB per clip; "
          f"prepare-features {result['prepare_seconds_per_clip']:.2f} s per clip (one worker)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
