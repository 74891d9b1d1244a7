"""Benchmark: simulated annotators as HTTP clients on loopback, looping next clip → submit.

    .venv/bin/python bench/bench_annotation_http.py                        # PostgreSQL and SQLite, 50 and 200 clients
    .venv/bin/python bench/bench_annotation_http.py --backends postgres --clients 200 --seconds 20
    .venv/bin/python bench/bench_annotation_http.py --workers 2 --json bench/results/annotation_http.json

For each (backend, clients) case: a fresh database (a throwaway PostgreSQL database, or a SQLite
file), migrated and seeded (one project, k=3, no gold; one annotator per client; enough clips),
then ``uvicorn annotation_app.main:create_app --factory --workers W`` on 127.0.0.1 and N clients,
each an annotator on its own keep-alive connection (a minimal asyncio HTTP/1.1 client: httpx
would cost more CPU than the server on a 2-core machine). Clients authenticate with bearer
tokens minted with the app's key (logging 200 people in would time Argon2, not the app).
Each case runs for ``--seconds`` (default 20) after a short warm-up and reports sustained
submissions/s and p50/p99 latency of next-clip and submit, then audits the invariants in the
database: every acknowledged submission stored once, one live judgement per (clip, annotator,
stage), no clip over its stage's slots.

The machine's ceiling is measured in the same run: ``pgbench`` (built-in TPC-B-like script, same
client count, on its own database in the same server) and a bare SQLite write loop (one committed
INSERT per transaction, WAL, synchronous=NORMAL), plus ``GET /healthz`` through the same HTTP
stack. Only 127.0.0.1 is ever targeted. The machine is shared: expect noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annotation_app import migrations  # noqa: E402
from annotation_app.db import make_engine, make_sessionmaker  # noqa: E402
from annotation_app.models import Clip, ClipStatus, Judgement, Role, User  # noqa: E402
from annotation_app.security import SessionCodec  # noqa: E402
from annotation_app.services import projects  # noqa: E402
from annotation_app.services.users import hash_password  # noqa: E402

PG_ADMIN_URL = os.environ.get("EMOTIONS_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-" + "x" * 40
HOST = "127.0.0.1"  # loopback only, by design
OVERLAP_K = 3


# ---------------------------------------------------------------------------------------------
# A minimal keep-alive HTTP/1.1 client (one connection per simulated annotator)


class Connection:
    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        payload = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nAuthorization: Bearer {self.token}\r\n"
                f"Accept: application/json\r\nContent-Length: {len(payload)}\r\n")
        if body is not None:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        chunked = False
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

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Tally:
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    empty: int = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def annotator_loop(conn: Connection, tally: Tally, measure_from: float, until: float) -> None:
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        status, data = await conn.request("GET", "/api/work/next")
        t1 = time.perf_counter()
        if status != 200:
            tally.error(f"next {status}")
            await asyncio.sleep(0.05)
            continue
        item = json.loads(data)["item"]
        if item is None:
            tally.empty += 1
            await asyncio.sleep(0.05)
            continue
        rid = uuid.uuid4().hex
        body = {"assignment_id": item["assignment_id"], "label": "Neutral" if item["clip_id"] % 3 else "Fear",
                "confidence": 3, "time_on_task_s": 1.0, "client_request_id": rid}
        status, data = await conn.request("POST", "/api/work/submit", body)
        t2 = time.perf_counter()
        if status != 200:
            tally.error(f"submit {status}: {data[:80]!r}")
            continue
        tally.acked[rid] = json.loads(data)["judgement_id"]
        # Counted by completion time inside the measured window (the warm-up is left out).
        if measure_from <= t1 <= until:
            tally.next_ms.append((t1 - t0) * 1000)
        if measure_from <= t2 <= until:
            tally.submit_ms.append((t2 - t1) * 1000)


async def healthz_loop(conn: Connection, latencies: list[float], measure_from: float, until: float) -> None:
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        status, _ = await conn.request("GET", "/healthz")
        t1 = time.perf_counter()
        if status == 200 and measure_from <= t1 <= until:
            latencies.append((t1 - t0) * 1000)


async def run_load(port: int, tokens: list[str], seconds: float, warmup: float, *, healthz: bool = False) -> tuple[Tally, list[float], float]:
    conns = [Connection(port, token) for token in tokens]
    await asyncio.gather(*(c.open() for c in conns))
    start = time.perf_counter()
    measure_from, until = start + warmup, start + warmup + seconds
    tally, health = Tally(), []
    if healthz:
        await asyncio.gather(*(healthz_loop(c, health, measure_from, until) for c in conns))
    else:
        await asyncio.gather(*(annotator_loop(c, tally, measure_from, until) for c in conns))
    await asyncio.gather(*(c.close() for c in conns))
    return tally, health, seconds


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------------------------------
# Databases, seeding, the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def make_database(backend: str, workdir: Path, tag: str) -> tuple[str, Any]:
    """A fresh database URL and a cleanup callable."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir / f'{tag}.sqlite3'}"
        return url, lambda: None
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"emotions_bench_{tag}_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


