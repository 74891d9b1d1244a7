"""Benchmark: our annotation app beside Label Studio Community, the same next → submit loop, one run.

    .venv/bin/python bench/bench_peer_labelstudio.py          # SQLite and PostgreSQL, 50 and 200 clients, overlap 3
    .venv/bin/python bench/bench_peer_labelstudio.py --backends sqlite --clients 50 --seconds 10 \
        --ls-servers gunicorn                                 # a quick pair

Label Studio (``--ls-version``, default 1.23.2) is installed from the package registry, with
gunicorn, into a venv of its own under the work folder (``--work``, default
bench/work/peer-labelstudio, ignored by git; the install is skipped when that venv already has
that version). Its database is migrated once per backend (a template: a SQLite file that is
copied, a PostgreSQL database used as ``TEMPLATE``), with one organization whose legacy API tokens
are on. Then, for every (backend, clients) case, interleaved, back to back on the same backend and
client count:

* **ours**: ``bench_annotation_http.run_case`` in saturation mode (a fresh database, one project
  with k = 3, one annotator per client, ``uvicorn --workers W`` with the app's default threads);
* **Label Studio**, once per server in ``--ls-servers``: a fresh copy of the template, one user
  per client with a legacy API token, a video-classification project with the six labels
  (``<Video>`` + ``<Choices>``), ``maximum_annotations`` = 3 (the overlap; the tasks' own overlap
  set to it, as its import does) and ``--tasks`` tasks, served by ``gunicorn`` (``core.wsgi``,
  W workers × ``--ls-threads`` threads, gthread: the same shape as ours) and/or by
  ``label-studio start`` (the command's own server, Django's threaded ``runserver``).

Both sides are driven by the same client: ``bench_annotation_http.run_load`` in saturation mode
(one keep-alive connection per annotator, zero think time), Label Studio's requests being
``GET /api/projects/ID/next/`` → ``POST /api/tasks/TASK/annotations/`` (``LabelStudioApi``). Each
request waits at most ``--timeout`` seconds; a client whose request goes unanswered leaves the run
and is counted (``clients_gave_up``), as are clients that never had a submission accepted, and each
phase ends at most 2 × timeout + 5 s after its window: a server that falls behind bounds the run.

Reported per side: submissions/s, p50/p99 of next and submit (of the requests answered), errors,
clients that gave up or were never served, the server it ran and the 1-minute load average; and
the ratios ours / Label Studio. Afterwards Label Studio's database is read back for what its
Community edition did with several annotators per task: annotations per task (max against the
overlap asked, tasks over it), (task, user) pairs annotated twice. The machine is shared: read the
ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench.bench_annotation_http as ours  # noqa: E402
from bench._report import machine, write_result  # noqa: E402

LABELS = ["Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension"]
OVERLAP = ours.OVERLAP_K
LABEL_CONFIG = ("<View><Video name=\"video\" value=\"$video\"/><Choices name=\"emotion\" toName=\"video\" "
                "choice=\"single\">" + "".join(f"<Choice value=\"{name}\"/>" for name in LABELS)
                + "</Choices></View>")
RESULTS = REPO / "bench" / "results"
SERVERS = ("gunicorn", "start")


def install_label_studio(venv: Path, version: str) -> Path:
    """The venv's python, with label-studio==version and gunicorn; idempotent (kept when it has both)."""
    python = venv / "bin" / "python"
    if python.exists():
        found = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                                "print(m.version('label-studio'), m.version('gunicorn'))"],
                               capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.split()[0] == version:
            return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"label-studio=={version}", "gunicorn"], check=True)
    return python


# Run by Label Studio's python, in its Django project (label_studio/ on sys.path, its settings).
_DJANGO = r"""
import json, os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings.label_studio")
import django
django.setup()
"""

