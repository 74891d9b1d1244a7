"""Engine and session factories. Nothing connects at import time."""

from __future__ import annotations

import enum
import re
import weakref
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import ExecStatus
from psycopg.rows import tuple_row
from psycopg.sql import Literal
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InvalidRequestError, NoResultFound, StatementError
from sqlalchemy.orm import Session, sessionmaker

from annotation_app.errors import AppError, ConflictError, InvalidInputError
from annotation_app.settings import Settings

__all__ = ["make_engine", "make_sessionmaker", "session_scope", "run_prebuilt", "database_error"]


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 10,
                pool_pre_ping: bool = True) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and enforced foreign keys.

    ``pool_pre_ping`` (PostgreSQL) tests each pooled connection as it is handed out
    (``Settings.db_pool_pre_ping``; off only to measure what the test costs).
    """
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
    # Pre-ping on checkout (#22): without it, every pooled connection of an idle app met a PostgreSQL
    # restart with a failed statement, a 500 per request until the pool had turned over. The ping
    # is one empty round trip per request on a local socket; a server that is still down fails it,
    # and the app answers 503 with Retry-After (``main._database_unavailable``).
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=pool_pre_ping)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def database_error(exc: IntegrityError | DataError) -> AppError:
    """The app's error for a write the database refused, worded alike on SQLite and PostgreSQL.

    The services check what they can first; this is the net under them (two requests racing for
    one unique name, a value past a column's range). An integrity error (a unique, NOT NULL,
    foreign-key or CHECK rule) is a ``ConflictError``; a data error (a number out of the column's
    range, text too long, NUL in text) an ``InvalidInputError``. The message names the rule or the
    problem, never the SQL or the parameters.
    """
    orig = exc.orig
    diag = getattr(orig, "diag", None)  # psycopg's: the constraint's own name
    rule = getattr(diag, "constraint_name", None) or (
        f"{getattr(diag, 'table_name', '')}.{diag.column_name} may not be null" if getattr(diag, "column_name", None)
        else None)
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if isinstance(exc, IntegrityError):
        # SQLite says "UNIQUE constraint failed: users.username" and the like: the rule, no values.
        return ConflictError(f"the change breaks a rule of the data: {rule or first_line}")
    return InvalidInputError(f"a value does not fit the database: {first_line}")


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session on the configured database, committed on success and rolled back on error."""
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                         pool_pre_ping=settings.db_pool_pre_ping)
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
    """The result methods the hot path uses (``Result``'s names), over the rows already fetched."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise NoResultFound("the statement returned no row")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def all(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Any:
        return iter(self._rows)


@dataclass
class _Prebuilt:
    """A statement compiled for psycopg's raw cursor: its SQL with PostgreSQL's own ``$n``
    placeholders (constants written in as literals), the parameter name of each and, after its
    first run, the named tuple of its result columns (psycopg's row factories look the columns up
    on every run)."""

    sql: str
    names: tuple[str, ...]  # ``$1`` is names[0], ...
    row: Any = None

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        try:
            return [_plain(params[name]) for name in self.names]
        except KeyError as missing:  # as SQLAlchemy raises it
            reason = InvalidRequestError(f"A value is required for bind parameter {missing.args[0]!r}")
            raise StatementError(str(reason), self.sql, params, reason) from None

    def rows(self, cursor: Any) -> list[Any]:
        result = cursor.pgresult
        if result is None or result.status != TUPLES_OK:  # (``description`` builds objects per call)
            return []
        if self.row is None:
            self.row = namedtuple("Row", [column.name for column in cursor.description], rename=True)
        return list(map(self.row._make, cursor.fetchall()))


TUPLES_OK = ExecStatus.TUPLES_OK
_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s")

# statement -> its compiled form, or None for one SQLAlchemy must expand per call.
_PG_SQL: dict[Any, _Prebuilt | None] = {}


def _pg_sql(statement: Any, dialect: Any) -> _Prebuilt | None:
    if statement in _PG_SQL:
        return _PG_SQL[statement]
    compiled = statement.compile(dialect=dialect)
    found = None
    # Not with an IN list of varying length, nor with column defaults computed in Python (an
    # ``onupdate=utcnow`` not given): SQLAlchemy's execution context fills those in per call.
    if "POSTCOMPILE" not in compiled.string and not (compiled.insert_prefetch or compiled.update_prefetch):
        # psycopg's own cursor turns ``%(name)s`` into ``$n`` on every run (cached only for short
        # statements) and sends every constant SQLAlchemy made a parameter of: both done once here,
        # for its raw cursor, the constants as SQL literals.
        constants = {name: _plain(bind.value) for name, bind in compiled.binds.items() if not bind.required}
        names: list[str] = []

        def placeholder(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "%"  # a literal percent sign, escaped for the pyformat style
            if name in constants:
                return Literal(constants[name]).as_string()
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        found = _Prebuilt(_PLACEHOLDER.sub(placeholder, compiled.string), tuple(names))
    _PG_SQL[statement] = found
    return found


# One cursor per psycopg connection, used again by every prebuilt statement on it: a new cursor
# copies the connection's adapters. A pooled connection serves one thread at a time.
_CURSORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _cursor(raw: Any) -> Any:
    cursor = _CURSORS.get(raw)
    if cursor is None or cursor.closed:
        cursor = _CURSORS[raw] = psycopg.RawCursor(raw, row_factory=tuple_row)
    return cursor


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _driver_error(connection: Any, raw: Any, exc: psycopg.Error, statement: str, arguments: Any) -> DBAPIError:
    """psycopg's error as ``Connection.execute`` would raise it; a dropped connection is invalidated."""
    if raw.closed:
        connection.invalidate(exc)
    return DBAPIError.instance(statement, arguments, exc, psycopg.Error)


