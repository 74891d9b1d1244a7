"""Training checkpoints: plain dicts of tensors and primitives, loadable with ``weights_only=True``.

Keys: ``model`` (state dict), ``optimizer``, ``scheduler``, ``scheduler_epoch``, ``epoch`` (the last
finished, 0-based), ``config`` (the training configuration), ``model_config``, ``labels``
(``labels.json`` rows) and ``best_metric``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from model.visual import CheckpointMismatchError, load_weights_only

__all__ = ["REQUIRED_KEYS", "load_checkpoint", "save_checkpoint"]

REQUIRED_KEYS: tuple[str, ...] = ("model", "epoch", "config", "model_config", "labels")


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically (temporary file, then rename), so an interrupted save leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint of this package onto the CPU, with ``weights_only=True``."""
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise CheckpointMismatchError(
            f"{path} is not an AV-CPNet training checkpoint (it needs the keys {', '.join(REQUIRED_KEYS)})"
        )
    return checkpoint