_PREPARE = _DJANGO + r"""
from django.core.management import call_command
from organizations.models import Organization
from users.models import User
call_command("migrate", "--no-color", verbosity=0)
admin = User.objects.create_user(email="admin@bench.example", password=None)
admin.is_staff = admin.is_superuser = True
admin.save()
# What `label-studio start --enable-legacy-api-token` makes: the organization, legacy tokens allowed.
org = Organization.create_organization(created_by=admin, title="bench", legacy_api_tokens_enabled=True)
admin.active_organization = org
admin.save(update_fields=["active_organization"])
print(json.dumps({"organization": org.id}))
"""

_SETUP = _DJANGO + r"""
from organizations.models import Organization
from projects.models import Project
from rest_framework.authtoken.models import Token
from tasks.models import Task
from users.models import User

n_users, n_tasks, config, overlap = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
admin = User.objects.get(email="admin@bench.example")
org = Organization.objects.first()
tokens = []
for i in range(n_users):
    # No password (it would time the hasher 200 times): the clients use API tokens.
    user = User.objects.create_user(email=f"bench{i:04d}@bench.example", password=None, username=f"bench{i:04d}")
    org.add_user(user)
    user.active_organization = org
    user.save()
    tokens.append(Token.objects.get_or_create(user=user)[0].key)
project = Project.objects.create(title="bench", label_config=config, created_by=admin, organization=org,
                                 maximum_annotations=overlap, show_skip_button=False)
# A task's own overlap is what Label Studio's next-task logic counts (its import copies the
# project's maximum_annotations there; bulk_create must set it itself).
Task.objects.bulk_create([Task(data={"video": f"/data/c{i}.mp4"}, project=project, overlap=overlap)
                          for i in range(n_tasks)], batch_size=1000)
print(json.dumps({"project": project.id, "tokens": tokens}))
"""

_AUDIT = _DJANGO + r"""
from django.db.models import Count
from tasks.models import Annotation
from tasks.models import Task
per_task = list(Annotation.objects.values("task_id").annotate(n=Count("id")).values_list("n", flat=True))
task_overlap = sorted(set(Task.objects.values_list("overlap", flat=True)))
twice = Annotation.objects.values("task_id", "completed_by_id").annotate(n=Count("id")).filter(n__gt=1).count()
print(json.dumps({"task_overlap": task_overlap, "annotations": sum(per_task), "tasks_annotated": len(per_task),
                  "max_per_task": max(per_task, default=0), "tasks_over_overlap": sum(n > int(sys.argv[1]) for n in per_task),
                  "same_user_twice": twice}))
"""


class LabelStudioApi(ours.Api):
    """Label Studio's next-task and annotation endpoints, for ``bench_annotation_http``'s client loop."""

    scheme = "Token"  # legacy API token
    empty_statuses = (404,)  # no task left for this user

    def __init__(self, project: int) -> None:
        self.project = project

    def next_path(self) -> str:
        return f"/api/projects/{self.project}/next/"

    def item(self, answer: Any) -> dict[str, Any]:
        return answer  # the task itself

    def submission(self, item: dict[str, Any], rid: str) -> tuple[str, dict[str, Any]]:
        label = "Neutral" if item["id"] % 3 else "Fear"  # the same labels as our side's clients
        body = {"result": [{"from_name": "emotion", "to_name": "video", "type": "choices",
                            "value": {"choices": [label]}}], "lead_time": 1.0, "project": self.project}
        return f"/api/tasks/{item['id']}/annotations/?project={self.project}", body

    def stored_id(self, answer: Any) -> int:
        return answer["id"]


