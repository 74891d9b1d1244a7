"""The team deployment: the compose file's topology, and the same topology run without containers.

No container engine runs on our machines, so the second test plays each compose service as a
process: PostgreSQL on localhost, the migration job (``curate db upgrade``), ``curate demo``, the
app as a separate multi-worker process, annotators through its JSON API, and the dashboard's pages
(Streamlit AppTest) against that database.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tests.annotation_app._http import free_port, wait_until_healthy

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / "deploy" / ".env.example"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$")
PLACEHOLDERS = {"", "change-me"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def _healthcheck(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


# --------------------------------------------------------------------------------------------------
# The compose file


def test_compose_defines_the_services_with_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "migrate", "app", "dashboard"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in _healthcheck(services["postgres"])
    assert "/healthz" in _healthcheck(services["app"])
    assert "/_stcore/health" in _healthcheck(services["dashboard"])
    assert _command(services["migrate"]) == ["curate", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"  # a one-shot job
    app_command = _command(services["app"])
    assert app_command[:2] == ["curate", "serve"] and "--workers" in app_command
    assert "--host" in app_command and app_command[app_command.index("--host") + 1] == "0.0.0.0"
    assert _command(services["dashboard"])[:2] == ["curate", "dashboard"]


def test_compose_orders_startup_on_health_and_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("app", "dashboard"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name


def test_compose_volumes_persist_database_and_share_media(compose: dict[str, Any]) -> None:
    services, volumes = compose["services"], compose["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert {"pgdata", "media", "exports", "runs"} <= set(volumes)
    assert "media:/data/media" in services["app"]["volumes"]
    dashboard_mounts = services["dashboard"]["volumes"]
    assert "media:/data/media:ro" in dashboard_mounts
    assert all(m.endswith(":ro") for m in dashboard_mounts)  # the dashboard only reads
    assert services["dashboard"]["environment"]["EMOTIONS_DASHBOARD_EXPORTS"] == "/data/exports"
    # Every toolkit service points at the compose PostgreSQL and the shared media folder.
    for name in ("migrate", "app", "dashboard"):
        env = services[name]["environment"]
        assert "@postgres:5432/" in env["EMOTIONS_DATABASE_URL"], name
        assert env["EMOTIONS_MEDIA_DIR"] == "/data/media", name
    # The app keeps the shared settings and adds where curators' browsers find the dashboard.
    app_env = services["app"]["environment"]
    assert app_env["EMOTIONS_SECRET_KEY"].startswith("${EMOTIONS_SECRET_KEY:?")
    assert app_env["EMOTIONS_DASHBOARD_URL"].endswith(":-http://127.0.0.1:8501}")


def test_dashboard_reads_through_its_own_role(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres, dashboard = services["postgres"], services["dashboard"]
    assert "./deploy/postgres-init:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert (REPO / "deploy" / "postgres-init" / "10-dashboard-role.sh").is_file()
    assert {"DASHBOARD_DB_USER", "DASHBOARD_DB_PASSWORD"} <= set(postgres["environment"])
    url = dashboard["environment"]["EMOTIONS_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://${DASHBOARD_DB_USER:-emotions_dashboard}:${DASHBOARD_DB_PASSWORD:?")
    # Least privilege: the dashboard gets neither the cookie-signing key nor the owner's password.
    assert "EMOTIONS_SECRET_KEY" not in dashboard["environment"]
    # Behind the app's login: it asks the app, over the compose network, who each visitor is.
    assert dashboard["environment"]["EMOTIONS_DASHBOARD_APP_URL"] == "http://app:8000"
    assert "app" in dashboard["depends_on"]
    assert "POSTGRES_PASSWORD" not in str(dashboard["environment"])


def test_no_secret_in_the_repository(compose: dict[str, Any]) -> None:
    # In the compose file a secret is only ever a reference to .env, required and without a default.
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), f"{name}.{key}"
        url = environment.get("EMOTIONS_DATABASE_URL", "")
        if url:
            # user:password@host, the password only as a required reference to .env
            assert re.search(r"\}:\$\{(POSTGRES|DASHBOARD_DB)_PASSWORD:\?[^}]*\}@postgres:", url), name
    example = _env_example()
    secrets_in_example = {k: v for k, v in example.items() if SECRET_NAME.search(k)}
    assert {"POSTGRES_PASSWORD", "DASHBOARD_DB_PASSWORD", "EMOTIONS_SECRET_KEY"} <= set(secrets_in_example)
    assert all(v in PLACEHOLDERS for v in secrets_in_example.values()), secrets_in_example
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_env_example_documents_every_variable_compose_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))
    documented = set(_env_example())
    assert used <= documented, sorted(used - documented)
    # Each variable in the example comes with a comment somewhere above it.
    text_ = ENV_EXAMPLE.read_text()
    assert text_.count("#") >= len(documented) // 2


# --------------------------------------------------------------------------------------------------
# The same topology without containers


def _curate(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "curate_cli.main", *args], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"curate {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def deployment_db() -> Iterator[str]:
    from tests.conftest import _throwaway_pg

    yield from _throwaway_pg("emotions_deploy")


@pytest.fixture
def dashboard_role(deployment_db: str) -> Iterator[str]:
    """The compose postgres init script, run on the throwaway database: yields the dashboard role's URL.

    Roles belong to the whole server, so this one has a unique name and is dropped afterwards.
    """
    if shutil.which("psql") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("psql (PostgreSQL's client) is required under CI=true")
        pytest.skip("psql not found: PostgreSQL's client runs the init script")
    url = make_url(deployment_db)
    reader, password = f"emotions_dash_{uuid.uuid4().hex[:8]}", secrets.token_hex(12)
    env = {**os.environ, "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432),
           "POSTGRES_USER": url.username or "postgres", "POSTGRES_DB": url.database or "",
           "DASHBOARD_DB_USER": reader, "DASHBOARD_DB_PASSWORD": password}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    script = REPO / "deploy" / "postgres-init" / "10-dashboard-role.sh"
    for _ in range(2):  # safe to run again by hand on an existing deployment
        result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
    try:
        yield url.set(username=reader, password=password).render_as_string(hide_password=False)
    finally:
        admin = create_engine(deployment_db, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{reader}"'))
            conn.execute(text(f'DROP ROLE "{reader}"'))
        admin.dispose()


@pytest.fixture
def app_server(deployment_db: str, dashboard_role: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The migration job, the demo, then ``curate serve --workers 2``; yields (base URL, env)."""
    env = {**os.environ, "EMOTIONS_DATABASE_URL": deployment_db, "EMOTIONS_DATA_DIR": str(tmp_path / "data"),
           "EMOTIONS_SECRET_KEY": secrets.token_urlsafe(32)}
    env.pop("EMOTIONS_MEDIA_DIR", None)
    migrated = _curate(["db", "upgrade"], env)  # the one-shot migration job
    assert "database at revision" in migrated.stdout
    # `curate demo` migrates again first: the job is safe to repeat (it runs on every `docker compose up`).
    _curate(["demo", "--clips", "10", "--annotators", "2", "--simulate", "--simulated-annotators", "6",
             "--keep-open", "3"], env)
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "curate_cli.main", "serve", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "2"],
                              env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(server, base, tmp_path / "serve.log", poll=0.3)
        yield base, env
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the group this test started: the server and its workers
            server.wait(timeout=5)
        log.close()


