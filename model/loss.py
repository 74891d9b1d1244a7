"""EP-CE: cross-entropy weighted up when the prediction has the wrong emotion polarity.

For sample i with label y_i and prediction ŷ_i = argmax z_i,
``w_i = 1 + λ_{P(y_i)} · [P(ŷ_i) ≠ P(y_i)]`` and ``EP-CE = mean_i w_i · CE(z_i, y_i)``; w_i is a
constant (no gradient flows through the argmax). With every λ = 0 it is plain cross-entropy.

>>> import torch
>>> loss = EPCELoss(class_polarity=[0, 2], lambdas=(0.5, 0.5, 0.5))
>>> logits = torch.tensor([[0.0, 1.0]])  # predicts class 1 (negative) for a positive clip
>>> bool(torch.isclose(loss(logits, torch.tensor([0])), 1.5 * torch.nn.functional.cross_entropy(logits, torch.tensor([0]))))
True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.errors import ModelError

__all__ = ["EPCELoss", "ep_ce"]


def ep_ce(
    logits: Tensor,
    target: Tensor,
    class_polarity: Tensor,
    lambdas: Tensor,
    sample_mask: Tensor | None = None,
) -> Tensor:
    """EP-CE of (N, K) logits against (N,) targets; ``class_polarity`` (K,) holds indices into ``lambdas`` (3,).

    ``sample_mask`` (N,) bool keeps only some samples (e.g. clips with audio for the audio head);
    with no sample kept the loss is a zero that still carries the graph.
    """
    # bf16/fp16 logits (autocast) are raised to float32 for the log-softmax; float64 stays float64.
    ce = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), target, reduction="none")  # (N,)
    with torch.no_grad():
        true_polarity = class_polarity[target]  # (N,)
        wrong_polarity = class_polarity[logits.argmax(dim=-1)] != true_polarity  # (N,)
        weight = 1.0 + lambdas.to(ce.dtype)[true_polarity] * wrong_polarity.to(ce.dtype)  # (N,)
    weighted = weight * ce
    if sample_mask is not None:
        kept = sample_mask.to(weighted.dtype)
        return (weighted * kept).sum() / kept.sum().clamp(min=1.0)
    return weighted.mean()


class EPCELoss(nn.Module):
    """EP-CE with one λ per polarity (positive, neutral, negative); see :func:`ep_ce`."""

    def __init__(self, class_polarity: Sequence[int], lambdas: Sequence[float] = (0.5, 0.5, 0.5)) -> None:
        super().__init__()
        if len(lambdas) != 3:
            raise ModelError(f"EP-CE needs three λ (positive, neutral, negative), got {len(lambdas)}")
        if any(p not in (0, 1, 2) for p in class_polarity):
            raise ModelError("class polarities must be 0 (positive), 1 (neutral) or 2 (negative)")
        self.register_buffer("class_polarity", torch.tensor(list(class_polarity), dtype=torch.long), persistent=False)
        # float64 so λ keeps its decimal value; it is cast to the loss's dtype where it is used
        self.register_buffer("lambdas", torch.tensor(list(lambdas), dtype=torch.float64), persistent=False)

    def forward(self, logits: Tensor, target: Tensor, sample_mask: Tensor | None = None) -> Tensor:
        return ep_ce(logits, target, self.class_polarity, self.lambdas, sample_mask)
