"""Parameters and multiply-accumulates per clip of AV-CPNet, counted on meta tensors (no memory, no time).

    python bench/bench_model_cost.py               # full preset (the specification: ≈ 50 M, ≈ 101 GMACs)
    python bench/bench_model_cost.py --preset tiny

MACs come from torch.utils.flop_counter.FlopCounterMode (FLOPs / 2) for one clip's forward pass,
broken down by the model's parts. Prints a table and writes JSON (default bench/results/model_cost.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.avcpnet import PRESETS, avcpnet  # noqa: E402

PARTS = ("visual", "audio", "local", "global_", "head")


def measure(preset: str) -> dict:
    cfg = PRESETS[preset]
    with torch.device("meta"):
        model = avcpnet(preset=preset, num_classes=6).eval()
        frames = torch.empty(1, cfg.segments, 3, cfg.frames_per_segment, cfg.frame_size, cfg.frame_size)
        mfcc = torch.empty(1, cfg.mfcc_frames, cfg.n_mfcc)
        counter = FlopCounterMode(display=False, depth=2)
        with counter, torch.no_grad():
            model(frames, mfcc)
    counts = counter.get_flop_counts()
    total_macs = counter.get_total_flops() / 2
    parts = {}
    for part in PARTS:
        module = getattr(model, part)
        key = f"AVCPNet.{part}"
        parts[part] = {
            "parameters_m": sum(p.numel() for p in module.parameters()) / 1e6 if module is not None else 0.0,
            "gmacs": sum(counts.get(key, {}).values()) / 2e9,
        }
    return {
        "preset": preset,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gmacs_per_clip": total_macs / 1e9,
        "parts": parts,
        "input": {"frames": list(frames.shape), "mfcc": list(mfcc.shape)},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "model_cost.json")
    args = parser.parse_args(argv)
    result = measure(args.preset)
    print(f"AV-CPNet ({result['preset']} preset), one clip: frames {result['input']['frames']}, "
          f"MFCC {result['input']['mfcc']}")
    print(f"{'part':<10} {'params (M)':>11} {'GMACs':>9}")
    for part, row in result["parts"].items():
        print(f"{part.rstrip('_'):<10} {row['parameters_m']:>11.2f} {row['gmacs']:>9.2f}")
    print(f"{'total':<10} {result['parameters_m']:>11.2f} {result['gmacs_per_clip']:>9.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
