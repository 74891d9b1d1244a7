from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet34
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.video import swin3d_t
from torchvision.models.video.swin_transformer import SwinTransformer3d

from model.audio import MFCCResNet, load_resnet_checkpoint
from model.avcpnet import PRESETS, AVCPNet, avcpnet, build_avcpnet
from model.visual import CheckpointMismatchError, build_swin3d, load_swin2d_checkpoint, load_swin3d_checkpoint

TINY = PRESETS["tiny"]


def _inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (batch, TINY.segments, 3, TINY.frames_per_segment, TINY.frame_size, TINY.frame_size),
                           dtype=torch.uint8)
    return frames, torch.randn(batch, TINY.mfcc_frames, TINY.n_mfcc)


@pytest.mark.parametrize(
    ("options", "has_visual", "has_audio"),
    [
        ({}, True, True),
        ({"modalities": "visual"}, True, False),
        ({"modalities": "audio"}, False, True),
        ({"local_stage": False}, True, True),
        ({"global_stage": False}, True, True),
        ({"local_stage": False, "global_stage": False}, True, True),
    ],
)
def test_tiny_builder_and_ablations_give_logits_of_every_head(options: dict, has_visual: bool, has_audio: bool) -> None:
    model = avcpnet(preset="tiny", num_classes=5, **options)
    frames, mfcc = _inputs()
    out = model(frames, mfcc)
    assert out.logits.shape == (2, 5) and torch.isfinite(out.logits).all()
    assert (out.visual_logits is not None) == has_visual
    assert (out.audio_logits is not None) == has_audio
    if has_visual and has_audio:
        # the auxiliary heads reuse the halves of the fused head's weight, splitting its bias
        assert torch.allclose(out.visual_logits + out.audio_logits, out.logits, atol=1e-5)
    assert (model.local is not None) == (has_visual and has_audio and options.get("local_stage", True))


def test_full_preset_matches_the_specification_and_gives_shapes_on_meta() -> None:
    with torch.device("meta"):
        model = avcpnet(preset="full", num_classes=6)
        frames = torch.empty(1, 16, 3, 8, 112, 112)
        mfcc = torch.empty(1, 4096, 32)
        out = model(frames, mfcc)
    assert out.logits.shape == out.visual_logits.shape == out.audio_logits.shape == (1, 6)
    full = PRESETS["full"]
    assert (full.segments, full.frames_per_segment, full.frame_size, full.mfcc_frames, full.dim) == (16, 8, 112, 4096, 512)
    # the visual backbone is swin3d_t, the audio one ResNet-34 (same parameter names and shapes)
    own = {k: v.shape for k, v in model.visual.backbone.state_dict().items()}
    with torch.device("meta"):
        reference = {k: v.shape for k, v in swin3d_t().state_dict().items() if not k.startswith("head.")}
        resnet = {k: v.shape for k, v in resnet34().state_dict().items() if not k.startswith("fc.")}
    assert own == reference
    audio_own = {k: v.shape for k, v in model.audio.resnet.state_dict().items()}
    assert set(audio_own) == set(resnet)
    assert audio_own["conv1.weight"] == (64, 1, 7, 1)
    assert model.head.weight.shape == (6, 1024)


def test_save_load_gives_identical_logits(tmp_path: Path) -> None:
    model = avcpnet(preset="tiny", num_classes=3).eval()
    frames, mfcc = _inputs()
    with torch.no_grad():
        before = model(frames, mfcc).logits
    path = tmp_path / "model.pt"
    torch.save({"model": model.state_dict()}, path)
    again = avcpnet(preset="tiny", num_classes=3, weights=path).eval()
    with torch.no_grad():
        after = again(frames, mfcc).logits
    assert torch.equal(before, after)
    with pytest.raises(CheckpointMismatchError):
        avcpnet(preset="tiny", num_classes=3, modalities="visual", weights=path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="cannot read checkpoint"):
        avcpnet(preset="tiny", num_classes=3, weights=corrupt)


def _tiny_swin_kwargs() -> dict:
    return dict(embed_dim=TINY.swin_embed_dim, depths=TINY.swin_depths, num_heads=TINY.swin_heads)


