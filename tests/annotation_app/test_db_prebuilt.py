"""``db.run_prebuilt``: the queue's statements straight to psycopg on PostgreSQL, SQLAlchemy elsewhere.

The fast path must behave like ``Connection.execute`` where the services depend on it: the same
rows by attribute, enumerated values equal to the enum members, SQLAlchemy's exceptions (the
services read constraint names from them), the session's transaction, and a dropped connection
invalidated so the next request reconnects.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Integer, String, bindparam, literal, or_, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from annotation_app.db import make_engine, make_sessionmaker, run_prebuilt
from annotation_app.models import AssignmentStatus, Clip, ClipStatus, Role, User
from annotation_app.services import _queries as sql
from annotation_app.services import stages, work
from annotation_app.services._common import violates
from tests.annotation_app.factories import make_annotator, make_clips, make_project

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _lease(session: Session) -> tuple[int, dict[str, Any]]:
    """A clip and an annotator; the INSERT_LEASE parameters for them (and the clip's id)."""
    project = make_project(session)
    (clip,) = make_clips(session, project, 1)
    annotator = make_annotator(session)
    return clip.id, {"project_id": project.id, "clip_id": clip.id, "user_id": annotator.id, "stage": 1,
                     "now": NOW, "expires": NOW + timedelta(minutes=15)}


_BY_IDS = select(User.__table__.c.id).where(User.__table__.c.id.in_(bindparam("ids", expanding=True)))


def test_rows_and_values_match_connection_execute(session: Session) -> None:
    project = make_project(session)
    (clip,) = make_clips(session, project, 1)
    annotator = make_annotator(session, languages=["zh", "en"])
    fast = run_prebuilt(session, sql.LOCK_USER, {"user_id": annotator.id}).one()
    slow = session.connection().execute(sql.LOCK_USER, {"user_id": annotator.id}).one()
    assert tuple(fast) == tuple(slow)
    assert fast.role == Role.annotator and fast.languages == ["zh", "en"]
    locked = run_prebuilt(session, sql.LOCK_CLIP, {"clip_id": clip.id}).first()
    assert (locked.id, locked.status, locked.media_path) == (clip.id, ClipStatus.active, clip.media_path)
    assert run_prebuilt(session, sql.LOCK_CLIP, {"clip_id": -1}).first() is None
    # An IN list of varying length goes through SQLAlchemy, which expands it per call.
    assert [r.id for r in run_prebuilt(session, _BY_IDS, {"ids": [annotator.id, -1]})] == [annotator.id]


def test_writes_join_the_session_transaction_and_errors_are_sqlalchemys(session: Session) -> None:
    _, params = _lease(session)
    lease_id = run_prebuilt(session, sql.INSERT_LEASE, params).scalar_one()
    status = session.connection().execute(text("SELECT status FROM assignments WHERE id = :i"), {"i": lease_id})
    assert status.scalar_one() == AssignmentStatus.leased
    with pytest.raises(IntegrityError) as raised:
        with session.begin_nested():
            run_prebuilt(session, sql.INSERT_LEASE, params)
    assert violates(raised.value, "uq_assignment_clip_annotator", "assignments.clip_id", "assignments.annotator_id")


def test_a_dropped_connection_is_replaced_on_checkout(pg_url: str) -> None:
    # pool_pre_ping (#22): a connection the server dropped is noticed when the pool hands it out and
    # replaced, so no request fails for it (before, the first one answered an OperationalError).
    engine = make_engine(pg_url, pool_size=1)
    maker = make_sessionmaker(engine)
    admin = make_engine(pg_url)
    try:
        with maker() as first:
            pid = first.connection().execute(text("SELECT pg_backend_pid()")).scalar_one()
            first.commit()
        with admin.connect() as conn:  # what a server restart does to every pooled connection
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            conn.commit()
        with maker() as again:
            assert run_prebuilt(again, sql.LOCK_USER, {"user_id": -1}).first() is None
            assert again.connection().execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()
        admin.dispose()


def test_taking_a_lease_stores_its_judgement_once(session: Session) -> None:
    # PostgreSQL: one statement (data-modifying CTEs); SQLite: the lease, then the guarded insert.
    clip_id, lease = _lease(session)
    lease_id = run_prebuilt(session, sql.INSERT_LEASE, lease).scalar_one()
    judgement = {"project_id": lease["project_id"], "label_id": None, "confidence": None, "cant_judge": True,
                 "broken": False, "flag_reason": None, "time_on_task_s": None, "request_id": "r1"}
    clip = stages.LockedClip(clip_id, ClipStatus.active, 1)
    taken, judgement_id, submitted = work._take_lease_and_store(session, lease_id, clip, NOW, judgement)
    assert (taken.id, taken.clip_id, taken.stage, taken.annotator_id) == (lease_id, clip_id, 1, lease["user_id"])
    # PostgreSQL counts the stage's submitted slots with it (this one included); SQLite leaves it to
    # the stage machine.
    assert submitted == (1 if session.get_bind().dialect.name == "postgresql" else None)
    stored = session.connection().execute(
        text("SELECT assignment_id, stage, cant_judge, client_request_id FROM judgements WHERE id = :i"),
        {"i": judgement_id}).one()
    assert tuple(stored) == (lease_id, 1, True, "r1")
    # Taken already: nothing is taken or stored the second time.
    assert work._take_lease_and_store(session, lease_id, clip, NOW, {**judgement, "request_id": "r2"}) == (None,) * 3
    count = session.connection().execute(text("SELECT count(*) FROM judgements WHERE assignment_id = :a"),
                                         {"a": lease_id})
    assert count.scalar_one() == 1
    # A second annotator's slot of the clip: two submitted now.
    second = run_prebuilt(session, sql.INSERT_LEASE, {**lease, "user_id": make_annotator(session).id}).scalar_one()
    _, _, submitted = work._take_lease_and_store(session, second, clip, NOW, {**judgement, "request_id": "r4"})
    assert submitted == (2 if session.get_bind().dialect.name == "postgresql" else None)
    # A lease past its end is not taken either.
    expired = run_prebuilt(session, sql.INSERT_LEASE, {**lease, "user_id": make_annotator(session).id,
                                                        "expires": NOW - timedelta(seconds=1)}).scalar_one()
    assert work._take_lease_and_store(session, expired, clip, NOW, {**judgement, "request_id": "r3"}) == (None,) * 3


def test_python_side_column_defaults_are_never_sent_as_null(session: Session) -> None:
    # ``clips.updated_at`` has ``onupdate=utcnow``: SQLAlchemy's execution context computes it per
    # call, so such a statement must not take the straight-to-psycopg path with a NULL constant.
    project = make_project(session)
    (clip,) = make_clips(session, project, 1)
    table = Clip.__table__
    bump = update(table).where(table.c.id == bindparam("clip_id")).values(stage=bindparam("stage"))
    run_prebuilt(session, bump, {"clip_id": clip.id, "stage": 2})
    row = session.connection().execute(select(table.c.stage, table.c.updated_at).where(table.c.id == clip.id)).one()
    assert row.stage == 2 and row.updated_at is not None


def test_placeholders_constants_and_percent_signs_survive_the_conversion(session: Session) -> None:
    # On PostgreSQL the SQL is rewritten once for psycopg's raw cursor: named placeholders become
    # $n (a name used twice is one $n), constants become literals, "%%" (a modulo) becomes "%".
    table = User.__table__
    who = bindparam("user_id", type_=Integer)
    statement = select(
        table.c.id % 2, table.c.username + literal("'s % share"), literal(None, type_=Integer), literal(True),
    ).where(table.c.id == who, or_(table.c.id == who, table.c.username == bindparam("name", type_=String)))
    annotator = make_annotator(session)
    fast = run_prebuilt(session, statement, {"user_id": annotator.id, "name": "nobody"}).one()
    slow = session.connection().execute(statement, {"user_id": annotator.id, "name": "nobody"}).one()
    assert tuple(fast) == tuple(slow) == (annotator.id % 2, f"{annotator.username}'s % share", None, True)
    with pytest.raises(StatementError, match="bind parameter 'name'"):
        run_prebuilt(session, statement, {"user_id": annotator.id})


def test_a_savepoint_rolled_back_undoes_what_ran_inside_it(session: Session) -> None:
    # The connection is remembered per transaction; a savepoint must still be emitted (SQLAlchemy
    # emits it when the nested transaction is first asked for its connection) and rolled back.
    _, params = _lease(session)
    other = make_annotator(session).id
    outside = run_prebuilt(session, sql.INSERT_LEASE, params).scalar_one()
    savepoint = session.begin_nested()  # nothing but the prebuilt statement runs inside it
    inside = run_prebuilt(session, sql.INSERT_LEASE, {**params, "user_id": other}).scalar_one()
    savepoint.rollback()
    left = run_prebuilt(session, select(sql.A.c.id).where(sql.A.c.id.in_([outside, inside])), {}).all()
    assert [row.id for row in left] == [outside]
