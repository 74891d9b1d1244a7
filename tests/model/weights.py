"""Non-trivial float64 weights for the model's wiring tests.

PyTorch zero-initialises biases and gives gates and attention small, symmetric weights; a swapped
bias or a bypassed gate can hide behind them. These weights are random everywhere, seeded.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["random_weights"]


def random_weights(module: nn.Module, seed: int = 1) -> nn.Module:
    """``module`` in float64 and evaluation mode, every parameter drawn afresh (scaled by its fan-in)."""
    module = module.double().eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            scale = 0.5 / max(1, parameter.shape[-1]) ** 0.5
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            offset = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.copy_(noise * scale + 0.02 * offset)
    return module
