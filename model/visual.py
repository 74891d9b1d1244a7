"""Visual branch: a Video Swin Transformer applied to each segment of a clip.

The backbone is torchvision's :class:`~torchvision.models.video.swin_transformer.SwinTransformer3d`
(``swin3d_t``'s configuration in the full preset). Pretrained weights come only from local files:
a Kinetics-400 Video Swin-T checkpoint (torchvision's ``swin3d_t-7615ae03.pth``), or a 2-D ImageNet
Swin-T checkpoint (torchvision's ``swin_t-704ceda3.pth``) inflated to 3-D the way the Video Swin
authors did (patch-embedding kernel repeated over time and divided by its length, relative position
bias table tiled over the temporal offsets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

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
    "read_state_dict",
]

# torchvision's swin3d_t / swin_t presets normalise with ImageNet statistics.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


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


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a checkpoint file, unwrapped from ``{"state_dict"|"model": ...}`` and prefixes."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint file not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointMismatchError(f"cannot read checkpoint {path}: {exc}") from exc
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
    """Load, requiring every learnable tensor except those starting with ``ignore``."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("relative_position_index") and not k.startswith(ignore)]
    if missing:
        raise CheckpointMismatchError(
            f"{source} lacks {len(missing)} expected keys (first: {missing[0]!r}); wrong kind of checkpoint?"
        )
    usable = {}
    for key, value in state.items():
        if key not in own or key.endswith("relative_position_index"):
            continue
        if own[key].shape != value.shape:
            raise CheckpointMismatchError(
                f"{source}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
        usable[key] = value
    module.load_state_dict(usable, strict=False)


def load_swin3d_checkpoint(backbone: SwinTransformer3d, path: str | Path) -> None:
    """Load a Kinetics Video Swin checkpoint (torchvision key names) into ``backbone``; its head is dropped."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(("head.", "cls_head."))}
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
            offsets = target.shape[0] // value.shape[0]
            value = value.unsqueeze(0).repeat(offsets, 1, 1).reshape(target.shape)
        inflated[new_key] = value
    return inflated


def load_swin2d_checkpoint(backbone: SwinTransformer3d, path: str | Path) -> None:
    """Inflate an ImageNet 2-D Swin checkpoint (torchvision ``swin_t``) into ``backbone``."""
    state = read_state_dict(path)
    if "features.0.0.weight" not in state:
        raise CheckpointMismatchError(f"{path} is not a torchvision 2-D Swin checkpoint (no features.0.0.weight)")
    _load_strict(backbone, inflate_swin2d_state_dict(state, backbone), str(path), ignore=("head.",))
