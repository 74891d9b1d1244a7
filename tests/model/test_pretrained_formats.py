"""The AV-CPNet authors' starting points load: Microsoft's 2-D Swin and mmaction's Video Swin files.

Each foreign file is written here with the releasers' own key names (spelled out, never produced by
``model.visual``'s mappings) in their wrapper dicts, at the tiny preset's sizes with two blocks a
stage, so a shifted block (and Microsoft's ``attn_mask`` buffer on it) exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.video.swin_transformer import SwinTransformer3d

from model.avcpnet import PRESETS, avcpnet
from model.visual import CheckpointMismatchError, build_swin3d, load_swin2d_checkpoint, load_swin3d_checkpoint

TINY = PRESETS["tiny"]
DEPTHS = (2, 2, 2, 2)
EMBED = TINY.swin_embed_dim  # 24: stage widths 24, 48, 96, 192
HEADS = TINY.swin_heads
WINDOW = TINY.swin_window  # [2, 4, 4]: 3-D bias tables (3 * 7 * 7, heads), 2-D ones (7 * 7, heads)
PATCH = TINY.swin_patch  # [2, 4, 4]


def _backbone(seed: int, depths: tuple[int, ...] = DEPTHS) -> SwinTransformer3d:
    torch.manual_seed(seed)
    return build_swin3d(patch_size=PATCH, embed_dim=EMBED, depths=depths, num_heads=HEADS, window_size=WINDOW)


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Noise on every parameter, so no two tensors of a kind agree (fresh LayerNorms are all ones)."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def _original_swin_state(
    kernel: tuple[int, ...], window: tuple[int, ...], head: str, classes: int
) -> dict[str, Tensor]:
    """A random state dict in the originals' names (both repositories name blocks and merges alike)."""
    torch.manual_seed(7)
    table_rows = 1
    for size in window:
        table_rows *= 2 * size - 1
    tokens = 1
    for size in window:
        tokens *= size
    state = {
        "patch_embed.proj.weight": torch.randn(EMBED, 3, *kernel),
        "patch_embed.proj.bias": torch.randn(EMBED),
        "patch_embed.norm.weight": torch.randn(EMBED),
        "patch_embed.norm.bias": torch.randn(EMBED),
    }
    for i, (depth, heads) in enumerate(zip(DEPTHS, HEADS, strict=True)):
        dim = EMBED * 2**i
        for j in range(depth):
            block = f"layers.{i}.blocks.{j}."
            state |= {
                block + "norm1.weight": torch.randn(dim),
                block + "norm1.bias": torch.randn(dim),
                block + "attn.relative_position_bias_table": torch.randn(table_rows, heads),
                # buffers the model recomputes: garbage here, so loading them would show
                block + "attn.relative_position_index": torch.zeros(tokens, tokens, dtype=torch.long),
                block + "attn.qkv.weight": torch.randn(3 * dim, dim),
                block + "attn.qkv.bias": torch.randn(3 * dim),
                block + "attn.proj.weight": torch.randn(dim, dim),
                block + "attn.proj.bias": torch.randn(dim),
                block + "norm2.weight": torch.randn(dim),
                block + "norm2.bias": torch.randn(dim),
                block + "mlp.fc1.weight": torch.randn(4 * dim, dim),
                block + "mlp.fc1.bias": torch.randn(4 * dim),
                block + "mlp.fc2.weight": torch.randn(dim, 4 * dim),
                block + "mlp.fc2.bias": torch.randn(dim),
            }
        if i < len(DEPTHS) - 1:
            merge = f"layers.{i}.downsample."
            state |= {
                merge + "reduction.weight": torch.randn(2 * dim, 4 * dim),
                merge + "norm.weight": torch.randn(4 * dim),
                merge + "norm.bias": torch.randn(4 * dim),
            }
    final = EMBED * 2 ** (len(DEPTHS) - 1)
    state |= {
        "norm.weight": torch.randn(final),
        "norm.bias": torch.randn(final),
        f"{head}.weight": torch.randn(classes, final),
        f"{head}.bias": torch.randn(classes),
    }
    return state


def _microsoft_file(tmp_path: Path, **extra: Tensor) -> tuple[Path, dict[str, Tensor]]:
    """swin_tiny_patch4_window7_224_22k.pth in small: ``{"model": state}``, a 21841-class head."""
    state = _original_swin_state(tuple(PATCH[1:]), tuple(WINDOW[1:]), head="head", classes=21841)
    tokens = WINDOW[1] * WINDOW[2]
    for i in range(len(DEPTHS)):  # the shifted blocks carry their attention mask
        state[f"layers.{i}.blocks.1.attn_mask"] = torch.full((4, tokens, tokens), -100.0)
    state |= extra
    path = tmp_path / "swin_tiny_patch4_window7_224_22k.pth"
    torch.save({"model": state}, path)
    return path, state


