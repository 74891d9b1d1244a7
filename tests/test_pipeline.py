"""The whole data flow on CPU: demo with simulated labels → variants → feature cache → training → evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from annotation_app.settings import get_settings
from curate_cli.main import run


@pytest.mark.slow
def test_demo_to_trained_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTIONS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EMOTIONS_DATABASE_URL", raising=False)
    monkeypatch.delenv("EMOTIONS_MEDIA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        assert run(["demo", "--clips", "60", "--simulate", "--simulated-annotators", "12",
                    "--keep-open", "0", "--seed", "3"]) == 0
        exports = tmp_path / "exports"
        assert run(["build-variants", "--out", str(exports), "--variant", "full", "--seed", "1"]) == 0
        full = exports / "full"
        manifest = pd.read_csv(full / "manifest.csv")
        assert len(manifest) >= 30 and set(manifest["split"]) == {"train", "validation", "test"}
        assert all((full / p).is_file() for p in manifest["media_path"])

        cache = tmp_path / "cache"
        assert run(["prepare-features", str(full), "--out", str(cache), "--preset", "tiny", "--workers", "1"]) == 0
        runs = tmp_path / "run"
        assert run(["train-baseline", "--export", str(full), "--out", str(runs), "--preset", "tiny",
                    "--epochs", "2", "--device", "cpu", "--cache", str(cache), "--workers", "0"]) == 0
        epochs = [json.loads(line) for line in (runs / "metrics.jsonl").read_text().splitlines() if line.strip()]
        assert len([e for e in epochs if "epoch" in e]) >= 2
        checkpoint = runs / "best.pt"
        assert checkpoint.is_file()

        report = tmp_path / "eval"
        assert run(["evaluate", "--checkpoint", str(checkpoint), "--export", str(full), "--out", str(report),
                    "--split", "test", "--cache", str(cache), "--device", "cpu"]) == 0
        metrics = json.loads((report / "metrics.json").read_text())
        for key in ("top1", "uar", "macro_f1", "weighted_f1"):
            assert 0.0 <= metrics[key] <= 1.0, key
        predictions = pd.read_csv(next(report.glob("*.csv")))
        assert len(predictions) == (manifest["split"] == "test").sum()
        assert (report / "confusion.png").stat().st_size > 1000
    finally:
        get_settings.cache_clear()
