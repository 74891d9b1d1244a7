from __future__ import annotations

import math

import torch

from model.loss import EPCELoss


def _ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_ep_ce_equals_hand_computed_values() -> None:
    # classes: 0 positive, 1 neutral, 2 negative, 3 negative; λ differ per polarity to see which is used
    loss = EPCELoss(class_polarity=[0, 1, 2, 2], lambdas=(0.5, 0.25, 1.0))
    logits = [
        [2.0, 0.0, 0.0, 0.0],  # label 0, predicts 0: right polarity, w = 1
        [0.0, 0.0, 3.0, 0.0],  # label 1 (neutral), predicts 2 (negative): w = 1 + 0.25
        [0.0, 0.0, 0.0, 1.0],  # label 2, predicts 3: same polarity (negative), w = 1
        [1.0, 0.0, 0.0, 0.0],  # label 3 (negative), predicts 0 (positive): w = 1 + 1.0
    ]
    targets = [0, 1, 2, 3]
    weights = [1.0, 1.25, 1.0, 2.0]
    expected = sum(w * _ce(z, y) for w, z, y in zip(weights, logits, targets, strict=True)) / 4
    value = loss(torch.tensor(logits), torch.tensor(targets))
    assert math.isclose(float(value), expected, rel_tol=1e-6)


def test_ep_ce_with_zero_lambdas_is_cross_entropy_and_the_weight_has_no_gradient() -> None:
    logits = torch.tensor([[0.3, 1.2, -0.5], [2.0, 0.1, 0.0]], requires_grad=True)
    target = torch.tensor([0, 2])
    ce = EPCELoss([0, 1, 2], (0.0, 0.0, 0.0))(logits, target)
    assert torch.isclose(ce, torch.nn.functional.cross_entropy(logits, target))
    weighted = EPCELoss([0, 1, 2], (0.5, 0.5, 0.5))(logits, target)
    weighted.backward()
    # both samples predicted with the wrong polarity: w = 1.5 everywhere, so the gradient is 1.5 × CE's
    ce_grad = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, target), logits)[0]
    assert torch.allclose(logits.grad, 1.5 * ce_grad)


def test_ep_ce_sample_mask_averages_over_kept_samples() -> None:
    loss = EPCELoss([0, 2], (0.5, 0.5, 0.5))
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 0])
    kept = loss(logits, target, sample_mask=torch.tensor([True, False]))
    assert math.isclose(float(kept), _ce([1.0, 0.0], 0), rel_tol=1e-6)
    assert float(loss(logits, target, sample_mask=torch.tensor([False, False]))) == 0.0
