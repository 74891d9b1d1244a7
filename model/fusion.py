"""The two-stage cross-modal fusion of AV-CPNet.

Stage one (local): a pyramid of levels; at level i, band-masked self- and cross-attention
(|t - s| <= d_i over segment positions), a gated merge of the two per modality, and a dilated
residual temporal block; the level outputs are combined with per-level weights. Stage two (global):
full bidirectional cross-attention, then the mean over segments.

All sequences are (B, S, C): batch, segments, channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "BandAttentionLayer",
    "GatedMerge",
    "GlobalFusion",
    "LevelWeighting",
    "LocalFusion",
    "LocalFusionLevel",
    "TemporalBlock",
    "band_mask",
]


def band_mask(segments: int, window: int, device: torch.device | None = None) -> Tensor:
    """(S, S) bool mask, True where attention is forbidden (|t - s| > window), as MultiheadAttention wants."""
    positions = torch.arange(segments, device=device)
    return (positions[:, None] - positions[None, :]).abs() > window


class BandAttentionLayer(nn.Module):
    """Pre-norm transformer layer whose queries attend to a (possibly other) sequence within a band."""

    def __init__(self, dim: int, heads: int, ff_dim: int, attention_dropout: float, window: int) -> None:
        super().__init__()
        self.window = window
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attention_dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim))

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        mask = band_mask(query.shape[1], self.window, query.device)  # (S, S)
        kv = self.norm_kv(context)
        x = query + self.attn(self.norm_q(query), kv, kv, attn_mask=mask, need_weights=False)[0]  # (B, S, C)
        return x + self.ff(self.norm_ff(x))  # (B, S, C)


class GatedMerge(nn.Module):
    """g1 * self + g2 * cross, with two sigmoid gates computed from [self; cross]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate_self = nn.Linear(2 * dim, dim)
        self.gate_cross = nn.Linear(2 * dim, dim)

    def forward(self, own: Tensor, cross: Tensor) -> Tensor:
        both = torch.cat([own, cross], dim=-1)  # (B, S, 2C)
        return torch.sigmoid(self.gate_self(both)) * own + torch.sigmoid(self.gate_cross(both)) * cross


class TemporalBlock(nn.Module):
    """Dilated conv (kernel 3), ReLU, 1x1 conv, residual add, ReLU; over segments."""

    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.dilated = nn.Conv1d(dim, dim, kernel_size=3, dilation=dilation, padding=dilation)
        self.pointwise = nn.Conv1d(dim, dim, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = x.transpose(1, 2)  # (B, C, S)
        y = self.pointwise(self.relu(self.dilated(y)))  # (B, C, S)
        return self.relu(x + y.transpose(1, 2))  # (B, S, C)


class LocalFusionLevel(nn.Module):
    """One pyramid level: band self/cross attention, gated merge and a temporal block per modality."""

    def __init__(self, dim: int, heads: int, ff_dim: int, attention_dropout: float, dilation: int) -> None:
        super().__init__()
        layer = (dim, heads, ff_dim, attention_dropout, dilation)
        self.visual_self = BandAttentionLayer(*layer)
        self.audio_self = BandAttentionLayer(*layer)
        self.visual_cross = BandAttentionLayer(*layer)  # visual queries attend to audio
        self.audio_cross = BandAttentionLayer(*layer)  # audio queries attend to visual
        self.visual_merge = GatedMerge(dim)
        self.audio_merge = GatedMerge(dim)
        self.visual_temporal = TemporalBlock(dim, dilation)
        self.audio_temporal = TemporalBlock(dim, dilation)

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        v = self.visual_merge(self.visual_self(visual, visual), self.visual_cross(visual, audio))  # (B, S, C)
        a = self.audio_merge(self.audio_self(audio, audio), self.audio_cross(audio, visual))  # (B, S, C)
        return self.visual_temporal(v), self.audio_temporal(a)


class LevelWeighting(nn.Module):
    """Weighted sum of the L level outputs of both modalities.

    Each level gets a sigmoid score from a Linear C -> 1 over its segment mean; the two modalities'
    (B, L) score vectors are exchanged through a one-head attention layer over the two modality
    tokens (residual), and a softmax over levels turns them into weights (a CHOICE: the spec does not
    say how scores become weights; softmax keeps them positive and summing to one).
    """

    def __init__(self, dim: int, levels: int) -> None:
        super().__init__()
        self.visual_score = nn.Linear(dim, 1)
        self.audio_score = nn.Linear(dim, 1)
        self.exchange = nn.MultiheadAttention(levels, 1, batch_first=True)

    def forward(self, visual_levels: Tensor, audio_levels: Tensor) -> tuple[Tensor, Tensor]:
        # *_levels: (B, L, S, C)
        v_score = torch.sigmoid(self.visual_score(visual_levels.mean(dim=2))).squeeze(-1)  # (B, L)
        a_score = torch.sigmoid(self.audio_score(audio_levels.mean(dim=2))).squeeze(-1)  # (B, L)
        scores = torch.stack([v_score, a_score], dim=1)  # (B, 2, L): one token per modality
        scores = scores + self.exchange(scores, scores, scores, need_weights=False)[0]
        weights = torch.softmax(scores, dim=-1)  # (B, 2, L)
        visual = torch.einsum("bl,blsc->bsc", weights[:, 0], visual_levels)  # (B, S, C)
        audio = torch.einsum("bl,blsc->bsc", weights[:, 1], audio_levels)  # (B, S, C)
        return visual, audio


class LocalFusion(nn.Module):
    """Stage one: a pyramid of :class:`LocalFusionLevel` (one per dilation) and level weighting."""

    def __init__(
        self,
        dim: int = 512,
        heads: int = 8,
        ff_dim: int = 1024,
        attention_dropout: float = 0.1,
        dilations: Sequence[int] = (1, 2, 4),
    ) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            LocalFusionLevel(dim, heads, ff_dim, attention_dropout, dilation) for dilation in dilations
        )
        self.weighting = LevelWeighting(dim, len(self.levels))

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        visual_levels, audio_levels = [], []
        for level in self.levels:
            visual, audio = level(visual, audio)  # each (B, S, C); the next level refines this one
            visual_levels.append(visual)
            audio_levels.append(audio)
        return self.weighting(torch.stack(visual_levels, dim=1), torch.stack(audio_levels, dim=1))


class GlobalFusion(nn.Module):
    """Stage two: A queries V and V queries A over all segments, Linear + residual, then mean over S."""

    def __init__(self, dim: int = 512, heads: int = 8) -> None:
        super().__init__()
        self.audio_queries_visual = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.visual_queries_audio = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.audio_proj = nn.Linear(dim, dim)
        self.visual_proj = nn.Linear(dim, dim)

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        a = audio + self.audio_proj(self.audio_queries_visual(audio, visual, visual, need_weights=False)[0])
        v = visual + self.visual_proj(self.visual_queries_audio(visual, audio, audio, need_weights=False)[0])
        return v.mean(dim=1), a.mean(dim=1)  # (B, C) each
