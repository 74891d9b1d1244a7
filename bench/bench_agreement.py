"""Benchmark: Krippendorff's α + Dawid–Skene at eMotions scale and at the next scale, beside crowd-kit.

    .venv/bin/python bench/bench_agreement.py                  # 28k × 7 and 1M × 5
    .venv/bin/python bench/bench_agreement.py --cases 28k      # one case
    .venv/bin/python bench/bench_agreement.py --no-crowdkit    # ours only

Each (case, implementation) runs in a fresh subprocess, so peak memory (``ru_maxrss``: the whole
process, interpreter and data included) belongs to that run alone. The data are synthetic but shaped
like eMotions: six labels with its skewed prior, annotators with their own confusion matrices
(mostly right, mistakes leaning to labels of the same polarity), k judgements per clip from a pool.

"End to end" (ours) = validate the table + α (nominal, from value counts) + Dawid–Skene; the
bootstrap interval of α is timed apart (peak memory covers it too).
crowd-kit's ``DawidSkene`` (the ``bench`` extra) runs on the same table with the same settings
(100 iterations at most, tol 1e-5); the labels are compared clip by clip (ties → first label,
crowd-kit's rule, on both sides). Targets on our 2-core machines: 28k end to end ≤ 3 s; 1M ≤ 60 s
and ≤ 4 GB; ours ≥ 5× faster than crowd-kit. Results print as a table and go to
bench/results/bench_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CASES: dict[str, dict[str, int]] = {
    "28k": {"n_clips": 28_000, "per_clip": 7, "n_annotators": 150},
    "1M": {"n_clips": 1_000_000, "per_clip": 5, "n_annotators": 3_000},
}
# eMotions' label order with a skewed prior (more Neutral / Relaxation than Fear) and polarities.
LABELS = ["Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension"]
PRIOR = np.array([0.16, 0.08, 0.26, 0.22, 0.14, 0.14])
POLARITY = np.array([1, -1, 0, 1, -1, -1])


def make_judgements(n_clips: int, per_clip: int, n_annotators: int, seed: int = 0) -> pd.DataFrame:
    """Synthetic judgements from a confusion model: (n_clips × per_clip) rows, categorical labels."""
    rng = np.random.default_rng(seed)
    k = len(LABELS)
    truth = rng.choice(k, size=n_clips, p=PRIOR)
    # Per-annotator confusion (n_annotators, true k, said k): accuracy ~ Beta(8, 2.5); errors go
    # three times as often to a label of the same polarity.
    accuracy = rng.beta(8.0, 2.5, size=n_annotators)
    same = (POLARITY[:, None] == POLARITY[None, :]).astype(float) * 2.0 + 1.0
    np.fill_diagonal(same, 0.0)
    off = same / same.sum(axis=1, keepdims=True)
    confusion = (1.0 - accuracy)[:, None, None] * off[None] + accuracy[:, None, None] * np.eye(k)[None]
    cumulative = np.cumsum(confusion, axis=2)
    # Distinct annotators per clip: a random offset into the pool plus distinct steps.
    start = rng.integers(0, n_annotators, size=n_clips)
    steps = np.sort(rng.choice(np.arange(1, n_annotators), size=per_clip - 1, replace=False))
    annotator = (start[:, None] + np.concatenate([[0], steps])[None, :]) % n_annotators  # (clips, per_clip)
    clip = np.repeat(np.arange(n_clips), per_clip)
    annotator = annotator.ravel()
    u = rng.random(len(clip))
    said = (u[:, None] > cumulative[annotator, truth[clip]]).sum(axis=1)
    said = np.minimum(said, k - 1)
    return pd.DataFrame(
        {
            "clip_id": pd.Categorical.from_codes(clip, [f"clip{i:07d}" for i in range(n_clips)]).astype(str),
            "annotator_id": np.char.add("ann", annotator.astype(str)),
            "label": pd.Categorical.from_codes(said, LABELS),
        }
    )


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(df: pd.DataFrame) -> tuple[dict[str, float], np.ndarray]:
    from curation.aggregation import DawidSkene
    from curation.agreement import alpha_with_ci, krippendorff_alpha
    from curation.judgements import validate_judgements

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    table = validate_judgements(df, LABELS)
    t1 = time.perf_counter()
    alpha = krippendorff_alpha(table)
    t2 = time.perf_counter()
    ds = DawidSkene(on_tie="first").fit(table)
    t3 = time.perf_counter()
    timings.update(validate_s=t1 - t0, alpha_s=t2 - t1, dawid_skene_s=t3 - t2, end_to_end_s=t3 - t0)
    timings["alpha"] = alpha
    timings["ds_iterations"] = ds.n_iter_
    # Not part of end to end: the bootstrap interval the report adds (1000 resamples of clips at
    # eMotions scale, 100 at the next scale).
    n_boot = 1000 if len(table) < 1_000_000 else 100
    t4 = time.perf_counter()
    alpha_with_ci(table, n_boot=n_boot, seed=0)
    timings.update(alpha_ci_s=time.perf_counter() - t4, alpha_ci_boot=n_boot)
    labels = ds.labels_.reindex(sorted(ds.labels_.index)).to_numpy()
    return timings, labels


def run_crowdkit(df: pd.DataFrame) -> tuple[dict[str, float], np.ndarray]:
    from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene

    data = pd.DataFrame({"task": df["clip_id"], "worker": df["annotator_id"], "label": df["label"].astype(str)})
    t0 = time.perf_counter()
    model = CrowdKitDawidSkene(n_iter=100, tol=1e-5)
    predicted = model.fit_predict(data)
    t1 = time.perf_counter()
    labels = predicted.reindex(sorted(predicted.index)).to_numpy()
    return {"dawid_skene_s": t1 - t0, "ds_iterations": len(model.loss_history_)}, labels


def worker(case: str, impl: str, labels_out: Path) -> dict[str, Any]:
    spec = CASES[case]
    t0 = time.perf_counter()
    df = make_judgements(spec["n_clips"], spec["per_clip"], spec["n_annotators"])
    generate_s = time.perf_counter() - t0
    rss_after_data = _peak_rss_mb()
    timings, labels = run_ours(df) if impl == "ours" else run_crowdkit(df)
    np.save(labels_out, labels.astype(str))
    return {
        "case": case,
        "impl": impl,
        "n_judgements": len(df),
        "generate_s": generate_s,
        "rss_after_data_mb": rss_after_data,
        "peak_rss_mb": _peak_rss_mb(),
        **timings,
    }


def _spawn(case: str, impl: str, labels_out: Path, timeout_s: float) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", case, impl, str(labels_out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"case": case, "impl": impl, "error": f"did not finish within {timeout_s:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"case": case, "impl": impl, "error": last}
    return json.loads(done.stdout.strip().splitlines()[-1])


def crowdkit_available() -> str | None:
    try:
        import crowdkit  # noqa: F401
    except ImportError as exc:
        return f"crowd-kit is not installed ({exc}); install the bench extra: pip install -e '.[bench]'"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--no-crowdkit", action="store_true", help="run ours only")
    parser.add_argument("--crowdkit-timeout", type=float, default=900.0, help="seconds before giving crowd-kit up")
    parser.add_argument("--repeat", type=int, default=1, help="runs of ours per case (the best is kept)")
    parser.add_argument("--worker", nargs=3, metavar=("CASE", "IMPL", "LABELS_OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        case, impl, out = args.worker
        print(json.dumps(worker(case, impl, Path(out))))
        return 0

    missing = None if not args.no_crowdkit else "skipped (--no-crowdkit)"
    missing = missing or crowdkit_available()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            ours_runs = [_spawn(case, "ours", Path(tmp) / f"{case}-ours.npy", 600.0) for _ in range(args.repeat)]
            ok = [r for r in ours_runs if "error" not in r]
            ours = min(ok, key=lambda r: r["end_to_end_s"]) if ok else ours_runs[0]
            row: dict[str, Any] = {"case": case, "ours": ours}
            if missing is None:
                theirs = _spawn(case, "crowdkit", Path(tmp) / f"{case}-crowdkit.npy", args.crowdkit_timeout)
                row["crowdkit"] = theirs
                if "error" not in theirs and "error" not in ours:
                    a = np.load(Path(tmp) / f"{case}-ours.npy")
                    b = np.load(Path(tmp) / f"{case}-crowdkit.npy")
                    row["same_labels"] = float((a == b).mean()) if len(a) == len(b) else None
                    row["speedup_ds"] = theirs["dawid_skene_s"] / ours["dawid_skene_s"]
            else:
                row["crowdkit"] = {"error": missing}
            rows.append(row)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible; "
          "shared with other work, so timings are noisy")
    header = f"{'case':>5} {'judgements':>11} {'validate':>9} {'alpha':>7} {'DS':>7} {'end-to-end':>11} {'peak RSS':>9} {'DS iters':>9} {'α CI (boot)':>14} | {'crowd-kit DS':>12} {'its RSS':>8} {'speed-up':>9} {'same labels':>11}"
    print(header)
    print("-" * len(header))
    for row in rows:
        o, c = row["ours"], row["crowdkit"]
        if "error" in o:
            print(f"{row['case']:>5} ours failed: {o['error']}")
            continue
        ck = (
            f"{c['dawid_skene_s']:>11.2f}s {c['peak_rss_mb']:>6.0f}MB {row.get('speedup_ds', float('nan')):>8.1f}x "
            f"{row.get('same_labels', float('nan')):>11.4%}"
            if "error" not in c
            else f" {c['error']}"
        )
        print(
            f"{row['case']:>5} {o['n_judgements']:>11,} {o['validate_s']:>8.2f}s {o['alpha_s']:>6.2f}s {o['dawid_skene_s']:>6.2f}s "
            f"{o['end_to_end_s']:>10.2f}s {o['peak_rss_mb']:>7.0f}MB {o['ds_iterations']:>9} "
            f"{o['alpha_ci_s']:>6.2f}s ({o['alpha_ci_boot']:>4}) | {ck}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bench_agreement.json"
    out.write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
