"""Properties of AV-CPNet's wiring that hold for any weights: what moves when one input moves, where
gradient flows, and what gradient accumulation must equal.

Each test names the class of wiring mistake it exists to catch. All run in float64 on tiny sizes.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from model.avcpnet import PRESETS, AVCPNet, build_avcpnet
from model.fusion import GlobalFusion, LocalFusion, LocalFusionLevel
from model.loss import EPCELoss
from model.train import _objective, train_one_epoch
from tests.model.weights import random_weights

TINY = PRESETS["tiny"]
DIM, HEADS, FF, SEGMENTS = TINY.dim, TINY.fusion_heads, TINY.fusion_ff_dim, 16


def _pair(seed: int = 0, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, SEGMENTS, DIM, generator=generator, dtype=torch.float64),
            torch.randn(batch, SEGMENTS, DIM, generator=generator, dtype=torch.float64))


def _bump(x: torch.Tensor, position: int | None = None) -> torch.Tensor:
    """x with one segment (or every segment) moved."""
    y = x.clone()
    if position is None:
        y += 0.7
    else:
        y[:, position] += 0.7
    return y


def _moved(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per segment: did the output move? (B, S, C) -> (S,) bool."""
    return (a - b).abs().amax(dim=(0, 2)) > 1e-9


def _level(dilation: int) -> LocalFusionLevel:
    return random_weights(LocalFusionLevel(DIM, HEADS, FF, 0.1, dilation))


# --- band masks: a level sees only |t - s| <= d ---------------------------------------------------------


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("branch", ["visual_self", "audio_self", "cross"])
def test_each_attention_layer_of_a_level_sees_only_its_band(dilation: int, branch: str) -> None:
    layer = getattr(_level(dilation), branch)
    query, context = _pair()
    s = 8
    with torch.no_grad():
        moved = _moved(layer(query, _bump(context, s)), layer(query, context))
    distance = (torch.arange(SEGMENTS) - s).abs()
    assert not moved[distance > dilation].any(), f"{branch} at dilation {dilation} sees outside its band"
    assert moved[distance <= dilation].all(), f"{branch} at dilation {dilation} ignores its band"


@pytest.mark.parametrize("level_index", [0, 1, 2])
def test_each_level_of_the_pyramid_sees_only_its_band_and_its_temporal_block(level_index: int) -> None:
    """Attention within d, then the dilated conv within d: a moved segment s reaches |t - s| <= 2d only."""
    local = random_weights(LocalFusion(DIM, HEADS, FF, 0.1, (1, 2, 4)))
    level, dilation = local.levels[level_index], (1, 2, 4)[level_index]
    visual, audio = _pair()
    s = 8
    distance = (torch.arange(SEGMENTS) - s).abs()
    with torch.no_grad():
        v0, a0 = level(visual, audio)
        v1, a1 = level(_bump(visual, s), audio)
    for output, name in ((_moved(v1, v0), "visual"), (_moved(a1, a0), "audio")):
        assert not output[distance > 2 * dilation].any(), f"level {level_index}: {name} output sees past 2d"
        assert output[s], f"level {level_index}: {name} output ignores the moved segment"


# --- which modality queries which; cross is not self ----------------------------------------------------


@pytest.mark.parametrize("dilation", [1, 4])
def test_a_level_updates_each_modality_from_the_other_through_cross_attention(dilation: int) -> None:
    level = _level(dilation)
    visual, audio = _pair()
    with torch.no_grad():
        v0, a0 = level(visual, audio)
        v_audio_moved, _ = level(visual, _bump(audio))
        _, a_visual_moved = level(_bump(visual), audio)
    assert _moved(v_audio_moved, v0).all(), "the visual stream does not depend on audio: is cross self-attention?"
    assert _moved(a_visual_moved, a0).all(), "the audio stream does not depend on visual: is cross self-attention?"


@pytest.mark.parametrize("dilation", [1, 4])
def test_the_cross_branch_of_each_modality_is_queried_by_that_modality(dilation: int) -> None:
    """With the cross layer's attention output silenced, cross(q, ctx) is a function of q alone.

    So if each modality's cross branch is queried by that modality, its stream stops depending on the
    other modality; had the query and the context been swapped, it would depend on nothing else.
    """
    level = _level(dilation)
    with torch.no_grad():
        level.cross.attn.out_proj.weight.zero_()
        level.cross.attn.out_proj.bias.zero_()
        visual, audio = _pair()
        v0, a0 = level(visual, audio)
        v1, _ = level(visual, _bump(audio))
        _, a1 = level(_bump(visual), audio)
    assert torch.allclose(v1, v0, atol=1e-12), "the visual cross branch is queried by audio"
    assert torch.allclose(a1, a0, atol=1e-12), "the audio cross branch is queried by visual"