def test_kinetics_video_swin_checkpoint_loads_with_its_keys(tmp_path: Path) -> None:
    torch.manual_seed(1)
    kinetics = SwinTransformer3d(patch_size=TINY.swin_patch, window_size=TINY.swin_window, num_classes=400,
                                 **_tiny_swin_kwargs())
    path = tmp_path / "swin3d.pth"
    torch.save(kinetics.state_dict(), path)
    backbone = build_swin3d(patch_size=TINY.swin_patch, window_size=TINY.swin_window, **_tiny_swin_kwargs())
    load_swin3d_checkpoint(backbone, path)
    assert torch.equal(backbone.patch_embed.proj.weight, kinetics.patch_embed.proj.weight)
    assert torch.equal(backbone.features[0][0].attn.qkv.weight, kinetics.features[0][0].attn.qkv.weight)
    # and through the builder: the visual branch of the model holds the same tensors
    model = avcpnet(preset="tiny", num_classes=3, swin3d_checkpoint=path)
    assert torch.equal(model.visual.backbone.norm.weight, kinetics.norm.weight)
    wrong = tmp_path / "wrong.pth"
    torch.save({"something.else": torch.zeros(3)}, wrong)
    with pytest.raises(CheckpointMismatchError):
        load_swin3d_checkpoint(backbone, wrong)


def test_imagenet_2d_swin_checkpoint_is_inflated(tmp_path: Path) -> None:
    torch.manual_seed(2)
    image_swin = SwinTransformer(patch_size=[4, 4], window_size=TINY.swin_window[1:], **_tiny_swin_kwargs())
    path = tmp_path / "swin_t.pth"
    torch.save(image_swin.state_dict(), path)
    backbone = build_swin3d(patch_size=TINY.swin_patch, window_size=TINY.swin_window, **_tiny_swin_kwargs())
    load_swin2d_checkpoint(backbone, path)
    # a static clip gives the 2-D patch embedding's response: the kernel is repeated over time / T
    image = torch.randn(1, 3, 32, 32)
    clip = image.unsqueeze(2).repeat(1, 1, TINY.swin_patch[0], 1, 1)
    response_2d = image_swin.features[0][0](image)  # (1, C, 8, 8)
    response_3d = backbone.patch_embed.proj(clip)[:, :, 0]  # (1, C, 8, 8)
    assert torch.allclose(response_2d, response_3d, atol=1e-5)
    table_2d = image_swin.features[1][0].attn.relative_position_bias_table
    table_3d = backbone.features[0][0].attn.relative_position_bias_table
    offsets = 2 * TINY.swin_window[0] - 1
    assert torch.equal(table_3d.view(offsets, *table_2d.shape)[offsets // 2], table_2d)
    assert torch.equal(backbone.features[2][0].mlp[0].weight, image_swin.features[3][0].mlp[0].weight)


def test_imagenet_resnet_checkpoint_loads_with_adapted_stem(tmp_path: Path) -> None:
    torch.manual_seed(3)
    image_resnet = ResNet(BasicBlock, [1, 1, 1, 1])
    path = tmp_path / "resnet.pth"
    torch.save(image_resnet.state_dict(), path)
    resnet = MFCCResNet(layers=[1, 1, 1, 1])
    load_resnet_checkpoint(resnet, path)
    assert torch.allclose(resnet.conv1.weight, image_resnet.conv1.weight.sum(dim=(1, 3), keepdim=True))
    assert torch.equal(resnet.layer4[0].conv2.weight, image_resnet.layer4[0].conv2.weight)
    with pytest.raises(CheckpointMismatchError):
        load_resnet_checkpoint(MFCCResNet(layers=[1, 1, 1, 1], widths=[8, 16, 32, 64]), path)


def test_model_class_is_parameterised_by_its_parts() -> None:
    model = build_avcpnet(TINY)
    assert isinstance(model, AVCPNet)
    visual_only = AVCPNet(model.visual, None, None, None, num_classes=4, dim=TINY.dim)
    frames, _ = _inputs()
    assert visual_only(frames).logits.shape == (2, 4)
