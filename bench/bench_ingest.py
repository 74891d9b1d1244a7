"""Benchmark: ``curate ingest``'s normaliser beside the bare FFmpeg command, and 1 vs 2 workers.

    .venv/bin/python bench/bench_ingest.py                       # 8 clips of 5 s at 720x1280
    .venv/bin/python bench/bench_ingest.py --clips 16 --seconds 10 --repeats 3
    .venv/bin/python bench/bench_ingest.py --input /path/to/folder   # your own files

1. Normalisation overhead. For every file, ``curation.ingest.normalise`` (ffmpeg-python builds the
   arguments, a subprocess runs FFmpeg into a temporary name, an atomic rename) runs beside
   ``subprocess.run([ffmpeg, *args])`` with the *identical* argument list on the same file,
   interleaved (ours, bare, ours, bare…) so machine noise hits both alike. Reported: total
   seconds each way (median over repeats) and ``ours / bare``. Target: ≤ 1.10. The same is shown
   with the probe included (``probe`` + ``normalise``: what the pipeline really does before
   FFmpeg).
2. Workers. The whole ``run_ingest`` (probe, validate, normalise, hash, SQLite bookkeeping) over
   the files with ``--workers 1`` and ``--workers 2`` into fresh media folders; speed-up =
   t(1) / t(2). FFmpeg's x264 is itself multi-threaded, so the gain depends on free cores.

The clips are synthetic (lavfi sources with a sine tone), each different, with a keyframe every
2 s as platform uploads have (``--gop``): the probe decodes the last GOP to prove the end plays. Results print as a table
and go to bench/results/bench_ingest.json. Shared machines are noisy: compare ratios, not seconds.
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

from curation.ffmpeg import ffmpeg_binary  # noqa: E402
from curation.ingest import IngestConfig, MediaPolicy, expand_sources, normalise, normalise_args, probe  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SOURCES = ["testsrc2", "mandelbrot", "life=mold=10:seed={i}", "cellauto=rule={rule}", "gradients=seed={i}",
           "rgbtestsrc", "smptehdbars", "zoneplate=kt2=10"]


def make_clips(folder: Path, n: int, seconds: float, size: str, fps: int, gop: int = 60) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        base = SOURCES[i % len(SOURCES)].format(i=i + 1, rule=30 + 2 * i)
        sep = ":" if "=" in base else "="
        path = folder / f"clip {i:03d}.mp4"
        subprocess.run(
            [ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"{base}{sep}s={size}:r={fps}",
             "-f", "lavfi", "-i", f"sine=frequency={220 + 40 * i}", "-t", str(seconds),
             "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-g", str(gop),
             "-c:a", "aac", f"file:{path}"],
            check=True,
        )
        out.append(path)
    return out


def bench_overhead(files: list[Path], policy: MediaPolicy, repeats: int, work: Path) -> dict[str, Any]:
    ffmpeg = ffmpeg_binary()
    probed = {f: probe(f) for f in files}
    ours, ours_probe, bare = [], [], []
    for _ in range(repeats):
        t_ours = t_ours_probe = t_bare = 0.0
        for f in files:
            out = work / "ours.mp4"
            t0 = time.perf_counter()
            normalise(f, out, probed[f], policy)
            t_ours += time.perf_counter() - t0

            t0 = time.perf_counter()
            normalise(f, out, probe(f), policy)
            t_ours_probe += time.perf_counter() - t0

            args = normalise_args(f, work / "bare.mp4", probed[f], policy)
            t0 = time.perf_counter()
            subprocess.run([ffmpeg, *args], stdin=subprocess.DEVNULL, capture_output=True, check=True)
            t_bare += time.perf_counter() - t0
        ours.append(t_ours)
        ours_probe.append(t_ours_probe)
        bare.append(t_bare)
    m_ours, m_probe, m_bare = statistics.median(ours), statistics.median(ours_probe), statistics.median(bare)
    return {"ours_s": m_ours, "ours_with_probe_s": m_probe, "bare_s": m_bare,
            "ratio": m_ours / m_bare, "ratio_with_probe": m_probe / m_bare,
            "runs": {"ours": ours, "ours_with_probe": ours_probe, "bare": bare}}


def bench_workers(files: list[Path], policy: MediaPolicy, workers: list[int], work: Path,
                  ffmpeg_threads: int = 0) -> dict[int, float]:
    from annotation_app import migrations
    from annotation_app.db import make_engine, make_sessionmaker
    from annotation_app.services.ingest import run_ingest
    from annotation_app.services.projects import create_project

    items = expand_sources([str(f) for f in files])
    times: dict[int, float] = {}
    for n in workers:
        run_dir = work / f"workers-{n}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        url = f"sqlite:///{run_dir / 'db.sqlite3'}"
        migrations.upgrade(url)
        engine = make_engine(url)
        with make_sessionmaker(engine)() as session:
            project = create_project(session, "bench")
            session.commit()
            config = IngestConfig(media_dir=run_dir / "media", policy=policy, ffmpeg_threads=ffmpeg_threads)
            t0 = time.perf_counter()
            report = run_ingest(session, project, items, config, workers=n)
            times[n] = time.perf_counter() - t0
            if len(report.accepted) != len(files):
                raise RuntimeError(f"expected every clip accepted: {report.counts()} {report.errors}")
        engine.dispose()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="a folder of clips (default: synthetic clips)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", default="720x1280", help="synthetic clip size (vertical short video)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="medium", help="x264 preset of the master")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gop", type=int, default=60, help="keyframe interval of the synthetic clips (frames)")
    parser.add_argument("--compare-threads", action="store_true",
                        help="also run each worker count with FFmpeg limited to cores / workers threads")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_ingest.json")
    args = parser.parse_args(argv)

    policy = MediaPolicy(preset=args.preset)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        if args.input:
            files = sorted(p for p in args.input.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            t0 = time.perf_counter()
            files = make_clips(work / "clips", args.clips, args.seconds, args.size, args.fps, args.gop)
            print(f"made {len(files)} clips of {args.seconds:g} s at {args.size} in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
        overhead = bench_overhead(files, policy, args.repeats, work)
        times = bench_workers(files, policy, args.workers, work)
        cpus = os.cpu_count() or 1
        shared = {n: bench_workers(files, policy, [n], work, ffmpeg_threads=max(1, cpus // n))[n]
                  for n in args.workers if n > 1} if args.compare_threads else {}

    base = times[min(times)]
    print(f"\nnormalisation, {len(files)} files, preset {args.preset}, median of {args.repeats}")
    print(f"{'what':<34}{'seconds':>10}{'ratio to bare':>16}")
    print(f"{'bare ffmpeg (identical args)':<34}{overhead['bare_s']:>10.2f}{1.0:>16.3f}")
    print(f"{'curation.ingest.normalise':<34}{overhead['ours_s']:>10.2f}{overhead['ratio']:>16.3f}")
    print(f"{'probe + normalise':<34}{overhead['ours_with_probe_s']:>10.2f}{overhead['ratio_with_probe']:>16.3f}")
    print(f"\nrun_ingest (probe, normalise, hash, SQLite), {len(files)} files")
    print(f"{'workers':<10}{'seconds':>10}{'speed-up':>10}")
    for n, t in sorted(times.items()):
        print(f"{n:<10}{t:>10.2f}{base / t:>10.2f}")
    for n, t in sorted(shared.items()):
        print(f"{n:<10}{t:>10.2f}{base / t:>10.2f}   (FFmpeg -threads cores/workers)")

    result = {
        "files": len(files), "gop": None if args.input else args.gop, "seconds_per_clip": None if args.input else args.seconds,
        "size": None if args.input else args.size, "preset": args.preset, "repeats": args.repeats,
        "normalisation": {k: v for k, v in overhead.items()},
        "workers": {str(n): t for n, t in times.items()},
        "speedup": {str(n): base / t for n, t in times.items()},
        "workers_threads_shared": {str(n): t for n, t in shared.items()},
        "machine": machine(),
    }
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
