"""A demo project built once per session with ``curate demo --simulate``, a variant export and a
training run beside it (written in the formats of ``curation.export`` and ``model.train``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from annotation_app.settings import get_settings
from curate_cli.main import run

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "dashboard" / "pages"
DEMO_CLIPS = 12
DEMO_GOLD = max(4, DEMO_CLIPS // 6)  # as curate_cli.demo.build_demo picks them
LABELS = ["Excitation", "Tension", "Fear", "Relaxation", "Sadness", "Neutral"]


@dataclass(frozen=True)
class Demo:
    data_dir: Path
    database_url: str
    exports_dir: Path
    runs_dir: Path


def build_demo_project(data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
    """``curate demo --simulate`` into ``data_dir`` (or the database named in ``extra_env``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOTIONS_DATA_DIR", str(data_dir))
        mp.delenv("EMOTIONS_DATABASE_URL", raising=False)
        for key, value in (extra_env or {}).items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        try:
            code = run(["demo", "--clips", str(DEMO_CLIPS), "--annotators", "2", "--simulate",
                        "--simulated-annotators", "8", "--keep-open", "2"])
        finally:
            get_settings.cache_clear()
    assert code == 0, "curate demo --simulate failed"


def write_export(folder: Path, variant: str, split_counts: dict[str, int]) -> None:
    """A variant export's manifest.csv and build_info.json (the columns ARCHITECTURE.md fixes)."""
    folder = folder / variant
    folder.mkdir(parents=True)
    header = ("clip_id,media_path,label,label_index,polarity,split,confidence,n_judgements,resolving_stage,"
              "platform,uploader_hash,duration_s,has_audio")
    lines, clip = [header], 0
    for split, n in split_counts.items():
        for i in range(n):
            label = LABELS[i % len(LABELS)]
            clip += 1
            lines.append(f"{clip},{split}/{label}/{clip}.mp4,{label},{LABELS.index(label)},positive,{split},0.8,5,1,"
                         f"douyin,abc123,3.0,True")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    (folder / "build_info.json").write_text(json.dumps({"recipe": {"name": variant}, "seed": 0, "n_clips": clip,
                                                        "built_at": "2026-11-20T10:00:00+00:00"}))


def write_run(folder: Path, name: str, epochs: int) -> None:
    """A training run as ``model.train.main`` leaves it: metrics.jsonl per epoch and test/metrics.json."""
    run_dir = folder / name
    (run_dir / "test").mkdir(parents=True)
    with (run_dir / "metrics.jsonl").open("w") as log:
        for epoch in range(epochs):
            log.write(json.dumps({"epoch": epoch, "lr": 1e-4, "train_loss": 1.8 - 0.2 * epoch, "train_top1": 0.3 + 0.1 * epoch,
                                  "val_loss": 1.9 - 0.1 * epoch,
                                  "val_top1": 0.2 + 0.1 * epoch, "val_uar": 0.2 + 0.05 * epoch, "seconds": 3.5,
                                  "best_epoch": epoch}) + "\n")
        log.write('{"epoch": 99, "lo')  # a run still writing: a cut line must be skipped
    # The evaluation as model.train.evaluate_checkpoint writes it, from model.metrics (numpy only):
    # two test clips per label, all right but one Excitation clip taken for Tension.
    from model.metrics import classification_metrics, plot_confusion

    truth = [k for k in range(len(LABELS)) for _ in range(2)]
    predicted = [1 if i == 0 else k for i, k in enumerate(truth)]
    metrics = classification_metrics(truth, predicted, LABELS)
    (run_dir / "test" / "metrics.json").write_text(json.dumps(
        {"split": "test", "checkpoint": str(run_dir / "best.pt"), "epoch": epochs - 1, **metrics}))
    plot_confusion(metrics["confusion"], LABELS, run_dir / "test" / "confusion.png", title="test")


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    data_dir = tmp_path_factory.mktemp("dashboard-demo")
    build_demo_project(data_dir)
    exports, runs = data_dir / "exports", data_dir / "runs"
    write_export(exports, "full", {"train": 5, "validation": 2, "test": 2})
    write_export(exports, "balanced", {"train": 4, "validation": 1, "test": 1})
    write_run(runs, "run-a", epochs=3)
    return Demo(data_dir, f"sqlite:///{(data_dir / 'emotions.sqlite3').resolve()}", exports, runs)


@pytest.fixture
def dashboard_env(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """The dashboard's environment pointing at the demo; Streamlit's caches emptied around each test."""
    import streamlit as st

    monkeypatch.setenv("EMOTIONS_DATA_DIR", str(demo.data_dir))
    monkeypatch.delenv("EMOTIONS_DATABASE_URL", raising=False)
    monkeypatch.setenv("EMOTIONS_DASHBOARD_PROJECT", "demo")
    monkeypatch.setenv("EMOTIONS_DASHBOARD_N_BOOT", "100")
    for name in ("EMOTIONS_DASHBOARD_EXPORTS", "EMOTIONS_DASHBOARD_RUNS"):
        monkeypatch.delenv(name, raising=False)
    st.cache_data.clear()
    yield demo
    st.cache_data.clear()

