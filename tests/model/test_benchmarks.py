"""The model benchmarks run (bench/ is not timed in tests; these check they work and what they count)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_training_benchmark_runs_on_cpu_with_the_tiny_preset(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    result = _load("bench_gpu_train").main(["--device", "cpu", "--preset", "tiny", "--steps", "2", "--json", str(out)])
    stored = json.loads(out.read_text())
    assert stored["train_samples_per_s"] > 0 and stored["eval_samples_per_s"] > 0
    assert result["preset"] == "tiny" and result["batch_size"] == 4 and result["train_peak_memory_gib"] is None


def test_model_cost_of_the_full_preset_matches_the_specification(tmp_path: Path) -> None:
    result = _load("bench_model_cost").main(["--preset", "full", "--json", str(tmp_path / "cost.json")])
    # the specification measured ≈ 82 GMACs for the 16 Swin segments and ≈ 19 for the audio branch
    assert result["parts"]["visual"]["gmacs"] == pytest.approx(82, rel=0.02)
    assert result["parts"]["audio"]["gmacs"] == pytest.approx(19, rel=0.05)
    assert result["gmacs_per_clip"] == pytest.approx(101, rel=0.02)
    backbones = result["parts"]["visual"]["parameters_m"] + result["parts"]["audio"]["parameters_m"]
    assert backbones == pytest.approx(50, rel=0.02)