def _mmaction_file(tmp_path: Path, state: dict[str, Tensor] | None = None) -> tuple[Path, dict[str, Tensor]]:
    """swin_tiny_patch244_window877_kinetics400_1k.pth in small: ``backbone.``-prefixed, an I3D head."""
    if state is None:
        backbone = _original_swin_state(tuple(PATCH), tuple(WINDOW), head="cls_head.fc_cls", classes=400)
        state = {(k if k.startswith("cls_head.") else f"backbone.{k}"): v for k, v in backbone.items()}
    path = tmp_path / "swin_tiny_patch244_window877_kinetics400_1k.pth"
    torch.save({"meta": {"mmcv_version": "1.3.1", "config": "model = dict(type='Recognizer3D')"}, "state_dict": state},
               path)
    return path, state


def test_microsoft_swin2d_checkpoint_lands_in_torchvision_names_inflated(tmp_path: Path) -> None:
    path, state = _microsoft_file(tmp_path)
    backbone = _backbone(seed=0)
    fresh_index = backbone.features[0][1].attn.relative_position_index.clone()
    load_swin2d_checkpoint(backbone, path)
    # the patch kernel is repeated over time and divided by its length: the sum over time is the 2-D one
    kernel = backbone.patch_embed.proj.weight  # (C, 3, 2, 4, 4)
    assert torch.allclose(kernel.sum(dim=2), state["patch_embed.proj.weight"], atol=1e-6)
    assert torch.equal(kernel[:, :, 0], kernel[:, :, 1])
    assert torch.equal(backbone.patch_embed.norm.weight, state["patch_embed.norm.weight"])
    assert torch.equal(backbone.features[2][1].attn.qkv.weight, state["layers.1.blocks.1.attn.qkv.weight"])
    # the 2-D table is tiled over the 2*Wt-1 = 3 temporal offsets, time the slowest axis
    table = backbone.features[4][0].attn.relative_position_bias_table.view(3, 49, HEADS[2])
    for offset in range(3):
        assert torch.equal(table[offset], state["layers.2.blocks.0.attn.relative_position_bias_table"])
    assert torch.equal(backbone.features[3].reduction.weight, state["layers.1.downsample.reduction.weight"])
    assert torch.equal(backbone.features[5].norm.bias, state["layers.2.downsample.norm.bias"])
    assert torch.equal(backbone.features[6][1].mlp[0].weight, state["layers.3.blocks.1.mlp.fc1.weight"])
    assert torch.equal(backbone.features[6][1].mlp[3].weight, state["layers.3.blocks.1.mlp.fc2.weight"])
    assert torch.equal(backbone.features[0][0].norm2.bias, state["layers.0.blocks.0.norm2.bias"])
    assert torch.equal(backbone.norm.weight, state["norm.weight"])
    # buffers are recomputed, not loaded, and the 22K head has nowhere to go
    assert torch.equal(backbone.features[0][1].attn.relative_position_index, fresh_index)
    assert not any(key.startswith("head.") or key.endswith("attn_mask") for key in backbone.state_dict())


def test_microsoft_swin2d_checkpoint_loads_like_the_torchvision_one(tmp_path: Path) -> None:
    torch.manual_seed(3)
    image_swin = _perturbed(SwinTransformer(patch_size=PATCH[1:], embed_dim=EMBED, depths=list(DEPTHS),
                                            num_heads=HEADS, window_size=WINDOW[1:]))
    torchvision_path = tmp_path / "swin_t.pth"
    torch.save(image_swin.state_dict(), torchvision_path)
    # the same tensors under Microsoft's names, read off torchvision's modules
    stem = image_swin.features[0]
    microsoft = {
        "patch_embed.proj.weight": stem[0].weight, "patch_embed.proj.bias": stem[0].bias,
        "patch_embed.norm.weight": stem[2].weight, "patch_embed.norm.bias": stem[2].bias,
        "norm.weight": image_swin.norm.weight, "norm.bias": image_swin.norm.bias,
        "head.weight": image_swin.head.weight, "head.bias": image_swin.head.bias,
    }
    for i in range(len(DEPTHS)):
        for j, block in enumerate(image_swin.features[2 * i + 1]):
            microsoft |= _original_block_tensors(f"layers.{i}.blocks.{j}.", block)
        if i < len(DEPTHS) - 1:
            microsoft |= _original_merge_tensors(f"layers.{i}.downsample.", image_swin.features[2 * i + 2])
    microsoft_path = tmp_path / "microsoft.pth"
    torch.save({"model": {k: v.detach().clone() for k, v in microsoft.items()}}, microsoft_path)

    from_torchvision, from_microsoft = _backbone(seed=1), _backbone(seed=2)
    load_swin2d_checkpoint(from_torchvision, torchvision_path)
    load_swin2d_checkpoint(from_microsoft, microsoft_path)
    expected = from_torchvision.state_dict()
    got = from_microsoft.state_dict()
    assert not torch.equal(got["norm.weight"], _backbone(seed=2).state_dict()["norm.weight"])
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []


