"""Training under torchrun: two CPU processes (gloo) with DDP and a distributed sampler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Each rank writes its own summary file: two ranks printing to one pipe can interleave their lines.
SCRIPT = """
import json, os, sys
from pathlib import Path
from model.train import TrainConfig, main
summary = main(TrainConfig.tiny(export=sys.argv[1], out=sys.argv[2], epochs=2, batch_size=2))
Path(sys.argv[3], "summary-rank" + os.environ["RANK"] + ".json").write_text(
    json.dumps({"best_epoch": summary["best_epoch"], "has_test": "test" in summary}))
"""


@pytest.mark.slow
def test_torchrun_with_two_processes_trains_and_rank_zero_writes(tiny_export: Path, tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(tiny_export), str(run), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("summary-rank*.json"))]
    assert len(summaries) == 2  # both ranks finish; only rank 0 evaluates the test split
    assert sorted(s["has_test"] for s in summaries) == [False, True]
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0, 1]  # one log line per epoch, from rank 0 alone
    assert epochs[0]["train_order"] != epochs[1]["train_order"]  # the distributed sampler reshuffles per epoch
    assert (run / "best.pt").is_file() and (run / "test" / "metrics.json").is_file()
