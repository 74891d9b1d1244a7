"""Visual branch: a Video Swin Transformer applied to each segment of a clip.

The backbone is torchvision's :class:`~torchvision.models.video.swin_transformer.SwinTransformer3d`
(``swin3d_t``'s configuration in the full preset). Pretrained weights come only from local files, in
the naming of whoever released them; the loaders tell the naming from the keys:

- a Kinetics-400 Video Swin-T checkpoint: torchvision's ``swin3d_t-7615ae03.pth``, or the Video Swin
  authors' mmaction file (``swin_tiny_patch244_window877_kinetics400_1k.pth``, ``backbone.layers.*``);
- a 2-D ImageNet Swin-T checkpoint: torchvision's ``swin_t-704ceda3.pth``, or Microsoft's
  (``swin_tiny_patch4_window7_224_22k.pth``, ``layers.*``), inflated to 3-D the way the Video Swin
  authors did (patch-embedding kernel repeated over time and divided by its length, relative position
  bias table tiled over the temporal offsets).

The originals' tensors are copied unchanged: torchvision's relative position index and patch-merging
order are the originals' (its ``swin3d_t`` weights were ported from them), so only names differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.video.swin_transformer import SwinTransformer3d

from model.errors import ModelError

__all__ = [
    "CheckpointMismatchError",
    "SegmentSwin",
    "build_swin3d",
    "inflate_swin2d_state_dict",
    "load_swin2d_checkpoint",
    "load_swin3d_checkpoint",
    "load_weights_only",
    "read_state_dict",
]

# torchvision's swin3d_t / swin_t presets normalise with ImageNet statistics.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)

# Buffers that every Swin recomputes from its window configuration; a file's copies are never loaded.
_DERIVED_BUFFERS = ("relative_position_index", "attn_mask")

# The originals (Microsoft Swin, Video Swin) name stages layers.i, with the patch merging that ends
# stage i in layers.i.downsample, and their Mlp's linears fc1/fc2; torchvision's MLP is
# Sequential(Linear, GELU, Dropout, Linear, Dropout), so the linears are mlp.0 and mlp.3.
_ORIGINAL_BLOCK = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)")
_ORIGINAL_MERGE = re.compile(r"layers\.(\d+)\.downsample\.(.+)")
_ORIGINAL_MLP = {"mlp.fc1.": "mlp.0.", "mlp.fc2.": "mlp.3."}

_FORMATS = {
    "torchvision-3d": "torchvision swin3d_t",
    "mmaction-3d": "mmaction Video Swin",
    "torchvision-2d": "torchvision swin_t",
    "microsoft-2d": "Microsoft Swin",
}


class CheckpointMismatchError(ModelError):
    """A checkpoint file whose keys or shapes do not fit the model it is loaded into."""


def build_swin3d(
    *,
    patch_size: Sequence[int] = (2, 4, 4),
    embed_dim: int = 96,
    depths: Sequence[int] = (2, 2, 6, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    window_size: Sequence[int] = (8, 7, 7),
    stochastic_depth_prob: float = 0.1,
) -> SwinTransformer3d:
    """A headless Video Swin backbone; the defaults are ``swin3d_t``. Forward: (N, 3, T, H, W) -> (N, F)."""
    backbone = SwinTransformer3d(
        patch_size=list(patch_size),
        embed_dim=embed_dim,
        depths=list(depths),
        num_heads=list(num_heads),
        window_size=list(window_size),
        stochastic_depth_prob=stochastic_depth_prob,
    )
    backbone.head = nn.Identity()
    return backbone


class SegmentSwin(nn.Module):
    """Swin over each segment, pooled, dropout, then a projection to the fusion width.

    Input frames are (B, S, 3, T, H, W), uint8 in [0, 255] or float in [0, 1]; output (B, S, C).
    """

    def __init__(self, backbone: SwinTransformer3d, out_dim: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(backbone.num_features, out_dim)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, frames: Tensor) -> Tensor:
        batch, segments = frames.shape[:2]
        x = frames.flatten(0, 1)  # (B*S, 3, T, H, W)
        if x.dtype == torch.uint8:
            x = x.to(self.mean.dtype).div_(255.0)
        x = (x - self.mean) / self.std
        x = self.backbone(x)  # (B*S, F): space and time pooled by the backbone
        x = self.proj(self.dropout(x))  # (B*S, C)
        return x.view(batch, segments, -1)  # (B, S, C)


def _numpy_scalar_globals() -> list[object]:
    import numpy as np

    scalar = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray  # NumPy 2 and 1
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [scalar.scalar, np.dtype, *dtypes]


_NUMPY_SCALAR_GLOBALS = _numpy_scalar_globals()


def load_weights_only(path: str | Path, allowed: Sequence[object] = ()) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU, with ``allowed`` globals; failures in one line.

    A missing file is a :class:`ModelError`; an unreadable or unsafe one a :class:`CheckpointMismatchError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        # torch's unpickling message runs over many lines of advice; its first line names the problem
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointMismatchError(f"cannot read checkpoint {path}: {first_line}") from exc


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a checkpoint file, unwrapped from ``{"state_dict"|"model": ...}`` and prefixes."""
    # mmcv-written files (the Video Swin authors' K400 checkpoint) may keep NumPy scalars in their
    # "meta"; rebuilding a NumPy scalar or dtype runs no code of the file's choosing, so allow them.
    raw = load_weights_only(path, _NUMPY_SCALAR_GLOBALS)
    for key in ("state_dict", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict):
        raise CheckpointMismatchError(f"{path} does not hold a state dict")
    state: dict[str, Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, Tensor):
            continue
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    return state


