"""The two-stage cross-modal fusion of AV-CPNet.

Stage one (local): a pyramid of levels; at level i, band-masked self- and cross-attention
(|t - s| <= d_i over segment positions), a gated merge of the two per modality, and a dilated
residual temporal block; the level outputs are combined with per-level weights. Stage two (global):
full bidirectional cross-attention, then the mean over segments.

Two designs, chosen by ``design``:

- ``"faithful"`` (the default) follows the authors' released code where the specification is silent:
  one cross-attention layer per level serves both directions (V attends to A and A to V with the
  same weights), the Transformer layers use ReLU and dropout on the residual branches and inside the
  feed-forward block and do not normalise keys/values, the levels are weighted per segment (a
  sigmoid score per level and segment, exchanged between the modalities by a 1-dim one-head
  attention across levels, no softmax), and one attention module serves both global directions.
- ``"v0"`` is this package's first reading of the specification (kept for the ablation in
  ``bench/bench_model_learnability.py``): a cross-attention layer per direction, GELU, no
  dropout, normalised keys/values, per-clip level weights from segment means with a softmax, and
  two global attention modules.

All sequences are (B, S, C): batch, segments, channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from model.errors import ModelError

__all__ = [
    "DESIGNS",
    "BandAttentionLayer",
    "GatedMerge",
    "GlobalFusion",
    "LevelWeighting",
    "LocalFusion",
    "LocalFusionLevel",
    "TemporalBlock",
    "band_mask",
]

DESIGNS = ("faithful", "v0")


def _check_design(design: str) -> None:
    if design not in DESIGNS:
        raise ModelError(f"fusion design must be one of {', '.join(DESIGNS)}, not {design!r}")


def band_mask(segments: int, window: int, device: torch.device | None = None) -> Tensor:
    """(S, S) bool mask, True where attention is forbidden (|t - s| > window), as MultiheadAttention wants."""
    positions = torch.arange(segments, device=device)
    return (positions[:, None] - positions[None, :]).abs() > window


class BandAttentionLayer(nn.Module):
    """Pre-norm Transformer layer whose queries attend to a (possibly other) sequence within a band.

    ``x = q + drop(attn(norm(q), kv, kv)); x = x + drop(ff(norm(x)))`` with ``ff`` = Linear,
    activation, dropout, Linear. ``normalise_context`` also normalises ``kv`` (the ``v0`` design);
    the authors attend to the raw context.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ff_dim: int,
        attention_dropout: float,
        window: int,
        *,
        dropout: float = 0.5,
        activation: str = "relu",
        normalise_context: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ModelError(f"activation must be relu or gelu, not {activation!r}")
        self.window = window
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if normalise_context else None
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attention_dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_dim),
            nn.ReLU() if activation == "relu" else nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ff_dim, dim),
        )

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        mask = band_mask(query.shape[1], self.window, query.device)  # (S, S)
        kv = self.norm_kv(context) if self.norm_kv is not None else context  # (B, S, C)
        attended = self.attn(self.norm_q(query), kv, kv, attn_mask=mask, need_weights=False)[0]  # (B, S, C)
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

    ``faithful``: ``cross`` is one layer used in both directions (its queries come from the
    modality being updated). ``v0``: ``visual_cross`` and ``audio_cross``, one per direction.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ff_dim: int,
        attention_dropout: float,
        dilation: int,
        *,
        design: str = "faithful",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_design(design)
        faithful = design == "faithful"
        options = dict(
            dropout=dropout if faithful else 0.0,
            activation="relu" if faithful else "gelu",
            normalise_context=not faithful,
        )

        def layer() -> BandAttentionLayer:
            return BandAttentionLayer(dim, heads, ff_dim, attention_dropout, dilation, **options)

        self.visual_self = layer()
        self.audio_self = layer()
        if faithful:
            self.cross = layer()
        else:
            self.visual_cross = layer()  # visual queries attend to audio
            self.audio_cross = layer()  # audio queries attend to visual
        self.visual_merge = GatedMerge(dim)
        self.audio_merge = GatedMerge(dim)
        self.visual_temporal = TemporalBlock(dim, dilation)
        self.audio_temporal = TemporalBlock(dim, dilation)

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        if hasattr(self, "cross"):
            visual_cross, audio_cross = self.cross(visual, audio), self.cross(audio, visual)  # (B, S, C) each
        else:
            visual_cross, audio_cross = self.visual_cross(visual, audio), self.audio_cross(audio, visual)
        v = self.visual_merge(self.visual_self(visual, visual), visual_cross)  # (B, S, C)
        a = self.audio_merge(self.audio_self(audio, audio), audio_cross)  # (B, S, C)
        return self.visual_temporal(v), self.audio_temporal(a)


