"""bench/bench_queue_history.py runs and measures what it says (its timings are not judged here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_queue_history.py"


def test_the_history_benchmark_reads_the_seeded_history(empty_pg_url: str, tmp_path: Path) -> None:
    # empty_pg_url: PostgreSQL answers (or the test is skipped, or fails under CI); the benchmark
    # makes its own throwaway databases beside it.
    spec = importlib.util.spec_from_file_location("bench_queue_history", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "history.json"
    rows = bench.main(["--histories", "40", "--layouts", "closed", "open", "--calls", "5", "--json", str(out)])
    assert [(r["layout"], r["history"]) for r in rows] == [("closed", 0), ("closed", 40), ("open", 0), ("open", 40)]
    for r in rows:
        # next-clip's state counted exactly the seeded past slots and judgements ...
        assert (r["served_total"], r["done_total"]) == (r["history"], r["history"])
        # ... and its window still found a full window of clips the annotator never had.
        assert r["candidates_found"] == 16
        assert r["state_ms"] > 0 and r["candidates_ms"] > 0 and r["state_and_window_ms"] > 0
    assert [r["ratio_to_h0"] for r in rows if r["history"] == 0] == [1.0, 1.0]
    assert json.loads(out.read_text())["rows"] == rows