def test_mmaction_video_swin_checkpoint_lands_in_torchvision_names(tmp_path: Path) -> None:
    path, state = _mmaction_file(tmp_path)
    backbone = _backbone(seed=0)
    fresh_index = backbone.features[2][1].attn.relative_position_index.clone()
    load_swin3d_checkpoint(backbone, path)
    assert torch.equal(backbone.patch_embed.proj.weight, state["backbone.patch_embed.proj.weight"])
    assert torch.equal(backbone.patch_embed.norm.bias, state["backbone.patch_embed.norm.bias"])
    assert torch.equal(backbone.features[4][1].attn.qkv.weight, state["backbone.layers.2.blocks.1.attn.qkv.weight"])
    assert torch.equal(backbone.features[2][0].attn.relative_position_bias_table,
                       state["backbone.layers.1.blocks.0.attn.relative_position_bias_table"])
    assert torch.equal(backbone.features[1].reduction.weight, state["backbone.layers.0.downsample.reduction.weight"])
    assert torch.equal(backbone.features[5].norm.weight, state["backbone.layers.2.downsample.norm.weight"])
    assert torch.equal(backbone.features[0][1].mlp[0].weight, state["backbone.layers.0.blocks.1.mlp.fc1.weight"])
    assert torch.equal(backbone.features[0][1].mlp[3].bias, state["backbone.layers.0.blocks.1.mlp.fc2.bias"])
    assert torch.equal(backbone.features[6][0].norm1.weight, state["backbone.layers.3.blocks.0.norm1.weight"])
    assert torch.equal(backbone.norm.bias, state["backbone.norm.bias"])
    assert torch.equal(backbone.features[2][1].attn.relative_position_index, fresh_index)
    assert not any(key.startswith(("head.", "cls_head.")) for key in backbone.state_dict())


def _original_block_tensors(prefix: str, block: torch.nn.Module) -> dict[str, Tensor]:
    """One torchvision Swin block's tensors under the originals' names."""
    return {
        prefix + "norm1.weight": block.norm1.weight, prefix + "norm1.bias": block.norm1.bias,
        prefix + "attn.qkv.weight": block.attn.qkv.weight, prefix + "attn.qkv.bias": block.attn.qkv.bias,
        prefix + "attn.proj.weight": block.attn.proj.weight, prefix + "attn.proj.bias": block.attn.proj.bias,
        prefix + "attn.relative_position_bias_table": block.attn.relative_position_bias_table,
        prefix + "attn.relative_position_index": block.attn.relative_position_index,
        prefix + "norm2.weight": block.norm2.weight, prefix + "norm2.bias": block.norm2.bias,
        prefix + "mlp.fc1.weight": block.mlp[0].weight, prefix + "mlp.fc1.bias": block.mlp[0].bias,
        prefix + "mlp.fc2.weight": block.mlp[3].weight, prefix + "mlp.fc2.bias": block.mlp[3].bias,
    }


def _original_merge_tensors(prefix: str, merge: torch.nn.Module) -> dict[str, Tensor]:
    return {
        prefix + "reduction.weight": merge.reduction.weight,
        prefix + "norm.weight": merge.norm.weight, prefix + "norm.bias": merge.norm.bias,
    }


def _as_mmaction(kinetics: SwinTransformer3d) -> dict[str, Tensor]:
    """A torchvision Video Swin's tensors under mmaction's names, read off its modules."""
    state = {
        "backbone.patch_embed.proj.weight": kinetics.patch_embed.proj.weight,
        "backbone.patch_embed.proj.bias": kinetics.patch_embed.proj.bias,
        "backbone.patch_embed.norm.weight": kinetics.patch_embed.norm.weight,
        "backbone.patch_embed.norm.bias": kinetics.patch_embed.norm.bias,
        "backbone.norm.weight": kinetics.norm.weight, "backbone.norm.bias": kinetics.norm.bias,
        "cls_head.fc_cls.weight": kinetics.head.weight, "cls_head.fc_cls.bias": kinetics.head.bias,
    }
    stages = len(kinetics.features) // 2 + 1
    for i in range(stages):
        for j, block in enumerate(kinetics.features[2 * i]):
            state |= _original_block_tensors(f"backbone.layers.{i}.blocks.{j}.", block)
        if i < stages - 1:
            state |= _original_merge_tensors(f"backbone.layers.{i}.downsample.", kinetics.features[2 * i + 1])
    return {k: v.detach().clone() for k, v in state.items()}