class LevelWeighting(nn.Module):
    """Weighted sum of the L level outputs of each modality.

    ``faithful`` (per segment): each level and segment gets a sigmoid score from a Linear C -> 1;
    per segment, the L visual scores attend to the L audio scores (and the audio ones to the visual
    ones) through one shared 1-dim one-head attention across levels, and its outputs weight the
    levels directly (no softmax), as in the authors' code.

    ``v0`` (per clip): the scores come from each level's segment mean; the two modalities' (B, L)
    score vectors are two tokens of a one-head attention over L channels (residual), and a softmax
    over levels makes the weights.
    """

    def __init__(self, dim: int, levels: int, *, design: str = "faithful") -> None:
        super().__init__()
        _check_design(design)
        self.design = design
        self.visual_score = nn.Linear(dim, 1)
        self.audio_score = nn.Linear(dim, 1)
        self.exchange = nn.MultiheadAttention(1 if design == "faithful" else levels, 1, batch_first=True)

    def forward(self, visual_levels: Tensor, audio_levels: Tensor) -> tuple[Tensor, Tensor]:
        # *_levels: (B, L, S, C)
        if self.design == "faithful":
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
        *,
        design: str = "faithful",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ModelError(f"the local stage needs at least one level and dilations >= 1, not {list(dilations)}")
        self.levels = nn.ModuleList(
            LocalFusionLevel(dim, heads, ff_dim, attention_dropout, int(dilation), design=design, dropout=dropout)
            for dilation in dilations
        )
        self.weighting = LevelWeighting(dim, len(self.levels), design=design)

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        visual_levels, audio_levels = [], []
        for level in self.levels:
            visual, audio = level(visual, audio)  # each (B, S, C); the next level refines this one
            visual_levels.append(visual)
            audio_levels.append(audio)
        return self.weighting(torch.stack(visual_levels, dim=1), torch.stack(audio_levels, dim=1))


class GlobalFusion(nn.Module):
    """Stage two: A queries V and V queries A over all segments, Linear + residual, then mean over S.

    ``faithful``: one attention module serves both directions (the authors share it); ``v0``: one
    per direction. Each direction keeps its own Linear.
    """

    def __init__(self, dim: int = 512, heads: int = 8, *, design: str = "faithful") -> None:
        super().__init__()
        _check_design(design)
        if design == "faithful":
            self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        else:
            self.audio_queries_visual = nn.MultiheadAttention(dim, heads, batch_first=True)
            self.visual_queries_audio = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.audio_proj = nn.Linear(dim, dim)
        self.visual_proj = nn.Linear(dim, dim)

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        if hasattr(self, "attention"):
            audio_attends = visual_attends = self.attention
        else:
            audio_attends, visual_attends = self.audio_queries_visual, self.visual_queries_audio
        a = audio + self.audio_proj(audio_attends(audio, visual, visual, need_weights=False)[0])  # (B, S, C)
        v = visual + self.visual_proj(visual_attends(visual, audio, audio, need_weights=False)[0])  # (B, S, C)
        return v.mean(dim=1), a.mean(dim=1)  # (B, C) each
