"""``curate predict`` on fresh FFmpeg clips and on an export, with a checkpoint trained on the tiny export."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from curate_cli.main import app
from model.avcpnet import PRESETS, build_avcpnet
from model.labels import LabelSet
from model.train import TrainConfig, main
from tests.model.media import EXPORT_LABELS, make_clip, make_export

pytestmark = pytest.mark.usefixtures("one_torch_thread")

Curate = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("cli-predict") / "export")


@pytest.fixture(scope="module")
def checkpoint(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    main(TrainConfig.tiny(export=str(export), out=str(run), epochs=2))
    return run / "best.pt"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    made = {name: make_clip(root / f"{name}.mp4", colour, tone, seconds=3.0, size="96x160", fps=25)
            for name, _, colour, tone in EXPORT_LABELS}
    made["silent"] = make_clip(root / "no audio track.mkv", EXPORT_LABELS[1][2], None, seconds=1.5, fps=15)
    made["garbage"] = root / "garbage.mp4"
    made["garbage"].write_bytes(b"\x00not a video" * 64)
    made["missing"] = root / "missing.mp4"
    return made


def test_labels_fresh_clips_and_one_without_audio(curate: Curate, data_dir: Path, checkpoint: Path,
                                                  videos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "preds.json"
    keys = ["Excitation", "Neutral", "Sadness", "silent"]
    code, stdout, stderr = curate("predict", "--checkpoint", str(checkpoint), *(str(videos[k]) for k in keys),
                                  "--out", str(out), "--device", "cpu", "--batch-size", "3")
    assert code == 0, stderr
    assert "4 of 4 clips labelled on cpu" in stdout and "error" not in stderr
    document = json.loads(out.read_text())
    rows = document["predictions"]
    assert [row["path"] for row in rows] == [str(videos[k]) for k in keys]
    assert [row["predicted"] for row in rows] == ["Excitation", "Neutral", "Sadness", "Neutral"]
    assert [row["polarity"] for row in rows] == ["positive", "neutral", "negative", "neutral"]
    assert [row["has_audio"] for row in rows] == [True, True, True, False]
    assert all(set(row["probabilities"]) == {"Excitation", "Neutral", "Sadness"} for row in rows)
    assert document["device"] == "cpu" and document["epoch"] in (0, 1)


def test_failures_are_one_line_each_the_rest_written_and_exit_1(curate: Curate, data_dir: Path, checkpoint: Path,
                                                                 videos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    keys = ["garbage", "Sadness", "missing", "silent"]
    code, stdout, stderr = curate("predict", "--checkpoint", str(checkpoint), *(str(videos[k]) for k in keys),
                                  "--out", str(out), "--device", "cpu")
    assert code == 1
    assert [line for line in stderr.splitlines() if line.strip()] == [  # (rich ends its bar with a newline)
        f"error: {videos['garbage']}: not a media file (Invalid data found when processing input)",
        f"error: {videos['missing']}: file not found",
    ]
    assert "2 of 4 clips labelled" in stdout
    rows = list(csv.DictReader(out.open()))
    assert [(row["status"], row["predicted"]) for row in rows] == [
        ("error", ""), ("ok", "Sadness"), ("error", ""), ("ok", "Neutral")]
    assert rows[3]["has_audio"] == "False" and rows[2]["error"] == "file not found"


def test_without_out_a_table_goes_to_the_terminal(curate: Curate, data_dir: Path, checkpoint: Path,
                                                  videos: dict[str, Path]) -> None:
    code, stdout, stderr = curate("predict", "--checkpoint", str(checkpoint), str(videos["Sadness"]), "--device", "cpu")
    assert code == 0, stderr
    assert "Sadness" in stdout and "negative" in stdout and "1 of 1 clips labelled" in stderr


def test_an_export_split_with_its_labels(curate: Curate, data_dir: Path, checkpoint: Path, export: Path,
                                         tmp_path: Path) -> None:
    out = tmp_path / "test.csv"
    code, stdout, stderr = curate("predict", "--checkpoint", str(checkpoint), "--export", str(export),
                                  "--split", "test", "--out", str(out), "--device", "cpu")
    assert code == 0, stderr
    rows = list(csv.DictReader(out.open()))
    assert [row["clip_id"] for row in rows] == ["excitation-test-0", "neutral-test-0", "sadness-test-0"]
    assert [row["label"] for row in rows] == [row["predicted"] for row in rows] == ["Excitation", "Neutral", "Sadness"]
    assert [row["has_audio"] for row in rows] == ["False", "True", "True"]


def test_a_checkpoint_of_other_labels_is_one_error_line(curate: Curate, data_dir: Path, export: Path,
                                                        tmp_path: Path) -> None:
    config = replace(PRESETS["tiny"], num_classes=6)
    other = tmp_path / "six.pt"
    torch.save({"model": build_avcpnet(config).state_dict(), "epoch": 0, "config": TrainConfig.tiny().__dict__,
                "model_config": config.to_dict(), "labels": LabelSet.emotions().to_json()}, other)
    code, stdout, stderr = curate("predict", "--checkpoint", str(other), "--export", str(export), "--device", "cpu",
                                  "--out", str(tmp_path / "never.csv"))
    assert code == 1
    assert len(stderr.strip().splitlines()) == 1 and "trained on labels" in stderr
    assert not (tmp_path / "never.csv").exists()


# Usage errors through typer's own runner: `curate_cli.main.run` is for domain errors.
runner = CliRunner()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "give VIDEO files or --export"),
        (["a.mp4", "--export", "EXPORT"], "give VIDEO files or --export"),
        (["a.mp4", "--split", "test"], "--split and --cache go with --export"),
        (["a.mp4", "--out", "preds.parquet"], "use a .csv or .json file"),
    ],
)
def test_usage_errors(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["predict", "--checkpoint", "best.pt", *arguments])
    assert result.exit_code == 2 and message in result.output


def test_has_help() -> None:
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0 and "--checkpoint" in result.output and "--export" in result.output