@pytest.mark.parametrize("depths", [DEPTHS, tuple(TINY.swin_depths)])
def test_mmaction_clip_forward_equals_the_torchvision_named_checkpoint(tmp_path: Path, depths: tuple) -> None:
    torch.manual_seed(4)
    kinetics = _perturbed(SwinTransformer3d(patch_size=PATCH, embed_dim=EMBED, depths=list(depths), num_heads=HEADS,
                                            window_size=WINDOW, num_classes=400))
    torchvision_path = tmp_path / "swin3d_t.pth"
    torch.save(kinetics.state_dict(), torchvision_path)
    mmaction_path, _ = _mmaction_file(tmp_path, _as_mmaction(kinetics))

    from_torchvision, from_mmaction = _backbone(seed=5, depths=depths), _backbone(seed=6, depths=depths)
    load_swin3d_checkpoint(from_torchvision, torchvision_path)
    load_swin3d_checkpoint(from_mmaction, mmaction_path)
    torch.manual_seed(8)
    clip = torch.randn(2, 3, 4, TINY.frame_size, TINY.frame_size)  # (N, 3, T, H, W)
    with torch.no_grad():
        expected = from_torchvision.eval()(clip)  # (N, 192)
        got = from_mmaction.eval()(clip)
        untrained = _backbone(seed=6, depths=depths).eval()(clip)
    assert got.shape == (2, EMBED * 8)
    assert torch.equal(got, expected)
    assert not torch.allclose(got, untrained)
    if list(depths) == list(TINY.swin_depths):  # and through the builder, as train-baseline loads it
        model = avcpnet(preset="tiny", num_classes=3, swin3d_checkpoint=mmaction_path)
        assert torch.equal(model.visual.backbone.features[6][0].mlp[3].weight, kinetics.features[6][0].mlp[3].weight)


def test_buffers_of_a_torchvision_named_file_are_recomputed_not_loaded(tmp_path: Path) -> None:
    kinetics = _perturbed(SwinTransformer3d(patch_size=PATCH, embed_dim=EMBED, depths=list(DEPTHS), num_heads=HEADS,
                                            window_size=WINDOW, num_classes=400))
    state = kinetics.state_dict()
    index = "features.0.1.attn.relative_position_index"
    state[index] = torch.zeros_like(state[index])
    path = tmp_path / "swin3d_t.pth"
    torch.save(state, path)
    backbone = _backbone(seed=0)
    fresh_index = backbone.features[0][1].attn.relative_position_index.clone()
    load_swin3d_checkpoint(backbone, path)
    assert torch.equal(backbone.features[0][1].attn.relative_position_index, fresh_index)
    assert torch.equal(backbone.features[0][1].attn.qkv.weight, kinetics.features[0][1].attn.qkv.weight)


