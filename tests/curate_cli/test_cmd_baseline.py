"""``curate prepare-features`` → ``train-baseline`` → ``evaluate`` on a tiny FFmpeg-made export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from curate_cli.cmd_baseline import register
from model.export_reader import ExportLayoutError, ExportNotFoundError, UnknownSplitError
from model.visual import CheckpointMismatchError
from tests.model.media import make_export

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMANDS = ("prepare-features", "train-baseline", "evaluate", "import-release")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("cli") / "export")


runner = CliRunner()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(app: typer.Typer, command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_prepare_train_evaluate(app: typer.Typer, export: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = runner.invoke(app, ["prepare-features", str(export), "--out", str(cache), "--preset", "tiny", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert len(list(cache.glob("*.npz"))) == 12 and "12 clips" in result.output

    run = tmp_path / "run"
    result = runner.invoke(app, ["train-baseline", "--export", str(export), "--out", str(run), "--preset", "tiny",
                                 "--epochs", "2", "--device", "cpu", "--cache", str(cache)])
    assert result.exit_code == 0, result.output
    assert "test top-1" in result.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert torch.load(run / "best.pt", weights_only=True)["config"]["epochs"] == 2

    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(run / "best.pt"), "--export", str(export),
                                 "--split", "test", "--out", str(out), "--cache", str(cache), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 3 and {"visual_top1", "audio_top1", "per_class_recall"} <= set(metrics)
    assert metrics["auxiliary_heads"].startswith("fused")
    assert "auxiliary heads over the fused features (not unimodal models" in result.output
    assert (out / "confusion.png").is_file() and (out / "predictions.csv").is_file()

    result = runner.invoke(app, ["evaluate", "--checkpoint", str(run / "best.pt"), "--export", str(export),
                                 "--split", "dev", "--out", str(out)])
    assert isinstance(result.exception, UnknownSplitError)
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(export / "labels.json"), "--export", str(export),
                                 "--out", str(out)])
    assert isinstance(result.exception, CheckpointMismatchError)


def test_bad_exports_are_domain_errors(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare-features", str(tmp_path / "missing"), "--preset", "tiny"])
    assert isinstance(result.exception, ExportNotFoundError) and result.exit_code != 0
    result = runner.invoke(app, ["train-baseline", "--export", str(tmp_path), "--out", str(tmp_path / "run"),
                                 "--preset", "tiny"])
    assert isinstance(result.exception, ExportLayoutError)


def test_train_baseline_takes_a_config_file_and_flags_over_it(app: typer.Typer, export: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('preset = "tiny"\nepochs = 2\nlambdas = [0.2, 0.4, 0.8]\ndevice = "cpu"\n\n'
                      "[model]\ndilations = [1, 2]\nfusion_ff_dim = 96\n", encoding="utf-8")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train-baseline", "--export", str(export), "--out", str(run), "--config", str(config),
                                 "--epochs", "1", "--fusion-heads", "2", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["train"]["epochs"] == 1 and recorded["train"]["lambdas"] == [0.2, 0.4, 0.8]
    assert (recorded["model"]["dilations"], recorded["model"]["fusion_ff_dim"], recorded["model"]["fusion_heads"]) == \
        ([1, 2], 96, 2)
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    assert "local.levels.1.cross.attn.in_proj_weight" in checkpoint["model"]
    assert "local.levels.2.cross.attn.in_proj_weight" not in checkpoint["model"]  # two levels, as asked
    # the run's own config.toml starts the same run again
    again = tmp_path / "again"
    result = runner.invoke(app, ["train-baseline", "--config", str(run / "config.toml"), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert json.loads((again / "config.json").read_text())["model"] == recorded["model"]
    assert [json.loads(x)["train_loss"] for x in (again / "metrics.jsonl").read_text().splitlines()] == \
        [json.loads(x)["train_loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_baseline_refuses_bad_settings_before_training(app: typer.Typer, export: Path, tmp_path: Path) -> None:
    from model.errors import ModelError

    bad = tmp_path / "bad.toml"
    bad.write_text("epoch = 3\n", encoding="utf-8")
    result = runner.invoke(app, ["train-baseline", "--export", str(export), "--out", str(tmp_path / "r"),
                                 "--config", str(bad)])
    assert isinstance(result.exception, ModelError) and "did you mean 'epochs'" in str(result.exception)
    result = runner.invoke(app, ["train-baseline", "--export", str(export), "--out", str(tmp_path / "r"),
                                 "--preset", "tiny", "--lambdas", "0.5,0.5"])
    assert isinstance(result.exception, ModelError) and "three values" in str(result.exception)
    result = runner.invoke(app, ["train-baseline", "--export", str(export), "--out", str(tmp_path / "r"),
                                 "--preset", "tiny", "--dilations", "1,x"])
    assert result.exit_code == 2 and "--dilations" in result.output
    result = runner.invoke(app, ["train-baseline", "--out", str(tmp_path / "r"), "--preset", "tiny"])
    assert result.exit_code == 2 and "--export" in result.output
    assert not (tmp_path / "r").exists()
