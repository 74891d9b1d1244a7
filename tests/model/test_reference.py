"""The model's fusion and head equal the independent reference (``tests/model/reference.py``).

Each block, then the whole fusion and head, runs with the module's own weights on fixed inputs in
float64 and must agree to ~1e-10: a swapped query/key, a missing mask, a bypassed gate or a swapped
modality changes outputs by orders of magnitude more. Tiny sizes, and the full preset's fusion (C =
512, 16 segments, three levels) on small inputs.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from model.avcpnet import PRESETS, AVCPNet, ModelConfig, build_avcpnet
from model.fusion import GlobalFusion, LevelWeighting, LocalFusion, LocalFusionLevel
from model.labels import LabelSet
from model.loss import EPCELoss
from model.train import TrainConfig, _criterion, _objective
from tests.model import reference as ref
from tests.model.weights import random_weights

TOLERANCE = dict(rtol=1e-9, atol=1e-10)
TINY = PRESETS["tiny"]
SIZES = {
    "tiny": dict(dim=TINY.dim, heads=TINY.fusion_heads, ff=TINY.fusion_ff_dim, global_heads=TINY.global_heads),
    "full": dict(dim=512, heads=8, ff=1024, global_heads=8),
}


def _features(dim: int, batch: int = 2, segments: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    visual = torch.randn(batch, segments, dim, generator=generator, dtype=torch.float64)
    audio = torch.randn(batch, segments, dim, generator=generator, dtype=torch.float64)
    return visual, audio


def _params(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {f"{prefix}{name}": value for name, value in module.named_parameters()}


@pytest.mark.parametrize("size", ["tiny", "full"])
@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_a_local_level_equals_the_reference(size: str, dilation: int) -> None:
    s = SIZES[size]
    level = random_weights(LocalFusionLevel(s["dim"], s["heads"], s["ff"], 0.1, dilation))
    visual, audio = _features(s["dim"])
    with torch.no_grad():
        got = level(visual, audio)
        want = ref.local_level(visual, audio, _params(level), "", s["heads"], dilation)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE)


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_level_weighting_equals_the_reference(size: str) -> None:
    s = SIZES[size]
    weighting = random_weights(LevelWeighting(s["dim"], 3))
    generator = torch.Generator().manual_seed(3)
    visual_levels = [torch.randn(2, 16, s["dim"], generator=generator, dtype=torch.float64) for _ in range(3)]
    audio_levels = [torch.randn(2, 16, s["dim"], generator=generator, dtype=torch.float64) for _ in range(3)]
    with torch.no_grad():
        got = weighting(torch.stack(visual_levels, dim=1), torch.stack(audio_levels, dim=1))
        want = ref.level_weighting(visual_levels, audio_levels, _params(weighting), "")
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE)


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_the_global_stage_equals_the_reference(size: str) -> None:
    s = SIZES[size]
    stage = random_weights(GlobalFusion(s["dim"], s["global_heads"]))
    visual, audio = _features(s["dim"])
    with torch.no_grad():
        got = stage(visual, audio)
        want = ref.global_stage(visual, audio, _params(stage), "", s["global_heads"])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE)


def _fusion_model(config: ModelConfig) -> AVCPNet:
    """The fusion and head of ``config`` behind identity branches: the inputs are the branch features."""
    local = LocalFusion(config.dim, config.fusion_heads, config.fusion_ff_dim, config.fusion_attention_dropout,
                        config.dilations) if config.local_stage else None
    global_ = GlobalFusion(config.dim, config.global_heads) if config.global_stage else None
    model = AVCPNet(nn.Identity(), nn.Identity(), local, global_, config.num_classes, config.dim)  # type: ignore[arg-type]
    return random_weights(model)


def _reference_logits(model: AVCPNet, config: ModelConfig, visual: torch.Tensor, audio: torch.Tensor):  # type: ignore[no-untyped-def]
    return ref.fusion_and_head(visual, audio, _params(model), heads=config.fusion_heads,
                               global_heads=config.global_heads, dilations=config.dilations,
                               local=config.local_stage, global_=config.global_stage)


@pytest.mark.parametrize("preset", ["tiny", "full"])
@pytest.mark.parametrize("stages", [(True, True), (False, True), (True, False), (False, False)])
def test_fusion_and_head_equal_the_reference(preset: str, stages: tuple[bool, bool]) -> None:
    config = replace(PRESETS[preset], num_classes=6, local_stage=stages[0], global_stage=stages[1])
    model = _fusion_model(config)
    visual, audio = _features(config.dim, segments=config.segments)
    with torch.no_grad():
        got = model(visual, audio)
        want = _reference_logits(model, config, visual, audio)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE)


def test_the_whole_tiny_model_equals_the_reference_after_its_branches() -> None:
    """Backbones are torchvision's; from their outputs on, the model is the reference's, modalities unswapped."""
    model = random_weights(build_avcpnet(replace(TINY, num_classes=5)))
    generator = torch.Generator().manual_seed(4)
    frames = torch.randint(0, 256, (2, TINY.segments, 3, TINY.frames_per_segment, TINY.frame_size, TINY.frame_size),
                           generator=generator, dtype=torch.uint8)
    mfcc = torch.randn(2, TINY.mfcc_frames, TINY.n_mfcc, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        got = model(frames, mfcc)
        want = _reference_logits(model, replace(TINY, num_classes=5), model.visual(frames), model.audio(mfcc))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE)


# The spec's polarities, written out here rather than taken from model.labels.
SPEC_POLARITY = {"Excitation": 0, "Fear": 2, "Neutral": 1, "Relaxation": 0, "Sadness": 2, "Tension": 2}


def test_the_training_criterion_is_ep_ce_with_lambda_of_the_true_polarity() -> None:
    labels = LabelSet.emotions()
    polarity = [SPEC_POLARITY[name] for name in labels.names]
    lambdas = (0.1, 0.3, 0.9)  # positive, neutral, negative: distinct, so a wrong one shows
    criterion = _criterion(TrainConfig.tiny(lambdas=list(lambdas)), labels).double()
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(64, 6, generator=generator, dtype=torch.float64) * 2
    target = torch.randint(0, 6, (64,), generator=generator)
    want = ref.ep_ce(logits, target.tolist(), polarity, lambdas)
    torch.testing.assert_close(criterion(logits, target), want, **TOLERANCE)
    # and the weights were not all 1: plain cross-entropy is far from it
    assert abs(float(want - torch.nn.functional.cross_entropy(logits, target))) > 0.05
    plain = _criterion(TrainConfig.tiny(loss="ce", lambdas=list(lambdas)), labels).double()
    torch.testing.assert_close(plain(logits, target), torch.nn.functional.cross_entropy(logits, target), **TOLERANCE)


def test_the_training_objective_and_its_gradients_equal_the_reference() -> None:
    """EP-CE(z) + EP-CE(z_v) + EP-CE(z_a over clips with audio): value and every parameter's gradient."""
    config = replace(TINY, num_classes=6)
    model = _fusion_model(config)
    visual, audio = _features(config.dim, batch=6, segments=config.segments, seed=6)
    target = torch.tensor([0, 1, 2, 3, 4, 5])
    has_audio = torch.tensor([True, True, False, True, False, True])
    criterion = EPCELoss([SPEC_POLARITY[n] for n in LabelSet.emotions().names], (0.2, 0.4, 0.8)).double()

    loss = _objective(model(visual, audio), {"label": target, "has_audio": has_audio}, criterion)
    got = torch.autograd.grad(loss, list(model.parameters()))
    z, z_v, z_a = _reference_logits(model, config, visual, audio)
    want_loss = ref.objective(z, z_v, z_a, target.tolist(), [SPEC_POLARITY[n] for n in LabelSet.emotions().names],
                              (0.2, 0.4, 0.8), has_audio.tolist())
    want = torch.autograd.grad(want_loss, list(model.parameters()))
    torch.testing.assert_close(loss, want_loss, **TOLERANCE)
    for (name, _), a, b in zip(model.named_parameters(), got, want, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE, msg=lambda text, name=name: f"{name}: {text}")
