"""Benchmark: our annotation app beside Label Studio Community, the same next → submit loop, one run.

    .venv/bin/python bench/bench_peer_labelstudio.py                       # SQLite and PostgreSQL, 50 and 200 clients
    .venv/bin/python bench/bench_peer_labelstudio.py --backends sqlite --clients 50 --seconds 10   # a quick pair

Label Studio (``--ls-version``, default 1.23.2) is installed from the package registry into a
venv of its own under the work folder (``--work``, default bench/work/peer-labelstudio; the
install is skipped when that venv already has that version). For every (backend, clients) case,
interleaved (ours, then Label Studio, on the same backend and client count, back to back):

* **ours**: ``bench_annotation_http.run_case`` in saturation mode (a fresh database, one project
  with k = 3, one annotator per client, ``uvicorn --workers 2``);
* **Label Studio**: a fresh data folder and database (its SQLite file, or a throwaway PostgreSQL
  database), ``label-studio start`` (Django's threaded server, as that command runs it), one
  organization, one user per client with a legacy API token, a video-classification project with
  the six labels (``<Video>`` + ``<Choices>``), ``maximum_annotations`` = 3 (the overlap), and
  ``--tasks`` tasks; each client loops ``GET /api/projects/ID/next`` → ``POST
  /api/tasks/TASK/annotations/`` on its own keep-alive connection (the same minimal HTTP/1.1
  client as ours), zero think time.

Reported per side: submissions/s, p50/p99 of next and submit, errors; and the ratio ours / Label
Studio. Afterwards Label Studio's database is read back for what its Community edition did with
several annotators per task: annotations per task (max vs the overlap asked), tasks annotated
twice by one user. The machine is shared: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench.bench_annotation_http as ours  # noqa: E402

LABELS = ["Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension"]
OVERLAP = ours.OVERLAP_K
LABEL_CONFIG = ("<View><Video name=\"video\" value=\"$video\"/><Choices name=\"emotion\" toName=\"video\" "
                "choice=\"single\">" + "".join(f"<Choice value=\"{name}\"/>" for name in LABELS)
                + "</Choices></View>")
RESULTS = REPO / "bench" / "results"


def install_label_studio(venv: Path, version: str) -> Path:
    """The venv's python, with label-studio==version; idempotent (an existing venv at that version is kept)."""
    python = venv / "bin" / "python"
    if python.exists():
        found = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
                               capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == version:
            return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"label-studio=={version}"], check=True)
    return python


_SETUP = r"""
import json, os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings.label_studio")
import django
django.setup()
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
    user = User.objects.create_user(email=f"bench{i:04d}@bench.example", password="x" * 16, username=f"bench{i:04d}")
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

_AUDIT = r"""
import json, os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings.label_studio")
import django
django.setup()
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


class TokenConnection(ours.Connection):
    """The same client, with Label Studio's ``Authorization: Token …`` header."""

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        payload = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: {ours.HOST}:{self.port}\r\nAuthorization: Token {self.token}\r\n"
                f"Accept: application/json\r\nContent-Length: {len(payload)}\r\n")
        if body is not None:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
            return status, data
        return status, await self.reader.readexactly(length)


async def ls_cycle(conn: TokenConnection, project: int, tally: ours.Tally, measure_from: float, until: float) -> bool:
    t0 = time.perf_counter()
    status, data = await conn.request("GET", f"/api/projects/{project}/next")
    t1 = time.perf_counter()
    if status == 404:
        tally.empty += 1
        return False
    if status != 200:
        tally.error(f"next {status}")
        return False
    task = json.loads(data)["id"]
    label = "Neutral" if task % 3 else "Fear"
    body = {"result": [{"from_name": "emotion", "to_name": "video", "type": "choices", "value": {"choices": [label]}}],
            "lead_time": 1.0, "project": project}
    t_send = time.perf_counter()
    status, data = await conn.request("POST", f"/api/tasks/{task}/annotations/?project={project}", body)
    t2 = time.perf_counter()
    if status not in (200, 201):
        tally.error(f"submit {status}: {data[:80]!r}")
        return False
    tally.acked[uuid.uuid4().hex] = json.loads(data)["id"]
    if measure_from <= t1 <= until:
        tally.next_ms.append((t1 - t0) * 1000)
    if measure_from <= t2 <= until:
        tally.submit_ms.append((t2 - t_send) * 1000)
    return True


async def ls_load(port: int, project: int, tokens: list[str], seconds: float, warmup: float) -> ours.Tally:
    conns = [TokenConnection(port, token) for token in tokens]
    await asyncio.gather(*(c.open() for c in conns))
    start = time.perf_counter()
    measure_from, until = start + warmup, start + warmup + seconds
    tally = ours.Tally()

    async def loop(conn: TokenConnection) -> None:
        while time.perf_counter() < until:
            if not await ls_cycle(conn, project, tally, measure_from, until):
                await asyncio.sleep(0.05)

    loops = [asyncio.ensure_future(loop(c)) for c in conns]
    try:
        # Bounded: a client still waiting for its answer two minutes after the window is counted, not awaited.
        _, pending = await asyncio.wait(loops, timeout=warmup + seconds + 120)
        for task in pending:
            task.cancel()
            tally.error("no answer within 120 s after the window")
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return tally


