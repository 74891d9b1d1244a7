"""Learnability: a synthetic audio-visual set where neither modality alone tells the classes apart.

    python bench/bench_model_learnability.py            # tiny preset on CPU, a few minutes
    python bench/bench_model_learnability.py --train-per-class 32 --epochs 20

Four classes = colour (red / blue) × tone (low / high). Clips are made with FFmpeg (portrait 9:16,
per-clip brightness, box motion, tone jitter and noise), written as an export, cached with
``prepare_features`` and trained with ``model.train.main`` (tiny preset). A visual-only view can at
best tell the colour (50 %), an audio-only view the tone (50 %); only fusion reaches 100 %.

Reported on the test split: the audio-visual model's fused head and its two auxiliary heads (these
read the fused streams, so they may exceed 50 %), and the visual-only and audio-only ablation models
(the honest unimodal baselines). Prints a table and writes JSON (default
bench/results/learnability.json).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio_ffmpeg  # noqa: E402

from model.train import TrainConfig  # noqa: E402
from model.train import main as train_main

CLASSES = (  # name, polarity, colour (r, g, b), tone Hz
    ("RedLow", "positive", (200, 40, 30), 330),
    ("RedHigh", "neutral", (200, 40, 30), 1320),
    ("BlueLow", "negative", (30, 50, 200), 330),
    ("BlueHigh", "negative", (30, 50, 200), 1320),
)
COLUMNS = ("clip_id,media_path,label,label_index,polarity,split,confidence,n_judgements,resolving_stage,"
           "platform,uploader_hash,duration_s,has_audio")


def _clip(path: Path, colour: tuple[int, int, int], tone: float, rng: random.Random) -> None:
    scale = rng.uniform(0.6, 1.0)
    r, g, b = (min(255, int(c * scale)) for c in colour)
    speed, y = rng.uniform(5, 30), rng.randint(10, 100)
    amplitude = rng.uniform(0.2, 0.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", f"color=c=0x{r:02x}{g:02x}{b:02x}:s=72x128:r=10:d=2",
        "-f", "lavfi", "-i", f"aevalsrc={amplitude:.3f}*sin(2*PI*{tone:.1f}*t)+0.05*(2*random(0)-1):s=22050:d=2",
        "-vf", f"drawbox=x=mod(t*{speed:.1f}\\,60):y={y}:w=12:h=12:color=white:t=fill",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
    ], check=True)


def make_dataset(root: Path, counts: dict[str, int], seed: int) -> Path:
    rng = random.Random(seed)
    rows = [COLUMNS]
    for index, (name, polarity, colour, tone) in enumerate(CLASSES):
        for split, count in counts.items():
            for number in range(count):
                clip_id = f"{name}-{split}-{number}"
                relative = f"{split}/{name}/{clip_id}.mp4"
                _clip(root / relative, colour, tone * rng.uniform(0.95, 1.05), rng)
                rows.append(f"{clip_id},{relative},{name},{index},{polarity},{split},1.0,3,1,synthetic,u,2.0,True")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    (root / "labels.json").write_text(json.dumps(
        [{"index": i, "name": n, "polarity": p} for i, (n, p, _, _) in enumerate(CLASSES)]))
    return root


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotions-learnability"))
    parser.add_argument("--train-per-class", type=int, default=16)
    parser.add_argument("--val-per-class", type=int, default=4)
    parser.add_argument("--test-per-class", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "learnability.json")
    args = parser.parse_args(argv)

    export = args.work / "export"
    if not (export / "manifest.csv").exists():
        started = time.perf_counter()
        make_dataset(export, {"train": args.train_per_class, "validation": args.val_per_class,
                              "test": args.test_per_class}, args.seed)
        print(f"made {len(CLASSES) * (args.train_per_class + args.val_per_class + args.test_per_class)} clips "
              f"in {time.perf_counter() - started:.0f} s")

    results: dict[str, dict] = {}
    for modalities in ("audio-visual", "visual", "audio"):
        started = time.perf_counter()
        cfg = TrainConfig.tiny(export=str(export), out=str(args.work / f"run-{modalities}"), epochs=args.epochs,
                               batch_size=8, modalities=modalities, seed=args.seed, resume=False)
        run_dir = Path(cfg.out)
        for stale in ("metrics.jsonl", "last.pt", "best.pt"):
            (run_dir / stale).unlink(missing_ok=True)
        summary = train_main(cfg)
        test = summary["test"]
        results[modalities] = {
            "test_top1": test["top1"], "visual_head_top1": test["visual_top1"], "audio_head_top1": test["audio_top1"],
            "best_epoch": summary["best_epoch"], "seconds": time.perf_counter() - started,
        }

    av = results["audio-visual"]
    rows = [
        ("audio-visual model, fused head", av["test_top1"]),
        ("audio-visual model, visual head", av["visual_head_top1"]),
        ("audio-visual model, audio head", av["audio_head_top1"]),
        ("visual-only model", results["visual"]["test_top1"]),
        ("audio-only model", results["audio"]["test_top1"]),
    ]
    print(f"test clips: {len(CLASSES) * args.test_per_class}; chance 25 %, one modality at best 50 %")
    for name, value in rows:
        print(f"{name:<34} {100 * value:6.1f} %")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
