"""Fixtures shared by every test: real databases (a SQLite file and a throwaway PostgreSQL database)
and a real browser (Debian's Chromium driven by Playwright).

Each DB test runs inside a transaction that is rolled back (``session`` fixtures), so tests never
see each other's rows; ``test_isolation.py`` proves it on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session

from annotation_app import migrations
from annotation_app.db import make_engine

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOTIONS_SHARED_DIR", REPO.parent / "shared"))
PG_ADMIN_URL = os.environ.get("EMOTIONS_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# Debian's package rather than Playwright's download: our machines cannot download a browser.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _pg_admin_engine() -> Engine | None:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return engine
    except Exception:
        engine.dispose()
        return None


def require_postgres() -> None:
    """Skip when no server answers, except under CI where a missing PostgreSQL is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI=true but {PG_ADMIN_URL} does not answer")
    pytest.skip(f"no PostgreSQL answers at {PG_ADMIN_URL}")


@pytest.fixture(autouse=True)
def _restore_main_module() -> Iterator[None]:
    """Streamlit's AppTest installs the page script as ``sys.modules["__main__"]`` and leaves it there;
    a later ``spawn`` process pool would re-run that script in every worker and die. Put it back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(autouse=True)
def _forget_cached_settings() -> Iterator[None]:
    """``get_settings`` is cached for the process: a test that points EMOTIONS_* at its own database
    and runs ``curate`` in-process left every later test reading that database (a file-based
    ``curate agreement`` then checked its labels against that project's label set)."""
    yield
    from annotation_app.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "test.sqlite3"
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    return url


def _throwaway_pg(prefix: str) -> Iterator[str]:
    admin = _pg_admin_engine()
    if admin is None:
        require_postgres()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test run, migrated to head, dropped at the end."""
    for url in _throwaway_pg("emotions_test"):
        migrations.upgrade(url)
        yield url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (for migration tests)."""
    yield from _throwaway_pg("emotions_mig")


@pytest.fixture(scope="session")
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def _rolled_back_session(engine: Engine) -> Iterator[Session]:
    # The test's commits become savepoints inside one outer transaction that is rolled back.
    with engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()
            outer.rollback()


@pytest.fixture
def sqlite_session(sqlite_engine: Engine) -> Iterator[Session]:
    yield from _rolled_back_session(sqlite_engine)


@pytest.fixture
def pg_session(pg_engine: Engine) -> Iterator[Session]:
    yield from _rolled_back_session(pg_engine)


@pytest.fixture(params=["sqlite", "postgres"])
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    """A rolled-back session, once on SQLite and once on PostgreSQL."""
    name = "sqlite_session" if request.param == "sqlite" else "pg_session"
    yield request.getfixturevalue(name)


@pytest.fixture(scope="session")
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared, busy machine: one intra-op thread avoids OpenMP spinning (30x slower)."""
    import torch  # here: most of the suite never needs torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium for one test module; the test is skipped where chromium or Playwright is missing,
    except under CI (``CI=true``), where ``./dev test`` installs both: there a missing one is a failure,
    not a quietly skipped browser suite."""
    ci = os.environ.get("CI", "").lower() == "true"
    if not CHROMIUM.exists():
        (pytest.fail if ci else pytest.skip)("Debian's chromium is not installed (apt-get install -y chromium)")
    try:
        import playwright.sync_api as sync_api
    except ImportError:
        (pytest.fail if ci else pytest.skip)("Playwright for Python is not installed (./dev setup test)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
