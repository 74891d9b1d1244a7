"""``curate prepare-features``, ``curate train-baseline``, ``curate evaluate`` and ``curate import-release``.

Thin shells over ``model``; torch is imported inside the commands so ``curate --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["register"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class _RichProgress:
    """Adapts a rich Progress to the ``model.train.Progress`` protocol (one task at a time)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None

    def start(self, description: str, total: int) -> None:
        self.finish()
        self.task = self.progress.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, steps)

    def finish(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=err_console, transient=True,
    )


def prepare_features_command(
    export_dir: Annotated[Path, typer.Argument(help="Export folder (manifest.csv + labels.json) or VAANet-layout folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="Cache folder (default: EXPORT_DIR/features-PRESET).")] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 4,
    preset: Annotated[str, typer.Option(help="Model preset whose sampling the cache serves: tiny or full.")] = "full",
    jitter: Annotated[int | None, typer.Option(help="Extra cached frames per segment (random temporal offset range); default T/2.")] = None,
    fold: Annotated[int, typer.Option(help="List number NN of trainlistNN.txt in the VAANet layout.")] = 1,
) -> None:
    """Decode every clip once into compact per-clip arrays (frames, MFCC); resumable, parallel."""
    from dataclasses import replace

    from model.avcpnet import PRESETS, ModelConfig
    from model.errors import ModelError
    from model.export_reader import read_export
    from model.train import prepare_export_features

    if preset not in PRESETS:
        raise ModelError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    table = read_export(export_dir, fold=fold)
    config: ModelConfig = replace(PRESETS[preset], num_classes=len(table.labels))
    cache_dir = out or table.root / f"features-{preset}"
    with _progress() as bar:
        report = prepare_export_features(table.clips, cache_dir, config, jitter=jitter, workers=workers,
                                         progress=_RichProgress(bar), strict=False)
    for clip_id, reason in report.failed.items():
        err_console.print(f"warning: {clip_id}: {reason}")
    cached = len(table.clips) - len(report.failed)
    console.print(f"features of {cached} clips in {cache_dir} ({report.written} decoded, "
                  f"{cached - report.written} already cached"
                  + (f", {len(report.failed)} undecodable and left out" if report.failed else "") + ")")


def train_baseline_command(
    export: Annotated[Path, typer.Option("--export", help="Export folder or VAANet-layout folder.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder (checkpoints, metrics.jsonl, test/).")],
    preset: Annotated[str, typer.Option(help="tiny (CPU, tests) or full (the authors' recipe).")] = "full",
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the preset's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda (under torchrun: one GPU per process).")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from RUN_DIR/last.pt.")] = False,
    cache: Annotated[Path | None, typer.Option(help="Feature cache (default: EXPORT/features-PRESET; made if missing).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Clips per step and process (default: the preset's).")] = None,
    accumulation_steps: Annotated[int | None, typer.Option(help="Gradient accumulation steps (default: the preset's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default: the preset's).")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers (default: the preset's).")] = None,
    modalities: Annotated[str, typer.Option(help="Ablation: audio-visual, visual or audio.")] = "audio-visual",
    no_local: Annotated[bool, typer.Option("--no-local", help="Ablation: skip the local fusion stage.")] = False,
    no_global: Annotated[bool, typer.Option("--no-global", help="Ablation: skip the global fusion stage.")] = False,
    loss: Annotated[str, typer.Option(help="ep-ce or ce (ablation).")] = "ep-ce",
    swin2d_checkpoint: Annotated[Path | None, typer.Option(help="Local ImageNet 2-D Swin-T checkpoint to inflate.")] = None,
    swin3d_checkpoint: Annotated[Path | None, typer.Option(help="Local Kinetics Video Swin-T checkpoint.")] = None,
    resnet_checkpoint: Annotated[Path | None, typer.Option(help="Local ImageNet ResNet-34 checkpoint.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    fold: Annotated[int, typer.Option(help="List number NN in the VAANet layout.")] = 1,
) -> None:
    """Train AV-CPNet: best epoch on validation, test evaluated once at the end."""
    from model.errors import ModelError
    from model.train import TrainConfig, main

    if preset not in ("tiny", "full"):
        raise ModelError(f"unknown preset {preset!r}; choose tiny or full")
    overrides: dict[str, Any] = {
        "export": str(export), "out": str(out), "device": device, "resume": resume,
        "cache": str(cache) if cache else None, "modalities": modalities, "local_stage": not no_local,
        "global_stage": not no_global, "loss": loss, "seed": seed, "fold": fold,
        "swin2d_checkpoint": str(swin2d_checkpoint) if swin2d_checkpoint else None,
        "swin3d_checkpoint": str(swin3d_checkpoint) if swin3d_checkpoint else None,
        "resnet_checkpoint": str(resnet_checkpoint) if resnet_checkpoint else None,
    }
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("accumulation_steps", accumulation_steps),
                       ("lr", lr), ("workers", workers)):
        if value is not None:
            overrides[key] = value
    cfg = TrainConfig.tiny(**overrides) if preset == "tiny" else TrainConfig.full(**overrides)

    def on_epoch(record: dict[str, Any]) -> None:
        console.print(
            f"epoch {record['epoch']:>3}  lr {record['lr']:.2e}  train loss {record['train_loss']:.4f}  "
            f"val top-1 {record['val_top1']:.4f}  UAR {record['val_uar']:.4f}  best epoch {record['best_epoch']}"
        )

    with _progress() as bar:
        summary = main(cfg, progress=_RichProgress(bar), on_epoch=on_epoch)
    test = summary.get("test")
    if test is not None:
        console.print(f"best epoch {summary['best_epoch']} (val top-1 {summary['best_val_top1']:.4f}); "
                      f"test top-1 {test['top1']:.4f}, UAR {test['uar']:.4f}, macro-F1 {test['macro_f1']:.4f}")
        if summary.get("skipped_clips"):
            err_console.print(f"warning: {summary['skipped_clips']} undecodable clips were left out "
                              f"(listed in {out / 'skipped_clips.json'})")
        console.print(f"run folder: {out}")


def evaluate_command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="A checkpoint written by train-baseline (best.pt).")],
    export: Annotated[Path, typer.Option("--export", help="Export folder or VAANet-layout folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for predictions.csv, metrics.json, confusion.png.")],
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    cache: Annotated[Path | None, typer.Option(help="Feature cache (default: EXPORT/features-PRESET).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader workers.")] = 0,
) -> None:
    """Evaluate a checkpoint on one split: per-clip predictions, metrics and a confusion matrix."""
    from model.train import evaluate_checkpoint

    with _progress() as bar:
        metrics = evaluate_checkpoint(checkpoint, export, split, out, cache_dir=cache, device=device, workers=workers,
                                      progress=_RichProgress(bar))
    heads = ", ".join(f"{name} head {metrics[key]:.4f}" for name, key in (("visual", "visual_top1"), ("audio", "audio_top1"))
                      if metrics.get(key) is not None)
    console.print(f"{split}: {metrics['n']} clips, top-1 {metrics['top1']:.4f}, UAR {metrics['uar']:.4f}, "
                  f"macro-F1 {metrics['macro_f1']:.4f}, weighted-F1 {metrics['weighted_f1']:.4f}"
                  + (f"; {heads}" if heads else ""))
    console.print(f"written to {out}")


def import_release_command(
    path: Annotated[Path, typer.Argument(help="Local copy of the eMotions release (a folder of parquet shards).")],
    out: Annotated[Path, typer.Option("--out", help="Export folder to write.")] = Path("exports/emotions-release"),
    seed: Annotated[int, typer.Option(help="Seed of held-out splits when the release has none.")] = 1,
) -> None:
    """Turn the published eMotions release (parquet with video bytes) into an export."""
    from model.release import import_release

    with _progress() as bar:
        task = bar.add_task("clips", total=None)
        counts = import_release(path, out, seed=seed, on_clip=lambda: bar.advance(task))
    console.print(f"export in {out}: " + ", ".join(f"{split} {count}" for split, count in counts.items()))


def register(app: typer.Typer) -> None:
    app.command("prepare-features")(prepare_features_command)
    app.command("train-baseline")(train_baseline_command)
    app.command("evaluate")(evaluate_command)
    app.command("import-release")(import_release_command)
