"""Training throughput and peak memory of AV-CPNet on synthetic tensors (bf16 autocast on CUDA).

    python bench/bench_gpu_train.py --device cuda --steps 20            # full preset, the authors' batch 8
    python bench/bench_gpu_train.py --device cpu --preset tiny --steps 2

A few warm-up steps, then timed optimiser steps (forward, EP-CE on the three heads, backward, AdamW)
with CUDA events; inference (eval-mode forward) is timed the same way. Data loading is not included:
the tensors already sit on the device. Prints a table and writes JSON (default
bench/results/gpu_train.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.avcpnet import PRESETS, avcpnet  # noqa: E402
from model.labels import LabelSet  # noqa: E402
from model.loss import EPCELoss  # noqa: E402


class _Timer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> _Timer:
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.end.record()
            torch.cuda.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self.t0


def _batch(preset: str, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    cfg = PRESETS[preset]
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (batch, cfg.segments, 3, cfg.frames_per_segment, cfg.frame_size, cfg.frame_size),
                           dtype=torch.uint8, generator=g)
    return {
        "frames": frames.to(device),
        "mfcc": (torch.randn(batch, cfg.mfcc_frames, cfg.n_mfcc, generator=g) * 50).to(device),
        "label": torch.randint(0, 6, (batch,), generator=g).to(device),
        "has_audio": torch.ones(batch, dtype=torch.bool).to(device),
    }


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    labels = LabelSet.emotions()
    model = avcpnet(preset=args.preset, num_classes=len(labels)).to(device)
    if args.channels_last and device.type == "cuda":
        model.audio.to(memory_format=torch.channels_last)
    criterion = EPCELoss(labels.polarity_indices).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-4, weight_decay=0.02)
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda" and not args.fp32 else nullcontext()
    batch = _batch(args.preset, args.batch_size, device)

    def train_step() -> None:
        with amp:
            out = model(batch["frames"], batch["mfcc"])
            loss = (criterion(out.logits, batch["label"]) + criterion(out.visual_logits, batch["label"])
                    + criterion(out.audio_logits, batch["label"], sample_mask=batch["has_audio"]))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    for _ in range(args.warmup):
        train_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with _Timer(device) as train_timer:
        for _ in range(args.steps):
            train_step()
    train_peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None

    model.eval()
    with torch.no_grad():
        for _ in range(args.warmup):
            with amp:
                model(batch["frames"], batch["mfcc"])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with _Timer(device) as eval_timer:
            for _ in range(args.steps):
                with amp:
                    model(batch["frames"], batch["mfcc"])
    eval_peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None

    return {
        "preset": args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "precision": "bf16 autocast" if device.type == "cuda" and not args.fp32 else "fp32",
        "batch_size": args.batch_size,
        "steps": args.steps,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_ms_per_step": 1000 * train_timer.seconds / args.steps,
        "train_samples_per_s": args.batch_size * args.steps / train_timer.seconds,
        "train_peak_memory_gib": train_peak,
        "eval_samples_per_s": args.batch_size * args.steps / eval_timer.seconds,
        "eval_peak_memory_gib": eval_peak,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 (full) or 4 (tiny)")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="channels-last audio ResNet on CUDA")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu_train.json")
    args = parser.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 8 if args.preset == "full" else 4
    if args.device == "cpu":
        args.warmup = min(args.warmup, 1)
    result = run(args)
    rows = [
        ("preset / device", f"{result['preset']} / {result['device']}"),
        ("precision", result["precision"]),
        ("parameters", f"{result['parameters_m']:.1f} M"),
        ("batch (clips)", str(result["batch_size"])),
        ("train: ms per step", f"{result['train_ms_per_step']:.1f}"),
        ("train: clips/s", f"{result['train_samples_per_s']:.2f}"),
        ("train: peak memory", "-" if result["train_peak_memory_gib"] is None else f"{result['train_peak_memory_gib']:.2f} GiB"),
        ("eval: clips/s", f"{result['eval_samples_per_s']:.2f}"),
        ("eval: peak memory", "-" if result["eval_peak_memory_gib"] is None else f"{result['eval_peak_memory_gib']:.2f} GiB"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"written {args.json}")
    return result


if __name__ == "__main__":
    main()