def test_the_level_weights_of_each_modality_come_from_the_other_modalitys_scores() -> None:
    """The weighting exchanges the two modalities' level scores: move only the audio levels and the
    visual output moves (through its weights), and it stays a sum of the visual levels."""
    from model.fusion import LevelWeighting

    weighting = random_weights(LevelWeighting(DIM, 3))
    generator = torch.Generator().manual_seed(4)
    visual_levels = torch.randn(2, 3, SEGMENTS, DIM, generator=generator, dtype=torch.float64)
    audio_levels = torch.randn(2, 3, SEGMENTS, DIM, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        v0, _ = weighting(visual_levels, audio_levels)
        v1, _ = weighting(visual_levels, audio_levels * 3.0 + 1.0)
        _, a_visual_moved = weighting(visual_levels * 3.0 + 1.0, audio_levels)
        _, a0 = weighting(visual_levels, audio_levels)
        v_zero, _ = weighting(torch.zeros_like(visual_levels), audio_levels)
    assert _moved(v1, v0).all() and _moved(a_visual_moved, a0).all()
    assert torch.equal(v_zero, torch.zeros_like(v_zero))  # no bias or other stream leaks into the sum


def test_in_the_global_stage_each_modality_queries_the_other() -> None:
    """Attention over a context that is the same at every segment returns that context's value, whatever
    the query: so with V constant over segments, moving A moves a only by its residual, exactly."""
    stage = random_weights(GlobalFusion(DIM, TINY.global_heads))
    visual, audio = _pair()
    constant_visual = visual[:, :1].expand_as(visual).clone()
    constant_audio = audio[:, :1].expand_as(audio).clone()
    delta = torch.randn(audio.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    with torch.no_grad():
        _, a0 = stage(constant_visual, audio)
        _, a1 = stage(constant_visual, audio + delta)
        v0, _ = stage(visual, constant_audio)
        v1, _ = stage(visual + delta, constant_audio)
    torch.testing.assert_close(a1 - a0, delta.mean(dim=1), rtol=0, atol=1e-10)
    torch.testing.assert_close(v1 - v0, delta.mean(dim=1), rtol=0, atol=1e-10)


def test_without_fusion_each_auxiliary_head_reads_its_own_modality_only() -> None:
    model = build_avcpnet(replace(TINY, num_classes=4, local_stage=False, global_stage=False)).double().eval()
    generator = torch.Generator().manual_seed(2)
    frames = torch.randint(0, 256, (2, TINY.segments, 3, TINY.frames_per_segment, TINY.frame_size, TINY.frame_size),
                           generator=generator, dtype=torch.uint8)
    mfcc = torch.randn(2, TINY.mfcc_frames, TINY.n_mfcc, generator=generator, dtype=torch.float64)
    other_frames = torch.randint(0, 256, frames.shape, generator=generator, dtype=torch.uint8)
    with torch.no_grad():
        base = model(frames, mfcc)
        audio_moved = model(frames, mfcc + 1.0)
        visual_moved = model(other_frames, mfcc)
    assert torch.equal(audio_moved.visual_logits, base.visual_logits)
    assert not torch.allclose(audio_moved.audio_logits, base.audio_logits)
    assert torch.equal(visual_moved.audio_logits, base.audio_logits)
    assert not torch.allclose(visual_moved.visual_logits, base.visual_logits)
    # with fusion, each head reads both (they are auxiliary heads over fused features, not unimodal models)
    fused = build_avcpnet(replace(TINY, num_classes=4)).double().eval()
    with torch.no_grad():
        assert not torch.allclose(fused(frames, mfcc + 1.0).visual_logits, fused(frames, mfcc).visual_logits)


# --- gradient: which parameters each loss term trains -----------------------------------------------------


def _tiny_av() -> tuple[AVCPNet, dict[str, torch.Tensor]]:
    model = build_avcpnet(replace(TINY, num_classes=6)).double().eval()  # eval: no dropout, fixed BatchNorm
    generator = torch.Generator().manual_seed(3)
    batch = {
        "frames": torch.randint(0, 256, (4, TINY.segments, 3, TINY.frames_per_segment, TINY.frame_size,
                                         TINY.frame_size), generator=generator, dtype=torch.uint8),
        "mfcc": torch.randn(4, TINY.mfcc_frames, TINY.n_mfcc, generator=generator, dtype=torch.float64),
        "label": torch.tensor([0, 2, 4, 5]),
        "has_audio": torch.tensor([True, True, True, True]),
    }
    return model, batch


def _gradients(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    names, parameters = zip(*model.named_parameters(), strict=True)
    grads = torch.autograd.grad(loss, parameters, allow_unused=True, retain_graph=True)
    return {n: (g if g is not None else torch.zeros_like(p)) for n, p, g in zip(names, parameters, grads, strict=True)}


def test_the_fused_loss_trains_every_parameter_of_both_branches_both_stages_and_the_head() -> None:
    """A bypassed gate, level weighting or stage, or a detached stream, leaves parameters without gradient."""
    model, batch = _tiny_av()
    criterion = EPCELoss([0, 2, 1, 0, 2, 2]).double()
    grads = _gradients(model, criterion(model(batch["frames"], batch["mfcc"]).logits, batch["label"]))
    # Inside the backbones some tensors are legitimately idle at tiny sizes (the last Swin stage's
    # windows hold one token, so its position bias cannot matter): there, require their inputs' gradient.
    ours = {n: g for n, g in grads.items() if not n.startswith(("visual.backbone.", "audio.resnet."))}
    silent = [name for name, g in ours.items() if not g.abs().sum() > 0]
    assert silent == [], f"no gradient from the fused loss: {silent}"
    for stem in ("visual.backbone.patch_embed.proj.weight", "audio.resnet.conv1.weight"):
        assert grads[stem].abs().sum() > 0, stem


def test_each_auxiliary_loss_trains_its_half_of_the_head_and_reaches_both_branches() -> None:
    model, batch = _tiny_av()
    criterion = EPCELoss([0, 2, 1, 0, 2, 2]).double()
    output = model(batch["frames"], batch["mfcc"])
    for logits, own, other in ((output.visual_logits, slice(TINY.dim, None), slice(None, TINY.dim)),
                               (output.audio_logits, slice(None, TINY.dim), slice(TINY.dim, None))):
        grads = _gradients(model, criterion(logits, batch["label"]))
        assert grads["head.weight"][:, own].abs().sum() > 0 and torch.all(grads["head.weight"][:, other] == 0)
        for branch in ("visual.proj.weight", "audio.proj.weight", "local.levels.0.cross.attn.in_proj_weight"):
            assert grads[branch].abs().sum() > 0, f"the auxiliary loss does not reach {branch}"


def test_the_training_objective_is_the_sum_of_the_three_terms() -> None:
    """Each term dropped, detached or masked wrongly changes the objective's gradient."""
    model, batch = _tiny_av()
    batch["has_audio"] = torch.tensor([True, False, True, False])
    criterion = EPCELoss([0, 2, 1, 0, 2, 2], (0.5, 0.5, 0.5)).double()
    output = model(batch["frames"], batch["mfcc"])
    total = _gradients(model, _objective(output, batch, criterion))
    terms = [criterion(output.logits, batch["label"]), criterion(output.visual_logits, batch["label"]),
             criterion(output.audio_logits[[0, 2]], batch["label"][[0, 2]])]
    parts = [_gradients(model, term) for term in terms]
    for name, g in total.items():
        torch.testing.assert_close(g, sum(p[name] for p in parts), rtol=1e-9, atol=1e-12)
    for part in parts[1:]:  # every term contributes
        assert any(p.abs().sum() > 0 for p in part.values())


# --- gradient accumulation -----------------------------------------------------------------------------------


class _Items(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        generator = torch.Generator().manual_seed(7)
        self.items = [{
            "frames": torch.randint(0, 256, (TINY.segments, 3, TINY.frames_per_segment, TINY.frame_size,
                                             TINY.frame_size), generator=generator, dtype=torch.uint8),
            "mfcc": torch.randn(TINY.mfcc_frames, TINY.n_mfcc, generator=generator, dtype=torch.float64),
            "has_audio": torch.tensor(True), "label": torch.tensor(i % 3), "index": torch.tensor(i),
        } for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


def _one_update(batch_size: int, accumulation_steps: int) -> dict[str, torch.Tensor]:
    """Parameter change of one optimiser step of lr 1 (SGD: the change is minus the gradient)."""
    torch.manual_seed(0)
    # Visual-only, no dropout, no stochastic depth, LayerNorm only: a batch's gradient is the mean of its clips'.
    model = build_avcpnet(replace(TINY, num_classes=3, modalities="visual", visual_dropout=0.0,
                                  swin_stochastic_depth=0.0)).double()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = DataLoader(_Items(8), batch_size=batch_size, shuffle=False)
    train_one_epoch(model, EPCELoss([0, 1, 2]).double(), optimizer, loader, torch.device("cpu"),
                    accumulation_steps=accumulation_steps, amp=False)
    return {name: p.detach() - before[name] for name, p in model.named_parameters()}


def test_eight_clips_at_once_equal_four_accumulated_steps_of_two() -> None:
    whole, accumulated = _one_update(8, 1), _one_update(2, 4)
    assert any(delta.abs().sum() > 0 for delta in whole.values())
    for name, delta in whole.items():
        torch.testing.assert_close(accumulated[name], delta, rtol=1e-8, atol=1e-12, msg=lambda t, n=name: f"{n}: {t}")
