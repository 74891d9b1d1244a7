"""Benchmark: how the next-clip reads grow with an annotator's history (PostgreSQL).

    .venv/bin/python bench/bench_queue_history.py                      # histories 0, 1000, 5000
    .venv/bin/python bench/bench_queue_history.py --histories 0 2000 --calls 100

The HTTP benchmark's annotators start from nothing and end a run with ~150 assignments each; a real
project is labelled by a few dozen people over weeks (eMotions: ~84k stage-1 slots), so each of them
carries thousands. Every next-clip request reads the annotator's state (today's and all-time
counts, the live lease: ``_queries.STATE``) and the first window of candidate clips
(``_queries.candidates``: the oldest open clips the annotator never had). This measures both, per
call, on one connection, against the number of past submitted assignments H of one annotator, in
two layouts of those past clips:

* ``closed``: the annotator's past clips are resolved (others finished them): the usual case;
* ``open``: they are still open in stage 1, waiting for other annotators, and they are the oldest
  open clips: the worst case for the window, which walks clips in id order.

Each case: a throwaway database at ``EMOTIONS_TEST_PG_ADMIN_URL``, one project (k=3), the annotator,
H past clips (each with its submitted assignment and judgement, days old) and 5,000 open clips
after them, 30 colleagues with 100 slots each done today (so the planner's statistics see a team), ``VACUUM ANALYZE`` (as autovacuum leaves past days' rows), a warm-up, then ``--calls``
calls of each read. Reported: milliseconds per call (client and server together), and the ratio
to H = 0 (the baseline). Results print as a table and go to ``bench/results/queue_history.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotation_app import migrations  # noqa: E402
from annotation_app.db import make_engine, make_sessionmaker, run_prebuilt  # noqa: E402
from annotation_app.models import (  # noqa: E402
    Assignment,
    AssignmentStatus,
    Clip,
    ClipStatus,
    Judgement,
    Project,
    Role,
    User,
)
from annotation_app.services import _queries as sql  # noqa: E402
from annotation_app.services import projects, work  # noqa: E402
from bench.bench_annotation_http import make_database  # noqa: E402  (the same throwaway databases)

RESULTS = ROOT / "bench" / "results"
OPEN_AFTER = 5_000
COLLEAGUES, COLLEAGUE_SLOTS = 30, 100


def _seed(url: str, history: int, layout: str) -> tuple[int, int]:
    migrations.upgrade(url)
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            project = projects.create_project(session, "history", policy="staged", overlap_k=3, stage2_extra=0, gold_rate=0.0,
                                              qualification_size=0, daily_cap=1_000_000)
            me = User(username="me", password_hash="-", role=Role.annotator, gender="female", age_band="18-29",
                      languages=["en"])
            session.add(me)
            session.flush()
            past = ClipStatus.resolved if layout == "closed" else ClipStatus.active
            session.execute(insert(Clip), [
                {"project_id": project.id, "sha256": f"{i:064x}", "media_path": f"c{i}.mp4", "duration_s": 10.0,
                 "status": past if i < history else ClipStatus.active}
                for i in range(history + OPEN_AFTER)])
            if history:
                clip_ids = session.scalars(select(Clip.id).order_by(Clip.id).limit(history)).all()
                then = datetime.now(UTC) - timedelta(days=3)
                session.execute(insert(Assignment), [
                    {"project_id": project.id, "clip_id": cid, "annotator_id": me.id, "stage": 1, "is_gold": False,
                     "status": AssignmentStatus.submitted, "leased_at": then, "lease_expires_at": then}
                    for cid in clip_ids])
                # Each past slot was submitted: its judgement (the progress counts read these).
                label_id = project.labels[0].id
                session.execute(insert(Judgement), [
                    {"project_id": project.id, "clip_id": cid, "annotator_id": me.id, "assignment_id": aid,
                     "stage": 1, "label_id": label_id, "submitted_at": then, "client_request_id": f"r{aid}"}
                    for aid, cid in session.execute(select(Assignment.id, Assignment.clip_id)
                                                    .where(Assignment.annotator_id == me.id))])
            # Colleagues, so the planner's statistics see a team (the average annotator's rows, today's
            # rows of the project): their work today, on clips of their own that are resolved.
            colleagues = [User(username=f"colleague{i}", password_hash="-", role=Role.annotator, gender="male",
                               age_band="30-44", languages=["en"]) for i in range(COLLEAGUES)]
            session.add_all(colleagues)
            session.flush()
            first = history + OPEN_AFTER
            session.execute(insert(Clip), [
                {"project_id": project.id, "sha256": f"{first + i:064x}", "media_path": f"c{first + i}.mp4",
                 "duration_s": 10.0, "status": ClipStatus.resolved} for i in range(COLLEAGUE_SLOTS)])
            theirs = session.scalars(select(Clip.id).order_by(Clip.id.desc()).limit(COLLEAGUE_SLOTS)).all()
            today = datetime.now(UTC) - timedelta(minutes=5)
            session.execute(insert(Assignment), [
                {"project_id": project.id, "clip_id": cid, "annotator_id": who.id, "stage": 1, "is_gold": False,
                 "status": AssignmentStatus.submitted, "leased_at": today, "lease_expires_at": today}
                for who in colleagues for cid in theirs])
            session.execute(insert(Judgement), [
                {"project_id": project.id, "clip_id": cid, "annotator_id": who, "assignment_id": aid, "stage": 1,
                 "label_id": project.labels[0].id, "submitted_at": today, "client_request_id": f"r{aid}"}
                for aid, cid, who in session.execute(select(Assignment.id, Assignment.clip_id, Assignment.annotator_id)
                                                     .where(Assignment.annotator_id != me.id))])
            session.commit()
            ids = project.id, me.id
        # Past days' rows are vacuumed in a running deployment (autovacuum): their pages are
        # all-visible, so index-only scans need not visit the table for them.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        return ids
    finally:
        engine.dispose()


def _per_call_ms(call: Any, calls: int) -> float:
    for _ in range(max(10, calls // 10)):  # past psycopg's prepare threshold and PostgreSQL's custom plans
        call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) * 1000 / calls


def run_case(history: int, layout: str, calls: int) -> dict[str, Any]:
    url, drop = make_database("postgres", Path(tempfile.gettempdir()), f"history_{layout}_{history}")
    try:
        project_id, user_id = _seed(url, history, layout)
        engine = make_engine(url)
        try:
            with make_sessionmaker(engine)() as session:
                project = session.get(Project, project_id)
                assert project is not None
                now = datetime.now(UTC)
                stages = work._open_stages(project)
                window = {"project_id": project_id, "user_id": user_id, "now": now,
                          **work._window_params(project, stages, 0)}
                state = {"project_id": project_id, "user_id": user_id, "now": now, "day_start": work.day_start(now)}
                found = len(run_prebuilt(session, sql.candidates(tuple(stages)), window).all())
                counted = run_prebuilt(session, sql.STATE, state).one()
                row = {
                    "history": history, "layout": layout, "candidates_found": found,
                    # What the state read counted: the seeded history, as next-clip sees it.
                    "served_total": int(counted.served_total), "done_total": int(counted.done_total),
                    "state_ms": _per_call_ms(lambda: run_prebuilt(session, sql.STATE, state).one(), calls),
                    "candidates_ms": _per_call_ms(
                        lambda: run_prebuilt(session, sql.candidates(tuple(stages)), window).all(), calls),
                    # What next-clip runs: both in one round trip.
                    "state_and_window_ms": _per_call_ms(
                        lambda: work._read_state(session, project, user_id, now, with_window=True), calls),
                }
                session.rollback()
        finally:
            engine.dispose()
    finally:
        drop()
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--histories", type=int, nargs="+", default=[0, 1000, 5000])
    parser.add_argument("--layouts", nargs="+", default=["closed", "open"], choices=["closed", "open"])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", default=str(RESULTS / "queue_history.json"))
    args = parser.parse_args(argv)
    histories = sorted(set(args.histories) | {0})  # H = 0 is the baseline
    rows = []
    for layout in args.layouts:
        for history in histories:
            print(f"… {layout}, history {history}", file=sys.stderr, flush=True)
            rows.append(run_case(history, layout, args.calls))
    base = {r["layout"]: r for r in rows if r["history"] == 0}
    print(f"{'layout':7} {'history':>7} {'state ms':>9} {'window ms':>10} {'both ms':>8} {'both ×H=0':>10}")
    for r in rows:
        ratio = r["state_and_window_ms"] / base[r["layout"]]["state_and_window_ms"]
        r["ratio_to_h0"] = ratio
        print(f"{r['layout']:7} {r['history']:>7} {r['state_ms']:9.2f} {r['candidates_ms']:10.2f} "
              f"{r['state_and_window_ms']:8.2f} {ratio:9.2f}×")
    print("ms per call, client and PostgreSQL together, one connection; load average now: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows, "calls": args.calls, "command": " ".join(sys.argv)},
                                          indent=2))
    print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
