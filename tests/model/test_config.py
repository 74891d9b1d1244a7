"""Training settings from a TOML file and the model choices the specification leaves open."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.errors import ModelError
from model.labels import LabelSet
from model.train import TrainConfig, _model_config, pretrained_warning, read_config_file


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_file_sets_training_and_model_choices(tmp_path: Path) -> None:
    values = read_config_file(_write(tmp_path / "run.toml", """
epochs = 12
lr = 3e-4
lambdas = [0.25, 0.5, 1]
weight_decay = 0.05

[model]
dilations = [1, 3]
fusion_ff_dim = 2048
fusion_heads = 4
fusion_dropout = 0.1
"""))
    cfg = TrainConfig.full(**values)
    model_config = _model_config(cfg, LabelSet.emotions())
    assert (cfg.epochs, cfg.lr, cfg.lambdas, cfg.weight_decay) == (12, 3e-4, [0.25, 0.5, 1.0], 0.05)
    assert (model_config.dilations, model_config.fusion_ff_dim, model_config.fusion_heads) == ([1, 3], 2048, 4)
    assert model_config.fusion_dropout == 0.1 and model_config.num_classes == 6


@pytest.mark.parametrize(("text", "message"), [
    ("epoch = 3", r"unknown setting 'epoch' \(did you mean 'epochs'\?\)"),
    ("epochs = 'ten'", "epochs must be an integer"),
    ("amp = 1", "amp must be true or false"),
    ("lr = true", "lr must be a number"),
    ("resume = true", "resume is given on the command line"),
    ("[model]\nlevels = 3", r"unknown setting 'levels'"),
    ("[model]\ndilations = [1.5, 2]", "dilations must be a list of integers"),
    ("[model]\nnum_classes = 3", "num_classes is set by the export's label set"),
    ("epochs = [", "is not valid TOML"),
])
def test_a_bad_config_file_is_refused_with_the_setting_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        read_config_file(_write(tmp_path / "bad.toml", text))


def test_model_choices_out_of_range_are_refused() -> None:
    for model in ({"fusion_heads": 5}, {"dilations": [0, 1]}, {"fusion_dropout": 1.0}):
        with pytest.raises(ModelError):
            _model_config(TrainConfig.tiny(model=model), LabelSet.emotions())


def test_the_full_preset_warns_when_a_branch_starts_from_random_weights() -> None:
    assert pretrained_warning(TrainConfig.tiny()) is None
    both = pretrained_warning(TrainConfig.full())
    assert both is not None and "visual branch" in both and "audio branch" in both
    visual_only = pretrained_warning(TrainConfig.full(swin3d_checkpoint="k400.pth", resnet_checkpoint="r34.pth"))
    assert visual_only is None
    audio = pretrained_warning(TrainConfig.full(modalities="visual", swin2d_checkpoint="swin_t.pth"))
    assert audio is None
    assert "audio branch" in (pretrained_warning(TrainConfig.full(swin2d_checkpoint="swin_t.pth")) or "")
