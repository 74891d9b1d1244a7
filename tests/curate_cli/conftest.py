"""Run ``curate`` in-process against a throwaway data folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from annotation_app.settings import get_settings
from curate_cli.main import run


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh embedded deployment (SQLite + media folder) that ``curate`` sees through EMOTIONS_*."""
    data = tmp_path / "data"
    monkeypatch.setenv("EMOTIONS_DATA_DIR", str(data))
    monkeypatch.delenv("EMOTIONS_DATABASE_URL", raising=False)
    monkeypatch.delenv("EMOTIONS_MEDIA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


@pytest.fixture
def curate(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``curate(*args) -> (exit code, stdout, stderr)``."""

    def _run(*args: str) -> tuple[int, str, str]:
        code = run(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
