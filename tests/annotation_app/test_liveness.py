"""Balance rules are preferences with a deadline: clips never stall for people who do not come.

On SQLite and PostgreSQL, with the service's clock (``now``) moved past the project's balance wait
instead of sleeping. The people here are not simulated (``is_simulated=False``): only people count
as available to each other.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.models import Assignment, Clip, ClipStatus
from annotation_app.services import attention, work
from annotation_app.services.allocation import (
    RULE_BALANCE_CEILING,
    RULE_LANGUAGE_SPEAKER,
    RULE_STAGE2_UNDER_REPRESENTED,
)
from tests.annotation_app.factories import make_annotator, make_clips, make_project, unique

WAIT = 10  # minutes: the project's balance wait in these tests


def _project(session: Session, **settings):  # noqa: ANN003, ANN202
    settings = {"overlap_k": 3, "stage2_extra": 2, "balance_attributes": ["gender"], "balance_wait_minutes": WAIT,
                "available_window_minutes": 30, **settings}
    return make_project(session, **settings)


def _person(session: Session, gender: str, languages: tuple[str, ...] = ("en",), **kw):  # noqa: ANN003, ANN202
    return make_annotator(session, gender=gender, languages=languages, is_simulated=kw.pop("is_simulated", False),
                          **kw)


def _label(session: Session, project, annotator, label: str, now: datetime):  # noqa: ANN001, ANN202
    item = work.next_item(session, project, annotator, now=now)
    assert item is not None, f"{annotator.username} got nothing at {now:%H:%M}"
    work.submit(session, project, annotator, assignment_id=item.assignment_id, label=label,
                client_request_id=unique("req"), now=now)
    session.commit()
    return item


def _assignment(session: Session, item) -> Assignment:  # noqa: ANN001
    return session.get(Assignment, item.assignment_id, populate_existing=True)


def test_an_idle_group_holds_a_clip_only_for_the_wait(session: Session) -> None:
    project = _project(session)
    [clip] = make_clips(session, project, 1)
    m1, m2, m3 = (_person(session, "male") for _ in range(3))
    _person(session, "female")  # eligible, but never asks for work: not available
    session.commit()
    now = datetime.now(UTC)
    _label(session, project, m1, "Fear", now)
    _label(session, project, m2, "Fear", now)
    # A third man would break the ceiling (2 of 3) while a woman could still come: within the wait, no.
    assert work.next_item(session, project, m3, now=now + timedelta(minutes=WAIT - 1)) is None
    item = _label(session, project, m3, "Fear", now + timedelta(minutes=WAIT + 1))
    assert item.clip_id == clip.id
    lease = _assignment(session, item)
    assert lease.relaxed_rule == RULE_BALANCE_CEILING
    assert "gender=female" in lease.relaxed_reason and "available" in lease.relaxed_reason
    assert attention.relaxed_allocations(session, project)["by_rule"] == {RULE_BALANCE_CEILING: 1}


def test_an_available_group_keeps_its_slot_past_the_wait(session: Session) -> None:
    project = _project(session)
    [earlier] = make_clips(session, project, 1)
    m1, m2, m3 = (_person(session, "male") for _ in range(3))
    woman = _person(session, "female")
    session.commit()
    now = datetime.now(UTC)
    # She is at work: served a clip of the project within the window (since taken out of labelling).
    _label(session, project, woman, "Fear", now)
    earlier.status = ClipStatus.pending
    [clip] = make_clips(session, project, 1)
    session.commit()
    _label(session, project, m1, "Fear", now)
    _label(session, project, m2, "Fear", now)
    # Past the wait, the last slot still waits for her: she is available now.
    assert work.next_item(session, project, m3, now=now + timedelta(minutes=WAIT + 1)) is None
    mine = _label(session, project, woman, "Fear", now + timedelta(minutes=WAIT + 1))
    assert mine.clip_id == clip.id and _assignment(session, mine).relaxed_rule is None
    # Once she has not been served anything for the window, she no longer counts.
    [third] = make_clips(session, project, 1)
    session.commit()
    later = now + timedelta(minutes=WAIT + 1 + 31)
    _label(session, project, m1, "Fear", later)
    _label(session, project, m2, "Fear", later)
    assert _label(session, project, m3, "Fear", later).clip_id == third.id


def test_stage_two_drains_within_the_wait_when_the_minority_is_idle(session: Session) -> None:
    project = _project(session)
    [clip] = make_clips(session, project, 1)
    women = [_person(session, "female") for _ in range(2)]
    men = [_person(session, "male") for _ in range(4)]
    session.commit()
    now = datetime.now(UTC)
    # Stage 1 by two men and a woman, no consensus: stage 2 asks for two more, from the group with
    # fewer slots (women), whose other member never comes.
    _label(session, project, men[0], "Fear", now)
    _label(session, project, men[1], "Sadness", now)
    _label(session, project, women[0], "Neutral", now)
    session.refresh(clip)
    assert (clip.status, clip.stage) == (ClipStatus.active, 2)
    # Stage 2 draws from the under-represented group (women: 1 of 3), and the other woman is idle.
    late = now + timedelta(minutes=WAIT - 1)
    assert work.next_item(session, project, men[2], now=late) is None
    assert work.next_item(session, project, men[3], now=late) is None
    after = now + timedelta(minutes=WAIT + 1)
    first = _label(session, project, men[2], "Fear", after)
    second = _label(session, project, men[3], "Fear", after)
    session.refresh(clip)
    # Stage 2 is done: Fear has 3 of 5 votes.
    assert (clip.status, clip.resolved_stage) == (ClipStatus.resolved, 2)
    leases = [_assignment(session, item) for item in (first, second)]
    assert [lease.stage for lease in leases] == [2, 2]
    # The first man makes it 3 of 5 for men, the second 4: past the ceiling (3), relaxed as well.
    assert [lease.relaxed_rule.split(",") for lease in leases] == [
        [RULE_STAGE2_UNDER_REPRESENTED], [RULE_BALANCE_CEILING, RULE_STAGE2_UNDER_REPRESENTED]]
    assert "gender=female available now" in leases[0].relaxed_reason
    assert attention.relaxed_allocations(session, project)["by_rule"] == {
        RULE_BALANCE_CEILING: 1, RULE_STAGE2_UNDER_REPRESENTED: 2}


def test_the_language_slot_waits_for_an_idle_speaker_only_for_the_wait(session: Session) -> None:
    project = _project(session, overlap_k=2, balance_attributes=[])
    [clip] = make_clips(session, project, 1, language="zh")
    en1, en2 = _person(session, "male"), _person(session, "female")
    _person(session, "female", languages=("zh",))  # the only speaker, idle
    session.commit()
    now = datetime.now(UTC)
    _label(session, project, en1, "Fear", now)
    assert work.next_item(session, project, en2, now=now) is None
    item = _label(session, project, en2, "Fear", now + timedelta(minutes=WAIT))
    assert item.clip_id == clip.id and _assignment(session, item).relaxed_rule == RULE_LANGUAGE_SPEAKER


def test_a_wait_of_zero_relaxes_at_once_and_simulated_accounts_never_hold_a_person(session: Session) -> None:
    project = _project(session, balance_wait_minutes=0)
    [earlier] = make_clips(session, project, 1)
    # A simulated woman who works all the time (the demo's crowd): available, to the simulation only.
    robot = _person(session, "female", is_simulated=True)
    sim_man = _person(session, "male", is_simulated=True)
    men = [_person(session, "male") for _ in range(3)]
    session.commit()
    now = datetime.now(UTC)
    _label(session, project, robot, "Fear", now)
    earlier.status = ClipStatus.pending
    [clip] = make_clips(session, project, 1)
    session.commit()
    _label(session, project, men[0], "Fear", now)
    _label(session, project, men[1], "Fear", now)
    # The simulation's own request still keeps the clip's last slot for her...
    assert work.next_item(session, project, sim_man, now=now) is None
    # ...a person's does not: she never counts for people; and nobody else is left to wait for.
    item = _label(session, project, men[2], "Fear", now)
    assert item.clip_id == clip.id
    assert session.scalar(select(Clip.status).where(Clip.id == clip.id)) == ClipStatus.resolved
    # With a wait of 0 an idle (not simulated) woman holds nothing either.
    [fresh] = make_clips(session, project, 1)
    _person(session, "female")
    session.commit()
    now = datetime.now(UTC)  # the new clip's stage began after the first ``now``
    items = [_label(session, project, man, "Fear", now) for man in men]
    assert {i.clip_id for i in items} == {fresh.id}
    assert _assignment(session, items[-1]).relaxed_rule == RULE_BALANCE_CEILING
    assert _assignment(session, item).relaxed_rule is None  # no woman (but a simulated one) was there
