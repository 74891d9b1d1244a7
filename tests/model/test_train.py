from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model.avcpnet import PRESETS, build_avcpnet
from model.checkpoints import load_checkpoint
from model.labels import LabelSet
from model.train import TrainConfig, evaluate_checkpoint, load_trained_model, lr_factor, main
from model.visual import CheckpointMismatchError


def test_schedule_warms_up_then_decays_per_epoch() -> None:
    cfg = TrainConfig.full()
    factors = [lr_factor(epoch, cfg) for epoch in range(cfg.epochs)]
    assert factors[0] == pytest.approx(0.1) and factors[1] == pytest.approx(0.7)
    assert factors[2] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 0.5 / 28.5)).item()))
    assert all(a >= b for a, b in zip(factors[2:], factors[3:], strict=False))
    assert factors[-1] > 0.01 and lr_factor(cfg.epochs, cfg) == pytest.approx(0.01)
    assert (cfg.batch_size, cfg.accumulation_steps, cfg.lr, cfg.weight_decay, cfg.seed) == (8, 4, 1.5e-4, 0.02, 1)


def test_tiny_run_trains_selects_on_validation_and_resumes(tiny_export: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cache = tmp_path / "cache"
    records: list[dict] = []
    summary = main(TrainConfig.tiny(export=str(tiny_export), out=str(run), cache=str(cache), epochs=1),
                   on_epoch=records.append)
    assert len(records) == 1 and records[0]["best_epoch"] == 0
    assert summary["test"]["n"] == 3 and 0.0 <= summary["test"]["top1"] <= 1.0
    for name in ("last.pt", "best.pt", "metrics.jsonl", "config.json", "summary.json",
                 "test/predictions.csv", "test/metrics.json", "test/confusion.png"):
        assert (run / name).is_file(), name

    checkpoint = torch.load(run / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler_epoch", "epoch", "config", "labels", "best_metric"} <= set(checkpoint)
    assert checkpoint["config"]["preset"] == "tiny" and checkpoint["epoch"] == 0

    # --resume continues with the next epoch and the stored optimiser state
    main(TrainConfig.tiny(export=str(tiny_export), out=str(run), cache=str(cache), epochs=3, resume=True))
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1, 2]
    assert load_checkpoint(run / "last.pt")["epoch"] == 2

    # evaluation of the best checkpoint: predictions with probabilities, metrics of all heads
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(run / "best.pt", tiny_export, "validation", out, cache_dir=cache, device="cpu")
    assert {"top1", "uar", "macro_f1", "weighted_f1", "per_class_recall", "visual_top1", "audio_top1"} <= set(metrics)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 3
    assert sum(float(rows[0][f"p_{n}"]) for n in ("Excitation", "Neutral", "Sadness")) == pytest.approx(1.0, abs=1e-4)
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["top1"] == metrics["top1"]

    model, labels, _ = load_trained_model(run / "best.pt")
    assert labels.names == ("Excitation", "Neutral", "Sadness") and model.head.out_features == 3


def test_evaluate_rejects_a_checkpoint_of_other_labels(tiny_export: Path, tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    config = replace(PRESETS["tiny"], num_classes=6)
    torch.save({"model": build_avcpnet(config).state_dict(), "epoch": 0, "config": TrainConfig.tiny().__dict__,
                "model_config": config.to_dict(), "labels": LabelSet.emotions().to_json()}, path)
    with pytest.raises(CheckpointMismatchError):
        evaluate_checkpoint(path, tiny_export, "test", tmp_path / "out")


def test_undecodable_clips_are_left_out_and_listed(tiny_export: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export, ignore=shutil.ignore_patterns("features-*"))
    (export / "train/Neutral/neutral-train-1.mp4").write_bytes(b"not a video")
    run = tmp_path / "run"
    summary = main(TrainConfig.tiny(export=str(export), out=str(run), epochs=1))
    assert summary["skipped_clips"] == 1
    assert list(json.loads((run / "skipped_clips.json").read_text())) == ["neutral-train-1"]
    assert summary["test"]["n"] == 3 and summary["test"]["skipped_clips"] == []
