"""Benchmark ``build_variants``: build time and peak memory at 28,000 and 1,000,000 clips.

Each size runs in a fresh child process, so its peak resident memory (``ru_maxrss``) is its own.
Inputs are synthetic but shaped like eMotions: six labels with an uneven mix, five stage-1
judgements per clip (some unanimous, some split, ~15% settled by an expert), ~4 clips per uploader,
10% of the clips in near-duplicate clusters, three platforms. Stages timed:

- ``resolve``: ``load_judgements`` + ``curation.aggregation.resolve`` on the judgements table;
- ``candidates``: the clips table joined with the resolution;
- ``<variant>``: selecting, splitting and exporting that variant (manifests, layouts, card, plots);
- ``agreement``: Krippendorff's α for the cards (part of each variant's time; shown once, alone).

Media: hard links to 16 small source files by default (``--media link``); at 1,000,000 clips the
default is ``none`` (manifests and layouts only: three million links would mostly time the file
system). The side-by-side ratio is the split step against scikit-learn's ``StratifiedGroupKFold``
(same assignment), at the sizes where sklearn finishes in reasonable time.

Shortfalls: the shipped recipes fail a build whose labels fall short (``on_shortfall = "fail"``).
The bench times whole builds, so it runs them with ``on_shortfall = "shrink"`` by default (as the
figures in the README were taken) and lists every shortfall each build named; ``--on-shortfall
fail`` reports the failure per variant instead of timing it, ``borrow`` times the borrowing.

    .venv/bin/python bench/bench_variants.py                 # 28,000 and 1,000,000
    .venv/bin/python bench/bench_variants.py --sizes 28000 --json bench/results/variants.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LABELS = [
    {"index": 0, "name": "Excitation", "polarity": "positive"},
    {"index": 1, "name": "Fear", "polarity": "negative"},
    {"index": 2, "name": "Neutral", "polarity": "neutral"},
    {"index": 3, "name": "Relaxation", "polarity": "positive"},
    {"index": 4, "name": "Sadness", "polarity": "negative"},
    {"index": 5, "name": "Tension", "polarity": "negative"},
]
SIZES = (28_000, 1_000_000)


def synthetic_inputs(n_clips: int, seed: int, media_files: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(judgements, clips), vectorised so a million clips take seconds."""
    rng = np.random.default_rng(seed)
    names = np.array([d["name"] for d in LABELS], dtype=object)
    mix = np.array([0.22, 0.10, 0.20, 0.18, 0.14, 0.16])
    truth = rng.choice(6, size=n_clips, p=mix)
    # Per clip, five votes: each right with a clip-level accuracy, else a random other label.
    accuracy = rng.choice([1.0, 0.8, 0.6, 0.45], size=n_clips, p=[0.45, 0.25, 0.2, 0.1])
    right = rng.random((n_clips, 5)) < accuracy[:, None]
    wrong = (truth[:, None] + rng.integers(1, 6, (n_clips, 5))) % 6
    votes = np.where(right, truth[:, None], wrong)
    # Five different annotators per clip: a random first one and fixed strides after it.
    annotators = (rng.integers(0, 400, n_clips)[:, None] + np.array([0, 37, 74, 111, 148])) % 400
    clip_ids = np.char.add("c", np.arange(n_clips).astype(str)).astype(object)
    judgements = pd.DataFrame({
        "clip_id": np.repeat(clip_ids, 5),
        "annotator_id": np.char.add("a", annotators.ravel().astype(str)).astype(object),
        "label": names[votes.ravel()],
        "stage": 1,
    })
    expert = accuracy == 0.45
    experts = pd.DataFrame({"clip_id": clip_ids[expert], "annotator_id": "expert", "label": names[truth[expert]], "stage": 3})
    judgements = pd.concat([judgements, experts], ignore_index=True)
    uploader = np.char.add("u", rng.integers(0, max(1, n_clips // 4), n_clips).astype(str)).astype(object)
    cluster = np.where(rng.random(n_clips) < 0.1, rng.integers(0, max(1, n_clips // 30), n_clips), -1)
    clips = pd.DataFrame({
        "clip_id": clip_ids,
        "media_path": np.array(media_files, dtype=object)[np.arange(n_clips) % len(media_files)],
        "platform": np.array(["douyin", "kuaishou", "tiktok"], dtype=object)[rng.choice(3, n_clips, p=[0.5, 0.3, 0.2])],
        "uploader": uploader,
        "duplicate_cluster": pd.array(np.where(cluster < 0, None, np.char.add("k", cluster.astype(str))), dtype=object),
        "duration_s": np.round(rng.uniform(3, 60, n_clips), 3),
        "has_audio": rng.random(n_clips) < 0.9,
        "status": "pending",
    })
    return judgements, clips


class _Clock:
    """Wall and CPU seconds of a stage: on a shared, busy machine CPU time is the steadier figure."""

    def __init__(self, timings: dict[str, float], cpu: dict[str, float], name: str) -> None:
        self.timings, self.cpu, self.name = timings, cpu, name

    def __enter__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = time.perf_counter() - self.wall0
        self.cpu[self.name] = time.process_time() - self.cpu0


def child(n_clips: int, media_mode: str, sklearn_ratio: bool, agreement: bool, on_shortfall: str) -> dict:
    from curation.aggregation import resolve
    from curation.errors import InsufficientDataError
    from curation.judgements import load_judgements
    from curation.variants import build_variants, candidate_clips, load_recipes

    work = Path(tempfile.mkdtemp(prefix="bench-variants-"))
    media = work / "media"
    media.mkdir()
    files = []
    for i in range(16):  # stand-ins: linking cost does not depend on the content
        (media / f"src{i}.mp4").write_bytes(bytes([i]) * 4096)
        files.append(f"src{i}.mp4")
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    judgements, clips = synthetic_inputs(n_clips, 0, files)
    import matplotlib.figure  # noqa: F401  - import cost out of the first variant's figure

    with _Clock(timings, cpu, "resolve"):
        table = load_judgements(judgements, labels=LABELS)
        resolution = resolve(table, labels=LABELS)

    with _Clock(timings, cpu, "candidates"):
        candidates = candidate_clips(clips, resolution, LABELS)

    if agreement:
        from curation.dataset_card import variant_agreement

        with _Clock(timings, cpu, "agreement (one card)"):
            variant_agreement(table, candidates["clip_id"])

    counts: dict[str, int | None] = {}
    shortfalls: dict[str, list[dict]] = {}
    failures: dict[str, str] = {}
    # The recipe policy the bench runs under, chosen here and printed with the results ("borrow"
    # applies to the test-oriented recipe only; balanced has nothing to borrow and shrinks).
    override = {"balanced": {"balance": {"on_shortfall": "fail" if on_shortfall == "fail" else "shrink"}},
                "test-oriented": {"test": {"on_shortfall": on_shortfall}}}
    for recipe in load_recipes(override):
        try:
            with _Clock(timings, cpu, recipe.name):
                (build,) = build_variants(candidates, LABELS, work / "out", recipes=[recipe], seed=0, media_root=media,
                                          media_mode=media_mode, judgements=table if agreement else None)
        except InsufficientDataError as exc:  # on_shortfall = "fail": reported, not timed
            timings.pop(recipe.name, None)
            cpu.pop(recipe.name, None)
            counts[recipe.name] = None
            failures[recipe.name] = str(exc)
            continue
        counts[recipe.name] = build.n_clips
        shortfalls[recipe.name] = build.shortfall_details

    if sklearn_ratio:
        from sklearn.model_selection import StratifiedGroupKFold

        from curation.splits import leakage_groups, stratified_group_folds

        groups = leakage_groups(candidates["uploader"], candidates["duplicate_cluster"])
        y = candidates["label_index"].to_numpy()
        with _Clock(timings, cpu, "split: ours"):
            ours = stratified_group_folds(y, groups, 10, 0)
        theirs = np.empty(len(y), dtype=np.int64)
        with _Clock(timings, cpu, "split: sklearn"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            splitter = StratifiedGroupKFold(n_splits=10, shuffle=True, random_state=0)
            for fold, (_, index) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
                theirs[index] = fold
        same_assignment = bool(np.array_equal(ours, theirs))

    return {
        "clips": n_clips,
        "judgements": int(len(judgements)),
        "media": media_mode,
        "timings_s": timings,
        "cpu_s": cpu,
        "split_same_as_sklearn": same_assignment if sklearn_ratio else None,
        "variant_clips": counts,
        "on_shortfall": on_shortfall,
        "shortfalls": shortfalls,
        "failed": failures,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "work_dir": str(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--media", choices=["link", "copy", "none", "auto"], default="auto",
                        help="auto: link up to 100,000 clips, none above")
    parser.add_argument("--no-agreement", action="store_true", help="skip Krippendorff's α in the cards")
    parser.add_argument("--json", type=Path, help="also write the results here (e.g. bench/results/variants.json)")
    parser.add_argument("--on-shortfall", choices=["shrink", "borrow", "fail"], default="shrink",
                        help="the recipes' on_shortfall for the timed builds (default shrink: time whole builds "
                             "and list the shortfalls; the shipped default, fail, stops a short build)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sklearn", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.media, args.sklearn, not args.no_agreement, args.on_shortfall)))
        return

    results = []
    for size in args.sizes:
        media = args.media if args.media != "auto" else ("link" if size <= 100_000 else "none")
        command = [sys.executable, __file__, "--child", str(size), "--media", media, "--on-shortfall", args.on_shortfall]
        if size <= 100_000:
            command.append("--sklearn")
        if args.no_agreement:
            command.append("--no-agreement")
        wall = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall_s"] = time.perf_counter() - wall
        subprocess.run(["rm", "-rf", result.pop("work_dir")], check=False)
        results.append(result)

    print(f"recipes run with on_shortfall = \"{args.on_shortfall}\" (the shipped default is \"fail\")")
    print(f"{'clips':>10} {'media':>6} {'stage':<24} {'wall s':>9} {'CPU s':>9}")
    for result in results:
        for stage, seconds in result["timings_s"].items():
            print(f"{result['clips']:>10,} {result['media']:>6} {stage:<24} {seconds:>9.2f} {result['cpu_s'][stage]:>9.2f}")
        if "split: sklearn" in result["cpu_s"]:
            c = result["cpu_s"]
            same = "same folds" if result["split_same_as_sklearn"] else "DIFFERENT folds"
            print(f"{result['clips']:>10,} {'':>6} {'split: sklearn / ours':<24} {c['split: sklearn'] / c['split: ours']:>8.1f}x (CPU; {same})")
        print(f"{result['clips']:>10,} {'':>6} {'peak RSS (MiB)':<24} {result['peak_rss_mib']:>9.0f}")
        print(f"{result['clips']:>10,} {'':>6} {'variant clips':<24} {json.dumps(result['variant_clips'])}")
        for name, details in result["shortfalls"].items():
            for d in details:
                print(f"{result['clips']:>10,} {'':>6} shortfall: {name}: {d['label']} in {d['split']}: "
                      f"{d['available']} of {d['requested']} ({d['missing']} missing; {d['rule']})")
        if not any(result["shortfalls"].values()):
            print(f"{result['clips']:>10,} {'':>6} {'shortfalls':<24} none")
        for name, message in result["failed"].items():
            print(f"{result['clips']:>10,} {'':>6} failed: {name}: {message}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
