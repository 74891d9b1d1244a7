"""The allocator's fast path keeps the rules: the cached eligible pool, the one-query clip lock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from annotation_app import migrations
from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.errors import ConflictError
from annotation_app.services import work
from annotation_app.services._common import lock_clip, lock_first_clip
from tests.annotation_app.factories import make_annotator, make_clips, make_project
from tests.conftest import _throwaway_pg

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_pool_cache() -> Iterator[None]:
    work.invalidate_pool_cache()
    yield
    work.invalidate_pool_cache()


def _one_clip_two_men_in(session: Session, *, extra_gender: str):  # noqa: ANN202
    """k=3, balance on gender: two men hold the only clip; who may take the third slot?"""
    project = make_project(session, overlap_k=3, stage2_extra=0, balance_attributes=["gender"])
    (clip,) = make_clips(session, project, 1)
    m1, m2, m3 = (make_annotator(session, gender="male") for _ in range(3))
    extra = make_annotator(session, gender=extra_gender)
    session.flush()
    for man in (m1, m2):
        item = work.next_item(session, project, man, now=T0)
        assert item is not None and item.clip_id == clip.id
    return project, clip, m3, extra


def test_a_new_annotator_joins_the_cached_pool_at_once(session: Session) -> None:
    project = make_project(session, overlap_k=3, stage2_extra=0, balance_attributes=["gender"])
    (clip,) = make_clips(session, project, 1)
    m1, m2, m3 = (make_annotator(session, gender="male") for _ in range(3))
    session.flush()
    for man in (m1, m2):
        assert work.next_item(session, project, man, now=T0) is not None  # the pool is cached now
    woman = make_annotator(session, gender="female")
    session.flush()
    # With the cached all-male pool the ceiling would yield and m3 would get the clip.
    assert work.next_item(session, project, m3, now=T0) is None
    item = work.next_item(session, project, woman, now=T0)
    assert item is not None and item.clip_id == clip.id


def test_a_profile_edit_is_seen_after_invalidation_or_the_ttl(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    project, clip, m3, extra = _one_clip_two_men_in(session, extra_gender="male")
    extra.gender = "female"  # same people, same count: only the TTL or an invalidation shows it
    session.flush()
    work.invalidate_pool_cache(project.id)
    assert work.next_item(session, project, m3, now=T0) is None
    monkeypatch.setattr(work, "POOL_TTL_S", 0.0)
    extra.gender = "male"
    session.flush()
    # TTL 0: reloaded on every call; no woman is eligible, so the ceiling yields to m3.
    item = work.next_item(session, project, m3, now=T0)
    assert item is not None and item.clip_id == clip.id


def test_a_paused_annotator_leaves_the_cached_pool(session: Session) -> None:
    project, clip, m3, woman = _one_clip_two_men_in(session, extra_gender="female")
    assert work.next_item(session, project, m3, now=T0) is None  # the slot waits for the woman
    woman.paused = True
    session.flush()
    item = work.next_item(session, project, m3, now=T0)
    assert item is not None and item.clip_id == clip.id


@pytest.fixture
def pg_committed() -> Iterator[str]:
    for url in _throwaway_pg("emotions_fastpath"):
        migrations.upgrade(url)
        yield url


def test_lock_first_clip_skips_clips_other_transactions_hold(pg_committed: str) -> None:
    engine = make_engine(pg_committed)
    maker = make_sessionmaker(engine)
    try:
        with maker() as setup:
            project = make_project(setup)
            clips = make_clips(setup, project, 3)
            ids, paths = [c.id for c in clips], [c.media_path for c in clips]
            setup.commit()
        with maker() as holder, maker() as other:
            assert lock_clip(holder, ids[1]) is not None
            first = lock_first_clip(other, [ids[1], ids[2], ids[0]])  # ranked order, not id order
            assert first is not None and (first.id, first.media_path) == (ids[2], paths[2])
            assert lock_first_clip(other, [ids[1]]) is None  # every ranked clip is held
            other.rollback()
            holder.rollback()
            again = lock_first_clip(other, [ids[1], ids[2]])
            assert again is not None and again.id == ids[1]
    finally:
        engine.dispose()


def test_lock_first_clip_on_sqlite_takes_the_first_that_exists(sqlite_session: Session) -> None:
    project = make_project(sqlite_session)
    ids = [c.id for c in make_clips(sqlite_session, project, 2)]
    first = lock_first_clip(sqlite_session, [10_000_000, ids[1], ids[0]])
    assert first is not None and first.id == ids[1]
    assert lock_first_clip(sqlite_session, []) is None


def test_a_twin_request_id_in_flight_leaves_the_second_lease_untouched(pg_committed: str) -> None:
    # Two leases submitted under one client request id at the same time: the second waits on the
    # user lock for the first, then sees the key taken by another assignment (a 409 naming it) and
    # leaves its own lease as it was, so the slot is neither lost nor filled without a judgement.
    import threading
    import time

    from sqlalchemy import func, select

    from annotation_app.models import Assignment, AssignmentStatus, Judgement, Project, User

    engine = make_engine(pg_committed)
    maker = make_sessionmaker(engine)
    try:
        with maker() as setup:
            project = make_project(setup, overlap_k=3, stage2_extra=0, balance_attributes=[])
            make_clips(setup, project, 2)
            annotator = make_annotator(setup)
            first = work.next_item(setup, project, annotator, now=T0)
            setup.commit()
            # A second lease of the same annotator (the first is resumed by next_item otherwise).
            setup.get(Assignment, first.assignment_id).status = AssignmentStatus.released
            setup.commit()
            second = work.next_item(setup, project, annotator, now=T0)
            setup.get(Assignment, first.assignment_id).status = AssignmentStatus.leased
            setup.commit()
            ids = (project.id, annotator.id)
        assert second is not None and second.clip_id != first.clip_id
        results = {}

        def submit(name: str, assignment_id: int, hold: float) -> None:
            with maker() as session:
                proj, user = session.get(Project, ids[0]), session.get(User, ids[1])
                results[name] = work.submit(session, proj, user, assignment_id=assignment_id, label="Fear",
                                            client_request_id="same-request", now=T0)
                time.sleep(hold)
                session.commit()

        one = threading.Thread(target=submit, args=("one", first.assignment_id, 0.5))
        one.start()
        time.sleep(0.2)  # "one" has inserted its judgement and holds it uncommitted
        with pytest.raises(ConflictError, match="same-request"):
            submit("two", second.assignment_id, 0.0)
        one.join()
        assert results["one"].duplicate is False and "two" not in results
        with maker() as check:
            assert check.get(Assignment, second.assignment_id).status == AssignmentStatus.leased
            assert check.get(Assignment, first.assignment_id).status == AssignmentStatus.submitted
            assert check.scalar(select(func.count()).select_from(Judgement)) == 1
    finally:
        engine.dispose()
