"""Learnability: synthetic audio-visual sets that need both modalities, one of them needing fusion.

    python bench/bench_model_learnability.py                      # both tasks, tiny preset on CPU
    python bench/bench_model_learnability.py --task agreement --train-per-class 32 --epochs 20

Clips are made with FFmpeg (portrait 9:16, per-clip brightness, a white box at a per-clip place,
tone jitter and noise) from a colour (red / blue) and a tone (low / high), written as an export,
cached with ``prepare_features`` and trained with ``model.train.main`` (tiny preset). Two tasks:

- ``colour-tone``: four classes = colour × tone. One modality tells at best half (50 %); a late
  fusion of the two (each modality's evidence added in the head) already reaches 100 %.
- ``agreement``: two classes, "agree" (red + low, blue + high) and "disagree" (red + high, blue +
  low), an XOR. Each modality alone is at chance (50 %), and so is any sum of per-modality evidence:
  late fusion (``--no-local --no-global``, logits W[a; v] + b) can be right on at most 3 of the 4
  colour/tone combinations (75 %), whatever it learns. Only interaction between the streams (the
  cross-attention of the local and global stages) can reach 100 %.

Models: the full audio-visual model, late fusion, and the visual-only and audio-only ablations. Reported on the test split, with the full
model's two auxiliary heads (they read the fused streams, so they are not unimodal). Prints a table
and writes JSON (default bench/results/learnability.json).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio_ffmpeg  # noqa: E402

from model.train import TrainConfig  # noqa: E402
from model.train import main as train_main

RED, BLUE, LOW, HIGH = (200, 40, 30), (30, 50, 200), 330, 1320
# task -> classes: name, polarity, and the (colour, tone) combinations that make the class
TASKS: dict[str, tuple[tuple[str, str, tuple[tuple[tuple[int, int, int], int], ...]], ...]] = {
    "colour-tone": (
        ("RedLow", "positive", ((RED, LOW),)),
        ("RedHigh", "neutral", ((RED, HIGH),)),
        ("BlueLow", "negative", ((BLUE, LOW),)),
        ("BlueHigh", "negative", ((BLUE, HIGH),)),
    ),
    "agreement": (
        ("Agree", "positive", ((RED, LOW), (BLUE, HIGH))),
        ("Disagree", "negative", ((RED, HIGH), (BLUE, LOW))),
    ),
}
# name -> TrainConfig overrides
MODELS: dict[str, dict] = {
    "full model": {},
    "late fusion (no local/global)": {"local_stage": False, "global_stage": False},
    "visual-only model": {"modalities": "visual"},
    "audio-only model": {"modalities": "audio"},
}
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
        # drawbox has no time variable (its t is the thickness), so the box stays where this puts it
        "-vf", f"drawbox=x=mod(t*{speed:.1f}\\,60):y={y}:w=12:h=12:color=white:t=fill",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
    ], check=True)


def make_dataset(root: Path, task: str, counts: dict[str, int], seed: int) -> Path:
    """``counts`` clips per class and split; a class of several combinations cycles through them."""
    rng = random.Random(seed)
    rows = [COLUMNS]
    classes = TASKS[task]
    for index, (name, polarity, combinations) in enumerate(classes):
        for split, count in counts.items():
            for number in range(count):
                colour, tone = combinations[number % len(combinations)]
                clip_id = f"{name}-{split}-{number}"
                relative = f"{split}/{name}/{clip_id}.mp4"
                _clip(root / relative, colour, tone * rng.uniform(0.95, 1.05), rng)
                rows.append(f"{clip_id},{relative},{name},{index},{polarity},{split},1.0,3,1,synthetic,u,2.0,True")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    (root / "labels.json").write_text(json.dumps(
        [{"index": i, "name": n, "polarity": p} for i, (n, p, _) in enumerate(classes)]))
    return root


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=[*TASKS, "all"], default="all")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of the model names")
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotions-learnability"))
    parser.add_argument("--train-per-class", type=int, default=16)
    parser.add_argument("--val-per-class", type=int, default=4)
    parser.add_argument("--test-per-class", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "learnability.json")
    args = parser.parse_args(argv)
    tasks = list(TASKS) if args.task == "all" else [args.task]
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")

    results: dict[str, dict[str, dict]] = {}
    for task in tasks:
        counts = {"train": args.train_per_class, "validation": args.val_per_class, "test": args.test_per_class}
        export = args.work / f"{task}-{args.train_per_class}-{args.val_per_class}-{args.test_per_class}-{args.seed}"
        if not (export / "manifest.csv").exists():
            started = time.perf_counter()
            make_dataset(export, task, counts, args.seed)
            print(f"{task}: made {len(TASKS[task]) * sum(counts.values())} clips in {time.perf_counter() - started:.0f} s")
        results[task] = {}
        for name in models:
            started = time.perf_counter()
            run_dir = args.work / f"run-{task}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"
            for stale in ("metrics.jsonl", "last.pt", "best.pt"):
                (run_dir / stale).unlink(missing_ok=True)
            cfg = TrainConfig.tiny(export=str(export), out=str(run_dir), epochs=args.epochs, batch_size=8,
                                   seed=args.seed, resume=False, **MODELS[name])
            summary = train_main(cfg)
            test = summary["test"]
            results[task][name] = {
                "test_top1": test["top1"], "visual_head_top1": test["visual_top1"], "audio_head_top1": test["audio_top1"],
                "best_epoch": summary["best_epoch"], "seconds": time.perf_counter() - started,
            }
            print(f"  {task:<12} {name:<36} test top-1 {100 * test['top1']:5.1f} %  "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)

    print(f"\ntest top-1 (%), {args.test_per_class} test clips per class, {args.train_per_class} training clips per class, "
          f"{args.epochs} epochs, seed {args.seed}")
    print(f"{'model':<36}" + "".join(f"{task:>14}" for task in tasks))
    for name in models:
        print(f"{name:<36}" + "".join(f"{100 * results[task][name]['test_top1']:>13.1f} " for task in tasks))
        if name == "full model":
            for head, key in (("  its visual aux head (fused input)", "visual_head_top1"),
                              ("  its audio aux head (fused input)", "audio_head_top1")):
                print(f"{head:<36}" + "".join(f"{100 * results[task][name][key]:>13.1f} " for task in tasks))
    print("chance: 25 % (colour-tone), 50 % (agreement); one modality at best 50 %; "
          "late fusion at best 100 % on colour-tone, 75 % on agreement")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