def seed(url: str, n_annotators: int, n_clips: int) -> tuple[list[int], int]:
    migrations.upgrade(url)
    engine = make_engine(url)
    shared_hash = hash_password(uuid.uuid4().hex)  # nobody logs in with a password here
    try:
        with make_sessionmaker(engine)() as session:
            project = projects.create_project(session, "bench", overlap_k=OVERLAP_K, stage2_extra=0, gold_rate=0.0,
                                              qualification_size=0, daily_cap=1_000_000)
            genders, ages = ["female", "male"], ["18-29", "30-44", "45+"]
            people = [User(username=f"bench{i:04d}", password_hash=shared_hash, role=Role.annotator,
                           gender=genders[i % 2], age_band=ages[i % 3], languages=["en"]) for i in range(n_annotators)]
            session.add_all(people)
            session.add_all(Clip(project_id=project.id, sha256=f"{i:064x}", media_path=f"c{i}.mp4",
                                 status=ClipStatus.active, duration_s=10.0) for i in range(n_clips))
            session.commit()
            return [p.id for p in people], project.id
    finally:
        engine.dispose()


def start_server(url: str, workdir: Path, workers: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    # The server's log goes to a file: an unread pipe fills up and blocks the workers.
    log = (workdir / f"uvicorn-{port}.log").open("wb")
    env = {**os.environ, "EMOTIONS_DATABASE_URL": url, "EMOTIONS_DATA_DIR": str(workdir),
           "EMOTIONS_SECRET_KEY": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "annotation_app.main:create_app", "--factory", "--host", HOST,
         "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {(workdir / f'uvicorn-{port}.log').read_text()[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                time.sleep(1.0 if workers > 1 else 0.3)  # let every worker finish its startup
                return proc, port, workdir / f"uvicorn-{port}.log"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("uvicorn did not come up")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def audit(url: str, acked: dict[str, int]) -> dict[str, Any]:
    """The invariants, read back from the database after the run."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            rows = dict(session.execute(select(Judgement.client_request_id, Judgement.id)).all())
            missing = [rid for rid, jid in acked.items() if rows.get(rid) != jid]
            dup_live = session.execute(
                select(Judgement.clip_id, Judgement.annotator_id, Judgement.stage, func.count())
                .where(Judgement.live.is_(True))
                .group_by(Judgement.clip_id, Judgement.annotator_id, Judgement.stage)
                .having(func.count() > 1)).all()
            overfilled = session.execute(
                select(Judgement.clip_id, func.count()).where(Judgement.stage == 1, Judgement.live.is_(True))
                .group_by(Judgement.clip_id).having(func.count() > OVERLAP_K)).all()
            total = session.scalar(select(func.count(Judgement.id))) or 0
    finally:
        engine.dispose()
    ok = not missing and not dup_live and not overfilled and total == len(acked)
    return {"ok": ok, "acknowledged": len(acked), "stored": int(total), "missing": len(missing),
            "duplicate_live": len(dup_live), "overfilled_clips": len(overfilled)}


# ---------------------------------------------------------------------------------------------
# Ceilings


def pgbench_ceiling(clients: int, seconds: int) -> dict[str, Any] | None:
    exe = shutil.which("pgbench")
    if exe is None:
        return None
    url, drop = make_database("postgres", Path(tempfile.gettempdir()), "pgbench")
    dbname = url.rsplit("/", 1)[1]
    base = ["-h", "127.0.0.1", "-U", "postgres"]
    engine = create_engine(url)
    with engine.connect() as conn:
        max_connections = int(conn.execute(text("SHOW max_connections")).scalar_one())
        in_use = int(conn.execute(text("SELECT count(*) FROM pg_stat_activity")).scalar_one())
    engine.dispose()
    # The server's free connections (others share this server) cap the clients.
    used = max(1, min(clients, max_connections - in_use - 10))
    try:
        subprocess.run([exe, *base, "-i", "-q", "-s", "2", dbname], check=True, capture_output=True, timeout=120)
        run = subprocess.run([exe, *base, "-c", str(used), "-j", "2", "-T", str(seconds), "-n", dbname],
                             capture_output=True, text=True, timeout=seconds + 60)
        if run.returncode != 0:
            return {"tps": float("nan"), "clients": used, "error": run.stderr.strip()[-300:],
                    "script": "TPC-B (sort of)"}
        tps = float(re.search(r"tps = ([\d.]+)", run.stdout).group(1))  # type: ignore[union-attr]
        lat = re.search(r"latency average = ([\d.]+) ms", run.stdout)
        return {"tps": tps, "clients": used, "latency_avg_ms": float(lat.group(1)) if lat else None,
                "script": f"TPC-B (sort of), {used} clients: 5 statements, 1 commit per transaction"}
    finally:
        drop()


def sqlite_ceiling(workdir: Path, seconds: float) -> dict[str, Any]:
    path = workdir / "ceiling.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, rid TEXT UNIQUE, label TEXT, at REAL)")
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (rid, label, at) VALUES (?, ?, ?)", (uuid.uuid4().hex, "Fear", time.time()))
        conn.execute("COMMIT")
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return {"tps": n / elapsed, "script": "1 INSERT per BEGIN IMMEDIATE/COMMIT, WAL, synchronous=NORMAL"}


# ---------------------------------------------------------------------------------------------


def run_case(backend: str, clients: int, seconds: float, warmup: float, workers: int, workdir: Path) -> dict[str, Any]:
    tag = f"{backend}_{clients}"
    load_before = os.getloadavg()[0]
    url, drop = make_database(backend, workdir, tag)
    try:
        # Enough clips that nobody runs dry: generous submissions/s × duration × k slots.
        n_clips = max(2000, int(900 * (seconds + warmup) / OVERLAP_K) + clients)
        user_ids, _ = seed(url, clients, n_clips)
        codec = SessionCodec(SECRET)
        tokens = [codec.issue_token(uid) for uid in user_ids]
        proc, port, log = start_server(url, workdir, workers)
        try:
            health: list[float] = []
            try:
                tally, _, _ = asyncio.run(run_load(port, tokens, seconds, warmup))
            except ConnectionError:
                print(f"server log tail:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
                raise
            _, health, _ = asyncio.run(run_load(port, tokens, min(5.0, seconds), 1.0, healthz=True))
        finally:
            stop_server(proc)
        log_text = log.read_text(errors="replace")
        server_errors = log_text.count("Exception in ASGI application")
        if server_errors:
            last = log_text.rsplit("Exception in ASGI application", 1)[-1]
            print(f"server exceptions: {server_errors}; the last one ends with:\n{last[-1500:]}", file=sys.stderr)
        result = audit(url, tally.acked)
    finally:
        drop()
    measured = len(tally.submit_ms)
    return {
        "backend": backend, "clients": clients, "workers": workers, "seconds": seconds,
        "submissions_per_s": measured / seconds,
        "next_p50_ms": pct(tally.next_ms, 0.50), "next_p99_ms": pct(tally.next_ms, 0.99),
        "submit_p50_ms": pct(tally.submit_ms, 0.50), "submit_p99_ms": pct(tally.submit_ms, 0.99),
        "healthz_per_s": len(health) / min(5.0, seconds), "errors": tally.errors, "empty_queue": tally.empty,
        "server_exceptions": server_errors,
        # 1-minute load average before and after the case: other jobs on the machine show here.
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "audit": result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--clients", default="50,200")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per case (bounded: ≤ 60)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "annotation_http.json"))
    args = parser.parse_args()
    seconds = min(args.seconds, 60.0)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    client_counts = [int(c) for c in args.clients.split(",")]

    rows: list[dict[str, Any]] = []
    ceilings: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="emotions-bench-http-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            if backend == "postgres":
                for clients in client_counts:
                    ceilings[f"pgbench_c{clients}"] = pgbench_ceiling(clients, int(min(seconds, 10)))
            else:
                ceilings["sqlite_write_loop"] = sqlite_ceiling(workdir, min(seconds, 5.0))
            for clients in client_counts:
                print(f"… {backend}, {clients} clients, {seconds:.0f} s", file=sys.stderr, flush=True)
                rows.append(run_case(backend, clients, seconds, args.warmup, args.workers, workdir))

    header = (f"{'backend':9} {'clients':>7} {'subm/s':>8} {'next p50':>9} {'next p99':>9} {'subm p50':>9} "
              f"{'subm p99':>9} {'healthz/s':>9} {'load':>11}  audit")
    print(header)
    print("-" * len(header))
    for r in rows:
        a = r["audit"]
        print(f"{r['backend']:9} {r['clients']:>7} {r['submissions_per_s']:>8.0f} {r['next_p50_ms']:>8.1f}m "
              f"{r['next_p99_ms']:>8.1f}m {r['submit_p50_ms']:>8.1f}m {r['submit_p99_ms']:>8.1f}m "
              f"{r['healthz_per_s']:>9.0f} {r['load_1min'][0]:>5.1f}→{r['load_1min'][1]:<5.1f}  {'ok' if a['ok'] else 'FAILED'} ({a['acknowledged']} acked, {a['stored']} stored)"
              + (f" errors={r['errors']}" if r["errors"] else "")
              + (f" server exceptions={r['server_exceptions']}" if r["server_exceptions"] else ""))
    print(f"\nuvicorn workers: {args.workers}; CPUs: {os.cpu_count()}; load average now: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("ceilings (same run, same machine):")
    for name, c in ceilings.items():
        if c:
            print(f"  {name:18} {c['tps']:8.0f} tx/s   ({c['script']})")
    out = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "workers": args.workers,
           "load_average_end": os.getloadavg(), "command": " ".join(sys.argv),
           "rows": rows, "ceilings": ceilings, "note": "shared 2-core machine; other engineers' jobs add noise"}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwrote {args.json}")
    if not all(r["audit"]["ok"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