def pg_database(name: str, template: str | None = None) -> tuple[str, Any]:
    """A fresh PostgreSQL database (a copy of ``template`` when given): its URL and a drop callable."""
    admin = create_engine(ours.PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(ours.PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), drop


def ls_env(python: Path, data_dir: Path, pg_url: str | None) -> dict[str, str]:
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "PATH": f"{python.parent}:{os.environ['PATH']}",
           "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "LOG_LEVEL": "WARNING", "DEBUG": "false",
           # Its error reports and usage analytics go to its makers by default: off, here and in the
           # browser (the machine has no route to them, and a bench should not phone home).
           "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false"}
    env.pop("PYTHONPATH", None)  # our tree must not shadow Label Studio's packages
    if pg_url is None:
        env["DJANGO_DB"] = "sqlite"
    else:
        url = make_url(pg_url)
        env.update({"DJANGO_DB": "default", "POSTGRE_NAME": url.database or "", "POSTGRE_USER": url.username or "postgres",
                    "POSTGRE_PASSWORD": url.password or "", "POSTGRE_HOST": url.host or "127.0.0.1",
                    "POSTGRE_PORT": str(url.port or 5432)})
    return env


def django_run(python: Path, script: str, env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([str(python), "-c", script, *args], env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"Label Studio script failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Template:
    """Label Studio's migrated database for one backend, copied for every case.

    Migrating takes minutes (4.5 min on SQLite on the loaded 2-core machine), so the result is kept
    in the work folder per version and reused by later runs: the SQLite file itself, and for
    PostgreSQL a ``pg_dump`` that is restored into this run's template database (dropped at the end).
    """

    def __init__(self, python: Path, work: Path, backend: str, version: str) -> None:
        self.python, self.backend = python, backend
        self.folder = work / f"ls_template_{backend}_{version}"
        self.pg_name = f"emotions_bench_ls_template_{os.getpid()}"
        self._drop: Any = lambda: None
        self.migrate_s: float | None = None  # None: reused
        ready = self.folder / "ready"
        pg_url = None
        if backend == "postgres":
            pg_url, self._drop = pg_database(self.pg_name)
        if not ready.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            started = time.perf_counter()
            django_run(python, _PREPARE, ls_env(python, self.folder, pg_url), self.folder)
            self.migrate_s = time.perf_counter() - started
            if pg_url is not None:
                subprocess.run(["pg_dump", "-Fc", "-f", str(self.folder / "template.dump"), *self._pg_args(pg_url)],
                               check=True, capture_output=True)
            ready.touch()
        elif pg_url is not None:
            subprocess.run(["pg_restore", "--no-owner", *self._pg_args(pg_url, flag="-d"), str(self.folder / "template.dump")],
                           check=True, capture_output=True)

    @staticmethod
    def _pg_args(url: str, flag: str | None = None) -> list[str]:
        where = make_url(url)
        return ["-h", where.host or "127.0.0.1", "-p", str(where.port or 5432), "-U", where.username or "postgres",
                *([flag] if flag else []), str(where.database)]

    def copy(self, data_dir: Path, tag: str) -> tuple[str | None, Any]:
        """A fresh database for one case in ``data_dir``: (PostgreSQL URL or None for SQLite, drop)."""
        if self.backend == "sqlite":
            shutil.copy(self.folder / "label_studio.sqlite3", data_dir / "label_studio.sqlite3")
            return None, lambda: None
        return pg_database(f"emotions_bench_{tag}_{os.getpid()}", template=self.pg_name)

    def drop(self) -> None:
        self._drop()


def start_label_studio(python: Path, server: str, env: dict[str, str], data_dir: Path, workers: int,
                       threads: int) -> tuple[subprocess.Popen[bytes], int, str]:
    port = ours.free_port()
    if server == "gunicorn":
        ls_path = subprocess.run([str(python), "-c", "import label_studio, os; print(os.path.dirname(label_studio.__file__))"],
                                 env=env, capture_output=True, text=True, check=True).stdout.strip()
        command = [str(python.parent / "gunicorn"), "core.wsgi:application", "--chdir", ls_path,
                   "--bind", f"{ours.HOST}:{port}", "--workers", str(workers), "--worker-class", "gthread",
                   "--threads", str(threads), "--keep-alive", "75", "--timeout", "120", "--log-level", "warning"]
        described = f"gunicorn core.wsgi, {workers} workers × {threads} threads (gthread)"
    else:
        command = [str(python.parent / "label-studio"), "start", "--no-browser", "--port", str(port),
                   "--internal-host", ours.HOST]
        described = "label-studio start (Django runserver, threaded)"
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"Label Studio ({server}) exited: {(data_dir / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{ours.HOST}:{port}/health", timeout=5) as answer:
                if answer.status == 200:
                    time.sleep(1.0)  # let every worker finish its start
                    return proc, port, described
        except OSError:
            pass
        if time.monotonic() > deadline:
            ours.stop_server(proc)
            raise RuntimeError(f"Label Studio ({server}) did not come up in 180 s")
        time.sleep(1)


def run_label_studio(python: Path, template: Template, work: Path, server: str, clients: int, tasks: int,
                     seconds: float, warmup: float, workers: int, threads: int, timeout: float) -> dict[str, Any]:
    backend = template.backend
    tag = f"ls_{backend}_{server}_{clients}"
    data_dir = work / tag
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    load_before = os.getloadavg()[0]
    pg_url, drop = template.copy(data_dir, tag)
    try:
        env = ls_env(python, data_dir, pg_url)
        made = django_run(python, _SETUP, env, data_dir, str(clients), str(tasks), LABEL_CONFIG, str(OVERLAP))
        proc, port, described = start_label_studio(python, server, env, data_dir, workers, threads)
        try:
            tally, _ = ours.run_async(ours.run_load(port, made["tokens"], seconds, warmup, mode="saturation",
                                                    api=LabelStudioApi(made["project"]), timeout=timeout))
        finally:
            ours.stop_server(proc)
        overlap = django_run(python, _AUDIT, env, data_dir, str(OVERLAP))  # after the server stopped: final
    finally:
        drop()
    return {"side": "label-studio", "server": described, "backend": backend, "clients": clients, "tasks": tasks,
            "seconds": seconds, "submissions_per_s": len(tally.submit_ms) / seconds,
            "next_p50_ms": ours.pct(tally.next_ms, 0.5), "next_p99_ms": ours.pct(tally.next_ms, 0.99),
            "submit_p50_ms": ours.pct(tally.submit_ms, 0.5), "submit_p99_ms": ours.pct(tally.submit_ms, 0.99),
            "errors": tally.errors, "empty_queue": tally.empty, "clients_gave_up": tally.gave_up,
            "clients_never_served": clients - len(tally.served_clients), "accepted": len(tally.acked),
            "overlap_asked": OVERLAP, "overlap": overlap,
            "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


_STARTED = time.monotonic()


def say(what: str) -> None:
    """Progress on stderr, with the minutes since the start (each phase is bounded; this shows it)."""
    print(f"[{(time.monotonic() - _STARTED) / 60:4.1f} min, load {os.getloadavg()[0]:.1f}] … {what}", file=sys.stderr,
          flush=True)


def ratio(a: float, b: float) -> float | None:
    return a / b if b and a == a and b == b else None


def fmt_ms(value: float) -> str:
    if value != value:
        return "–"
    return f"{value / 1000:.1f} s" if value >= 10_000 else f"{value:.0f} ms"


def describe(row: dict[str, Any]) -> str:
    errors = sum(row["errors"].values())
    return (f"{row['submissions_per_s']:7.1f}/s  next {fmt_ms(row['next_p50_ms'])}/{fmt_ms(row['next_p99_ms'])}  "
            f"submit {fmt_ms(row['submit_p50_ms'])}/{fmt_ms(row['submit_p99_ms'])}  errors {errors}  "
            f"gave up {row['clients_gave_up']}  never served {row['clients_never_served']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="per-request timeout, s (a client left unanswered leaves the run and is counted)")
    parser.add_argument("--tasks", type=int, default=3000, help="Label Studio tasks (our side seeds what it needs)")
    parser.add_argument("--workers", type=int, default=2, help="server processes, each side")
    parser.add_argument("--ls-threads", type=int, default=4, help="threads per gunicorn worker (ours: 4 on PG, 2 on SQLite)")
    parser.add_argument("--ls-servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    parser.add_argument("--ls-version", default="1.23.2")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "peer-labelstudio")
    parser.add_argument("--ls-venv", type=Path, help="Label Studio's venv (default: WORK/ls-venv)")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_peer_labelstudio.json")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.seconds <= 0:
        parser.error("--timeout and --seconds must be > 0")

    args.work.mkdir(parents=True, exist_ok=True)
    python = install_label_studio(args.ls_venv or args.work / "ls-venv", args.ls_version)
    rows: list[dict[str, Any]] = []
    templates: dict[str, float] = {}
    for backend in args.backends:
        say(f"{backend}: Label Studio's migrated database (made once per version, the template of every case)")
        template = Template(python, args.work, backend, args.ls_version)
        templates[backend] = template.migrate_s and round(template.migrate_s, 1)
        try:
            for clients in args.clients:
                say(f"{backend}, {clients} clients: ours")
                mine = ours.run_case(backend, clients, args.seconds, args.warmup, args.workers, args.work,
                                     timeout=args.timeout)
                mine["side"] = "ours"
                rows.append(mine)
                print(f"{backend:<9}{clients:>4} clients  ours          [{mine['server']}]  {describe(mine)}", flush=True)
                for server in args.ls_servers:
                    say(f"{backend}, {clients} clients: Label Studio, {server}")
                    theirs = run_label_studio(python, template, args.work, server, clients, args.tasks, args.seconds,
                                              args.warmup, args.workers, args.ls_threads, args.timeout)
                    theirs["ratio_submissions"] = ratio(mine["submissions_per_s"], theirs["submissions_per_s"])
                    theirs["ratio_next_p50"] = ratio(theirs["next_p50_ms"], mine["next_p50_ms"])
                    theirs["ratio_next_p99"] = ratio(theirs["next_p99_ms"], mine["next_p99_ms"])
                    rows.append(theirs)
                    r = theirs["ratio_submissions"]
                    print(f"{backend:<9}{clients:>4} clients  Label Studio  [{theirs['server']}]  {describe(theirs)}  "
                          f"ours/LS {f'{r:.1f}×' if r else '∞ (none accepted in the window)'}  "
                          f"LS overlap: {theirs['overlap']}", flush=True)
        finally:
            template.drop()
    print("\nside by side (latencies p50/p99 of the requests answered; ratio: ours / Label Studio submissions/s):")
    for row in rows:
        who = "ours" if row["side"] == "ours" else "Label Studio"
        r = row.get("ratio_submissions")
        extra = (f"  ratio {f'{r:.0f}×' if r else '∞'}  overlap: max {row['overlap']['max_per_task']} of "
                 f"{OVERLAP} per task, {row['overlap']['tasks_over_overlap']} tasks over, "
                 f"{row['overlap']['same_user_twice']} (task, user) twice" if row["side"] != "ours" else "")
        print(f"  {row['backend']:<9}{row['clients']:>4}  {who:<13}{describe(row)}  load {row['load_1min'][0]:.0f}→"
              f"{row['load_1min'][1]:.0f}  [{row['server']}]{extra}")
    facts = machine()
    print(f"\nLabel Studio {args.ls_version}; {args.tasks} tasks at overlap {OVERLAP}; per-request timeout "
          f"{args.timeout:g} s; CPUs {facts['cpus']}; load average now "
          + " ".join(f"{x:.2f}" for x in facts["load_avg"]), flush=True)
    write_result(args.json, {"label_studio": args.ls_version, "command": " ".join(sys.argv),
                             "template_migrate_s": templates, "timeout_s": args.timeout, "rows": rows,
                             "machine": facts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
