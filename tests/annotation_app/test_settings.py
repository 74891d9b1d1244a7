"""Settings come from EMOTIONS_* variables with sensible embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotation_app.settings import Settings


def test_defaults_live_in_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("EMOTIONS_DATA_DIR", "EMOTIONS_DATABASE_URL", "EMOTIONS_MEDIA_DIR", "EMOTIONS_FFMPEG"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.data_dir == Path("data")
    assert s.media_dir == Path("data/media")
    assert s.database_url == f"sqlite:///{(tmp_path / 'data' / 'emotions.sqlite3').resolve()}"
    assert s.is_sqlite and s.ffmpeg is None


def test_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTIONS_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("EMOTIONS_DATABASE_URL", "postgresql+psycopg://u@db.example/emotions")
    monkeypatch.setenv("EMOTIONS_MEDIA_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("EMOTIONS_FFMPEG", "/opt/ffmpeg")
    s = Settings()
    assert s.media_dir == tmp_path / "m" and not s.is_sqlite and s.ffmpeg == "/opt/ffmpeg"


def test_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMOTIONS_DATA_DIR", raising=False)
    (tmp_path / ".env").write_text("EMOTIONS_DATA_DIR=/srv/emotions\n")
    assert Settings().data_dir == Path("/srv/emotions")


def test_secret_is_created_once_and_kept(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    first = s.session_secret()
    assert len(first) > 40 and Settings(data_dir=tmp_path).session_secret() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_sqlite_engine_uses_wal_and_busy_timeout(tmp_path: Path) -> None:
    from annotation_app.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}", busy_timeout_ms=1234)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_app_threads_size_the_thread_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each worker's sync handlers and units of work share this many threads (EMOTIONS_APP_THREADS).
    import anyio.to_thread
    from fastapi.testclient import TestClient

    from annotation_app.main import create_app

    monkeypatch.setenv("EMOTIONS_APP_THREADS", "3")
    settings = Settings(data_dir=tmp_path)
    assert settings.app_threads == 3
    seen = []
    app = create_app(settings)

    @app.get("/test-threads")
    async def threads() -> dict[str, int]:
        seen.append(anyio.to_thread.current_default_thread_limiter().total_tokens)
        return {}

    with TestClient(app) as client:
        assert client.get("/test-threads").status_code == 200
    assert seen == [3]
    monkeypatch.setenv("EMOTIONS_APP_THREADS", "-1")
    with pytest.raises(ValueError, match="app_threads"):
        Settings(data_dir=tmp_path)


def test_app_threads_default_to_what_the_database_can_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite takes one writer at a time; PostgreSQL keeps a worker's threads waiting on it in parallel.
    monkeypatch.delenv("EMOTIONS_APP_THREADS", raising=False)
    assert Settings(data_dir=tmp_path).app_threads == 2
    assert Settings(data_dir=tmp_path, database_url="postgresql+psycopg://u@h/db").app_threads == 4
    monkeypatch.setenv("EMOTIONS_APP_THREADS", "0")  # 0 asks for the default
    assert Settings(data_dir=tmp_path, database_url="postgresql+psycopg://u@h/db").app_threads == 4
    monkeypatch.setenv("EMOTIONS_APP_THREADS", "5")
    assert Settings(data_dir=tmp_path).app_threads == 5


def test_a_running_app_keeps_its_startup_objects_out_of_the_collectors_passes(tmp_path: Path) -> None:
    # Full collections over the ~170k objects of startup stalled a worker for 70-100 ms every few
    # seconds; frozen, they are skipped. Stopping the app hands them back to the collector.
    import gc

    from fastapi.testclient import TestClient

    from annotation_app.main import create_app

    app = create_app(Settings(data_dir=tmp_path))
    assert gc.get_freeze_count() == 0
    with TestClient(app) as client:
        assert gc.get_freeze_count() > 10_000
        assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(("value", "after_a_drop"), [(None, 200), ("true", 200), ("false", 503)])
def test_pool_pre_ping_setting_decides_whether_a_dropped_connection_fails_a_request(
        value: str | None, after_a_drop: int, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # EMOTIONS_DB_POOL_PRE_PING (default on, #22) reaches the app's engine: with it, a pooled
    # connection the server dropped is replaced as a request takes it; off (only to measure what the
    # ping costs, bench/bench_annotation_http.py --pre-ping on,off), that request fails with a 503.
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from annotation_app.db import make_engine
    from annotation_app.main import create_app

    if value is None:
        monkeypatch.delenv("EMOTIONS_DB_POOL_PRE_PING", raising=False)
    else:
        monkeypatch.setenv("EMOTIONS_DB_POOL_PRE_PING", value)
    app = create_app(Settings(data_dir=tmp_path, database_url=pg_url))
    admin = make_engine(pg_url)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/healthz").status_code == 200
            with app.state.engine.connect() as conn:  # the one pooled connection /healthz used
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as conn:  # what a server restart does to it
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                conn.commit()
            assert client.get("/healthz").status_code == after_a_drop
            assert client.get("/healthz").status_code == 200  # either way the next one reconnects
    finally:
        admin.dispose()