def ls_env(python: Path, data_dir: Path, backend: str, pg_url: str | None) -> dict[str, str]:
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "PATH": f"{python.parent}:{os.environ['PATH']}",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "LOG_LEVEL": "WARNING", "DEBUG": "false"}
    env.pop("PYTHONPATH", None)  # our tree must not shadow Label Studio's packages
    if backend == "sqlite":
        env["DJANGO_DB"] = "sqlite"
    else:
        from sqlalchemy import make_url

        url = make_url(pg_url)
        env.update({"DJANGO_DB": "default", "POSTGRE_NAME": url.database or "", "POSTGRE_USER": url.username or "postgres",
                    "POSTGRE_PASSWORD": url.password or "", "POSTGRE_HOST": url.host or "127.0.0.1",
                    "POSTGRE_PORT": str(url.port or 5432)})
    return env


def run_label_studio(python: Path, work: Path, backend: str, clients: int, tasks: int, seconds: float,
                     warmup: float) -> dict[str, Any]:
    tag = f"ls_{backend}_{clients}"
    data_dir = work / tag
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    pg_url, drop = (None, lambda: None)
    if backend == "postgres":
        pg_url, drop = ours.make_database("postgres", work, tag)
    env = ls_env(python, data_dir, backend, pg_url)
    port = ours.free_port()
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen([str(python.parent / "label-studio"), "start", "--no-browser", "--port", str(port),
                             "--internal-host", ours.HOST, "--username", "admin@bench.example",
                             "--password", "bench-password-123", "--enable-legacy-api-token"],
                            cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + 600  # the first start runs all its migrations
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"label-studio exited: {(data_dir / 'server.log').read_text()[-3000:]}")
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://{ours.HOST}:{port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("label-studio did not come up")
            time.sleep(1)
        setup = subprocess.run([str(python), "-c", _SETUP, str(clients), str(tasks), LABEL_CONFIG, str(OVERLAP)],
                               env=env, cwd=data_dir, capture_output=True, text=True, check=True)
        made = json.loads(setup.stdout.strip().splitlines()[-1])
        load_before = os.getloadavg()[0]
        tally = ours.run_async(ls_load(port, made["project"], made["tokens"], seconds, warmup))
        audit = subprocess.run([str(python), "-c", _AUDIT, str(OVERLAP)], env=env, cwd=data_dir,
                               capture_output=True, text=True, check=True)
        overlap = json.loads(audit.stdout.strip().splitlines()[-1])
    finally:
        ours.stop_server(proc)
        drop()
    return {"side": "label-studio", "backend": backend, "clients": clients, "tasks": tasks, "seconds": seconds,
            "submissions_per_s": len(tally.submit_ms) / seconds,
            "next_p50_ms": ours.pct(tally.next_ms, 0.5), "next_p99_ms": ours.pct(tally.next_ms, 0.99),
            "submit_p50_ms": ours.pct(tally.submit_ms, 0.5), "submit_p99_ms": ours.pct(tally.submit_ms, 0.99),
            "errors": tally.errors, "empty_queue": tally.empty, "overlap_asked": OVERLAP, "overlap": overlap,
            "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--tasks", type=int, default=3000, help="Label Studio tasks (our side seeds what it needs)")
    parser.add_argument("--workers", type=int, default=2, help="our uvicorn workers")
    parser.add_argument("--ls-version", default="1.23.2")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "peer-labelstudio")
    parser.add_argument("--ls-venv", type=Path, help="Label Studio's venv (default: WORK/ls-venv)")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_peer_labelstudio.json")
    args = parser.parse_args(argv)

    args.work.mkdir(parents=True, exist_ok=True)
    python = install_label_studio(args.ls_venv or args.work / "ls-venv", args.ls_version)
    rows: list[dict[str, Any]] = []
    for backend in args.backends:
        for clients in args.clients:
            mine = ours.run_case(backend, clients, args.seconds, args.warmup, args.workers, args.work)
            mine["side"] = "ours"
            theirs = run_label_studio(python, args.work, backend, clients, args.tasks, args.seconds, args.warmup)
            ratio = mine["submissions_per_s"] / theirs["submissions_per_s"] if theirs["submissions_per_s"] else None
            rows += [mine, theirs]
            print(f"{backend:<9}{clients:>5} clients  ours {mine['submissions_per_s']:7.1f}/s "
                  f"(next p50/p99 {mine['next_p50_ms']:.0f}/{mine['next_p99_ms']:.0f} ms, submit "
                  f"{mine['submit_p50_ms']:.0f}/{mine['submit_p99_ms']:.0f} ms, errors {sum(mine['errors'].values())})  "
                  f"Label Studio {theirs['submissions_per_s']:7.1f}/s (next {theirs['next_p50_ms']:.0f}/"
                  f"{theirs['next_p99_ms']:.0f} ms, submit {theirs['submit_p50_ms']:.0f}/{theirs['submit_p99_ms']:.0f} ms, "
                  f"errors {sum(theirs['errors'].values())})  ratio {ratio and f'{ratio:.2f}×'}  "
                  f"LS overlap: {theirs['overlap']}", flush=True)
    result = {"label_studio": args.ls_version, "rows": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print(f"written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
