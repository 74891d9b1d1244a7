"""Quality control and label noise (#23): how early hidden gold and agreement with the other
annotators pause spammers, how many honest annotators they pause, and where the resolved clips'
label noise sits.

Two parts, side by side with the rule they replace:

1. **The pause rules, exactly.** For annotators of a given hidden-gold accuracy, the exact chance
   (dynamic programming over right/wrong counts, no sampling) of being paused within 60 hidden
   answers and the mean number of hidden answers before the pause, for the old rule (five answers,
   then any accuracy under the floor) and for the sequential test (``services.gold``) at several
   ``quality_error_rate`` settings. Spam labels admitted before the pause = hidden answers before
   it × (1 - gold_rate) / gold_rate real clips served per hidden one (gold_rate 0.05: 19). The same
   for the agreement test (``gold.agreement_test``: chance against the floor) over 300 pseudo-gold
   answers (labels on clips where the other annotators agree clearly), by agreement level.
2. **Campaigns through the real services** (``bench/_simulated_crowd.py``, the shared simulated
   crowd with its random and constant-label spammers, on a SQLite file), per ``quality_error_rate``
   twice: hidden gold alone (the agreement test switched off, as before it existed) and hidden gold
   with the agreement test. For each spammer: paused or not, by which rule, the labels that got in
   before the pause and those still counted (a pause withdraws their labels from open clips); the
   honest annotators paused, by rule; and the resolved clips by agreement pattern
   (``curation.aggregation.agreement_patterns``: 3/5, 4/5, 5/5, stage 2, expert) against the true
   labels. Clips the stage machine still has open when the crowd is served nothing more are "open
   at the end" (recomputed alone, a stage-1 clip with four of its five labels had shown as "3/4"
   or "4/4").

    python bench/bench_quality_control.py [--clips 300] [--annotators 30] [--error-rates 0.1 0.01] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACCURACIES = {"spammer (random, 6 labels)": 1 / 6, "poor 0.30": 0.30, "at the floor 0.50": 0.50,
              "honest 0.60": 0.60, "honest 0.69": 0.69, "honest 0.80": 0.80}
RATES = (0.01, 0.05, 0.1, 0.2)
HORIZON = 60
# Agreement with the others' clear consensus: a random spammer and a constant-label one on six even
# labels agree at chance; one who always gives a label a quarter of the clips have agrees more.
AGREEMENTS = {"spammer (chance, 6 labels)": 1 / 6, "constant on a 25 % label": 0.25, "poor 0.35": 0.35,
              "honest 0.50": 0.50, "honest 0.60": 0.60, "honest 0.70": 0.70, "honest 0.80": 0.80}
AGREEMENT_HORIZON = 300
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
    from annotation_app.models import Label, Project
    from annotation_app.services import gold
    from annotation_app.services.sequential import Verdict

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
            rows.append({"evidence": "hidden gold", "rule": rule_name, "annotator": who, "accuracy": round(accuracy, 3),
                         "horizon": HORIZON, "p_paused": round(paused, 4), "answers_before_pause": round(answers, 2),
                         "labels_admitted_before_pause": round(answers * per_gold, 1)})
    for rate in RATES:
        project = Project(quality_floor=0.5, quality_error_rate=rate, labels=[Label(name=str(i)) for i in range(6)])
        test = gold.agreement_test(project)
        rule = (lambda r, n, test=test: test.decide(r, n - r) is Verdict.reject)
        for who, agreement in AGREEMENTS.items():
            paused, answers = operating_characteristic(agreement, rule, AGREEMENT_HORIZON)
            # Every label on a clip the others agree on clearly is an answer: labels in ~ answers.
            rows.append({"evidence": "agreement", "rule": f"agreement, error rate {rate:g}", "annotator": who,
                         "accuracy": round(agreement, 3), "horizon": AGREEMENT_HORIZON, "p_paused": round(paused, 4),
                         "answers_before_pause": round(answers, 2), "labels_admitted_before_pause": None})
    return rows


def campaign(n_clips: int, n_annotators: int, seed: int, error_rate: float, agreement: bool = True) -> dict:
    """One campaign of bench/_simulated_crowd.py (the shared simulated crowd, through the real
    services) on a SQLite file; what quality control did to its spammers and honest annotators,
    and the resolved clips by agreement pattern against the true labels.

    ``agreement=False``: the agreement test is switched off (hidden gold alone, the rule before it)."""
    from unittest import mock

    from sqlalchemy import select

    from annotation_app import migrations
    from annotation_app.db import make_engine, make_sessionmaker
    from annotation_app.models import AuditEntry, Clip, ClipStatus, Judgement, User
    from annotation_app.services.projects import DEFAULT_LABELS
    from annotation_app.services.tables import judgements_table
    from bench._simulated_crowd import Crowd, CrowdSpec, make_campaign, run_campaign
    from curation.aggregation import agreement_patterns, resolve
    from curation.judgements import load_judgements

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'qc.sqlite3'}"
        migrations.upgrade(url)
        maker = make_sessionmaker(make_engine(url))
        spec = CrowdSpec(n_annotators=n_annotators, n_clips=n_clips, seed=seed)
        crowd = Crowd(spec, [lab["name"] for lab in DEFAULT_LABELS], [lab["polarity"] for lab in DEFAULT_LABELS])
        with maker() as session:
            # Staged, as #23's audited campaign was: the breakdown is by its agreement patterns (3/5 ...).
            result = make_campaign(session, crowd, name="qc", policy="staged", daily_cap=100_000,
                                   gold_rate=GOLD_RATE,
                                   # No qualification round: the spammers reach real work, as
                                   # those of #23's audited campaign did; hidden gold must catch them.
                                   qualification_size=0, quality_error_rate=error_rate)
            session.commit()
        if agreement:
            run_campaign(maker, result, crowd)
        else:
            with mock.patch("annotation_app.services.gold.agreement_test", return_value=None):
                run_campaign(maker, result, crowd)
        with maker() as session:
            paused = {u.id: u.paused for u in session.scalars(select(User).where(User.id.in_(list(result.people))))}
            rows = session.execute(select(Judgement.annotator_id, Judgement.excluded).where(
                Judgement.project_id == result.project_id, Judgement.stage.in_((1, 2)),
                Judgement.clip_id.in_(list(result.truth)))).all()
            pauses = {int(e.target_id): e.details for e in session.scalars(select(AuditEntry).where(
                AuditEntry.action == "annotator.auto_pause", AuditEntry.project_id == result.project_id))}
            table = judgements_table(session, "qc")
            still_open = {str(c) for c in session.scalars(select(Clip.id).where(
                Clip.project_id == result.project_id, Clip.status.in_((ClipStatus.active, ClipStatus.pending))))}
    labels_by: dict[int, list[bool]] = {}
    for aid, excluded in rows:
        labels_by.setdefault(int(aid), []).append(bool(excluded))
    spammers, honest_paused = [], []
    for aid, person in result.people.items():
        sim = person.annotator
        done = labels_by.get(aid, [])
        pause = pauses.get(aid, {})
        if sim.careless is not None:
            # A paused annotator is served nothing more: every label they submitted got in before it.
            spammers.append({"annotator": sim.name, "kind": sim.careless, "paused": paused.get(aid, False),
                             "rule": pause.get("rule"), "answers_at_pause": pause.get("answers"),
                             "labels_submitted": len(done), "labels_still_counted": done.count(False)})
        elif paused.get(aid):
            honest_paused.append({"annotator": sim.name, "skill": round(sim.skill, 3), "rule": pause.get("rule"),
                                  "answers_at_pause": pause.get("answers"), "labels_submitted": len(done)})
    table = table.drop(columns=[c for c in ("judgement_id", "annotator", "confidence", "cant_judge", "broken")
                                if c in table.columns])
    resolution = resolve(load_judgements(table))
    # resolve() would call a clip the stage machine still has open (k - 1 labels so far) "3/4" or
    # "4/4": those are shown as open, not as resolved.
    is_open = resolution.index.astype(str).isin(list(still_open))
    resolution.loc[is_open, "agreement_pattern"] = "open at the end"
    resolution.loc[is_open, "label"] = None
    truth = {str(k): v for k, v in result.truth.items()}
    patterns = agreement_patterns(resolution, truth)
    return {"quality_error_rate": error_rate, "agreement_test": agreement, "clips": n_clips, "annotators": n_annotators,
            "honest": sum(p.annotator.careless is None for p in result.people.values()),
            "spammers": spammers, "honest_paused": honest_paused,
            "agreement_patterns": patterns.reset_index().to_dict("records")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--annotators", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--error-rates", type=float, nargs="+", default=[0.1, 0.01],
                        help="quality_error_rate of each campaign (the default, and a strict one to compare)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    rows = rule_table()
    print(f"Pause rules at quality_floor 0.5 (hidden gold: within {HORIZON} hidden answers, labels admitted "
          f"before the pause at gold_rate {GOLD_RATE:g}; agreement: within {AGREEMENT_HORIZON} answers, "
          "each a label on a clip the others agree on clearly):")
    print(f"{'rule':34} {'annotator':28} {'P(paused)':>9} {'answers':>8} {'labels in':>9}")
    for row in rows:
        labels_in = row["labels_admitted_before_pause"]
        print(f"{row['rule']:34} {row['annotator']:28} {row['p_paused']:9.3f} "
              f"{row['answers_before_pause']:8.1f} {'' if labels_in is None else f'{labels_in:9.1f}'}")
    result = {"rules": rows, "campaigns": []}
    for rate in args.error_rates:
        for agreement in (False, True):
            run = campaign(args.clips, args.annotators, args.seed, rate, agreement)
            result["campaigns"].append(run)
            rules = "hidden gold + agreement" if agreement else "hidden gold alone"
            print(f"\nCampaign (bench/_simulated_crowd.py, {args.clips} clips, {args.annotators} annotators, "
                  f"quality_error_rate {rate:g}, {rules}):")
            for spam in run["spammers"]:
                how = (f"paused by {spam['rule']} after {spam['answers_at_pause']} answers" if spam["paused"]
                       else "never paused")
                print(f"  spammer {spam['annotator']} ({spam['kind']:8}): {how}; {spam['labels_submitted']} labels "
                      f"got in first, {spam['labels_still_counted']} still counted")
            by_rule: dict[str, int] = {}
            for person in run["honest_paused"]:
                by_rule[person["rule"]] = by_rule.get(person["rule"], 0) + 1
            print(f"  honest annotators paused: {len(run['honest_paused'])} of {run['honest']} {by_rule or ''} "
                  f"{[(p['annotator'], p['skill'], p['rule']) for p in run['honest_paused']]}")
            print(f"  {'pattern':16} {'clips':>6} {'share':>6} {'accuracy':>9}")
            for row in run["agreement_patterns"]:
                accuracy = row.get("accuracy")
                print(f"  {row['agreement_pattern']:16} {row['clips']:6d} {row['share']:6.1%} "
                      f"{'' if accuracy is None or accuracy != accuracy else f'{accuracy:9.3f}'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
