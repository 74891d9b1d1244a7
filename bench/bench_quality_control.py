"""Quality control and label noise (#23): how early hidden gold pauses spammers, how many honest
annotators it pauses, and where the resolved clips' label noise sits.

Two parts, side by side with the rule they replace:

1. **The pause rule, exactly.** For annotators of a given hidden-gold accuracy, the exact chance
   (dynamic programming over right/wrong counts, no sampling) of being paused within 60 hidden
   answers and the mean number of hidden answers before the pause, for the old rule (five answers,
   then any accuracy under the floor) and for the sequential test (``services.gold``) at several
   ``quality_error_rate`` settings. Spam labels admitted before the pause = hidden answers before
   it × (1 - gold_rate) / gold_rate real clips served per hidden one (gold_rate 0.05: 19).
2. **A campaign through the real services.** ``curate demo --simulate`` (curate_cli.demo: the
   simulated crowd of ``curation.demo`` driven through the queue, the stage machine and the expert
   queue on a SQLite file) and then the agreement-pattern breakdown of the resolved clips
   (``curation.aggregation.agreement_patterns``) against the clips' true labels, with the pauses
   the campaign produced.

    python bench/bench_quality_control.py [--clips 60] [--simulated 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACCURACIES = {"spammer (random, 6 labels)": 1 / 6, "poor 0.30": 0.30, "at the floor 0.50": 0.50,
              "honest 0.60": 0.60, "honest 0.69": 0.69, "honest 0.80": 0.80}
RATES = (0.01, 0.05, 0.1, 0.2)
HORIZON = 60
GOLD_RATE = 0.05


def _old_rule(right: int, answers: int, floor: float = 0.5) -> bool:
    """The quality floor before #23: at least five hidden answers, then accuracy under the floor."""
    return answers >= 5 and right / answers < floor


def operating_characteristic(accuracy: float, rule, horizon: int = HORIZON) -> tuple[float, float]:  # noqa: ANN001
    """(P(paused within horizon answers), mean answers before the pause given paused)."""
    alive, paused, answers = {0: 1.0}, 0.0, 0.0
    for n in range(1, horizon + 1):
        nxt: dict[int, float] = {}
        for right, mass in alive.items():
            for r, p in ((right + 1, accuracy), (right, 1 - accuracy)):
                if rule(r, n):
                    paused += mass * p
                    answers += mass * p * n
                else:
                    nxt[r] = nxt.get(r, 0.0) + mass * p
        alive = nxt
    return paused, (answers / paused if paused else float("nan"))


def rule_table() -> list[dict]:
    from annotation_app.models import Project
    from annotation_app.services import gold

    rules = {"old: 5 answers, then < floor": _old_rule}
    for rate in RATES:
        project = Project(quality_floor=0.5, quality_error_rate=rate)
        rules[f"sequential, error rate {rate:g}"] = (
            lambda r, n, project=project: gold.below_quality_floor(project, r, n))
    rows = []
    per_gold = (1 - GOLD_RATE) / GOLD_RATE
    for rule_name, rule in rules.items():
        for who, accuracy in ACCURACIES.items():
            paused, answers = operating_characteristic(accuracy, rule)
            rows.append({"rule": rule_name, "annotator": who, "accuracy": round(accuracy, 3),
                         "p_paused_within_60": round(paused, 4), "hidden_answers_before_pause": round(answers, 2),
                         "labels_admitted_before_pause": round(answers * per_gold, 1)})
    return rows


def campaign(n_clips: int, n_simulated: int, seed: int) -> dict:
    from sqlalchemy import select

    from annotation_app import migrations
    from annotation_app.models import AuditEntry, Clip, Project
    from annotation_app.services.tables import judgements_table
    from annotation_app.settings import get_settings
    from curate_cli.common import open_session
    from curate_cli.demo import build_demo
    from curation.aggregation import agreement_patterns, resolve
    from curation.judgements import load_judgements

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EMOTIONS_DATA_DIR"] = str(Path(tmp) / "data")
        os.environ.pop("EMOTIONS_DATABASE_URL", None)
        os.environ.pop("EMOTIONS_MEDIA_DIR", None)
        get_settings.cache_clear()
        cfg = get_settings()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        migrations.upgrade(cfg.database_url)
        summary = build_demo(cfg, project="bench", n_clips=n_clips, n_annotators=6, simulate=True,
                             n_simulated=n_simulated, keep_open=0, seed=seed)
        with open_session(cfg) as session:
            project = session.scalar(select(Project).where(Project.name == "bench"))
            table = judgements_table(session, "bench")
            truth = {str(c.id): c.true_label.name for c in session.scalars(
                select(Clip).where(Clip.project_id == project.id)) if c.true_label is not None}
            pauses = [e.details for e in session.scalars(select(AuditEntry).where(
                AuditEntry.action == "annotator.auto_pause", AuditEntry.project_id == project.id))]
        get_settings.cache_clear()
    table = table.drop(columns=[c for c in ("judgement_id", "annotator", "confidence", "cant_judge", "broken")
                                if c in table.columns])
    table["clip_id"] = table["clip_id"].astype(str)
    resolution = resolve(load_judgements(table))
    patterns = agreement_patterns(resolution, truth)
    return {"demo": {k: v for k, v in summary.items() if k != "logins"},
            "agreement_patterns": patterns.reset_index().to_dict("records"),
            "auto_pauses": pauses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--simulated", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    rows = rule_table()
    print(f"Pause rule at quality_floor 0.5, within {HORIZON} hidden answers "
          f"(labels admitted before the pause at gold_rate {GOLD_RATE:g}):")
    print(f"{'rule':34} {'annotator':28} {'P(paused)':>9} {'answers':>8} {'labels in':>9}")
    for row in rows:
        print(f"{row['rule']:34} {row['annotator']:28} {row['p_paused_within_60']:9.3f} "
              f"{row['hidden_answers_before_pause']:8.1f} {row['labels_admitted_before_pause']:9.1f}")
    result = {"rules": rows, "campaign": campaign(args.clips, args.simulated, args.seed)}
    print(f"\nCampaign through the real services ({args.clips} clips, {args.simulated} simulated annotators):")
    print(f"{'pattern':12} {'clips':>6} {'share':>6} {'accuracy':>9}")
    for row in result["campaign"]["agreement_patterns"]:
        accuracy = row.get("accuracy")
        print(f"{row['agreement_pattern']:12} {row['clips']:6d} {row['share']:6.1%} "
              f"{'' if accuracy is None or accuracy != accuracy else f'{accuracy:9.3f}'}")
    print(f"auto-pauses: {len(result['campaign']['auto_pauses'])}: {result['campaign']['auto_pauses']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
