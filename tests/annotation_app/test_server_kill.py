"""A server killed mid-load loses no acknowledged judgement, and a retry never duplicates one.

uvicorn runs as a subprocess (the app factory, as ``curate serve`` runs it) on a SQLite file and,
when a server answers, on a throwaway PostgreSQL database. Client threads loop next → submit;
the server gets SIGKILL mid-load and is restarted. Every submission answered 200 must be in the
database exactly once; every unanswered one, retried with its request id, ends up there once too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from annotation_app import migrations
from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.models import Judgement
from tests.annotation_app._http import free_port, stop_server, wait_until_healthy
from tests.annotation_app.factories import make_annotators, make_clips, make_project

REPO = Path(__file__).resolve().parents[2]
N_CLIENTS = 6
PASSWORD = "test-password"  # factories.make_annotator's password


def _seed(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            project = make_project(session, "kill-test", overlap_k=3, daily_cap=10_000, stage2_extra=0)
            make_clips(session, project, 400)
            annotators = make_annotators(session, N_CLIENTS)
            for annotator in annotators:
                annotator.is_simulated = False  # factories mark them simulated, and those never log in
            names = [a.username for a in annotators]
            session.commit()
            return names
    finally:
        engine.dispose()


class Server:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.url, self.data_dir, self.port = url, data_dir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "EMOTIONS_DATABASE_URL": self.url, "EMOTIONS_DATA_DIR": str(self.data_dir),
               "EMOTIONS_SECRET_KEY": "k" * 48, "EMOTIONS_LOGIN_FREE_FAILURES": "1000",
               "EMOTIONS_LOGIN_ADDRESS_BUDGET": "1000"}
        # The log goes to a file: an unread pipe would fill up and block the server.
        with (self.data_dir / "uvicorn.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "annotation_app.main:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log,
            )
        wait_until_healthy(self.proc, self.base, self.data_dir / "uvicorn.log", seconds=30, poll=0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_server(self.proc, timeout=10)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kill.sqlite3'}"
        migrations.upgrade(url)
        yield url
    else:
        url = request.getfixturevalue("empty_pg_url")
        migrations.upgrade(url)
        yield url


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    server = Server(database_url, tmp_path)
    try:
        yield server
    finally:
        server.stop()  # whatever happened in the test, no server outlives it


def test_sigkill_mid_load_loses_no_acknowledged_judgement(database_url: str, server: Server) -> None:
    usernames = _seed(database_url)
    server.start()
    acked: dict[str, int] = {}  # client_request_id -> judgement id, for every 200 answer
    pending: dict[str, dict] = {}  # sent, no answer (the server died under it)
    lock = threading.Lock()
    stop = threading.Event()
    tokens = []
    for name in usernames:
        response = httpx.post(f"{server.base}/api/auth/token", json={"username": name, "password": PASSWORD}, timeout=30)
        assert response.status_code == 200, response.text
        tokens.append(response.json()["access_token"])

    def annotator(token: str) -> None:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            while not stop.is_set():
                try:
                    item = http.get("/api/work/next").json()["item"]
                except (httpx.TransportError, ValueError):
                    return
                if item is None:
                    return
                body = {"assignment_id": item["assignment_id"], "label": "Neutral", "client_request_id": uuid.uuid4().hex}
                with lock:
                    pending[body["client_request_id"]] = {"token": token, "body": body}
                try:
                    response = http.post("/api/work/submit", json=body)
                except httpx.TransportError:
                    return
                assert response.status_code == 200, response.text
                with lock:
                    pending.pop(body["client_request_id"])
                    acked[body["client_request_id"]] = response.json()["judgement_id"]

    threads = [threading.Thread(target=annotator, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # SIGKILL: no shutdown hook, no flush, mid-request for some clients
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    assert len(acked) >= 40, "the load never got going"

    server.start()  # a new process on the same database
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        rows = session.execute(select(Judgement.client_request_id, Judgement.id)).all()
        stored = {rid: jid for rid, jid in rows}
        assert len(stored) == len(rows), "a request id was stored twice"
        for rid, jid in acked.items():
            assert stored.get(rid) == jid, f"acknowledged judgement {jid} ({rid}) is missing"
    # Requests in flight at the kill (committed or not): the client's retry with the same
    # request id is accepted (the lease outlives the restart) and stores each exactly once.
    for sent in pending.values():
        response = httpx.post(f"{server.base}/api/work/submit", json=sent["body"],
                              headers={"Authorization": f"Bearer {sent['token']}"}, timeout=10)
        assert response.status_code == 200, response.text
    with make_sessionmaker(engine)() as session:
        for rid in pending:
            assert session.scalar(select(func.count()).where(Judgement.client_request_id == rid)) == 1
        assert session.scalar(select(func.count(Judgement.id))) == len(acked) + len(pending)
    engine.dispose()
