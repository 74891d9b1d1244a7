"""Engine and session factories. Nothing connects at import time."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, NoResultFound
from sqlalchemy.orm import Session, sessionmaker

from annotation_app.settings import Settings

__all__ = ["make_engine", "make_sessionmaker", "session_scope", "run_prebuilt"]


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 10) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not pysqlite, issue BEGIN: pysqlite's implicit transactions would
            # otherwise defeat both SAVEPOINT-based test isolation and BEGIN IMMEDIATE below.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Writers are serialised by taking the write lock at BEGIN: a read-then-write
            # transaction can then never deadlock-upgrade, and allocation stays race-free.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pre-ping: it cost a round trip per checkout on every request. A connection the server
    # dropped (a restart) fails the one statement that meets it; SQLAlchemy then invalidates the
    # whole pool, so the requests after it reconnect.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session on the configured database, committed on success and rolled back on error."""
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        with make_sessionmaker(engine)() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        engine.dispose()


# -- Prebuilt statements on the request path ------------------------------------------------------


class _Rows:
    """The result methods the hot path uses (``Result``'s names), over a psycopg cursor."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def first(self) -> Any:
        return self._cursor.fetchone()

    def one(self) -> Any:
        row = self._cursor.fetchone()
        if row is None:
            raise NoResultFound("the statement returned no row")
        return row

    def scalar(self) -> Any:
        row = self._cursor.fetchone()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def all(self) -> list[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Any:
        return iter(self._cursor.fetchall())


# statement -> (SQL, constant parameters), or None for one SQLAlchemy must expand per call.
_PG_SQL: dict[Any, tuple[str, dict[str, Any]] | None] = {}


def _pg_sql(statement: Any, dialect: Any) -> tuple[str, dict[str, Any]] | None:
    if statement in _PG_SQL:
        return _PG_SQL[statement]
    compiled = statement.compile(dialect=dialect)
    found = None
    if "POSTCOMPILE" not in compiled.string:  # no IN list of varying length
        used = set(re.findall(r"%\((\w+)\)s", compiled.string))
        constants = {name: _plain(bind.value) for name, bind in compiled.binds.items()
                     if name in used and not bind.required}
        found = (compiled.string, constants)
    _PG_SQL[statement] = found
    return found


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _arguments(constants: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {**constants, **{name: _plain(value) for name, value in params.items()}}


def _driver_error(connection: Any, raw: Any, exc: psycopg.Error, statement: str, arguments: Any) -> DBAPIError:
    """psycopg's error as ``Connection.execute`` would raise it; a dropped connection is invalidated."""
    if raw.closed:
        connection.invalidate(exc)
    return DBAPIError.instance(statement, arguments, exc, psycopg.Error)


def run_prebuilt(session: Session, statement: Any, params: dict[str, Any]) -> Any:
    """Run a statement built once at import (never one built per call) in the session's transaction.

    On PostgreSQL the SQL that SQLAlchemy compiled once goes straight to the psycopg cursor:
    SQLAlchemy's execution context and result objects cost about as much Python as the rest of a
    request's work. Rows are named tuples; enumerated columns come back as their string values
    (equal to the ``StrEnum`` members). Errors are SQLAlchemy's, as ``Connection.execute`` raises
    them, and a connection the server dropped is invalidated. Elsewhere (SQLite), and for
    statements with an IN list, ``Connection.execute``.
    """
    connection = session.connection()
    compiled = _pg_sql(statement, connection.dialect) if connection.dialect.name == "postgresql" else None
    if compiled is None:
        return connection.execute(statement, params)
    sql, constants = compiled
    arguments = _arguments(constants, params)
    raw = connection.connection.driver_connection
    cursor = raw.cursor(row_factory=namedtuple_row)
    try:
        cursor.execute(sql, arguments)
    except psycopg.Error as exc:
        raise _driver_error(connection, raw, exc, sql, arguments) from exc
    return _Rows(cursor)