def _connection(session: Session) -> Any:
    """``session.connection()``, remembered for the session's current (innermost) transaction: a
    request runs several statements, and asking the session each time cost about 5 % of a worker's
    time. Innermost, because a savepoint (``begin_nested``) is only emitted when the nested
    transaction is first asked for its connection."""
    remembered = session.info.get("_prebuilt_connection")
    if remembered is not None and remembered[0] is _innermost_transaction(session):
        return remembered[1]
    connection = session.connection()  # begins the transaction (or emits the savepoint) if need be
    session.info["_prebuilt_connection"] = (_innermost_transaction(session), connection)
    return connection


def _innermost_transaction(session: Session) -> Any:
    return session.get_nested_transaction() or session.get_transaction()


def run_prebuilt(session: Session, statement: Any, params: dict[str, Any]) -> Any:
    """Run a statement built once at import (never one built per call) in the session's transaction.

    On PostgreSQL the SQL that SQLAlchemy compiled once goes straight to psycopg: SQLAlchemy's
    execution context and result objects cost about as much Python as the rest of a request's
    work. The rows are fetched at once, as named tuples; enumerated columns come back as their
    string values (equal to the ``StrEnum`` members). Errors are SQLAlchemy's, as
    ``Connection.execute`` raises them, and a connection the server dropped is invalidated.
    Elsewhere (SQLite), and for statements with an IN list or defaults computed in Python,
    ``Connection.execute``.
    """
    connection = _connection(session)
    prebuilt = _pg_sql(statement, connection.dialect) if connection.dialect.name == "postgresql" else None
    if prebuilt is None:
        return connection.execute(statement, params)
    arguments = prebuilt.arguments(params)
    raw = connection.connection.driver_connection
    cursor = _cursor(raw)
    try:
        cursor.execute(prebuilt.sql, arguments)
        return _Rows(prebuilt.rows(cursor))
    except psycopg.Error as exc:
        raise _driver_error(connection, raw, exc, prebuilt.sql, arguments) from exc
