"""Benchmark: the annotation service layer's throughput (next_item → submit → commit), service level.

    .venv/bin/python bench/bench_allocation.py                       # SQLite and PostgreSQL, 1 and 64 clients
    .venv/bin/python bench/bench_allocation.py --backends sqlite --clients 1 16 64 --clips 100

Each case builds a fresh database (a SQLite file, or a throwaway PostgreSQL database at
``EMOTIONS_TEST_PG_ADMIN_URL``), a project with the default stages (k=5, m=3), ``--clips`` clips and
64 annotators of varied profiles, then runs N client threads — each with its own session — that
loop ``next_item`` → ``submit`` → ``commit`` until no work is left for anybody. Labels are drawn so
that about a fifth of the clips go to stage 2. Reported: submissions, wall seconds, submissions per
second, the ratio to the single-client run on the same backend (the baseline), SQL statements per
submission (every statement of next_item + submit, SAVEPOINTs included, COMMITs not, the idle polling
at the end included), the slots given on a balance rule that yielded, per rule (``relaxed``:
nobody of a clip's preferred groups available now or left, ``services.allocation``) and the 1-minute
load average. The HTTP-level benchmark is ``bench_annotation_http.py``. Results print as a table and go to
``bench/results/bench_allocation.json``. Our machines are shared: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, event, func, make_url, select, text  # noqa: E402

from annotation_app import migrations  # noqa: E402
from annotation_app.db import make_engine, make_sessionmaker  # noqa: E402
from annotation_app.models import Judgement, Project, User  # noqa: E402
from annotation_app.services import attention, work  # noqa: E402
from tests.annotation_app.factories import make_annotators, make_clips, make_project  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG_ADMIN_URL = os.environ.get("EMOTIONS_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _database(backend: str, tmp: Path) -> tuple[str, Any]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.sqlite3'}"
        migrations.upgrade(url)
        return url, lambda: None
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"emotions_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    migrations.upgrade(url)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def run_case(backend: str, n_clients: int, n_clips: int, tmp: Path) -> dict[str, Any]:
    url, drop = _database(backend, tmp)
    engine = make_engine(url, pool_size=max(5, min(27, n_clients // 2 + 2)))
    maker = make_sessionmaker(engine)
    try:
        with maker() as session:
            project = make_project(session, daily_cap=10_000)
            make_clips(session, project, n_clips, language=["zh", None, "en", None])
            annotators = make_annotators(session, 64)
            session.commit()
            project_id, ids = project.id, [a.id for a in annotators]
        errors: list[str] = []
        # Statements sent during the run (SAVEPOINTs included, COMMITs not), per submission. On
        # PostgreSQL the queue's statements go to psycopg directly (db.run_prebuilt), past
        # SQLAlchemy's events: there every psycopg cursor's execute is counted instead.
        statements = [0]
        if backend == "postgres":
            import psycopg

            real_execute = psycopg.Cursor.execute

            def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
                statements[0] += 1
                return real_execute(self, *args, **kwargs)

            psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
        else:
            @event.listens_for(engine, "before_cursor_execute")
            def _count(*_: Any) -> None:
                statements[0] += 1

        # n_clients threads share the 64 annotators: client i plays annotators i, i+n, i+2n, ...
        roles = [ids[i::n_clients] for i in range(n_clients)]

        def client(index: int) -> None:
            rng = random.Random(index)
            try:
                with maker() as session:
                    project = session.get(Project, project_id)
                    mine = [session.get(User, aid) for aid in roles[index]]
                    labels = [lab.name for lab in project.labels]
                    idle = 0
                    while idle < 2:
                        served = 0
                        for user in mine:
                            item = work.next_item(session, project, user)
                            session.commit()
                            if item is None:
                                continue
                            label = labels[item.clip_id % 6] if rng.random() < 0.8 else rng.choice(labels)
                            work.submit(session, project, user, assignment_id=item.assignment_id, label=label,
                                        time_on_task_s=4.0, client_request_id=uuid.uuid4().hex)
                            session.commit()
                            served += 1
                        idle = idle + 1 if served == 0 else 0
                        if served == 0:
                            time.sleep(0.05)
            except Exception as exc:  # noqa: BLE001 - reported in the table
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
        if backend == "postgres":
            psycopg.Cursor.execute = real_execute  # type: ignore[method-assign]
        else:
            event.remove(engine, "before_cursor_execute", _count)
        with maker() as session:
            n = session.scalar(select(func.count()).select_from(Judgement).where(Judgement.project_id == project_id))
            relaxed = attention.relaxed_allocations(session, session.get(Project, project_id), limit=0)["by_rule"]
        return {"backend": backend, "clients": n_clients, "clips": n_clips, "submissions": int(n),
                "seconds": round(seconds, 2), "per_second": round(n / seconds, 1),
                "statements_per_submission": round(statements[0] / max(int(n), 1), 1), "relaxed": relaxed,
                "errors": errors[:3]}
    finally:
        engine.dispose()
        drop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--clips", type=int, default=200)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends:
            base = None
            for n in args.clients:
                row = run_case(backend, n, args.clips, Path(tmp))
                base = base or row["per_second"]
                row["ratio_to_1_client"] = round(row["per_second"] / base, 2) if base else None
                rows.append(row)
                row["load_1min"] = round(os.getloadavg()[0], 2)
                print(f"{row['backend']:9} clients={row['clients']:3} submissions={row['submissions']:5} "
                      f"{row['seconds']:7.2f}s {row['per_second']:8.1f}/s  ×{row['ratio_to_1_client']}  "
                      f"{row['statements_per_submission']:5.1f} statements/submission  relaxed {row['relaxed']}  "
                      f"load {row['load_1min']}"
                      + (f"  errors: {row['errors']}" if row["errors"] else ""), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"machine": platform.platform(), "cpus": os.cpu_count(),
           "load_average": os.getloadavg(), "rows": rows}
    (RESULTS / "bench_allocation.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
