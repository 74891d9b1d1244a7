"""Errors raised by the AV-CPNet baseline package."""

from __future__ import annotations

__all__ = ["ModelError"]


class ModelError(Exception):
    """Base class of every error the model package raises on purpose."""

    exit_code: int = 1
