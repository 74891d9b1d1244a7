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
    rows = result["rows"]
    # the specification measured ≈ 82 GMACs for the 16 Swin segments and ≈ 19 for the audio branch
    assert rows["visual"]["gmacs"] == pytest.approx(82, rel=0.02)
    assert rows["audio"]["gmacs"] == pytest.approx(19, rel=0.05)
    assert result["gmacs_per_clip"] == pytest.approx(101, rel=0.02)
    assert sum(row["gmacs"] for row in rows.values()) == pytest.approx(result["gmacs_per_clip"], rel=1e-6)
    assert rows["visual"]["parameters_m"] + rows["audio"]["parameters_m"] == pytest.approx(49.8, rel=0.01)
    # a level, counted by hand: three Transformer layers (attention 4C²+4C, FFN 2·C·1024 + 1024 + C, two
    # LayerNorms), four gates (2C·C + C) and two temporal blocks (3C² + C, then C² + C)
    c, ff = 512, 1024
    layer = 4 * c * c + 4 * c + 2 * c * ff + ff + c + 2 * 2 * c
    level = 3 * layer + 4 * (2 * c * c + c) + 2 * (3 * c * c + c + c * c + c)
    assert rows["local level 0 (d=1)"]["parameters_m"] * 1e6 == pytest.approx(level, abs=1)
    assert rows["global"]["parameters_m"] == pytest.approx(1.5, rel=0.06)  # the spec's ≈ 1.5 M: one attention
    assert result["parameters_m"] == pytest.approx(82.9, abs=0.05)
    # unshared (a cross layer per direction, two global attentions): the spec's ≈ 38 M local, ≈ 90 M in all
    extra = result["unshared_extra_parameters_m"]
    assert extra == pytest.approx(3 * layer / 1e6 + (4 * c * c + 4 * c) / 1e6, rel=1e-6)
    assert result["local_parameters_m"] + 3 * layer / 1e6 == pytest.approx(38, rel=0.01)
    assert result["parameters_m"] + extra == pytest.approx(90, rel=0.01)
