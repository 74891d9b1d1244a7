"""``curate prepare-features``, ``curate train-baseline``, ``curate evaluate`` and ``curate import-release``.

Thin shells over ``model``; torch is imported inside the commands so ``curate --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from curate_cli.common import ExecutorChoice, TaskProgress, console, err_console, media_executor, progress_bar

__all__ = ["register"]


def prepare_features_command(
    export_dir: Annotated[Path, typer.Argument(help="Export folder (manifest.csv + labels.json) or VAANet-layout folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="Cache folder (default: EXPORT_DIR/features-PRESET).")] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes (with --executor dask and no --scheduler: local Dask workers).")] = 4,
    executor: Annotated[ExecutorChoice, typer.Option(help="Where decoding runs: local processes, or Dask distributed (a LocalCluster, or --scheduler's cluster).")] = ExecutorChoice.processes,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, e.g. tcp://HOST:8786 (with --executor dask); workers must see the export and the cache folder at the same paths.")] = None,
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
    with media_executor(executor, workers, scheduler) as (pool, _slots), progress_bar(transient=True) as bar:
        report = prepare_export_features(table.clips, cache_dir, config, jitter=jitter, workers=workers,
                                         progress=TaskProgress(bar), strict=False, executor=pool)
    for clip_id, reason in report.failed.items():
        err_console.print(f"warning: {clip_id}: {reason}", markup=False)
    cached = len(table.clips) - len(report.failed)
    console.print(f"features of {cached} clips in {cache_dir} ({report.written} decoded, "
                  f"{cached - report.written} already cached"
                  + (f", {len(report.failed)} undecodable and left out" if report.failed else "") + ")", markup=False)


def _numbers(option: str, text: str | None, kind: type = float) -> list[Any] | None:
    """``"0.5,0.5,0.5"`` -> [0.5, 0.5, 0.5]; a bad list is a usage error naming the option."""
    if text is None:
        return None
    try:
        return [kind(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of {kind.__name__}s",
                                 param_hint=option) from None


def train_baseline_command(
    export: Annotated[Path | None, typer.Option("--export", help="Export folder or VAANet-layout folder.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (checkpoints, metrics.jsonl, test/).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of training settings and a [model] table "
                                                "(RUN/config.toml of an earlier run is one); flags override it.")] = None,
    preset: Annotated[str | None, typer.Option(help="tiny (CPU, tests) or full (the authors' recipe; default).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the preset's).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda (under torchrun: one GPU per process).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from RUN_DIR/last.pt, exactly where it stopped.")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --resume: continue although epochs, schedule or other "
                                        "settings differ from the stored run's.")] = False,
    cache: Annotated[Path | None, typer.Option(help="Feature cache (default: EXPORT/features-PRESET; made if missing).")] = None,
    jitter: Annotated[int | None, typer.Option(help="Cached frames per segment beyond T (range of the random temporal "
                                               "offset); default: the cache's, else T/2.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Clips per step and process (default: the preset's).")] = None,
    accumulation_steps: Annotated[int | None, typer.Option(help="Gradient accumulation steps (default: the preset's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default: the preset's).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (authors: 0.02).")] = None,
    betas: Annotated[str | None, typer.Option(help="AdamW betas, e.g. 0.9,0.999.")] = None,
    warmup_epochs: Annotated[float | None, typer.Option(help="Linear warm-up length in epochs (authors: 1.5).")] = None,
    warmup_start_factor: Annotated[float | None, typer.Option(help="Warm-up starts at this fraction of --lr (0.1).")] = None,
    min_lr_factor: Annotated[float | None, typer.Option(help="Cosine decays to this fraction of --lr (0.01).")] = None,
    augment_probability: Annotated[float | None, typer.Option(help="Chance of one frame augmentation per clip (0.3).")] = None,
    max_steps_per_epoch: Annotated[int | None, typer.Option(help="Cut every epoch after this many steps (smoke runs).")] = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA (default on).")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers (default: the preset's).")] = None,
    modalities: Annotated[str | None, typer.Option(help="Ablation: audio-visual (default), visual or audio.")] = None,
    no_local: Annotated[bool, typer.Option("--no-local", help="Ablation: skip the local fusion stage.")] = False,
    no_global: Annotated[bool, typer.Option("--no-global", help="Ablation: skip the global fusion stage.")] = False,
    loss: Annotated[str | None, typer.Option(help="ep-ce (default) or ce (ablation).")] = None,
    lambdas: Annotated[str | None, typer.Option(help="EP-CE λ for positive, neutral, negative ground truth, e.g. 0.5,0.5,0.5.")] = None,
    dilations: Annotated[str | None, typer.Option(help="Local pyramid: one level per dilation, e.g. 1,2,4 (spec CHOICE).")] = None,
    ffn_dim: Annotated[int | None, typer.Option(help="Feed-forward width of the fusion layers (spec CHOICE: 1024).")] = None,
    fusion_heads: Annotated[int | None, typer.Option(help="Attention heads of the local stage (8).")] = None,
    global_heads: Annotated[int | None, typer.Option(help="Attention heads of the global stage (8).")] = None,
    fusion_dropout: Annotated[float | None, typer.Option(help="Residual/feed-forward dropout of the fusion layers (0.5).")] = None,
    attention_dropout: Annotated[float | None, typer.Option(help="Attention dropout of the local stage (0.1).")] = None,
    visual_dropout: Annotated[float | None, typer.Option(help="Dropout before the visual projection (0.5).")] = None,
    swin2d_checkpoint: Annotated[Path | None, typer.Option(help="Local ImageNet 2-D Swin-T checkpoint to inflate: torchvision swin_t or Microsoft Swin (e.g. swin_tiny_patch4_window7_224_22k.pth).")] = None,
    swin3d_checkpoint: Annotated[Path | None, typer.Option(help="Local Kinetics Video Swin-T checkpoint: torchvision swin3d_t or the Video Swin authors' mmaction file (e.g. swin_tiny_patch244_window877_kinetics400_1k.pth).")] = None,
    resnet_checkpoint: Annotated[Path | None, typer.Option(help="Local ImageNet ResNet-34 checkpoint.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (1).")] = None,
    fold: Annotated[int | None, typer.Option(help="List number NN in the VAANet layout.")] = None,
) -> None:
    """Train AV-CPNet: best epoch on validation, test evaluated once at the end.

    Settings come from the preset, then --config, then the flags; the run folder records the
    resolved ones (config.json, and config.toml for --config).
    """
    import warnings

    from model.errors import ModelError
    from model.train import (
        PretrainedWeightsWarning,
        TrainConfig,
        check_model_overrides,
        main,
        pretrained_warning,
        read_config_file,
    )

    values: dict[str, Any] = read_config_file(config) if config is not None else {}
    flags: dict[str, Any] = {
        "export": str(export) if export else None, "out": str(out) if out else None, "device": device,
        "cache": str(cache) if cache else None, "jitter": jitter, "epochs": epochs, "batch_size": batch_size,
        "accumulation_steps": accumulation_steps, "lr": lr, "weight_decay": weight_decay,
        "betas": _numbers("--betas", betas), "warmup_epochs": warmup_epochs,
        "warmup_start_factor": warmup_start_factor, "min_lr_factor": min_lr_factor,
        "augment_probability": augment_probability, "max_steps_per_epoch": max_steps_per_epoch, "amp": amp,
        "workers": workers, "modalities": modalities, "loss": loss, "lambdas": _numbers("--lambdas", lambdas),
        "seed": seed, "fold": fold,
        "swin2d_checkpoint": str(swin2d_checkpoint) if swin2d_checkpoint else None,
        "swin3d_checkpoint": str(swin3d_checkpoint) if swin3d_checkpoint else None,
        "resnet_checkpoint": str(resnet_checkpoint) if resnet_checkpoint else None,
    }
    values.update({key: value for key, value in flags.items() if value is not None})
    if no_local:
        values["local_stage"] = False
    if no_global:
        values["global_stage"] = False
    model_flags = {
        "dilations": _numbers("--dilations", dilations, int), "fusion_ff_dim": ffn_dim, "fusion_heads": fusion_heads,
        "global_heads": global_heads, "fusion_dropout": fusion_dropout, "fusion_attention_dropout": attention_dropout,
        "visual_dropout": visual_dropout,
    }
    model_values = {**values.get("model", {}), **{k: v for k, v in model_flags.items() if v is not None}}
    values["model"] = check_model_overrides(model_values, "the command line")
    if "lambdas" in values and len(values["lambdas"]) != 3:
        raise ModelError(f"--lambdas needs three values (positive, neutral, negative), got {values['lambdas']}")
    for required in ("export", "out"):
        if not values.get(required):
            raise typer.BadParameter(f"give --{required} (or set {required} in --config)", param_hint=f"--{required}")
    chosen = values.pop("preset", "full") if preset is None else preset  # the flag over the file
    values.pop("preset", None)
    cfg = TrainConfig.for_preset(chosen, **values, resume=resume, force=force)

    def on_epoch(record: dict[str, Any]) -> None:
        console.print(
            f"epoch {record['epoch']:>3}  lr {record['lr']:.2e}  train loss {record['train_loss']:.4f}  "
            f"val top-1 {record['val_top1']:.4f}  UAR {record['val_uar']:.4f}  best epoch {record['best_epoch']}"
        )

    warning = pretrained_warning(cfg)
    if warning is not None:
        err_console.print(f"warning: {warning}", markup=False)
    with progress_bar(transient=True) as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsWarning)  # said above, once
        summary = main(cfg, progress=TaskProgress(bar), on_epoch=on_epoch)
    test = summary.get("test")
    if test is not None:
        console.print(f"best epoch {summary['best_epoch']} (val top-1 {summary['best_val_top1']:.4f}); "
                      f"test top-1 {test['top1']:.4f}, UAR {test['uar']:.4f}, macro-F1 {test['macro_f1']:.4f}")
        if summary.get("skipped_clips"):
            err_console.print(f"warning: {summary['skipped_clips']} undecodable clips were left out "
                              f"(listed in {Path(cfg.out) / 'skipped_clips.json'})", markup=False)
        console.print(f"run folder: {cfg.out}", markup=False)


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

    with progress_bar(transient=True) as bar:
        metrics = evaluate_checkpoint(checkpoint, export, split, out, cache_dir=cache, device=device, workers=workers,
                                      progress=TaskProgress(bar))
    fused = metrics.get("visual_top1") is not None and metrics.get("audio_top1") is not None
    heads = ", ".join(f"{name} {metrics[key]:.4f}" for name, key in (("visual", "visual_top1"), ("audio", "audio_top1"))
                      if metrics.get(key) is not None)
    console.print(f"{escape(split)}: {metrics['n']} clips, top-1 {metrics['top1']:.4f}, UAR {metrics['uar']:.4f}, "
                  f"macro-F1 {metrics['macro_f1']:.4f}, weighted-F1 {metrics['weighted_f1']:.4f}")
    if fused:
        # The auxiliary heads read the fused vectors: calling them "visual/audio accuracy" would mislead.
        console.print(f"auxiliary heads over the fused features (not unimodal models; train with --modalities "
                      f"visual|audio for those): {heads}")
    console.print(f"written to {out}", markup=False)


def import_release_command(
    path: Annotated[Path, typer.Argument(help="Local copy of the eMotions release (a folder of parquet shards).")],
    out: Annotated[Path, typer.Option("--out", help="Export folder to write.")] = Path("exports/emotions-release"),
    seed: Annotated[int, typer.Option(help="Seed of held-out splits when the release has none.")] = 1,
) -> None:
    """Turn the published eMotions release (parquet with video bytes) into an export."""
    from model.release import import_release

    with progress_bar(transient=True) as bar:
        task = bar.add_task("clips", total=None)
        counts = import_release(path, out, seed=seed, on_clip=lambda: bar.advance(task))
    console.print(f"export in {out}: " + ", ".join(f"{split} {count}" for split, count in counts.items()), markup=False)


def register(app: typer.Typer) -> None:
    app.command("prepare-features")(prepare_features_command)
    app.command("train-baseline")(train_baseline_command)
    app.command("evaluate")(evaluate_command)
    app.command("import-release")(import_release_command)
