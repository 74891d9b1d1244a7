"""Benchmark: labelling policies on a simulated crowd, through the real services (#15).

    .venv/bin/python bench/bench_policies.py                     # 1,500 clips, every policy
    .venv/bin/python bench/bench_policies.py --clips 200 --policies staged fixed-5

Each policy runs the same seeded crowd (``bench/_simulated_crowd.py``: 60 annotators, skills
0.45–0.9, polarity-structured confusions, a quarter of the clips ambiguous, 10 % spammers, an expert
right 95 % of the time) on its own SQLite file through allocation, qualification, the stage machine
and the expert queue. Accuracy is against the true labels of the clips, two ways: the label
``curate aggregate`` gives (majority, threshold 0.6, the expert's call winning; an unresolved clip
counts as wrong) and the stage machine's own final label (what the variants export). Also printed:
crowd judgements per clip (stage 1/2, gold excluded), the share of clips sent to the expert, how
qualification went by skill, and the balance audit (clips over the ⌈k/2⌉ gender ceiling: legitimate
when the allocator recorded that the rule yielded, else a violation). Results go to
``bench/results/bench_policies.json`` and a Pareto plot to ``bench/results/bench_policies.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from annotation_app import migrations  # noqa: E402
from annotation_app.db import make_engine, make_sessionmaker  # noqa: E402
from annotation_app.models import Clip, ClipStatus, Judgement, Label  # noqa: E402
from annotation_app.services.projects import DEFAULT_LABELS  # noqa: E402
from bench._simulated_crowd import Crowd, CrowdSpec, balance_audit, make_campaign, run_campaign  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def policy_settings(name: str) -> dict[str, Any]:
    """Project settings of a named policy: ``staged``, ``fixed-K`` (no stage 2), ``adaptive``."""
    if name == "staged":
        return {"overlap_k": 5, "stage2_extra": 3}
    if name.startswith("fixed-"):
        return {"overlap_k": int(name.split("-", 1)[1]), "stage2_extra": 0}
    if name == "adaptive":
        return {"policy": "adaptive", "k_min": 3, "margin": 2.0, "k_max": 8, "weighting": "none"}
    raise SystemExit(f"unknown policy {name!r}")


def run_policy(name: str, spec: CrowdSpec, tmp: Path, progress: Any = None) -> dict[str, Any]:
    """One policy's campaign on its own SQLite file under ``tmp``; ``progress(decided, total)`` per round."""
    url = f"sqlite:///{tmp / f'{name}.sqlite3'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    maker = make_sessionmaker(engine)
    with maker() as session:
        labels = [lab["name"] for lab in DEFAULT_LABELS]
        polarities = [lab["polarity"] for lab in DEFAULT_LABELS]
        crowd = Crowd(spec, labels, polarities)
        result = make_campaign(session, crowd, name=name, daily_cap=100_000, gold_rate=0.05,
                               qualification_size=10, **policy_settings(name))
        session.commit()
    started = time.monotonic()
    run_campaign(maker, result, crowd, progress=progress)
    wall = time.monotonic() - started
    out_csv = tmp / f"{name}-aggregate.csv"
    # The command a curator runs, on this campaign's database.
    env = {**os.environ, "EMOTIONS_DATABASE_URL": url, "EMOTIONS_DATA_DIR": str(tmp)}
    proc = subprocess.run([sys.executable, "-m", "curate_cli.main", "aggregate", "--project", name,
                           "--out", str(out_csv)], capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"curate aggregate failed: {proc.stderr.strip()}")
    aggregate = pd.read_csv(out_csv, dtype={"clip_id": str}).set_index("clip_id")
    truth = pd.Series({str(k): v for k, v in result.truth.items()})
    aggregate_acc = float((aggregate["label"].reindex(truth.index) == truth).mean())
    with maker() as session:
        real = list(result.truth)
        finals = dict(session.execute(select(Clip.id, Label.name).join(Label, Label.id == Clip.final_label_id)
                                      .where(Clip.id.in_(real))).all())
        machine_acc = sum(finals.get(cid) == lab for cid, lab in result.truth.items()) / len(real)
        crowd_judgements = session.scalar(select(func.count()).select_from(Judgement).where(
            Judgement.clip_id.in_(real), Judgement.stage.between(1, 2)))
        expert = session.scalar(select(func.count()).select_from(Judgement).where(
            Judgement.clip_id.in_(real), Judgement.stage == 3))
        discarded_or_open = session.scalar(select(func.count()).select_from(Clip).where(
            Clip.id.in_(real), Clip.status.notin_([ClipStatus.resolved])))
        audit = balance_audit(session, result)
    engine.dispose()
    honest = [(p.annotator.skill, result.qualification.get(aid)) for aid, p in result.people.items()
              if p.annotator.careless is None]
    return {
        "policy": name, "clips": len(real), "accuracy_aggregate": aggregate_acc, "accuracy_final_label": machine_acc,
        "judgements_per_clip": crowd_judgements / len(real), "expert_share": expert / len(real),
        "not_resolved": int(discarded_or_open), "submissions": result.submissions, "wall_s": wall,
        "honest_failed_qualification": sum(1 for _, passed in honest if passed is False) / max(len(honest), 1),
        "qualification_by_skill": sorted(honest), "balance": audit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1500)
    parser.add_argument("--annotators", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policies", nargs="+",
                        default=[*(f"fixed-{k}" for k in range(3, 9)), "staged", "adaptive"])
    args = parser.parse_args(argv)
    spec = CrowdSpec(n_annotators=args.annotators, n_clips=args.clips, seed=args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.policies:
            with Progress(TextColumn(f"{name:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          transient=True) as bar:
                task = bar.add_task(name, total=spec.n_clips)
                row = run_policy(name, spec, Path(tmp),
                                 progress=lambda done, total, task=task: bar.update(task, completed=done))
            rows.append(row)
            print(f"{name:<10} acc(aggregate) {row['accuracy_aggregate']:.3f}  acc(final) {row['accuracy_final_label']:.3f}"
                  f"  judgements/clip {row['judgements_per_clip']:.2f}  expert {row['expert_share']:.1%}"
                  f"  balance over/legit/violations {row['balance']['over_ceiling']}/{row['balance']['legitimate']}"
                  f"/{row['balance']['violations']}  honest failed qual {row['honest_failed_qualification']:.0%}"
                  f"  ({row['wall_s']:.0f} s)", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_policies.json").write_text(json.dumps({"spec": spec.__dict__, "rows": rows}, indent=2) + "\n")
    _plot(rows, RESULTS / "bench_policies.png")
    print(f"written to {(RESULTS / 'bench_policies.json').relative_to(ROOT)} and bench_policies.png")
    return 0


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        ax.scatter(row["judgements_per_clip"], row["accuracy_aggregate"], color="C0" if row["policy"].startswith("fixed")
                   else "C1")
        ax.annotate(f"{row['policy']} ({row['expert_share']:.0%} expert)",
                    (row["judgements_per_clip"], row["accuracy_aggregate"]), fontsize=7)
    ax.set_xlabel("crowd judgements per clip")
    ax.set_ylabel("accuracy (curate aggregate)")
    ax.set_title("Labelling policies on the simulated crowd")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
