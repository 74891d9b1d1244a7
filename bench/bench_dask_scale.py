"""Benchmark: ingest and prepare-features on Dask (1, 2, 4 local workers) beside ``--workers`` and bare FFmpeg.

    .venv/bin/python bench/bench_dask_scale.py                     # 8 clips of 3 s at 360x640
    .venv/bin/python bench/bench_dask_scale.py --clips 16 --rounds 2 --dask-workers 1 2 4

Every configuration runs over the same synthetic clips into a fresh SQLite database and media
folder, and the configurations are interleaved in rounds (bare, local 1, local 2, dask 1, dask 2,
dask 4, then again), so machine noise hits them alike. Reported per configuration: the median
wall time and clips/s, and two ratios: to ``--workers`` with the same number of processes (what
Dask costs on one machine) and to bare FFmpeg (the normalisation alone, one file after another,
with the identical argument list). prepare-features decodes the ingested masters into the tiny
preset's feature cache the same ways. The Dask rows include starting the LocalCluster, as
``curate ingest --executor dask`` pays it. Shared machines are noisy: compare ratios, not seconds.
Results print as a table and go to bench/results/bench_dask_scale.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_result  # noqa: E402
from bench.bench_ingest import make_clips  # noqa: E402
from curation.cluster import dask_executor  # noqa: E402
from curation.ffmpeg import ffmpeg_binary  # noqa: E402
from curation.ingest import IngestConfig, MediaPolicy, expand_sources, normalise_args, probe  # noqa: E402

RESULTS = ROOT / "bench" / "results"
STARTUP: dict[str, list[float]] = {}  # seconds to start each LocalCluster (included in the dask rows)


def _bare(files: list[Path], policy: MediaPolicy, work: Path) -> float:
    ffmpeg = ffmpeg_binary()
    jobs = [normalise_args(f, work / "bare.mp4", probe(f), policy) for f in files]  # probing is not FFmpeg's time
    t0 = time.perf_counter()
    for args in jobs:
        subprocess.run([ffmpeg, *args], stdin=subprocess.DEVNULL, capture_output=True, check=True)
    return time.perf_counter() - t0


def _ingest(files: list[Path], policy: MediaPolicy, work: Path, executor: str, workers: int) -> tuple[float, Path]:
    from annotation_app import migrations
    from annotation_app.db import make_engine, make_sessionmaker
    from annotation_app.services.ingest import run_ingest
    from annotation_app.services.projects import create_project

    run_dir = work / f"ingest-{executor}-{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    url = f"sqlite:///{run_dir / 'db.sqlite3'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    items = expand_sources([str(f) for f in files])
    with make_sessionmaker(engine)() as session:
        project = create_project(session, "bench")
        session.commit()
        config = IngestConfig(media_dir=run_dir / "media", policy=policy)
        t0 = time.perf_counter()
        if executor == "dask":
            with dask_executor(workers=workers) as (pool, slots):
                STARTUP.setdefault(f"dask {workers}", []).append(time.perf_counter() - t0)
                report = run_ingest(session, project, items, config, workers=slots, executor=pool)
        else:
            report = run_ingest(session, project, items, config, workers=workers)
        seconds = time.perf_counter() - t0
    engine.dispose()
    if len(report.accepted) != len(files):
        raise RuntimeError(f"expected every clip accepted: {report.counts()} {report.errors}")
    return seconds, run_dir / "media"


def _features(masters: list[Path], work: Path, executor: str, workers: int) -> float:
    from model.features import CacheSpec, prepare_features

    spec = CacheSpec(segments=4, frames_per_segment=2, jitter=1, frame_size=32, mfcc_frames=256)
    cache = work / f"features-{executor}-{workers}"
    shutil.rmtree(cache, ignore_errors=True)
    clips = [(p.stem, p) for p in masters]
    t0 = time.perf_counter()
    if executor == "dask":
        with dask_executor(workers=workers) as (pool, _slots):
            report = prepare_features(clips, cache, spec, executor=pool)
    else:
        report = prepare_features(clips, cache, spec, workers=workers)
    seconds = time.perf_counter() - t0
    if report.failed or report.written != len(clips):
        raise RuntimeError(f"features: {report}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", default="360x640")
    parser.add_argument("--preset", default="veryfast", help="x264 preset of the master")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--local-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dask-workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_dask_scale.json")
    args = parser.parse_args(argv)

    policy = MediaPolicy(preset=args.preset)
    configs = [("processes", n) for n in args.local_workers] + [("dask", n) for n in args.dask_workers]
    ingest: dict[str, list[float]] = {"bare": []}
    features: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        work = Path(tmp)
        files = make_clips(work / "clips", args.clips, args.seconds, args.size, 30)
        for _ in range(args.rounds):
            ingest["bare"].append(_bare(files, policy, work))
            for executor, n in configs:
                seconds, media = _ingest(files, policy, work, executor, n)
                ingest.setdefault(f"{executor} {n}", []).append(seconds)
            masters = sorted(p for p in media.rglob("*.mp4") if "originals" not in p.parts)
            for executor, n in configs:
                features.setdefault(f"{executor} {n}", []).append(_features(masters, work, executor, n))

    def table(title: str, runs: dict[str, list[float]], bare: float | None) -> dict[str, Any]:
        medians = {k: statistics.median(v) for k, v in runs.items()}
        print(f"\n{title}, {len(files)} clips, median of {args.rounds} round(s)")
        print(f"{'how':<14}{'seconds':>9}{'clips/s':>9}{'vs --workers n':>16}{'vs bare ffmpeg':>16}")
        out = {}
        for key, t in medians.items():
            local = medians.get(f"processes {key.split()[-1]}") if key.startswith("dask") else None
            vs_local = local / t if local else None  # >1: faster than local processes
            vs_bare = bare / t if bare else None
            print(f"{key:<14}{t:>9.2f}{len(files) / t:>9.2f}"
                  f"{(f'{vs_local:.2f}×' if vs_local else '—'):>16}{(f'{vs_bare:.2f}×' if vs_bare else '—'):>16}")
            out[key] = {"seconds": t, "clips_per_s": len(files) / t, "speed_vs_local_same_n": vs_local,
                        "speed_vs_bare_ffmpeg": vs_bare, "runs": runs[key]}
        return out

    bare = statistics.median(ingest["bare"])
    result = {
        "clips": len(files), "seconds_per_clip": args.seconds, "size": args.size, "preset": args.preset,
        "rounds": args.rounds,
        "ingest": table("ingest (probe, normalise, hash, SQLite)", ingest, bare),
        "prepare_features": table("prepare-features (tiny preset)", features, None),
        "dask_startup_s": {k: statistics.median(v) for k, v in STARTUP.items()},
        "machine": machine(),
    }
    print("LocalCluster start (in the dask rows): " + ", ".join(f"{k} {v:.1f} s" for k, v in result["dask_startup_s"].items()))
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
