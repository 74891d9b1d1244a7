"""The two-stage cross-modal fusion of AV-CPNet.

Stage one (local): a pyramid of levels; at level i, band-masked self- and cross-attention
(|t - s| <= d_i over segment positions), a gated merge of the two per modality, and a dilated
residual temporal block; the level outputs are combined with per-level weights. Stage two (global):
full bidirectional cross-attention, then the mean over segments.

Where the specification is silent this follows the authors' released code: one cross-attention
layer per level serves both directions (V attends to A and A to V with the same weights), the
Transformer layers use ReLU and dropout on the residual branches and inside the feed-forward block
and do not normalise keys/values, the levels are weighted per segment (a sigmoid score per level and
segment, exchanged between the modalities by a 1-dim one-head attention across levels, no softmax),
and one attention module serves both global directions. (This package's first reading, with a layer
per direction, GELU, normalised keys/values, per-clip softmax level weights and two global
attentions, did no better in ``bench/bench_model_learnability.py`` and was removed; see the README.)

All sequences are (B, S, C): batch, segments, channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from model.errors import ModelError

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
    """Pre-norm Transformer layer whose queries attend to a (possibly other) sequence within a band.

    ``x = q + drop(attn(norm(q), kv, kv)); x = x + drop(ff(norm(x)))`` with ``ff`` = Linear, ReLU,
    dropout, Linear; keys and values are the raw context, as in the authors' code.
    """

    def __init__(
        self, dim: int, heads: int, ff_dim: int, attention_dropout: float, window: int, *, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.window = window
        self.norm_q = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attention_dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ff_dim, dim),
        )

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        mask = band_mask(query.shape[1], self.window, query.device)  # (S, S)
        attended = self.attn(self.norm_q(query), context, context, attn_mask=mask, need_weights=False)[0]  # (B, S, C)
        x = query + self.drop(attended)
        return x + self.drop(self.ff(self.norm_ff(x)))  # (B, S, C)


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
    """One pyramid level: band self/cross attention, gated merge and a temporal block per modality.

    ``cross`` is one layer used in both directions; its queries come from the modality being updated.
    """

    def __init__(
        self, dim: int, heads: int, ff_dim: int, attention_dropout: float, dilation: int, *, dropout: float = 0.5
    ) -> None:
        super().__init__()

        def layer() -> BandAttentionLayer:
            return BandAttentionLayer(dim, heads, ff_dim, attention_dropout, dilation, dropout=dropout)

        self.visual_self = layer()
        self.audio_self = layer()
        self.cross = layer()
        self.visual_merge = GatedMerge(dim)
        self.audio_merge = GatedMerge(dim)
        self.visual_temporal = TemporalBlock(dim, dilation)
        self.audio_temporal = TemporalBlock(dim, dilation)

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        visual_cross, audio_cross = self.cross(visual, audio), self.cross(audio, visual)  # (B, S, C) each
        v = self.visual_merge(self.visual_self(visual, visual), visual_cross)  # (B, S, C)
        a = self.audio_merge(self.audio_self(audio, audio), audio_cross)  # (B, S, C)
        return self.visual_temporal(v), self.audio_temporal(a)


class LevelWeighting(nn.Module):
    """Weighted sum of the L level outputs of each modality, per segment.

    Each level and segment gets a sigmoid score from a Linear C -> 1; per segment, the L visual scores
    attend to the L audio scores (and the audio ones to the visual ones) through one shared 1-dim
    one-head attention across levels, and its outputs weight the levels directly (no softmax), as in
    the authors' code.
    """

    def __init__(self, dim: int, levels: int) -> None:
        super().__init__()
        self.visual_score = nn.Linear(dim, 1)
        self.audio_score = nn.Linear(dim, 1)
        self.exchange = nn.MultiheadAttention(1, 1, batch_first=True)

    def forward(self, visual_levels: Tensor, audio_levels: Tensor) -> tuple[Tensor, Tensor]:
        # *_levels: (B, L, S, C)
        batch, levels, segments, dim = visual_levels.shape
        v_levels = visual_levels.permute(0, 2, 1, 3).reshape(batch * segments, levels, dim)  # (B*S, L, C)
        a_levels = audio_levels.permute(0, 2, 1, 3).reshape(batch * segments, levels, dim)  # (B*S, L, C)
        v_score = torch.sigmoid(self.visual_score(v_levels))  # (B*S, L, 1): one token per level
        a_score = torch.sigmoid(self.audio_score(a_levels))  # (B*S, L, 1)
        v_weight = self.exchange(v_score, a_score, a_score, need_weights=False)[0]  # (B*S, L, 1)
        a_weight = self.exchange(a_score, v_score, v_score, need_weights=False)[0]  # (B*S, L, 1)
        visual = (v_weight * v_levels).sum(dim=1).view(batch, segments, dim)  # (B, S, C)
        audio = (a_weight * a_levels).sum(dim=1).view(batch, segments, dim)  # (B, S, C)
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
        *,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ModelError(f"the local stage needs at least one level and dilations >= 1, not {list(dilations)}")
        self.levels = nn.ModuleList(
            LocalFusionLevel(dim, heads, ff_dim, attention_dropout, int(dilation), dropout=dropout)
            for dilation in dilations
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
    """Stage two: A queries V and V queries A over all segments, Linear + residual, then mean over S.

    One attention module serves both directions (the authors share it); each keeps its own Linear.
    """

    def __init__(self, dim: int = 512, heads: int = 8) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.audio_proj = nn.Linear(dim, dim)
        self.visual_proj = nn.Linear(dim, dim)

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        a = audio + self.audio_proj(self.attention(audio, visual, visual, need_weights=False)[0])  # (B, S, C)
        v = visual + self.visual_proj(self.attention(visual, audio, audio, need_weights=False)[0])  # (B, S, C)
        return v.mean(dim=1), a.mean(dim=1)  # (B, C) each
