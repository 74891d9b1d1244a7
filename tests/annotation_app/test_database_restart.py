"""The database going away is a 503 with Retry-After, and no request fails once it is back (#22).

A throwaway PostgreSQL cluster of this test's own (``initdb`` + ``pg_ctl`` on a free port in a
temporary folder; the shared server on 5432 is never touched) is restarted under a few clients.
Skips where PostgreSQL's server binaries are missing, except under CI.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from annotation_app import migrations
from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.main import create_app
from annotation_app.services import projects, users
from annotation_app.settings import Settings
from tests.annotation_app._http import PASSWORD, free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    return found[-1] or None


def _as_postgres(args: list[str]) -> list[str]:
    # initdb refuses to run as root: run the cluster as the postgres account then.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class Cluster:
    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.pg_ctl = _bin("pg_ctl")
        self.data = folder / "data"

    def ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([self.pg_ctl, "-D", str(self.data), "-l", str(self.folder / "log"), "-w",
                                     "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                                     *args]), check=True, capture_output=True, timeout=60)


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    initdb = _bin("initdb")
    if initdb is None or _bin("pg_ctl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("initdb / pg_ctl not found: the database-restart test needs PostgreSQL's server binaries")
        pytest.skip("initdb / pg_ctl not found")
    folder = tmp_path_factory.mktemp("pgcluster")
    os.chmod(folder, 0o777)
    for parent in folder.parents:  # the postgres account must reach the folder
        if str(parent).startswith("/tmp/"):
            os.chmod(parent, os.stat(parent).st_mode | 0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    found = Cluster(folder, free_port())
    subprocess.run(_as_postgres([initdb, "-D", str(found.data), "-A", "trust", "-U", "postgres", "--no-sync"]),
                   check=True, capture_output=True, timeout=120)
    found.ctl("start")
    try:
        yield found
    finally:
        subprocess.run(_as_postgres([found.pg_ctl, "-D", str(found.data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)


def test_a_postgresql_restart_is_503s_then_nothing_fails(cluster: Cluster, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres"
    migrations.upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        projects.create_project(session, "restart", qualification_size=0)
        users.create_user(session, "annotator1", role="annotator", password=PASSWORD)
        session.commit()
    engine.dispose()
    settings = Settings(data_dir=tmp_path, database_url=url, media_dir=tmp_path, secret_key="s" * 48)
    with TestClient(create_app(settings)) as client:
        token = client.post("/api/auth/token", json={"username": "annotator1", "password": PASSWORD}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        seen: Counter[int] = Counter()
        after_up: Counter[int] = Counter()
        phase = {"up": True}
        stop = threading.Event()
        retry_after: list[str | None] = []

        def load() -> None:
            while not stop.is_set():
                for path in ("/healthz", "/api/work/progress"):
                    sent_up = phase["up"]  # where the request started, not where its answer lands
                    response = client.get(path, headers=auth)
                    (after_up if sent_up and phase["up"] else seen)[response.status_code] += 1
                    if response.status_code == 503:
                        retry_after.append(response.headers.get("retry-after"))
                time.sleep(0.005)

        # Every pooled connection has been used: after the restart each is a dead socket.
        for _ in range(10):
            assert client.get("/api/work/progress", headers=auth).status_code == 200
        clients = [threading.Thread(target=load) for _ in range(4)]
        for thread in clients:
            thread.start()
        phase["up"] = False
        cluster.ctl("-m", "fast", "stop")
        time.sleep(0.5)  # down: requests meet no database
        cluster.ctl("start")  # -w: returns once it accepts connections
        after_up.clear()
        phase["up"] = True
        time.sleep(1.0)
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
        # An idle app across a restart: its pooled connections are dead sockets, and none may fail
        # the request that takes it (the check on checkout replaces it).
        cluster.ctl("-m", "fast", "restart")
        idle = Counter(client.get("/api/work/progress", headers=auth).status_code for _ in range(6))
    assert idle == {200: 6}, idle
    assert 500 not in seen and set(seen) <= {200, 503}, seen
    assert seen[503] > 0 and set(retry_after) == {"2"}, (seen, retry_after)
    assert set(after_up) == {200}, after_up  # once it is up, every request succeeds
