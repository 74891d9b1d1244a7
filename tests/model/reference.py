"""An independent, plainly written AV-CPNet fusion and head, straight from ``shared/reference/avcpnet.md``.

Everything here is written from the specification (and the authors' choices ``model.fusion``
follows where it is silent), as functions over a dict of named tensors: it does not call any
module of ``model`` (nor ``nn.MultiheadAttention``, ``nn.LayerNorm`` or ``nn.Conv1d``), only
tensor arithmetic. The tests load the module's own weights into it by parameter name and compare.
Dropout is off (evaluation), so it takes no dropout arguments.

Shapes: B batch, S segments, C channels, L levels, K classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

Params = Mapping[str, Tensor]


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    y = x @ weight.transpose(0, 1)
    return y if bias is None else y + bias


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


def attention(query: Tensor, context: Tensor, p: Params, prefix: str, heads: int, window: int | None = None) -> Tensor:
    """Multi-head scaled dot-product attention of ``query`` (B, S, C) over ``context`` (B, S', C).

    The projections are the rows of ``in_proj_weight`` (queries, keys, values) and ``out_proj``.
    With ``window``, query t sees only the context positions s with |t - s| <= window.
    """
    w, b = p[f"{prefix}in_proj_weight"], p[f"{prefix}in_proj_bias"]
    dim = query.shape[-1]
    q = linear(query, w[:dim], b[:dim])
    k = linear(context, w[dim : 2 * dim], b[dim : 2 * dim])
    v = linear(context, w[2 * dim :], b[2 * dim :])
    batch, n_query, _ = q.shape
    n_context = k.shape[1]
    width = dim // heads

    def split(x: Tensor, n: int) -> Tensor:  # (B, n, C) -> (B, heads, n, C / heads)
        return x.reshape(batch, n, heads, width).permute(0, 2, 1, 3)

    scores = split(q, n_query) @ split(k, n_context).transpose(-1, -2) / math.sqrt(width)  # (B, h, S, S')
    if window is not None:
        t = torch.arange(n_query)[:, None]
        s = torch.arange(n_context)[None, :]
        scores = scores.masked_fill((t - s).abs() > window, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    mixed = (weights @ split(v, n_context)).permute(0, 2, 1, 3).reshape(batch, n_query, dim)  # (B, S, C)
    return linear(mixed, p[f"{prefix}out_proj.weight"], p[f"{prefix}out_proj.bias"])


def transformer_layer(query: Tensor, context: Tensor, p: Params, prefix: str, heads: int, window: int) -> Tensor:
    """Pre-norm layer: x = q + Attn(LN(q), context); x + FFN(LN(x)), FFN = Linear, ReLU, Linear.

    Keys and values are the raw context (no normalisation), as in the authors' code.
    """
    x = query + attention(layer_norm(query, p[f"{prefix}norm_q.weight"], p[f"{prefix}norm_q.bias"]), context, p,
                          f"{prefix}attn.", heads, window)
    hidden = layer_norm(x, p[f"{prefix}norm_ff.weight"], p[f"{prefix}norm_ff.bias"])
    hidden = torch.relu(linear(hidden, p[f"{prefix}ff.0.weight"], p[f"{prefix}ff.0.bias"]))
    return x + linear(hidden, p[f"{prefix}ff.3.weight"], p[f"{prefix}ff.3.bias"])


def gated_merge(own: Tensor, cross: Tensor, p: Params, prefix: str) -> Tensor:
    """g1 ⊙ self + g2 ⊙ cross, each gate a sigmoid of a Linear over [self; cross]."""
    both = torch.cat([own, cross], dim=-1)
    g1 = torch.sigmoid(linear(both, p[f"{prefix}gate_self.weight"], p[f"{prefix}gate_self.bias"]))
    g2 = torch.sigmoid(linear(both, p[f"{prefix}gate_cross.weight"], p[f"{prefix}gate_cross.bias"]))
    return g1 * own + g2 * cross


def dilated_conv(x: Tensor, weight: Tensor, bias: Tensor, dilation: int) -> Tensor:
    """y_t = Σ_j W[:, :, j] x_{t + (j - 1) d} + b over segments, zero outside (kernel 3, 'same' length)."""
    segments = x.shape[1]
    y = torch.zeros_like(x) + bias
    for tap in range(weight.shape[2]):
        shift = (tap - 1) * dilation
        shifted = torch.zeros_like(x)
        for t in range(segments):
            if 0 <= t + shift < segments:
                shifted[:, t] = x[:, t + shift]
        y = y + shifted @ weight[:, :, tap].transpose(0, 1)
    return y


def temporal_block(x: Tensor, p: Params, prefix: str, dilation: int) -> Tensor:
    """ReLU(x + Conv1x1(ReLU(DilatedConv(x))))."""
    y = torch.relu(dilated_conv(x, p[f"{prefix}dilated.weight"], p[f"{prefix}dilated.bias"], dilation))
    y = linear(y, p[f"{prefix}pointwise.weight"][:, :, 0], p[f"{prefix}pointwise.bias"])
    return torch.relu(x + y)


def local_level(visual: Tensor, audio: Tensor, p: Params, prefix: str, heads: int, dilation: int) -> tuple[Tensor, Tensor]:
    """One pyramid level: band self-attention per modality, the shared cross layer both ways, gates, temporal."""
    v_self = transformer_layer(visual, visual, p, f"{prefix}visual_self.", heads, dilation)
    a_self = transformer_layer(audio, audio, p, f"{prefix}audio_self.", heads, dilation)
    v_cross = transformer_layer(visual, audio, p, f"{prefix}cross.", heads, dilation)  # V attends to A
    a_cross = transformer_layer(audio, visual, p, f"{prefix}cross.", heads, dilation)  # A attends to V
    v = gated_merge(v_self, v_cross, p, f"{prefix}visual_merge.")
    a = gated_merge(a_self, a_cross, p, f"{prefix}audio_merge.")
    return temporal_block(v, p, f"{prefix}visual_temporal.", dilation), temporal_block(a, p, f"{prefix}audio_temporal.", dilation)


def level_weighting(visual_levels: Sequence[Tensor], audio_levels: Sequence[Tensor], p: Params, prefix: str) -> tuple[Tensor, Tensor]:
    """Per segment: a sigmoid score per level, exchanged through a 1-dim one-head attention, then Σ_l w_l X_l.

    Written for one segment of one clip at a time, as plainly as the description reads.
    """
    batch, segments, _ = visual_levels[0].shape
    levels = len(visual_levels)
    visual = torch.zeros_like(visual_levels[0])
    audio = torch.zeros_like(audio_levels[0])
    w_in, b_in = p[f"{prefix}exchange.in_proj_weight"], p[f"{prefix}exchange.in_proj_bias"]  # (3, 1), (3,)
    w_out, b_out = p[f"{prefix}exchange.out_proj.weight"], p[f"{prefix}exchange.out_proj.bias"]  # (1, 1), (1,)

    def exchange(own: list[Tensor], other: list[Tensor]) -> list[Tensor]:
        # queries from this modality's level scores, keys and values from the other's; one head of width 1
        out = []
        for i in range(levels):
            q = w_in[0, 0] * own[i] + b_in[0]
            keys = [w_in[1, 0] * other[j] + b_in[1] for j in range(levels)]
            values = [w_in[2, 0] * other[j] + b_in[2] for j in range(levels)]
            weights = torch.softmax(torch.stack([q * k for k in keys]), dim=0)  # over levels; scale 1/sqrt(1)
            out.append(w_out[0, 0] * sum(weights[j] * values[j] for j in range(levels)) + b_out[0])
        return out

    for b in range(batch):
        for s in range(segments):
            v_scores = [torch.sigmoid(linear(visual_levels[i][b, s], p[f"{prefix}visual_score.weight"],
                                             p[f"{prefix}visual_score.bias"]))[0] for i in range(levels)]
            a_scores = [torch.sigmoid(linear(audio_levels[i][b, s], p[f"{prefix}audio_score.weight"],
                                             p[f"{prefix}audio_score.bias"]))[0] for i in range(levels)]
            v_weights = exchange(v_scores, a_scores)
            a_weights = exchange(a_scores, v_scores)
            visual[b, s] = sum(v_weights[i] * visual_levels[i][b, s] for i in range(levels))
            audio[b, s] = sum(a_weights[i] * audio_levels[i][b, s] for i in range(levels))
    return visual, audio


def local_stage(visual: Tensor, audio: Tensor, p: Params, prefix: str, heads: int, dilations: Sequence[int]) -> tuple[Tensor, Tensor]:
    visual_levels, audio_levels = [], []
    for i, dilation in enumerate(dilations):
        visual, audio = local_level(visual, audio, p, f"{prefix}levels.{i}.", heads, dilation)
        visual_levels.append(visual)
        audio_levels.append(audio)
    return level_weighting(visual_levels, audio_levels, p, f"{prefix}weighting.")


def global_stage(visual: Tensor, audio: Tensor, p: Params, prefix: str, heads: int) -> tuple[Tensor, Tensor]:
    """A queries V and V queries A with the one shared attention, each Linear + residual; mean over S."""
    a = audio + linear(attention(audio, visual, p, f"{prefix}attention.", heads), p[f"{prefix}audio_proj.weight"],
                       p[f"{prefix}audio_proj.bias"])
    v = visual + linear(attention(visual, audio, p, f"{prefix}attention.", heads), p[f"{prefix}visual_proj.weight"],
                        p[f"{prefix}visual_proj.bias"])
    return v.mean(dim=1), a.mean(dim=1)


def head(v: Tensor, a: Tensor, p: Params, prefix: str = "head.") -> tuple[Tensor, Tensor, Tensor]:
    """logits = W [a; v] + b; z_a = W[:, :C] a + b / 2; z_v = W[:, C:] v + b / 2. Returns (z, z_v, z_a)."""
    weight, bias = p[f"{prefix}weight"], p[f"{prefix}bias"]
    dim = a.shape[-1]
    logits = torch.cat([a, v], dim=-1) @ weight.T + bias
    z_a = a @ weight[:, :dim].T + bias / 2
    z_v = v @ weight[:, dim:].T + bias / 2
    return logits, z_v, z_a


def fusion_and_head(
    visual: Tensor, audio: Tensor, p: Params, *, heads: int, global_heads: int, dilations: Sequence[int],
    local: bool = True, global_: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Branch features V, A (B, S, C) -> (z, z_v, z_a), with the module's parameter names."""
    if local:
        visual, audio = local_stage(visual, audio, p, "local.", heads, dilations)
    if global_:
        v, a = global_stage(visual, audio, p, "global_.", global_heads)
    else:
        v, a = visual.mean(dim=1), audio.mean(dim=1)
    return head(v, a, p)


def ep_ce(logits: Tensor, target: Sequence[int], polarity: Sequence[int], lambdas: Sequence[float],
          kept: Sequence[bool] | None = None) -> Tensor:
    """mean_i w_i CE(z_i, y_i), w_i = 1 + λ_{P(y_i)} [P(argmax z_i) != P(y_i)] (a constant), over kept samples."""
    terms = []
    for i, y in enumerate(target):
        if kept is not None and not kept[i]:
            continue
        z = logits[i]
        ce = torch.logsumexp(z, dim=0) - z[y]
        predicted = int(torch.argmax(z.detach()))
        weight = 1.0 + (lambdas[polarity[y]] if polarity[predicted] != polarity[y] else 0.0)
        terms.append(weight * ce)
    if not terms:
        return logits.sum() * 0.0
    return sum(terms) / len(terms)


def objective(z: Tensor, z_v: Tensor, z_a: Tensor, target: Sequence[int], polarity: Sequence[int],
              lambdas: Sequence[float], has_audio: Sequence[bool]) -> Tensor:
    """EP-CE(z) + EP-CE(z_v) + EP-CE(z_a), the audio head over clips with audio only."""
    return (ep_ce(z, target, polarity, lambdas) + ep_ce(z_v, target, polarity, lambdas)
            + ep_ce(z_a, target, polarity, lambdas, kept=has_audio))
