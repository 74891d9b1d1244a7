"""Alembic environment: the URL comes from the caller (``curate db upgrade``) or the settings."""

from __future__ import annotations

from alembic import context
from annotation_app.db import make_engine
from annotation_app.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from annotation_app.settings import get_settings

    return get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration rebuilds a table by copying it and dropping the old one; with the
        # foreign keys make_engine enforces, that DROP cascades and deletes every row hanging off
        # the table (0010 emptied clips and judgements by rebuilding projects). The pragma is a
        # no-op inside a transaction, so it goes to the driver before SQLAlchemy's BEGIN IMMEDIATE,
        # and the keys are checked once at the end instead.
        _sqlite_foreign_keys_off(connection)
    # render_as_batch: SQLite cannot ALTER most things, so Alembic rebuilds tables in batches.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            _no_dangling_references(connection)


def _sqlite_foreign_keys_off(connection) -> None:  # type: ignore[no-untyped-def]
    # The migration's own connection only: run_migrations_online disposes of its engine afterwards,
    # so no connection with the keys off goes back to a pool the app uses.
    driver = connection.connection.driver_connection
    driver.execute("PRAGMA foreign_keys=OFF")
    if driver.execute("PRAGMA foreign_keys").fetchone()[0] != 0:
        raise RuntimeError("cannot switch SQLite foreign keys off: the migration connection is inside a transaction")


def _no_dangling_references(connection) -> None:  # type: ignore[no-untyped-def]
    """Refuse (and so roll back) a migration that left a row pointing at nothing."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({row[0] for row in broken})
        raise RuntimeError(f"migration left {len(broken)} rows with dangling foreign keys in {', '.join(tables)}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
