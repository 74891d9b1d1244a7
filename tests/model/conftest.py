"""Fixtures of the model tests: a tiny real export (FFmpeg-made clips) shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.media import make_export


@pytest.fixture(scope="session", autouse=True)
def _model_tests_use_one_torch_thread(one_torch_thread: None) -> None:
    """Every model test runs with tests/conftest.py's one intra-op thread."""


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes (Excitation, Neutral, Sadness) × (2 train, 1 validation, 1 test) two-second clips."""
    return make_export(tmp_path_factory.mktemp("export") / "export")
