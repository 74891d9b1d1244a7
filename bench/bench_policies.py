"""Benchmark: labelling policies on a simulated crowd, through the real services (#15).

    .venv/bin/python bench/bench_policies.py                     # 1,000 clips, staged, adaptive, fixed 3…8
    .venv/bin/python bench/bench_policies.py --policies staged adaptive adaptive:weighting=dawid-skene
    .venv/bin/python bench/bench_policies.py --seeds 0 1 2 --jobs 2  # three crowds, two campaigns at a time
    .venv/bin/python bench/bench_policies.py --keep runs/ ...    # keep the campaigns; --rescore scores them again

Each policy runs the same seeded crowd (``bench/_simulated_crowd.py``: 60 annotators, skills
0.45–0.9, polarity-structured confusions, a quarter of the clips ambiguous, 10 % spammers, an expert
right 95 % of the time) on its own SQLite file through allocation, qualification, the stage machine
and the expert queue. Policies: ``staged``, ``fixed-K``, ``adaptive`` and adaptive variants
``adaptive:key=value,...`` (k_min, margin, k_max, weighting). Accuracy is against the true labels
of the clips, two ways: the label ``curate aggregate`` gives, run as a curator runs it on the
project's database (the project's own rule: staged/fixed by the consensus threshold, adaptive by its
margin, the expert's call winning; an unresolved clip counts as wrong), and the stage machine's own
final label (what ``build-variants`` exports); ``aggregate_differs_from_final`` counts the clips
where the two part (0 without vote weighting). Also printed: crowd judgements per clip (stage 1/2,
gold excluded), the share of clips sent to the expert, how qualification went by skill, and the
balance audit (clips over the ⌈k/2⌉ gender ceiling, each over-ceiling slot judged when it was given:
legitimate when no eligible annotator of another group was free, else a violation; see
``_simulated_crowd.balance_audit``). With several ``--seeds`` every policy runs on each seed's crowd
(a crowd is the same for every policy of its seed) and the summary gives each policy's mean and
spread over the seeds, and how each compares with staged crowd by crowd: one crowd's sampling error
(about ±1 point of accuracy at 1,000 clips) is larger than the gaps between policies, and the
paired differences cancel much of it. Results go to ``bench/results/bench_policies.json`` and a
Pareto plot (the seeds' means, bars from lowest to highest) to ``bench/results/bench_policies.png``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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
from bench._simulated_crowd import (  # noqa: E402
    CampaignResult,
    Crowd,
    CrowdSpec,
    balance_audit,
    make_campaign,
    run_campaign,
)

RESULTS = ROOT / "bench" / "results"


ADAPTIVE_DEFAULTS = {"k_min": 3, "margin": 2.0, "k_max": 8, "weighting": "none"}


def policy_settings(name: str) -> dict[str, Any]:
    """Project settings of a named policy: ``staged``, ``fixed-K`` (no stage 2), ``adaptive``, or an
    adaptive variant ``adaptive:key=value,...`` over k_min, margin, k_max and weighting (e.g.
    ``adaptive:margin=3``, ``adaptive:weighting=gold,k_max=7``)."""
    if name == "staged":
        return {"policy": "staged", "overlap_k": 5, "stage2_extra": 3}
    if name.startswith("fixed-") and name[6:].isdigit():
        return {"policy": "fixed", "overlap_k": int(name[6:]), "stage2_extra": 0}
    if name == "adaptive" or name.startswith("adaptive:"):
        settings: dict[str, Any] = {"policy": "adaptive", **ADAPTIVE_DEFAULTS}
        for part in filter(None, name.partition(":")[2].split(",")):
            key, _, value = part.partition("=")
            if key not in ADAPTIVE_DEFAULTS or not value:
                raise SystemExit(f"unknown adaptive setting in {name!r}: use k_min, margin, k_max, weighting")
            settings[key] = value if key == "weighting" else type(ADAPTIVE_DEFAULTS[key])(value)
        return settings
    raise SystemExit(f"unknown policy {name!r}")


DEFAULT_POLICIES = ["staged", "adaptive", *(f"fixed-{k}" for k in range(3, 9))]


def _slug(name: str) -> str:
    return name.replace(":", "-").replace(",", "-").replace("=", "")


def run_policy(name: str, spec: CrowdSpec, tmp: Path, progress: Any = None) -> dict[str, Any]:
    """One policy's campaign on its own SQLite file under ``tmp``, then its scores (:func:`score`);
    ``progress(decided, total)`` per round."""
    run_campaign_of(name, spec, tmp, progress=progress)
    return score(name, tmp)


def _crowd(spec: CrowdSpec) -> Crowd:
    return Crowd(spec, [lab["name"] for lab in DEFAULT_LABELS], [lab["polarity"] for lab in DEFAULT_LABELS])


def _url(name: str, tmp: Path) -> str:
    return f"sqlite:///{tmp / f'{_slug(name)}.sqlite3'}"


def run_campaign_of(name: str, spec: CrowdSpec, tmp: Path, progress: Any = None) -> Path:
    """Run one policy's campaign into ``tmp/<policy>.sqlite3`` and write what scoring needs beside
    it (``<policy>.campaign.json``: the spec, true labels, who is who, the judged slots)."""
    tmp.mkdir(parents=True, exist_ok=True)
    url = _url(name, tmp)
    migrations.upgrade(url)
    engine = make_engine(url)
    maker = make_sessionmaker(engine)
    crowd = _crowd(spec)
    with maker() as session:
        result = make_campaign(session, crowd, name=_slug(name), daily_cap=100_000, gold_rate=0.05,
                               qualification_size=10, **policy_settings(name))
        session.commit()
    started = time.monotonic()
    run_campaign(maker, result, crowd, progress=progress)
    engine.dispose()
    kept = tmp / f"{_slug(name)}.campaign.json"
    kept.write_text(json.dumps({
        "policy": name, "spec": spec.__dict__, "project_id": result.project_id,
        "truth": {str(k): v for k, v in result.truth.items()}, "people": list(result.people),
        "qualification": {str(k): v for k, v in result.qualification.items()}, "allocations": result.allocations,
        "submissions": result.submissions, "rounds": result.rounds, "wall_s": time.monotonic() - started,
    }) + "\n")
    return kept


def score(name: str, tmp: Path) -> dict[str, Any]:
    """Score a kept campaign: accuracy through ``curate aggregate`` (run as a curator would, on the
    campaign's database) and of the stage machine's final labels, crowd judgements per clip, expert
    share, qualification by skill and the balance audit."""
    kept = json.loads((tmp / f"{_slug(name)}.campaign.json").read_text())
    spec = CrowdSpec(**kept["spec"])
    crowd = _crowd(spec)
    result = CampaignResult(kept["project_id"], {int(k): v for k, v in kept["truth"].items()},
                            dict(zip(kept["people"], crowd.annotators, strict=True)),
                            submissions=kept["submissions"], rounds=kept["rounds"],
                            qualification={int(k): v for k, v in kept["qualification"].items()},
                            allocations=kept["allocations"])
    url = _url(name, tmp)
    out_csv = tmp / f"{_slug(name)}-aggregate.csv"
    # The command a curator runs, on this campaign's database.
    env = {**os.environ, "EMOTIONS_DATABASE_URL": url, "EMOTIONS_DATA_DIR": str(tmp)}
    proc = subprocess.run([sys.executable, "-m", "curate_cli.main", "aggregate", "--project", _slug(name),
                           "--out", str(out_csv)], capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"curate aggregate failed: {proc.stderr.strip()}")
    aggregate = pd.read_csv(out_csv, dtype={"clip_id": str}).set_index("clip_id")
    truth = pd.Series({str(k): v for k, v in result.truth.items()})
    labelled = aggregate["label"].reindex(truth.index)
    aggregate_acc = float((labelled == truth).mean())
    engine = make_engine(url)
    maker = make_sessionmaker(engine)
    with maker() as session:
        real = list(result.truth)
        finals = dict(session.execute(select(Clip.id, Label.name).join(Label, Label.id == Clip.final_label_id)
                                      .where(Clip.id.in_(real))).all())
        machine_acc = sum(finals.get(cid) == lab for cid, lab in result.truth.items()) / len(real)
        # Where the curator's aggregate and the export (the stage machine's decisions) part.
        differ = sum(1 for cid in real if cid in finals and labelled.get(str(cid)) != finals[cid])
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
        "aggregate_differs_from_final": differ,
        "judgements_per_clip": crowd_judgements / len(real), "expert_share": expert / len(real),
        "not_resolved": int(discarded_or_open), "submissions": result.submissions, "rounds": result.rounds,
        "wall_s": kept["wall_s"],
        "honest_failed_qualification": sum(1 for _, passed in honest if passed is False) / max(len(honest), 1),
        "qualification_by_skill": sorted(honest), "balance": audit,
    }


def _campaign(name: str, spec: CrowdSpec, folder: Path, rescore: bool) -> dict[str, Any]:
    """One (policy, seed) campaign, run (or only scored again) in a worker process of ``--jobs``."""
    row = score(name, folder) if rescore else run_policy(name, spec, folder)
    return {**row, "seed": spec.seed}


def _line(row: dict[str, Any]) -> str:
    balance = row["balance"]
    return (f"{row['policy']:<24} seed {row['seed']}  acc(aggregate) {row['accuracy_aggregate']:.3f}  acc(final) "
            f"{row['accuracy_final_label']:.3f}  judgements/clip {row['judgements_per_clip']:.2f}"
            f"  expert {row['expert_share']:.1%}  balance over/legitimate/after withdrawal/violations "
            f"{balance['over_ceiling']}/{balance['legitimate']}/{balance.get('after_withdrawal', 0)}"
            f"/{balance['violations']}  honest failed qual {row['honest_failed_qualification']:.0%}"
            f"  ({row['wall_s']:.0f} s)")


# The bar for an adaptive policy against staged (#15): as accurate within half a point with
# at least 15 % fewer crowd judgements, or more accurate at no more judgements.
TARGET_POINTS, TARGET_SAVING = 0.005, 0.15


def expert_cost_for_target(judgements: float, expert: float, staged_judgements: float,
                           staged_expert: float) -> float | None:
    """The fewest crowd judgements an expert's decision must be worth for a policy's whole cost per
    clip (crowd judgements + that many per expert decision) to be ``TARGET_SAVING`` below staged's:
    0 when the crowd saving alone reaches it, None when no expert cost does.

    >>> expert_cost_for_target(4.2, 0.1, 5.0, 0.1), expert_cost_for_target(4.5, 0.05, 5.0, 0.15)
    (0.0, 3.225806)
    >>> expert_cost_for_target(4.5, 0.2, 5.0, 0.15) is None
    True
    """
    keep = 1 - TARGET_SAVING
    if judgements <= keep * staged_judgements:
        return 0.0
    if expert >= keep * staged_expert:
        return None
    return round((judgements - keep * staged_judgements) / (keep * staged_expert - expert), 6)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each policy over its seeds: mean, lowest and highest accuracy (``curate aggregate``), crowd
    judgements per clip and expert share; for each policy beside ``staged``, the differences seed by
    seed (same crowd) and whether it meets the issue's target against staged on their mean."""
    frame = pd.DataFrame(rows)
    staged = frame.loc[frame["policy"] == "staged", ["seed", "accuracy_aggregate", "judgements_per_clip", "expert_share"]]
    out = []
    for name, group in frame.groupby("policy", sort=False):
        summary: dict[str, Any] = {"policy": name, "seeds": sorted(int(s) for s in group["seed"])}
        for column in ("accuracy_aggregate", "judgements_per_clip", "expert_share"):
            summary[column] = float(group[column].mean())
            summary[f"{column}_range"] = [float(group[column].min()), float(group[column].max())]
        summary["violations"] = int(sum(row["violations"] for row in group["balance"]))
        paired = group.merge(staged, on="seed", suffixes=("", "_staged"))
        if name != "staged" and len(paired):
            points = paired["accuracy_aggregate"] - paired["accuracy_aggregate_staged"]
            saving = 1 - paired["judgements_per_clip"] / paired["judgements_per_clip_staged"]
            expert, expert_staged = paired["expert_share"].mean(), paired["expert_share_staged"].mean()
            summary["vs_staged"] = {
                "seeds": len(paired), "accuracy_points": [float(v) for v in points],
                "judgement_saving": [float(v) for v in saving],
                "mean_accuracy_points": float(points.mean()), "mean_judgement_saving": float(saving.mean()),
                "expert_saving": float(1 - expert / expert_staged) if expert_staged else None,
                "target_met": bool((points.mean() >= -TARGET_POINTS and saving.mean() >= TARGET_SAVING)
                                   or (points.mean() > 0 and saving.mean() >= 0)),
                # Only a policy as accurate as staged (within the band) can meet the target by its cost.
                "expert_cost_for_target": expert_cost_for_target(
                    paired["judgements_per_clip"].mean(), expert,
                    paired["judgements_per_clip_staged"].mean(), expert_staged)
                if points.mean() >= -TARGET_POINTS else None,
            }
        out.append(summary)
    return out


def _fewer(saving: float, digits: int) -> str:
    return f"{abs(saving):.{digits}%} {'fewer' if saving >= 0 else 'more'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--annotators", type=int, default=60)
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0],
                        help="One crowd per seed; every policy runs on each (default: 0).")
    parser.add_argument("--jobs", type=int, default=1,
                        help="Campaigns at a time, each in its own process and SQLite file (default 1).")
    parser.add_argument("--policies", nargs="+", default=DEFAULT_POLICIES,
                        help="staged, fixed-K, adaptive or adaptive:key=value,... (k_min, margin, k_max, weighting)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Keep each campaign's database and facts in this folder (default: a temporary one).")
    parser.add_argument("--rescore", action="store_true",
                        help="Score the campaigns kept in --keep again without running them.")
    args = parser.parse_args(argv)
    if args.rescore and args.keep is None:
        parser.error("--rescore needs --keep FOLDER")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    for name in args.policies:
        policy_settings(name)  # refuse an unknown policy before any campaign runs
    specs = {seed: CrowdSpec(n_annotators=args.annotators, n_clips=args.clips, seed=seed) for seed in args.seeds}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        # One folder per seed; a single seed keeps the flat layout earlier --keep folders have.
        folders = {seed: tmp / f"seed{seed}" if len(specs) > 1 else tmp for seed in specs}
        work = [(name, seed) for seed in specs for name in args.policies]
        if args.jobs == 1:
            for name, seed in work:
                if args.rescore:
                    row = _campaign(name, specs[seed], folders[seed], rescore=True)
                else:
                    with Progress(TextColumn(f"{name:<10} seed {seed}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), transient=True) as bar:
                        task = bar.add_task(name, total=args.clips)
                        row = {**run_policy(name, specs[seed], folders[seed], progress=lambda done, total, task=task:
                                            bar.update(task, completed=done)), "seed": seed}
                rows.append(row)
                print(_line(row), flush=True)
        else:
            # Campaigns share nothing (own SQLite file, own crowd object), so plain processes serve.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool, \
                    Progress(TextColumn("campaigns"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             transient=True) as bar:
                task = bar.add_task("campaigns", total=len(work))
                futures = [pool.submit(_campaign, name, specs[seed], folders[seed], args.rescore)
                           for name, seed in work]
                for future in as_completed(futures):
                    row = future.result()
                    rows.append(row)
                    bar.console.print(_line(row), markup=False, highlight=False, soft_wrap=True)
                    bar.advance(task)
            order = {key: i for i, key in enumerate(work)}
            rows.sort(key=lambda row: order[(row["policy"], row["seed"])])
    summary = summarise(rows)
    print(f"\n{'policy':<34} {'accuracy':>17} {'judgements/clip':>17} {'expert':>7}  vs staged (same crowds)")
    for item in summary:
        low, high = item["accuracy_aggregate_range"]
        jlow, jhigh = item["judgements_per_clip_range"]
        versus = item.get("vs_staged")
        tail = "" if versus is None else (
            f"{versus['mean_accuracy_points'] * 100:+.1f} points, {_fewer(versus['mean_judgement_saving'], 1)}"
            f" judgements, {_fewer(versus['expert_saving'] or 0.0, 0)} expert decisions over {versus['seeds']} crowd(s):"
            f" target {'met' if versus['target_met'] else 'not met'}"
            + ("" if versus["target_met"] or versus["expert_cost_for_target"] is None else
               f" (met with an expert decision worth ≥ {versus['expert_cost_for_target']:.1f} crowd judgements)"))
        print(f"{item['policy']:<24} ({len(item['seeds'])} seeds) {item['accuracy_aggregate']:.3f} "
              f"[{low:.3f}–{high:.3f}] {item['judgements_per_clip']:6.2f} [{jlow:.2f}–{jhigh:.2f}] "
              f"{item['expert_share']:6.1%}  {tail}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_policies.json").write_text(json.dumps(
        {"spec": {**specs[args.seeds[0]].__dict__, "seed": list(specs)}, "rows": rows, "summary": summary},
        indent=2) + "\n")
    _plot(summary, RESULTS / "bench_policies.png")
    print(f"written to {(RESULTS / 'bench_policies.json').relative_to(ROOT)} and bench_policies.png")
    return 0


def _plot(summary: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against the crowd's judgements per clip and, beside it, against the expert's share
    of the clips: a policy can buy accuracy with either, and the expert is the scarcer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    for ax, column, label in ((axes[0], "judgements_per_clip", "crowd judgements per clip"),
                              (axes[1], "expert_share", "share of clips the expert decides")):
        for item in summary:
            kind = item["policy"].split(":")[0].split("-")[0]
            x, y = item[column], item["accuracy_aggregate"]
            (xlow, xhigh), (ylow, yhigh) = item[f"{column}_range"], item["accuracy_aggregate_range"]
            ax.errorbar(x, y, xerr=[[x - xlow], [xhigh - x]], yerr=[[y - ylow], [yhigh - y]], fmt="o", capsize=2,
                        color={"fixed": "C0", "staged": "C1"}.get(kind, "C2"))
            ax.annotate(item["policy"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[1].xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    axes[0].set_ylabel("accuracy (curate aggregate)")
    seeds = max(len(item["seeds"]) for item in summary)
    fig.suptitle("Labelling policies on the simulated crowd"
                 + (f" (mean of {seeds} crowds, bars: range)" if seeds > 1 else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