def _annotate(base: str, username: str, password: str, limit: int) -> list[int]:
    """One annotator through the JSON API: token, then next/submit until nothing is left or ``limit``."""
    with httpx.Client(base_url=base, timeout=30) as client:
        token = client.post("/api/auth/token", json={"username": username, "password": password})
        assert token.status_code == 200, token.text
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        labels = [lab["name"] for lab in client.get("/api/work/labels").json()["labels"]]
        submitted: list[int] = []
        for n in range(limit):
            item = client.get("/api/work/next").json()["item"]
            if item is None:
                break
            body = {"assignment_id": item["assignment_id"], "label": labels[n % len(labels)], "confidence": 4,
                    "time_on_task_s": 6.5, "client_request_id": f"{username}-smoke-{n:04d}"}
            reply = client.post("/api/work/submit", json=body)
            assert reply.status_code == 200, reply.text
            retry = client.post("/api/work/submit", json=body)  # a network retry: same judgement, no new row
            assert retry.json() == {**reply.json(), "duplicate": True}
            submitted.append(reply.json()["judgement_id"])
        # Every answer counted: the qualification round's, then campaign judgements.
        progress = client.get("/api/work/progress").json()
        assert progress["qualification"]["answered"] + progress["total_done"] == len(submitted), progress
        return submitted


@pytest.mark.postgres
def test_topology_without_containers(
    app_server: tuple[str, dict[str, str]], dashboard_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st

    from annotation_app.db import make_engine
    from annotation_app.models import Judgement
    from dashboard import data
    from tests.dashboard import page_checks

    base, env = app_server
    url = env["EMOTIONS_DATABASE_URL"]
    engine = make_engine(url)
    with Session(engine) as session:
        before = session.scalar(select(func.count()).select_from(Judgement))

    # Annotators at the same time, served by two worker processes coordinated by PostgreSQL.
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda name: _annotate(base, name, "emotions-demo", limit=8),
                             ["annotator1", "annotator2"]))
    submitted = [j for run in runs for j in run]
    assert all(len(run) >= 4 for run in runs), runs  # at least the qualification round each
    assert len(set(submitted)) == len(submitted)
    with Session(engine) as session:
        after = session.scalar(select(func.count()).select_from(Judgement))
        stored = set(session.scalars(select(Judgement.id).where(Judgement.id.in_(submitted))))
    engine.dispose()
    assert after - before == len(submitted) and stored == set(submitted)

    # The dashboard's pages against that database, through its own role as in the compose file.
    monkeypatch.setenv("EMOTIONS_DATABASE_URL", dashboard_role)
    monkeypatch.setenv("EMOTIONS_DATA_DIR", env["EMOTIONS_DATA_DIR"])
    monkeypatch.setenv("EMOTIONS_DASHBOARD_PROJECT", "demo")
    monkeypatch.setenv("EMOTIONS_DASHBOARD_N_BOOT", "50")
    st.cache_data.clear()
    try:
        page_checks.check_all_pages(page_checks.expected_figures(url))
        # Read-only twice over: the dashboard's sessions, and the role itself even in a writable one.
        for engine_url in (url, dashboard_role):
            with pytest.raises(DBAPIError, match="read-only transaction"), \
                    data.read_only_engine(engine_url).begin() as conn:
                conn.execute(text("DELETE FROM judgements"))
        writer = create_engine(dashboard_role)
        with pytest.raises(DBAPIError, match="permission denied"), writer.begin() as conn:
            conn.execute(text("SET TRANSACTION READ WRITE"))
            conn.execute(text("DELETE FROM judgements"))
        writer.dispose()
    finally:
        st.cache_data.clear()
        for engine_url in (url, dashboard_role):
            data.read_only_engine(engine_url).dispose()
