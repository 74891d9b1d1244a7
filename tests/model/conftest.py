"""Fixtures of the model tests: a tiny real export (FFmpeg-made clips) shared by the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.model.media import make_export


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared, busy machine: one intra-op thread avoids OpenMP spinning (30x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes (Excitation, Neutral, Sadness) × (2 train, 1 validation, 1 test) two-second clips."""
    return make_export(tmp_path_factory.mktemp("export") / "export")