def _load_strict(module: nn.Module, state: Mapping[str, Tensor], source: str, ignore: tuple[str, ...]) -> None:
    """Load, requiring every learnable tensor except those starting with ``ignore``, and no others.

    Extra keys are refused too: a deeper Swin (swin3d_s's 18-block stage) has the same widths, and
    loading its first blocks alone would pass silently.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(_DERIVED_BUFFERS) and not k.startswith(ignore)]
    if missing:
        raise CheckpointMismatchError(
            f"{source} lacks {len(missing)} expected keys (first: {missing[0]!r}); wrong kind of checkpoint?"
        )
    extra = [k for k in state if k not in own and not k.endswith(_DERIVED_BUFFERS) and not k.startswith(ignore)]
    if extra:
        raise CheckpointMismatchError(
            f"{source} has {len(extra)} keys the model lacks (first: {extra[0]!r}); a deeper or different Swin?"
        )
    usable = {}
    for key, value in state.items():
        if key not in own or key.endswith(_DERIVED_BUFFERS):
            continue
        if own[key].shape != value.shape:
            raise CheckpointMismatchError(
                f"{source}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
        usable[key] = value
    module.load_state_dict(usable, strict=False)


def _swin_checkpoint_format(state: Mapping[str, Tensor]) -> str | None:
    """The naming of a Swin state dict (a key of ``_FORMATS``), from marker keys; None if none fits.

    ``read_state_dict`` has already dropped mmaction's ``backbone.`` prefix, so the two original
    namings differ only in the patch kernel: (C, 3, pt, ph, pw) for Video Swin, (C, 3, ph, pw) for 2-D.
    """
    if "features.0.0.weight" in state:
        return "torchvision-2d"
    if "features.0.0.attn.qkv.weight" in state and "patch_embed.proj.weight" in state:
        return "torchvision-3d"
    if "layers.0.blocks.0.attn.qkv.weight" in state and "patch_embed.proj.weight" in state:
        return "mmaction-3d" if state["patch_embed.proj.weight"].dim() == 5 else "microsoft-2d"
    return None


def _original_block_part(part: str) -> str:
    """A block's own key (``norm1.weight``, ``mlp.fc1.bias``...) in torchvision's names."""
    for old, new in _ORIGINAL_MLP.items():
        if part.startswith(old):
            return new + part[len(old):]
    return part


def _mmaction_swin3d_to_torchvision(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """Rename a Video Swin (mmaction) backbone state dict to torchvision ``swin3d_t`` names.

    torchvision keeps the stem as ``patch_embed`` and interleaves the rest: ``features.(2i)`` holds
    stage i's blocks, ``features.(2i+1)`` the patch merging that ends stage i. ``cls_head`` (the
    Kinetics classifier) is dropped.
    """
    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("cls_head.") or key.endswith(_DERIVED_BUFFERS):
            continue
        if block := _ORIGINAL_BLOCK.fullmatch(key):
            stage, index, part = block.groups()
            new_key = f"features.{2 * int(stage)}.{index}.{_original_block_part(part)}"
        elif merge := _ORIGINAL_MERGE.fullmatch(key):
            stage, part = merge.groups()
            new_key = f"features.{2 * int(stage) + 1}.{part}"
        elif key.startswith(("patch_embed.", "norm.")):
            new_key = key  # same names in both
        else:
            raise CheckpointMismatchError(f"{source}: Video Swin key {key!r} has no torchvision counterpart")
        renamed[new_key] = value
    return renamed


def _microsoft_swin2d_to_torchvision(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """Rename a Microsoft Swin 2-D state dict to torchvision ``swin_t`` names (inflated afterwards).

    torchvision's 2-D ``features`` holds the stem too: ``features.0`` is the patch embedding (conv at
    ``.0``, norm at ``.2``), ``features.(2i+1)`` stage i's blocks, ``features.(2i+2)`` the patch
    merging that ends stage i. The ImageNet head (21841 classes for 22K) is dropped.
    """
    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("head.") or key.endswith(_DERIVED_BUFFERS):
            continue
        if key == "absolute_pos_embed":
            # Swin-T has none (ape=False); torchvision's Swin has no place for one
            raise CheckpointMismatchError(
                f"{source} has an absolute position embedding, which torchvision's Swin lacks"
            )
        if key.startswith("patch_embed.proj."):
            new_key = "features.0.0." + key[len("patch_embed.proj."):]
        elif key.startswith("patch_embed.norm."):
            new_key = "features.0.2." + key[len("patch_embed.norm."):]
        elif block := _ORIGINAL_BLOCK.fullmatch(key):
            stage, index, part = block.groups()
            new_key = f"features.{2 * int(stage) + 1}.{index}.{_original_block_part(part)}"
        elif merge := _ORIGINAL_MERGE.fullmatch(key):
            stage, part = merge.groups()
            new_key = f"features.{2 * int(stage) + 2}.{part}"
        elif key.startswith("norm."):
            new_key = key
        else:
            raise CheckpointMismatchError(f"{source}: Microsoft Swin key {key!r} has no torchvision counterpart")
        renamed[new_key] = value
    return renamed


def load_swin3d_checkpoint(backbone: SwinTransformer3d, path: str | Path) -> None:
    """Load a Kinetics Video Swin checkpoint into ``backbone``; its classifier is dropped.

    Takes torchvision's ``swin3d_t`` names or the Video Swin authors' mmaction checkpoint
    (``{"meta": ..., "state_dict": {"backbone.layers.0.blocks.0...": ...}}``).
    """
    state = read_state_dict(path)
    kind = _swin_checkpoint_format(state)
    if kind == "torchvision-3d":
        state = {k: v for k, v in state.items() if not k.startswith(("head.", "cls_head."))}
    elif kind == "mmaction-3d":
        state = _mmaction_swin3d_to_torchvision(state, str(path))
    elif kind is not None:
        raise CheckpointMismatchError(
            f"{path} holds 2-D Swin weights ({_FORMATS[kind]}); give it as the 2-D checkpoint, which is inflated"
        )
    else:
        raise CheckpointMismatchError(
            f"{path} is not a Video Swin checkpoint: expected torchvision swin3d_t keys (features.0.0.attn.qkv.weight)"
            " or mmaction Video Swin keys (backbone.layers.0.blocks.0.attn.qkv.weight, a 5-D patch_embed.proj.weight)"
        )
    _load_strict(backbone, state, str(path), ignore=("head.",))


def inflate_swin2d_state_dict(state: Mapping[str, Tensor], backbone: SwinTransformer3d) -> dict[str, Tensor]:
    """Map a torchvision 2-D Swin state dict onto ``backbone``'s 3-D key names and shapes.

    2-D ``features.0`` (patch embedding) becomes ``patch_embed``; 2-D ``features.k`` becomes
    ``features.(k-1)``. The patch kernel (C, 3, ph, pw) is repeated to (C, 3, pt, ph, pw) and divided
    by pt so a static clip gives the 2-D response; bias tables ((2Wh-1)(2Ww-1), heads) are tiled over
    the 2Wt-1 temporal offsets (time is the slowest axis of the 3-D index).
    """
    own = backbone.state_dict()
    inflated: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("head.") or key.endswith("relative_position_index"):
            continue
        if key.startswith("features.0.0."):
            new_key = "patch_embed.proj." + key[len("features.0.0."):]
        elif key.startswith("features.0.2."):
            new_key = "patch_embed.norm." + key[len("features.0.2."):]
        elif key.startswith("features."):
            stage, rest = key[len("features."):].split(".", 1)
            new_key = f"features.{int(stage) - 1}.{rest}"
        else:
            new_key = key
        if new_key not in own:
            raise CheckpointMismatchError(f"2-D Swin key {key!r} has no 3-D counterpart ({new_key!r})")
        target = own[new_key]
        if new_key == "patch_embed.proj.weight" and value.dim() == 4:
            steps = target.shape[2]
            value = value.unsqueeze(2).repeat(1, 1, steps, 1, 1) / steps
        elif new_key.endswith("relative_position_bias_table") and value.shape != target.shape:
            window = backbone.get_submodule(new_key.rsplit(".", 1)[0]).window_size  # [Wt, Wh, Ww]
            spatial = (2 * window[1] - 1) * (2 * window[2] - 1)
            if tuple(value.shape) != (spatial, target.shape[1]):
                # the Video Swin authors interpolate other window sizes; we do not guess
                raise CheckpointMismatchError(
                    f"2-D Swin {key} has shape {tuple(value.shape)}; a {window[1]}x{window[2]} window with"
                    f" {target.shape[1]} heads needs ({spatial}, {target.shape[1]})"
                )
            offsets = 2 * window[0] - 1
            value = value.unsqueeze(0).repeat(offsets, 1, 1).reshape(target.shape)
        inflated[new_key] = value
    return inflated


def load_swin2d_checkpoint(backbone: SwinTransformer3d, path: str | Path) -> None:
    """Inflate an ImageNet 2-D Swin checkpoint into ``backbone``.

    Takes torchvision's ``swin_t`` names or Microsoft's (``{"model": {"layers.0.blocks.0...": ...}}``,
    the ImageNet-1K and -22K releases).
    """
    state = read_state_dict(path)
    kind = _swin_checkpoint_format(state)
    if kind == "microsoft-2d":
        state = _microsoft_swin2d_to_torchvision(state, str(path))
    elif kind in ("torchvision-3d", "mmaction-3d"):
        raise CheckpointMismatchError(
            f"{path} holds 3-D Video Swin weights ({_FORMATS[kind]}); give it as the 3-D checkpoint"
        )
    elif kind is None:
        raise CheckpointMismatchError(
            f"{path} is not a 2-D Swin checkpoint: expected torchvision swin_t keys (features.0.0.weight)"
            " or Microsoft Swin keys (layers.0.blocks.0.attn.qkv.weight, a 4-D patch_embed.proj.weight)"
        )
    _load_strict(backbone, inflate_swin2d_state_dict(state, backbone), str(path), ignore=("head.",))
