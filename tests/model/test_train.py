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
from model.train import (
    ResumeMismatchError,
    TrainConfig,
    evaluate_checkpoint,
    load_trained_model,
    lr_factor,
    main,
)
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

    # --resume refuses a changed schedule; with --force it continues with the next epoch and the stored state
    with pytest.raises(ResumeMismatchError, match="epochs 1 -> 3"):
        main(TrainConfig.tiny(export=str(tiny_export), out=str(run), cache=str(cache), epochs=3, resume=True))
    main(TrainConfig.tiny(export=str(tiny_export), out=str(run), cache=str(cache), epochs=3, resume=True, force=True))
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


def _losses(run: Path) -> list[tuple[int, float, str]]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(line["epoch"], line["train_loss"], line["train_order"]) for line in lines]


class _Killed(Exception):
    pass


def test_a_resumed_run_is_the_uninterrupted_run_bit_for_bit(tiny_export: Path, tmp_path: Path) -> None:
    """Killed after epoch 0 and resumed: the same clip orders, the same losses and the same final weights."""
    cache = tmp_path / "cache"
    settings = dict(export=str(tiny_export), cache=str(cache), epochs=3, batch_size=2, augment_probability=1.0)
    whole = tmp_path / "whole"
    main(TrainConfig.tiny(out=str(whole), **settings))

    def kill_after_first_epoch(record: dict) -> None:
        if record["epoch"] == 0:
            raise _Killed  # after last.pt is written, as a kill between epochs would leave it

    split = tmp_path / "split"
    with pytest.raises(_Killed):
        main(TrainConfig.tiny(out=str(split), **settings), on_epoch=kill_after_first_epoch)
    main(TrainConfig.tiny(out=str(split), resume=True, **settings))

    assert _losses(split) == _losses(whole)
    orders = [order for _, _, order in _losses(whole)]
    assert len(set(orders)) == 3, "the training order is not reshuffled every epoch"
    final_whole, final_split = load_checkpoint(whole / "last.pt")["model"], load_checkpoint(split / "last.pt")["model"]
    assert all(torch.equal(final_whole[key], final_split[key]) for key in final_whole)


def test_resume_refuses_a_changed_learning_rate_unless_forced(tiny_export: Path, tmp_path: Path) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    main(TrainConfig.tiny(export=str(tiny_export), out=str(run), cache=str(cache), epochs=1))
    with pytest.raises(ResumeMismatchError, match=r"lr 0.001 -> 0.01.*--force"):
        main(TrainConfig.tiny(export=str(tiny_export), out=str(run), cache=str(cache), epochs=1, lr=1e-2, resume=True))
    main(TrainConfig.tiny(export=str(tiny_export), out=str(run), cache=str(cache), epochs=2, lr=1e-2, resume=True,
                          force=True))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert records[1]["lr"] == pytest.approx(1e-2 * lr_factor(1, TrainConfig.tiny(epochs=2)))


def test_a_cache_made_with_another_jitter_is_used_or_refused_by_name(tiny_export: Path, tmp_path: Path) -> None:
    from model.data import cache_spec_for
    from model.export_reader import read_export
    from model.features import CacheMismatchError
    from model.train import prepare_export_features

    cache = tmp_path / "cache"
    table = read_export(tiny_export)
    prepare_export_features(table.clips, cache, replace(PRESETS["tiny"], num_classes=3), jitter=1)
    run = tmp_path / "run"
    main(TrainConfig.tiny(export=str(tiny_export), out=str(run), cache=str(cache), epochs=1))  # jitter: the cache's
    assert json.loads((run / "config.json").read_text())["train"]["jitter"] == 1
    assert cache_spec_for(replace(PRESETS["tiny"], num_classes=3), 1).jitter == 1
    with pytest.raises(CacheMismatchError, match="jitter 1 .this run needs 2.; pass --jitter 1"):
        main(TrainConfig.tiny(export=str(tiny_export), out=str(tmp_path / "other"), cache=str(cache), epochs=1, jitter=2))
