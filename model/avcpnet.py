"""AV-CPNet: visual and audio branches, two-stage fusion, and a concatenation head with two auxiliary heads.

>>> net = avcpnet(preset="tiny", num_classes=6)
>>> import torch
>>> out = net(torch.zeros(2, 4, 3, 2, 32, 32, dtype=torch.uint8), torch.zeros(2, 256, 32))
>>> tuple(out.logits.shape), tuple(out.visual_logits.shape), tuple(out.audio_logits.shape)
((2, 6), (2, 6), (2, 6))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from model.audio import MFCCResNet, SegmentAudio, load_resnet_checkpoint
from model.errors import ModelError
from model.fusion import GlobalFusion, LocalFusion
from model.visual import (
    CheckpointMismatchError,
    SegmentSwin,
    build_swin3d,
    load_swin2d_checkpoint,
    load_swin3d_checkpoint,
    load_weights_only,
)

__all__ = [
    "AVCPNet",
    "AVCPNetOutput",
    "ModelConfig",
    "PRESETS",
    "avcpnet",
    "build_avcpnet",
    "load_avcpnet_weights",
    "load_pretrained_branches",
]

Modalities = Literal["audio-visual", "visual", "audio"]


@dataclass(frozen=True)
class ModelConfig:
    """Every size of AV-CPNet and of its inputs; ``full`` is the specification, ``tiny`` is for CPU tests."""

    num_classes: int = 6
    # input sampling
    segments: int = 16
    frames_per_segment: int = 8
    frame_size: int = 112
    mfcc_frames: int = 4096
    n_mfcc: int = 32
    # widths
    dim: int = 512
    # visual branch (swin3d_t)
    swin_patch: list[int] = field(default_factory=lambda: [2, 4, 4])
    swin_embed_dim: int = 96
    swin_depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])
    swin_heads: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    swin_window: list[int] = field(default_factory=lambda: [8, 7, 7])
    swin_stochastic_depth: float = 0.1
    visual_dropout: float = 0.5
    # audio branch (ResNet-34)
    resnet_layers: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    resnet_widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    # fusion
    fusion_heads: int = 8
    fusion_ff_dim: int = 1024
    fusion_attention_dropout: float = 0.1
    fusion_dropout: float = 0.5  # residual and feed-forward dropout of the fusion's Transformer layers
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4])  # one local level per dilation
    global_heads: int = 8
    # ablations
    modalities: str = "audio-visual"
    local_stage: bool = True
    global_stage: bool = True

    def __post_init__(self) -> None:
        if self.modalities not in ("audio-visual", "visual", "audio"):
            raise ModelError(f"modalities must be audio-visual, visual or audio, not {self.modalities!r}")
        if self.mfcc_frames % self.segments:
            raise ModelError(f"mfcc_frames {self.mfcc_frames} is not a multiple of segments {self.segments}")
        if self.num_classes < 2:
            raise ModelError("a classifier needs at least two classes")
        if not self.dilations or any(int(d) < 1 for d in self.dilations):
            raise ModelError(f"dilations must be one or more integers >= 1, not {self.dilations}")
        for name in ("fusion_heads", "global_heads"):
            heads = getattr(self, name)
            if heads < 1 or self.dim % heads:
                raise ModelError(f"{name} ({heads}) must be a positive divisor of dim ({self.dim})")
        if self.fusion_ff_dim < 1:
            raise ModelError(f"fusion_ff_dim must be positive, not {self.fusion_ff_dim}")
        for name in ("fusion_dropout", "fusion_attention_dropout", "visual_dropout", "swin_stochastic_depth"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ModelError(f"{name} must be in [0, 1), not {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


PRESETS: dict[str, ModelConfig] = {
    "full": ModelConfig(),
    "tiny": ModelConfig(
        segments=4,
        frames_per_segment=2,
        frame_size=32,
        mfcc_frames=256,
        n_mfcc=32,
        dim=64,
        swin_patch=[2, 4, 4],
        swin_embed_dim=24,
        swin_depths=[1, 1, 1, 1],
        swin_heads=[1, 2, 4, 8],
        swin_window=[2, 4, 4],
        resnet_layers=[1, 1, 1, 1],
        resnet_widths=[8, 16, 32, 64],
        fusion_heads=4,
        fusion_ff_dim=128,
        global_heads=4,
    ),
}


class AVCPNetOutput(NamedTuple):
    logits: Tensor  # (B, K) fused head
    visual_logits: Tensor | None  # (B, K) auxiliary head on the visual half
    audio_logits: Tensor | None  # (B, K) auxiliary head on the audio half


class AVCPNet(nn.Module):
    """The network, parameterised by its parts; a missing branch or stage is an ablation.

    ``forward(frames, mfcc)``: frames (B, S, 3, T, H, W) uint8 or [0, 1] float, MFCC (B, S * F, n_mfcc).
    """

    def __init__(
        self,
        visual: SegmentSwin | None,
        audio: SegmentAudio | None,
        local: LocalFusion | None,
        global_: GlobalFusion | None,
        num_classes: int,
        dim: int = 512,
    ) -> None:
        super().__init__()
        if visual is None and audio is None:
            raise ModelError("AV-CPNet needs at least one branch")
        self.visual = visual
        self.audio = audio
        self.local = local if visual is not None and audio is not None else None
        self.global_ = global_ if visual is not None and audio is not None else None
        self.dim = dim
        branches = int(visual is not None) + int(audio is not None)
        # W ∈ R^{K×2C}: the first C columns read the audio vector, the last C the visual one.
        self.head = nn.Linear(branches * dim, num_classes)

    def forward(self, frames: Tensor | None = None, mfcc: Tensor | None = None) -> AVCPNetOutput:
        if self.visual is not None and self.audio is not None:
            if frames is None or mfcc is None:
                raise ModelError("the audio-visual model needs both frames and MFCC")
            return self.fuse_and_classify(self.visual(frames), self.audio(mfcc))  # branches: (B, S, C) each
        if self.visual is not None:
            if frames is None:
                raise ModelError("the visual-only model needs frames")
            logits = self.head(self.visual(frames).mean(dim=1))  # (B, K)
            return AVCPNetOutput(logits, logits, None)
        if mfcc is None or self.audio is None:
            raise ModelError("the audio-only model needs MFCC")
        logits = self.head(self.audio(mfcc).mean(dim=1))  # (B, K)
        return AVCPNetOutput(logits, None, logits)

    def fuse_and_classify(self, visual: Tensor, audio: Tensor) -> AVCPNetOutput:
        """The audio-visual model after its branches: segment features V, A (B, S, C) -> the three heads."""
        v, a = visual, audio
        if self.local is not None:
            v, a = self.local(v, a)  # (B, S, C) each
        if self.global_ is not None:
            v, a = self.global_(v, a)  # (B, C) each
        else:
            v, a = v.mean(dim=1), a.mean(dim=1)  # (B, C) each
        logits = self.head(torch.cat([a, v], dim=-1))  # (B, K)
        # The auxiliary heads reuse the halves of W and split b; they read the fused vectors a and v.
        weight, bias = self.head.weight, self.head.bias
        audio_logits = a @ weight[:, : self.dim].t() + bias / 2  # (B, K)
        visual_logits = v @ weight[:, self.dim :].t() + bias / 2  # (B, K)
        return AVCPNetOutput(logits, visual_logits, audio_logits)


def build_avcpnet(config: ModelConfig) -> AVCPNet:
    """Randomly initialised AV-CPNet of the given configuration."""
    visual = audio = None
    if config.modalities in ("audio-visual", "visual"):
        backbone = build_swin3d(
            patch_size=config.swin_patch,
            embed_dim=config.swin_embed_dim,
            depths=config.swin_depths,
            num_heads=config.swin_heads,
            window_size=config.swin_window,
            stochastic_depth_prob=config.swin_stochastic_depth,
        )
        visual = SegmentSwin(backbone, out_dim=config.dim, dropout=config.visual_dropout)
    if config.modalities in ("audio-visual", "audio"):
        resnet = MFCCResNet(layers=config.resnet_layers, widths=config.resnet_widths)
        audio = SegmentAudio(resnet, segments=config.segments, out_dim=config.dim)
    both = visual is not None and audio is not None
    local = (
        LocalFusion(
            config.dim,
            config.fusion_heads,
            config.fusion_ff_dim,
            config.fusion_attention_dropout,
            config.dilations,
            dropout=config.fusion_dropout,
        )
        if both and config.local_stage
        else None
    )
    global_ = (
        GlobalFusion(config.dim, config.global_heads)
        if both and config.global_stage
        else None
    )
    return AVCPNet(visual, audio, local, global_, num_classes=config.num_classes, dim=config.dim)


def load_pretrained_branches(
    model: AVCPNet,
    *,
    swin2d_checkpoint: str | Path | None = None,
    swin3d_checkpoint: str | Path | None = None,
    resnet_checkpoint: str | Path | None = None,
) -> None:
    """Initialise the branches from local pretrained files; a file for a branch the model lacks is ignored."""
    if swin2d_checkpoint is not None and swin3d_checkpoint is not None:
        raise ModelError("give a 2-D or a 3-D Swin checkpoint, not both")
    if model.visual is not None:
        if swin3d_checkpoint is not None:
            load_swin3d_checkpoint(model.visual.backbone, swin3d_checkpoint)
        elif swin2d_checkpoint is not None:
            load_swin2d_checkpoint(model.visual.backbone, swin2d_checkpoint)
    if model.audio is not None and resnet_checkpoint is not None:
        load_resnet_checkpoint(model.audio.resnet, resnet_checkpoint)


def load_avcpnet_weights(model: AVCPNet, path: str | Path) -> None:
    """Load the ``model`` state of a training checkpoint (or a bare state dict) written by this package."""
    raw = load_weights_only(path)
    state = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{path} does not hold an AV-CPNet state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{path} does not fit this model: {len(missing)} missing keys, {len(unexpected)} unexpected "
            f"(e.g. {(missing or unexpected)[0]!r}); was it trained with another preset or ablation?"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointMismatchError(
                f"{path}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(state)


def avcpnet(
    *,
    preset: str = "full",
    num_classes: int = 6,
    weights: str | Path | None = None,
    swin2d_checkpoint: str | Path | None = None,
    swin3d_checkpoint: str | Path | None = None,
    resnet_checkpoint: str | Path | None = None,
    modalities: Modalities = "audio-visual",
    local_stage: bool = True,
    global_stage: bool = True,
    **overrides: Any,
) -> AVCPNet:
    """Build AV-CPNet from a preset (``"full"`` = the specification, ``"tiny"`` = CPU tests).

    ``weights`` is an AV-CPNet checkpoint of this package; the ``*_checkpoint`` files initialise a
    branch from local pretrained files (a 2-D ImageNet Swin-T to inflate, or a Kinetics Video Swin-T;
    an ImageNet ResNet-34). Nothing is downloaded.
    """
    if preset not in PRESETS:
        raise ModelError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    config = replace(
        PRESETS[preset],
        num_classes=num_classes,
        modalities=modalities,
        local_stage=local_stage,
        global_stage=global_stage,
        **overrides,
    )
    model = build_avcpnet(config)
    load_pretrained_branches(
        model, swin2d_checkpoint=swin2d_checkpoint, swin3d_checkpoint=swin3d_checkpoint,
        resnet_checkpoint=resnet_checkpoint,
    )
    if weights is not None:
        load_avcpnet_weights(model, weights)
    return model
