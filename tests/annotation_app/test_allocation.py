"""Allocation: balance, language, no repeats, daily cap, leases (pure rules, then on SQLite and PostgreSQL)."""

from __future__ import annotations

import doctest
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation_app.errors import LeaseError
from annotation_app.models import Assignment, AssignmentStatus, Judgement
from annotation_app.services import work
from annotation_app.services.allocation import ClipState, Person, rank_clips, refusal
from tests.annotation_app.factories import (
    label_until_done,
    make_annotator,
    make_annotators,
    make_clips,
    make_project,
    unique,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _people(*genders: str) -> list[Person]:
    return [Person(i + 1, {"gender": g}) for i, g in enumerate(genders)]


# ---------------------------------------------------------------------------------------------
# Pure rules


@pytest.mark.parametrize("module", ["allocation", "quality", "work"])
def test_docstring_examples_run(module: str) -> None:
    import importlib

    result = doctest.testmod(importlib.import_module(f"annotation_app.services.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_ceiling_refuses_a_third_of_one_group_while_others_are_free() -> None:
    pool = _people("m", "m", "m", "f")
    clip = ClipState(1, stage=1, needed=3, slots_total=3, live=pool[:2], ever={1, 2})
    assert refusal(pool[2], clip, pool, ["gender"]) == "group gender=m would exceed 2 of 3 slots"
    assert refusal(pool[3], clip, pool, ["gender"]) is None


def test_ceiling_yields_when_no_other_group_can_supply_anyone() -> None:
    pool = _people("m", "m", "m", "f")
    # The only woman already had this clip (e.g. her lease expired): the clip must not starve.
    clip = ClipState(1, stage=1, needed=3, slots_total=3, live=pool[:2], ever={1, 2, 4})
    assert refusal(pool[2], clip, pool, ["gender"]) is None


def test_missing_attribute_never_blocks() -> None:
    pool = _people("m", "m", "f") + [Person(9, {"gender": None})]
    clip = ClipState(1, stage=1, needed=3, slots_total=3, live=pool[:2], ever={1, 2})
    assert refusal(pool[3], clip, pool, ["gender"]) is None


def test_stage_two_takes_only_under_represented_groups() -> None:
    pool = _people("f", "f", "f", "m", "m", "f", "m")
    # Stage 1 gave 3 women, 2 men: stage 2 wants men until they catch up.
    clip = ClipState(1, stage=2, needed=3, slots_total=8, live=pool[:5], ever={1, 2, 3, 4, 5}, filled=0)
    assert refusal(pool[5], clip, pool, ["gender"]).startswith("stage 2 draws from under-represented groups")
    assert refusal(pool[6], clip, pool, ["gender"]) is None


def test_last_slot_is_kept_for_a_speaker() -> None:
    en = Person(1, {}, frozenset({"en"}))
    en2 = Person(2, {}, frozenset({"en"}))
    zh = Person(3, {}, frozenset({"zh"}))
    clip = ClipState(1, stage=1, needed=2, slots_total=2, live=[en], ever={1}, language="zh")
    assert refusal(en2, clip, [en, en2, zh], []) == "last slot kept for a speaker of zh"
    assert refusal(zh, clip, [en, en2, zh], []) is None
    # Nobody left who speaks it: a non-speaker may take the slot.
    assert refusal(en2, clip, [en, en2], []) is None
    # Region variants count as the language ("zh-CN" is zh).
    assert refusal(en2, ClipState(2, 1, 2, 2, [en], {1}, "zh-CN"), [en, en2, zh], []) is not None


def test_rank_prefers_stage_two_then_the_clip_that_needs_this_group() -> None:
    pool = _people("f", "f", "m", "m", "m")
    me = pool[4]
    stage1_female_heavy = ClipState(10, 1, 5, 5, live=pool[:2], ever={1, 2})
    stage1_male_heavy = ClipState(11, 1, 5, 5, live=pool[2:4], ever={3, 4})
    stage1_empty = ClipState(12, 1, 5, 5)
    stage2 = ClipState(13, 2, 3, 8, live=[], ever=set(), filled=0)
    order = [c.clip_id for c in rank_clips(me, [stage1_male_heavy, stage1_empty, stage1_female_heavy, stage2], pool, ["gender"])]
    assert order == [13, 10, 12, 11]


# ---------------------------------------------------------------------------------------------
# In the database


def _submit(session: Session, project, annotator, item, label: str = "Fear", *, now=T0, request_id=None):  # noqa: ANN001
    return work.submit(session, project, annotator, assignment_id=item.assignment_id, label=label,
                       client_request_id=request_id or unique("req"), now=now)


def test_group_ceiling_holds_in_the_database(session: Session) -> None:
    project = make_project(session, overlap_k=3, balance_attributes=["gender"])
    [clip] = make_clips(session, project, 1)
    men = [make_annotator(session, gender="male") for _ in range(3)]
    woman = make_annotator(session, gender="female")
    first, second = (work.next_item(session, project, m, now=T0) for m in men[:2])
    assert first.clip_id == second.clip_id == clip.id
    assert work.next_item(session, project, men[2], now=T0) is None  # a third man would break ceil(3/2)
    assert work.next_item(session, project, woman, now=T0).clip_id == clip.id


def test_nobody_gets_the_same_clip_twice(session: Session) -> None:
    project = make_project(session, overlap_k=2)
    clips = make_clips(session, project, 2)
    annotator = make_annotator(session)
    seen = []
    for _ in range(3):
        item = work.next_item(session, project, annotator, now=T0)
        if item is None:
            break
        seen.append(item.clip_id)
        _submit(session, project, annotator, item)
    assert sorted(seen) == sorted(c.id for c in clips)


def test_live_lease_is_resumed(session: Session) -> None:
    project = make_project(session)
    make_clips(session, project, 3)
    annotator = make_annotator(session)
    a = work.next_item(session, project, annotator, now=T0)
    b = work.next_item(session, project, annotator, now=T0 + timedelta(minutes=1))
    assert a == b and a.lease_expires_at == T0 + timedelta(minutes=project.lease_minutes)


def test_daily_cap_blocks_and_says_why(session: Session) -> None:
    project = make_project(session, daily_cap=2)
    make_clips(session, project, 5)
    annotator = make_annotator(session)
    for _ in range(2):
        _submit(session, project, annotator, work.next_item(session, project, annotator, now=T0))
    assert work.next_item(session, project, annotator, now=T0) is None
    progress = work.progress(session, project, annotator, now=T0)
    assert progress["done_today"] == 2 and progress["remaining_today"] == 0
    assert progress["blocked_reason"] == "daily cap of 2 clips reached"
    # A new day gives a new allowance.
    assert work.next_item(session, project, annotator, now=T0 + timedelta(days=1)) is not None


def test_expired_lease_returns_the_slot(session: Session) -> None:
    project = make_project(session, overlap_k=1, lease_minutes=15)
    [clip] = make_clips(session, project, 1)
    slow, fast = make_annotator(session), make_annotator(session)
    held = work.next_item(session, project, slow, now=T0)
    assert work.next_item(session, project, fast, now=T0 + timedelta(minutes=5)) is None  # slot taken
    later = T0 + timedelta(minutes=16)
    again = work.next_item(session, project, fast, now=later)
    assert again is not None and again.clip_id == clip.id
    with pytest.raises(LeaseError, match="expired"):
        _submit(session, project, slow, held, now=later)
    _submit(session, project, fast, again, now=later)
    statuses = dict(session.execute(select(Assignment.annotator_id, Assignment.status)
                                    .where(Assignment.clip_id == clip.id)).all())
    assert statuses == {slow.id: AssignmentStatus.expired, fast.id: AssignmentStatus.submitted}
    assert session.scalar(select(func.count()).select_from(Judgement).where(Judgement.clip_id == clip.id)) == 1


def test_reclaim_marks_expired_leases(session: Session) -> None:
    project = make_project(session)
    make_clips(session, project, 2)
    annotator = make_annotator(session)
    item = work.next_item(session, project, annotator, now=T0)
    assert work.reclaim_expired(session, now=T0 + timedelta(minutes=1)) == 0
    assert work.reclaim_expired(session, now=T0 + timedelta(minutes=20)) >= 1
    assert session.get(Assignment, item.assignment_id).status == AssignmentStatus.expired


def test_language_slot_waits_for_a_speaker(session: Session) -> None:
    project = make_project(session, overlap_k=2, balance_attributes=[])
    [clip] = make_clips(session, project, 1, language="zh")
    en1, en2 = make_annotator(session, languages=["en"]), make_annotator(session, languages=["en"])
    zh = make_annotator(session, languages=["zh", "en"])
    assert work.next_item(session, project, en1, now=T0).clip_id == clip.id
    assert work.next_item(session, project, en2, now=T0) is None
    assert work.next_item(session, project, zh, now=T0).clip_id == clip.id


def test_paused_and_non_annotating_roles_get_nothing(session: Session) -> None:
    project = make_project(session)
    make_clips(session, project, 2)
    paused = make_annotator(session)
    paused.paused, paused.pause_reason = True, "too fast"
    curator = make_annotator(session, role="curator")
    assert work.next_item(session, project, paused, now=T0) is None
    assert work.progress(session, project, paused, now=T0)["blocked_reason"] == "paused: too fast"
    assert work.next_item(session, project, curator, now=T0) is None
    assert work.progress(session, project, curator)["blocked_reason"] == "role curator does not annotate"


def test_can_access_clip_only_with_a_live_lease(session: Session) -> None:
    project = make_project(session)
    [clip, other] = make_clips(session, project, 2)
    annotator, expert = make_annotator(session), make_annotator(session, role="expert")
    item = work.next_item(session, project, annotator, now=T0)
    assert work.can_access_clip(session, annotator, item.clip_id, now=T0)
    not_mine = other.id if item.clip_id == clip.id else clip.id
    assert not work.can_access_clip(session, annotator, not_mine, now=T0)
    assert not work.can_access_clip(session, annotator, item.clip_id, now=T0 + timedelta(hours=1))
    assert work.can_access_clip(session, expert, not_mine)


def test_a_labelled_project_is_balanced_and_language_covered(session: Session) -> None:
    project = make_project(session, overlap_k=5, stage2_extra=0, balance_attributes=["gender", "age_band"])
    clips = make_clips(session, project, 12, language=["zh", None, "es"])
    people = make_annotators(session, 12)  # 6 women, 6 men; zh speakers: 4, es speakers: 2
    label_until_done(session, project, people, lambda clip_id, who: "Fear", now=T0, commit=False)
    by_id = {p.id: p for p in people}
    for clip in clips:
        team = [by_id[a] for a in session.scalars(select(Judgement.annotator_id).where(Judgement.clip_id == clip.id))]
        assert len(team) == 5 and len({p.id for p in team}) == 5
        assert max(Counter(p.gender for p in team).values()) <= 3
        assert max(Counter(p.age_band for p in team).values()) <= 3
        if clip.language:
            assert any(clip.language in p.languages for p in team), f"no {clip.language} speaker on clip {clip.id}"


def test_pool_index_answers_like_a_walk_over_the_pool() -> None:
    # PoolIndex replaced a walk over the whole pool per clip; the rules must not change.
    import random

    from annotation_app.services.allocation import PoolIndex

    rng = random.Random(7)
    genders, ages, langs = ["f", "m", None], ["18-29", "30-44", None], ["zh", "en", "es"]
    for _ in range(300):
        pool = [Person(i, {"gender": rng.choice(genders), "age_band": rng.choice(ages)},
                       frozenset(rng.sample(langs, rng.randint(0, 2)))) for i in range(rng.randint(1, 12))]
        clip = ClipState(clip_id=1, stage=rng.choice([1, 2]), needed=rng.randint(1, 3), slots_total=5,
                         language=rng.choice([None, "zh", "en"]))
        on_clip = rng.sample(pool, rng.randint(0, len(pool)))
        clip.ever = {p.id for p in on_clip} | {1000}  # someone who left the pool was on it too
        clip.live = on_clip[: rng.randint(0, len(on_clip))]
        clip.filled = min(len(clip.live), clip.needed)
        index = PoolIndex(pool, ["gender", "age_band"])
        for attribute in ("gender", "age_band"):
            walked = Counter(g for p in pool if (g := p.groups.get(attribute)) is not None and p.id not in clip.ever)
            assert +index.remaining(clip, attribute) == walked
        if clip.language:
            walked_speaker = any(p.speaks(clip.language) and p.id not in clip.ever for p in pool)
            assert index.has_unassigned_speaker(clip, clip.language) == walked_speaker
        for person in pool:
            assert refusal(person, clip, index, ["gender", "age_band"]) == refusal(person, clip, pool, ["gender", "age_band"])


def test_next_item_reclaims_expired_leases_now_and_then(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sweep moved off the per-request path; it still runs from next_item once an interval passed.
    project = make_project(session)
    make_clips(session, project, 4)
    slow, other = make_annotator(session), make_annotator(session)
    item = work.next_item(session, project, slow, now=T0)
    sweeps: list[datetime] = []
    real = work.reclaim_expired

    def counted(session: Session, *, now: datetime | None = None) -> int:
        sweeps.append(now)
        return real(session, now=now)

    monkeypatch.setattr(work, "reclaim_expired", counted)
    monkeypatch.setattr(work, "_last_reclaim", {})
    monkeypatch.setattr(work, "RECLAIM_INTERVAL_S", 3600.0)
    work.next_item(session, project, other, now=T0 + timedelta(minutes=20))  # the interval's first call sweeps
    assert session.get(Assignment, item.assignment_id, populate_existing=True).status == AssignmentStatus.expired
    work.next_item(session, project, make_annotator(session), now=T0 + timedelta(minutes=21))
    assert len(sweeps) == 1  # within the interval: no sweep
    monkeypatch.setattr(work, "RECLAIM_INTERVAL_S", 0.0)
    work.next_item(session, project, make_annotator(session), now=T0 + timedelta(minutes=22))
    assert len(sweeps) == 2