def test_torchvision_relative_position_index_is_the_originals() -> None:
    """The tables are copied unchanged, so torchvision must index them as the authors' code does."""
    def original_index(window: list[int]) -> Tensor:
        # microsoft/Swin-Transformer WindowAttention and Video-Swin-Transformer WindowAttention3D
        coords = torch.stack(torch.meshgrid(*[torch.arange(size) for size in window], indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, dims)
        index = torch.zeros(relative.shape[:2], dtype=torch.long)
        for axis, size in enumerate(window):
            stride = 1
            for later in window[axis + 1:]:
                stride *= 2 * later - 1
            index += (relative[:, :, axis] + size - 1) * stride
        return index

    video = build_swin3d(window_size=[8, 7, 7], embed_dim=EMBED, depths=[1, 1, 1, 1], num_heads=HEADS)
    assert torch.equal(video.features[0][0].attn.relative_position_index, original_index([8, 7, 7]))
    image = SwinTransformer(patch_size=[4, 4], embed_dim=EMBED, depths=[1, 1, 1, 1], num_heads=HEADS,
                            window_size=[7, 7])
    assert torch.equal(image.features[1][0].attn.relative_position_index, original_index([7, 7]).flatten())


def test_torchvision_patch_merging_concatenates_like_the_originals() -> None:
    """The reduction weight is copied unchanged, so its input channels must come in the originals' order."""
    backbone = _backbone(seed=0)
    merge = backbone.features[1]
    seen: list[Tensor] = []
    merge.norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    x = torch.randn(1, 2, 4, 4, EMBED)  # (B, T, H, W, C)
    merge(x)
    # Video Swin PatchMerging (Microsoft's is the same without T): x0..x3 = (h even, w even),
    # (h odd, w even), (h even, w odd), (h odd, w odd), concatenated on channels
    original = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
    assert torch.equal(seen[0], original)


def test_unreadable_truncated_and_foreign_files_are_refused_with_what_was_expected(tmp_path: Path) -> None:
    mmaction_path, state = _mmaction_file(tmp_path)
    backbone = _backbone(seed=0)

    cut = tmp_path / "cut.pth"
    cut.write_bytes(mmaction_path.read_bytes()[:4096])
    with pytest.raises(CheckpointMismatchError, match="cannot read checkpoint"):
        load_swin3d_checkpoint(backbone, cut)

    partial = tmp_path / "partial.pth"
    torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("backbone.layers.3.")}}, partial)
    with pytest.raises(CheckpointMismatchError, match=r"lacks \d+ expected keys \(first: 'features\.6\.0\."):
        load_swin3d_checkpoint(backbone, partial)

    resnet = tmp_path / "resnet.pth"
    torch.save({"state_dict": ResNet(BasicBlock, [1, 1, 1, 1]).state_dict()}, resnet)
    with pytest.raises(CheckpointMismatchError, match="expected torchvision swin3d_t keys .* or mmaction Video Swin"):
        load_swin3d_checkpoint(backbone, resnet)
    with pytest.raises(CheckpointMismatchError, match="expected torchvision swin_t keys .* or Microsoft Swin"):
        load_swin2d_checkpoint(backbone, resnet)

    # each loader names the other when given the other dimension's weights
    microsoft_path, _ = _microsoft_file(tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"2-D Swin weights \(Microsoft Swin\)"):
        load_swin3d_checkpoint(backbone, microsoft_path)
    with pytest.raises(CheckpointMismatchError, match=r"3-D Video Swin weights \(mmaction Video Swin\)"):
        load_swin2d_checkpoint(backbone, mmaction_path)


def test_original_files_with_parts_torchvision_lacks_are_refused(tmp_path: Path) -> None:
    backbone = _backbone(seed=0)
    with_ape, _ = _microsoft_file(tmp_path, absolute_pos_embed=torch.zeros(1, 64, EMBED))
    with pytest.raises(CheckpointMismatchError, match="absolute position embedding"):
        load_swin2d_checkpoint(backbone, with_ape)

    _, state = _mmaction_file(tmp_path)
    deeper, _ = _mmaction_file(tmp_path, state | {"backbone.layers.3.blocks.2.norm1.weight": torch.ones(192)})
    with pytest.raises(CheckpointMismatchError, match=r"features\.6\.2\.norm1\.weight"):
        load_swin3d_checkpoint(backbone, deeper)

    wider, _ = _mmaction_file(tmp_path, state | {"backbone.norm.weight": torch.ones(768)})
    with pytest.raises(CheckpointMismatchError, match=r"norm\.weight has shape \(768,\), the model expects \(192,\)"):
        load_swin3d_checkpoint(backbone, wider)

    # a window-12 release (swin_base_patch4_window12_384_22k) would need the authors' interpolation
    table = {"layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(529, 1)}
    window12, _ = _microsoft_file(tmp_path, **table)
    with pytest.raises(CheckpointMismatchError, match=r"a 4x4 window with 1 heads needs \(49, 1\)"):
        load_swin2d_checkpoint(backbone, window12)


def test_a_checkpoint_whose_meta_holds_numpy_scalars_loads(tmp_path: Path) -> None:
    """mmcv writes NumPy scalars into "meta"; they are safe to rebuild, arbitrary objects are not."""
    import numpy as np

    from model.visual import read_state_dict

    path = tmp_path / "mmaction.pth"
    torch.save({"meta": {"epoch": np.int64(30), "lr": np.float32(1e-4)}, "state_dict": {"backbone.norm.weight": torch.ones(3)}},
               path)
    assert torch.equal(read_state_dict(path)["norm.weight"], torch.ones(3))
    hostile = tmp_path / "hostile.pth"
    torch.save({"meta": {"open": Path("/etc/passwd")}, "state_dict": {}}, hostile)
    with pytest.raises(CheckpointMismatchError, match="cannot read checkpoint"):
        read_state_dict(hostile)
