"""Parameters and multiply-accumulates per clip of AV-CPNet, per module, beside the specification's figures.

    python bench/bench_model_cost.py               # full preset
    python bench/bench_model_cost.py --preset tiny

Counted on meta tensors (no memory, no time): parameters with ``numel``, MACs with
torch.utils.flop_counter.FlopCounterMode (FLOPs / 2) over one clip's forward pass. Rows: the two
backbones (with their projections), each local level, the level weighting, the global stage, the
head. The specification (``shared/reference/avcpnet.md``) gives ≈ 28 M / 82 GMACs for the Swin
branch, ≈ 21 M / 19 GMACs for the audio branch, ≈ 38 M for the local stage, ≈ 1.5 M global and
≈ 90 M in all. Those two local/total figures count a cross-attention layer per direction at each
level and a global attention per direction; the authors' code (and this package) shares them, and
the printed note adds the unshared layers back to compare. Writes JSON (default
bench/results/model_cost.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.avcpnet import PRESETS, build_avcpnet  # noqa: E402

# The specification's figures (parameters in M, GMACs per clip), where it gives them.
SPEC = {
    "visual": (28.0, 82.0),
    "audio": (21.0, 19.0),
    "local (all levels)": (38.0, None),
    "global": (1.5, None),
    "total": (90.0, 101.0),
}


def _millions(module: nn.Module | None) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6 if module is not None else 0.0


def _modules(model: nn.Module) -> dict[str, nn.Module | None]:
    rows: dict[str, nn.Module | None] = {"visual": model.visual, "audio": model.audio}
    if model.local is not None:
        for i, level in enumerate(model.local.levels):
            rows[f"local level {i} (d={level.visual_temporal.dilated.dilation[0]})"] = level
        rows["level weighting"] = model.local.weighting
    rows["global"] = model.global_
    rows["head"] = model.head
    return rows


def measure(preset: str) -> dict:
    cfg = replace(PRESETS[preset], num_classes=6)
    with torch.device("meta"):
        model = build_avcpnet(cfg).eval()
        frames = torch.empty(1, cfg.segments, 3, cfg.frames_per_segment, cfg.frame_size, cfg.frame_size)
        mfcc = torch.empty(1, cfg.mfcc_frames, cfg.n_mfcc)
    modules = _modules(model)
    macs = dict.fromkeys(modules, 0.0)
    # Count each module's own MACs: a counter per module, via forward hooks around its calls.
    owners = {id(m): name for name, m in modules.items() if m is not None}
    counters: dict[str, FlopCounterMode] = {}

    def enter(module: nn.Module, _inputs: object) -> None:
        counter = FlopCounterMode(display=False)
        counters[owners[id(module)]] = counter
        counter.__enter__()

    def leave(module: nn.Module, _inputs: object, _output: object) -> None:
        counter = counters.pop(owners[id(module)])
        counter.__exit__(None, None, None)
        macs[owners[id(module)]] += counter.get_total_flops() / 2e9

    hooks = [m.register_forward_pre_hook(enter) for m in modules.values() if m is not None]
    hooks += [m.register_forward_hook(leave) for m in modules.values() if m is not None]
    total = FlopCounterMode(display=False)
    with total, torch.no_grad():
        model(frames, mfcc)
    for hook in hooks:
        hook.remove()
    rows = {name: {"parameters_m": _millions(m), "gmacs": macs[name]} for name, m in modules.items()}
    # What the specification's count adds: a second cross layer per level, a second global attention.
    unshared = (sum(_millions(level.cross) for level in model.local.levels) if model.local is not None else 0.0) + (
        _millions(model.global_.attention) if model.global_ is not None else 0.0)
    return {
        "preset": preset,
        "rows": rows,
        "unshared_extra_parameters_m": unshared,
        "local_parameters_m": _millions(model.local),
        "parameters_m": _millions(model),
        "gmacs_per_clip": total.get_total_flops() / 2e9,
        "input": {"frames": list(frames.shape), "mfcc": list(mfcc.shape)},
    }


def _spec(name: str) -> str:
    figures = SPEC.get(name)
    if figures is None:
        return ""
    params, gmacs = figures
    return f"≈ {params:g} M" + (f", ≈ {gmacs:g} GMACs" if gmacs is not None else "")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "model_cost.json")
    args = parser.parse_args(argv)
    result = measure(args.preset)
    full = args.preset == "full"
    print(f"AV-CPNet ({args.preset} preset), one clip: frames {result['input']['frames']}, MFCC {result['input']['mfcc']}")
    print(f"{'module':<24}{'params (M)':>12}{'GMACs':>9}  specification")
    for name, row in result["rows"].items():
        print(f"{name:<24}{row['parameters_m']:>12.2f}{row['gmacs']:>9.2f}  {_spec(name) if full else ''}")
    print(f"{'local (all levels)':<24}{result['local_parameters_m']:>12.2f}{'':>9}  "
          f"{_spec('local (all levels)') if full else ''}")
    print(f"{'total':<24}{result['parameters_m']:>12.2f}{result['gmacs_per_clip']:>9.2f}  {_spec('total') if full else ''}")
    if full:
        extra = result["unshared_extra_parameters_m"]
        print(f"note: the specification's ≈ 38 M local / ≈ 90 M total count a cross-attention layer per direction "
              f"and two global attentions; the authors share them. Unshared, this model would have "
              f"{result['parameters_m'] + extra:.2f} M ({extra:.2f} M more); the MACs are the same either way.")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
