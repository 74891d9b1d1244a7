"""The qualification round (#15): how its pass rate depends on the annotator's skill, how many gold
clips a round costs, and which rule and defaults to ship.

Side by side, for each rule:

1. **Exactly.** For annotators of accuracy 1/6 (a random spammer over six labels) … 0.95 on gold
   clips, the chance of passing one round and the expected clips it takes, by dynamic programming
   over the counts of right and wrong answers (every answer sequence, no sampling; the verdict
   depends only on the counts). The verdict is the service's own: ``gold.round_verdict`` on a
   ``Project`` with the rule's settings. With retakes, P(pass within a attempts) = 1 - (1 - p)^a.
2. **The choice.** Every sequential rule of a small grid (pass mark, fail mark, error rate,
   round size at most) that passes an annotator of skill 0.6 with probability ≥ 0.9 and a random
   spammer with ≤ 0.01, ranked by the clips it costs the crowd's honest annotators (skills
   uniform 0.45–0.9, as ``bench/_simulated_crowd.py``'s).
3. **Through the real services** (sanity check): the seeded crowd of ``bench/_simulated_crowd.py``
   (spammers included) on a SQLite file, each annotator served qualification clips by
   ``work.next_item`` and answering through ``work.submit`` until their round is decided; failed
   annotators come back after the cool-down (``now`` moved on) for their retakes, on gold clips
   they have not seen. The measured pass rate is set beside the exact prediction for the same
   skills.

    python bench/bench_qualification.py [--annotators 120] [--seed 0] [--plot bench/results/bench_qualification.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_result  # noqa: E402

SKILLS = (1 / 6, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
# The rules compared: today's round, the fixed round at the new marks, and the sequential ones.
RULES = {
    "fixed 10 at 0.7 (before)": {"qualification_rule": "fixed", "qualification_size": 10,
                                 "qualification_pass_mark": 0.7},
    "fixed 20 at 0.6": {"qualification_rule": "fixed", "qualification_size": 20, "qualification_pass_mark": 0.6},
    "sequential 0.6/0.3, 0.1, ≤10": {"qualification_rule": "sequential", "qualification_size": 10,
                                     "qualification_pass_mark": 0.6, "qualification_fail_mark": 0.3,
                                     "qualification_error_rate": 0.1},
    "sequential 0.6/0.3, 0.1, ≤20 (default)": {"qualification_rule": "sequential", "qualification_size": 20,
                                               "qualification_pass_mark": 0.6, "qualification_fail_mark": 0.3,
                                               "qualification_error_rate": 0.1},
}
DEFAULT_RULE = "sequential 0.6/0.3, 0.1, ≤20 (default)"
ATTEMPTS = 3  # the default qualification_attempts
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # the simulated clock's start


def _project(settings: dict):  # noqa: ANN202
    from annotation_app.models import Project

    return Project(**{"qualification_fail_mark": 0.3, "qualification_error_rate": 0.1, **settings})


def round_outcome(skill: float, settings: dict) -> tuple[float, float]:
    """(P(pass), expected clips answered) of one round for an annotator right with probability ``skill``."""
    from annotation_app.services.gold import round_verdict

    project = _project(settings)
    size = int(settings["qualification_size"])
    alive = {0: 1.0}  # right answers so far → probability of being here undecided
    passed = clips = 0.0
    for answered in range(1, size + 1):
        nxt: dict[int, float] = {}
        for right, mass in alive.items():
            for r, p in ((right + 1, skill), (right, 1 - skill)):
                verdict = round_verdict(project, r, answered, size)
                if verdict is None:
                    nxt[r] = nxt.get(r, 0.0) + mass * p
                else:
                    clips += mass * p * answered
                    passed += mass * p * bool(verdict)
        alive = nxt
    assert not alive  # the last clip always decides
    return passed, clips


def exact_table() -> list[dict]:
    rows = []
    for name, settings in RULES.items():
        for skill in SKILLS:
            p, clips = round_outcome(skill, settings)
            rows.append({"rule": name, "skill": round(skill, 3), "p_pass": round(p, 4),
                         f"p_pass_within_{ATTEMPTS}": round(1 - (1 - p) ** ATTEMPTS, 4),
                         "clips_per_round": round(clips, 2)})
    return rows


def choose(top: int = 8) -> list[dict]:
    """Sequential rules passing skill 0.6 with ≥ 0.9 and a random spammer with ≤ 0.01, cheapest first."""
    honest = [0.45 + 0.05 * i for i in range(10)]  # the crowd's honest skills, 0.45 … 0.9
    found = []
    for good in (0.55, 0.6, 0.65, 0.7):
        for poor in (0.2, 0.25, 0.3, 0.35):
            for rate in (0.02, 0.05, 0.1):
                for size in (10, 15, 20):
                    if poor >= good:
                        continue
                    settings = {"qualification_rule": "sequential", "qualification_size": size,
                                "qualification_pass_mark": good, "qualification_fail_mark": poor,
                                "qualification_error_rate": rate}
                    p60 = round_outcome(0.6, settings)[0]
                    spam = round_outcome(1 / 6, settings)
                    if p60 < 0.9 or spam[0] > 0.01:
                        continue
                    cost = sum(round_outcome(s, settings)[1] for s in honest) / len(honest)
                    found.append({"pass_mark": good, "fail_mark": poor, "error_rate": rate, "size": size,
                                  "p_pass_0.6": round(p60, 3), "p_pass_0.3": round(round_outcome(0.3, settings)[0], 3),
                                  "p_pass_spammer": round(spam[0], 4), "spammer_clips": round(spam[1], 1),
                                  "honest_clips": round(cost, 2)})
    found.sort(key=lambda r: r["honest_clips"])
    return found[:top]


def simulate(rule: str, n_annotators: int, seed: int) -> dict:
    """The crowd through the real services under ``rule``: each annotator's rounds until they pass or
    run out of attempts (a failed one returns after the cool-down); pass rates and clips measured,
    beside the exact prediction for the same skills."""
    from sqlalchemy import select

    from annotation_app import migrations
    from annotation_app.db import make_engine, make_sessionmaker
    from annotation_app.models import GoldItem, Label, Project, User
    from annotation_app.services import work
    from annotation_app.services.projects import DEFAULT_LABELS
    from bench._simulated_crowd import Crowd, CrowdSpec, make_campaign

    settings = RULES[rule]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'qualification.sqlite3'}"
        migrations.upgrade(url)
        maker = make_sessionmaker(make_engine(url))
        # Gold enough for three rounds of at most 20 unseen clips each.
        spec = CrowdSpec(n_annotators=n_annotators, n_clips=5, n_gold=3 * int(settings["qualification_size"]),
                         seed=seed)
        crowd = Crowd(spec, [lab["name"] for lab in DEFAULT_LABELS], [lab["polarity"] for lab in DEFAULT_LABELS])
        with maker() as session:
            result = make_campaign(session, crowd, name="q", gold_rate=0.0, qualification_retake_hours=24,
                                   qualification_attempts=ATTEMPTS, **settings)
            session.commit()
            project = session.get(Project, result.project_id)
            truth = {int(c): str(n) for c, n in session.execute(
                select(GoldItem.clip_id, Label.name).join(Label, Label.id == GoldItem.label_id)
                .where(GoldItem.project_id == project.id))}
            people = []
            for aid, person in result.people.items():
                user = session.get(User, aid)
                now, outcome = T0, []
                for attempt in range(1, ATTEMPTS + 1):
                    answered, state = 0, None
                    while True:
                        item = work.next_item(session, project, user, now=now)
                        if item is None or not item.is_qualification:
                            break
                        label = crowd.judge(person, truth[item.clip_id])
                        state = work.submit(session, project, user, assignment_id=item.assignment_id, label=label,
                                            client_request_id=uuid.uuid4().hex, now=now).qualification
                        answered += 1
                        if state["passed"] is not None:
                            break
                    session.commit()
                    passed = bool(state and state["passed"])
                    outcome.append((passed, answered))
                    if passed or state is None:
                        break
                    now += timedelta(hours=24)  # the cool-down, then the retake
                sim = person.annotator
                people.append({"annotator": sim.name, "kind": sim.careless or "honest", "skill": sim.skill,
                               "first_passed": outcome[0][0], "passed": outcome[-1][0],
                               "attempts": len(outcome), "first_round_clips": outcome[0][1]})
    honest = [p for p in people if p["kind"] == "honest"]
    spammers = [p for p in people if p["kind"] != "honest"]
    predicted = [round_outcome(p["skill"], settings) for p in honest]
    mean = (lambda xs: sum(xs) / len(xs) if xs else float("nan"))  # noqa: E731
    return {
        "rule": rule, "annotators": len(people), "honest": len(honest), "spammers": len(spammers),
        "honest_first_round_pass": round(mean([p["first_passed"] for p in honest]), 3),
        "honest_first_round_pass_exact": round(mean([p for p, _ in predicted]), 3),
        "honest_pass_within_attempts": round(mean([p["passed"] for p in honest]), 3),
        "honest_pass_within_attempts_exact": round(mean([1 - (1 - p) ** ATTEMPTS for p, _ in predicted]), 3),
        "honest_first_round_clips": round(mean([p["first_round_clips"] for p in honest]), 2),
        "honest_first_round_clips_exact": round(mean([c for _, c in predicted]), 2),
        "honest_skill_0.6_up_first_pass": round(mean([p["first_passed"] for p in honest if p["skill"] >= 0.6]), 3),
        "spammers_passed_first_round": sum(p["first_passed"] for p in spammers),
        "spammers_passed_within_attempts": sum(p["passed"] for p in spammers),
        "spammer_first_round_clips": round(mean([p["first_round_clips"] for p in spammers]), 2),
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for rule in RULES:
        mine = [r for r in rows if r["rule"] == rule]
        style = "-" if rule == DEFAULT_RULE else "--"
        left.plot([r["skill"] for r in mine], [r["p_pass"] for r in mine], style, marker="o", ms=3, label=rule)
        right.plot([r["skill"] for r in mine], [r["clips_per_round"] for r in mine], style, marker="o", ms=3, label=rule)
    for axis in (left, right):
        axis.axvline(1 / 6, color="grey", lw=0.8, ls=":")
        axis.axvline(0.6, color="grey", lw=0.8, ls=":")
        axis.set_xlabel("annotator accuracy on gold clips (1/6: random spammer)")
    left.set_ylabel("P(pass one round)")
    right.set_ylabel("expected clips per round")
    left.legend(fontsize=7, loc="lower right")
    fig.suptitle("Qualification round: pass rate and cost by skill (exact)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=120, help="simulated crowd per rule (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=lambda s: Path(s) if s else None,
                        default=ROOT / "bench" / "results" / "bench_qualification.png", help="PNG path ('': none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    rows = exact_table()
    print(f"One qualification round, exactly (P(pass within {ATTEMPTS}) = 1 - (1 - p)^{ATTEMPTS}, the retakes):")
    print(f"{'rule':40} " + " ".join(f"{s:>6.2f}" for s in SKILLS))
    for rule in RULES:
        mine = {r["skill"]: r for r in rows if r["rule"] == rule}
        for key, what in (("p_pass", "P(pass)"), (f"p_pass_within_{ATTEMPTS}", f"P(pass ≤{ATTEMPTS})"),
                          ("clips_per_round", "clips")):
            cells = " ".join(f"{mine[round(s, 3)][key]:6.3f}" if key != "clips_per_round"
                             else f"{mine[round(s, 3)][key]:6.1f}" for s in SKILLS)
            print(f"{rule[:28] + ' ' + what:40} {cells}")
    chosen = choose()
    print("\nSequential rules passing skill 0.6 with ≥ 0.9 and a random spammer with ≤ 0.01, cheapest first "
          "(clips: mean over honest skills 0.45–0.9):")
    for row in chosen:
        print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
    result = {"exact": rows, "chosen": chosen, "simulated": [], "machine": machine()}
    if args.annotators > 0:
        print(f"\nThrough the real services (bench/_simulated_crowd.py, {args.annotators} annotators, seed {args.seed}; "
              "measured vs exact for the same skills):")
        for rule in RULES:
            run = simulate(rule, args.annotators, args.seed)
            result["simulated"].append(run)
            print(f"  {rule}: honest pass first round {run['honest_first_round_pass']:.3f} "
                  f"(exact {run['honest_first_round_pass_exact']:.3f}), within {ATTEMPTS} "
                  f"{run['honest_pass_within_attempts']:.3f} (exact {run['honest_pass_within_attempts_exact']:.3f}); "
                  f"clips {run['honest_first_round_clips']:.1f} (exact {run['honest_first_round_clips_exact']:.1f}); "
                  f"skill ≥ 0.6 first-round pass {run['honest_skill_0.6_up_first_pass']:.3f}; spammers passed "
                  f"{run['spammers_passed_first_round']}/{run['spammers']} first round, "
                  f"{run['spammers_passed_within_attempts']}/{run['spammers']} within {ATTEMPTS}, "
                  f"{run['spammer_first_round_clips']:.1f} clips")
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        write_result(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
