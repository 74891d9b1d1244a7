"""The qualification lifecycle (#15): the sequential round, retakes after a cool-down on unseen gold,
the curator's reset and waiver (service, API, page, CLI), and the settings that drive them.

Time moves through the services' ``now`` parameters, never by sleeping.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError
from annotation_app.models import Assignment, AssignmentStatus, AuditEntry, Project, Qualification, User
from annotation_app.services import curator, gold, projects, work
from annotation_app.services.project_settings import InvalidSettingsError
from tests.annotation_app._http import Env, db_clip, db_project, env_fixture, tiny_video  # noqa: F401
from tests.annotation_app.factories import make_annotator, make_clips, make_gold, make_project, unique

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _answer(session: Session, project: Project, annotator: User, right: bool, now: datetime) -> tuple[int, dict]:
    """Take the next item (a qualification clip, asserted) and answer it; (clip id, round result)."""
    item = work.next_item(session, project, annotator, now=now)
    assert item is not None and item.is_qualification, item
    result = work.submit(session, project, annotator, assignment_id=item.assignment_id,
                         label="Fear" if right else "Sadness", client_request_id=unique("req"), now=now)
    return item.clip_id, result.qualification


def _audit(session: Session, action: str, target: User) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).where(
        AuditEntry.action == action, AuditEntry.target_id == str(target.id)).order_by(AuditEntry.id)))


# -- the sequential round --------------------------------------------------------------------------


@pytest.mark.parametrize(("answers", "required", "expected"), [
    # log-likelihood steps at pass 0.6 / fail 0.3: right log(0.3/0.6) = -0.693, wrong log(0.7/0.4) =
    # +0.560; Wald's bounds at error rate 0.1: ±log(9) = ±2.197.
    ("RRRR", 20, True),      # -2.773 <= -2.197: pass at the 4th clip
    ("RRR", 20, None),       # -2.079: not yet
    ("WWWW", 20, False),     # +2.238 >= +2.197: fail at the 4th clip
    ("WWW", 20, None),       # +1.679: not yet
    ("RRWRR", 20, True),     # 4 right, 1 wrong: -2.213: pass
    ("RRWR", 20, None),      # -1.519
    ("RRW", 3, True),        # the round's last clip decides by the sign: -0.827 favours a pass
    ("RWW", 3, False),       # +0.426 favours a fail
])
def test_the_sequential_round_decides_hand_checked_sequences(answers: str, required: int, expected: bool | None) -> None:
    project = Project(qualification_rule="sequential", qualification_pass_mark=0.6, qualification_fail_mark=0.3,
                      qualification_error_rate=0.1)
    right = answers.count("R")
    assert gold.round_verdict(project, right, len(answers), required) is expected


def test_the_fixed_round_waits_for_its_last_clip() -> None:
    project = Project(qualification_rule="fixed", qualification_pass_mark=0.7)
    assert gold.round_verdict(project, 0, 4, 10) is None  # four wrong of ten: nothing decided yet
    assert gold.round_verdict(project, 7, 10, 10) is True and gold.round_verdict(project, 6, 10, 10) is False


def test_a_sequential_round_stops_as_soon_as_it_is_clear(session: Session) -> None:
    project = make_project(session, qualification_size=20, qualification_rule="sequential",
                           qualification_pass_mark=0.6, qualification_fail_mark=0.3, qualification_error_rate=0.1)
    make_gold(session, project, 20, label="Fear", purpose="qualification")
    [real] = make_clips(session, project, 1)
    good, spammer = make_annotator(session), make_annotator(session)
    for n in range(1, 5):
        _, state = _answer(session, project, good, True, T0)
        assert state["passed"] is (True if n == 4 else None), (n, state)
        _, state = _answer(session, project, spammer, False, T0)
        assert state["passed"] is (False if n == 4 else None), (n, state)
    assert (work.next_item(session, project, good, now=T0).clip_id) == real.id  # real work after 4 clips
    assert work.next_item(session, project, spammer, now=T0) is None
    [done] = _audit(session, "qualification.complete", spammer)
    assert done.details == {"answered": 4, "correct": 0, "passed": False, "attempt": 1, "rule": "sequential"}


def test_a_retried_qualification_submit_gets_the_first_answer_back(session: Session) -> None:
    """A network retry (same client_request_id) is answered from the stored row: its round view must
    be the first reply's, key for key, also on the answer that decides the round."""
    project = make_project(session, qualification_size=2, qualification_pass_mark=0.7)
    make_gold(session, project, 2, label="Fear", purpose="qualification")
    annotator = make_annotator(session)
    for _ in range(2):
        item = work.next_item(session, project, annotator, now=T0)
        request = {"assignment_id": item.assignment_id, "label": "Sadness", "client_request_id": unique("req")}
        first = work.submit(session, project, annotator, **request, now=T0)
        retry = work.submit(session, project, annotator, **request, now=T0)
        assert retry.duplicate and retry.qualification == first.qualification, (first, retry)
    assert first.qualification["passed"] is False and first.qualification["retake_at"] == T0 + timedelta(hours=24)


def test_new_projects_get_the_sequential_round_measured_in_the_bench(session: Session) -> None:
    project = projects.create_project(session, unique("defaults"))
    session.flush()
    assert (project.qualification_rule, project.qualification_size, project.qualification_pass_mark,
            project.qualification_fail_mark, project.qualification_error_rate) == ("sequential", 20, 0.6, 0.3, 0.1)
    assert (project.qualification_retake_hours, project.qualification_attempts) == (24, 3)


# -- retakes ----------------------------------------------------------------------------------------


def _failed(session: Session, *, n_gold: int, size: int = 2, **settings) -> tuple[Project, User, set[int]]:  # noqa: ANN003
    """A fixed round of ``size`` at 0.7 that the annotator fails at T0 (every answer wrong)."""
    project = make_project(session, qualification_size=size, qualification_pass_mark=0.7, **settings)
    make_gold(session, project, n_gold, label="Fear", purpose="qualification")
    make_clips(session, project, 2)
    annotator = make_annotator(session)
    seen = set()
    for _ in range(size):
        clip_id, state = _answer(session, project, annotator, False, T0)
        seen.add(clip_id)
    assert state["passed"] is False
    return project, annotator, seen


def test_a_retake_is_refused_before_the_cool_down_and_served_after_it_on_unseen_gold(session: Session) -> None:
    project, annotator, seen = _failed(session, n_gold=5, qualification_retake_hours=24)
    early = T0 + timedelta(hours=23, minutes=59)
    assert work.next_item(session, project, annotator, now=early) is None
    progress = work.progress(session, project, annotator, now=early)
    assert progress["blocked_reason"] == (
        "qualification not passed (0/2 correct); you can retake it from 2026-11-25 09:00 UTC")
    assert progress["qualification"]["retake_at"] == T0 + timedelta(hours=24)
    assert _audit(session, "qualification.retake", annotator) == []
    due = T0 + timedelta(hours=24)
    assert work.progress(session, project, annotator, now=due)["blocked_reason"] is None  # "start labelling"
    retaken = set()
    for n in range(2):
        clip_id, state = _answer(session, project, annotator, True, due)
        retaken.add(clip_id)
    assert retaken.isdisjoint(seen) and len(retaken) == 2  # never a clip of the first round
    assert state["passed"] is True
    [retake] = _audit(session, "qualification.retake", annotator)
    assert retake.actor_id == annotator.id
    assert retake.details == {"attempt": 2, "round_size": 2,
                              "before": {"attempt": 1, "answered": 2, "correct": 0, "passed": False, "waived": False}}
    assert work.next_item(session, project, annotator, now=due).stage == 1  # real work now


def test_a_retake_is_as_long_as_the_unseen_clips_and_none_left_sends_the_annotator_to_the_curator(
    session: Session,
) -> None:
    project, annotator, seen = _failed(session, n_gold=3, qualification_retake_hours=1)
    later = T0 + timedelta(hours=1)
    clip_id, state = _answer(session, project, annotator, False, later)  # one unseen clip: a round of one
    assert clip_id not in seen and state == {"required": 1, "answered": 1, "correct": 0, "passed": False,
                                             "attempt": 2, "attempts": 3, "retake_at": later + timedelta(hours=1),
                                             "waived": False}
    last = T0 + timedelta(hours=2)
    assert work.next_item(session, project, annotator, now=last) is None
    progress = work.progress(session, project, annotator, now=last)
    assert "no qualification clip you have not seen is left for a retake" in progress["blocked_reason"]
    assert "ask your curator" in progress["blocked_reason"]
    assert len(_audit(session, "qualification.retake", annotator)) == 1  # nothing started without clips


def test_after_the_last_attempt_only_the_curator_can_help(session: Session) -> None:
    project, annotator, _ = _failed(session, n_gold=4, qualification_attempts=1)
    much_later = T0 + timedelta(days=30)
    assert work.next_item(session, project, annotator, now=much_later) is None
    reason = work.progress(session, project, annotator, now=much_later)["blocked_reason"]
    assert reason == ("qualification not passed (0/2 correct) in 1 round, the most the project allows; "
                      "ask your curator for another round")


# -- the curator's reset and waiver -----------------------------------------------------------------


def test_reset_starts_a_new_round_now_on_unseen_gold_and_is_audited(session: Session) -> None:
    project, annotator, seen = _failed(session, n_gold=4)
    boss = make_annotator(session, role="curator")
    state = curator.qualification_action(session, project, boss, annotator.id, action="reset", now=T0)
    assert (state["passed"], state["attempt"], state["answered"], state["required"]) == (None, 2, 0, 2)
    clip_id, _ = _answer(session, project, annotator, True, T0)  # at once, no cool-down
    assert clip_id not in seen
    [entry] = _audit(session, "qualification.reset", annotator)
    assert (entry.actor_id, entry.project_id) == (boss.id, project.id)
    assert entry.details["attempt"] == 2 and entry.details["before"]["passed"] is False
    # A reset mid-round gives the open lease back; the round's answered clip stays seen.
    held = work.next_item(session, project, annotator, now=T0)
    state = curator.qualification_action(session, project, boss, annotator.id, action="reset", now=T0)
    assert session.get(Assignment, held.assignment_id).status == AssignmentStatus.released
    assert state["attempt"] == 3 and state["required"] == 1  # 4 gold: 2 + 1 answered, the released one left
    again = work.next_item(session, project, annotator, now=T0)
    assert again.clip_id == held.clip_id  # given back unanswered: still unseen
    work.submit(session, project, annotator, assignment_id=again.assignment_id, label="Sadness",
                client_request_id=unique("req"), now=T0)
    with pytest.raises(ConflictError, match="has answered every qualification gold clip"):
        curator.qualification_action(session, project, boss, annotator.id, action="reset", now=T0)


def test_waive_counts_the_annotator_as_qualified_and_is_audited(session: Session) -> None:
    project, annotator, _ = _failed(session, n_gold=2)
    boss = make_annotator(session, role="curator")
    state = curator.qualification_action(session, project, boss, annotator.id, action="waive", now=T0)
    assert (state["passed"], state["waived"]) == (True, True)
    assert work.next_item(session, project, annotator, now=T0).stage == 1
    [entry] = _audit(session, "qualification.waive", annotator)
    assert entry.actor_id == boss.id and entry.details["before"] == {"attempt": 1, "answered": 2, "correct": 0,
                                                                        "passed": False}
    with pytest.raises(ConflictError, match="qualified already"):
        curator.qualification_action(session, project, boss, annotator.id, action="waive", now=T0)
    row = session.scalar(select(Qualification).where(Qualification.annotator_id == annotator.id))
    assert row.waived is True


# -- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "field"), [
    ({"qualification_rule": "maybe"}, "qualification_rule"),
    ({"qualification_retake_hours": -1}, "qualification_retake_hours"),
    ({"qualification_retake_hours": 1.5}, "qualification_retake_hours"),
    ({"qualification_attempts": 0}, "qualification_attempts"),
    ({"qualification_error_rate": 0.5}, "qualification_error_rate"),
    ({"qualification_fail_mark": 0}, "qualification_fail_mark"),
    ({"qualification_fail_mark": 0.65}, "qualification_fail_mark"),  # above the pass mark (0.6)
    ({"qualification_pass_mark": 1.0}, "qualification_pass_mark"),   # the sequential test needs < 1
    ({"qualification_pass_mark": 0.2}, "qualification_pass_mark"),   # below the fail mark (0.3)
])
def test_bad_qualification_settings_are_refused_naming_the_field(session: Session, change: dict, field: str) -> None:
    project = make_project(session, qualification_rule="sequential")
    before = {k: getattr(project, k) for k in change}
    with pytest.raises(InvalidSettingsError) as refused:
        projects.update_settings(session, project, **change)
    assert refused.value.errors[0]["loc"][0] == field
    assert {k: getattr(project, k) for k in change} == before


def test_the_fixed_round_takes_any_pass_mark(session: Session) -> None:
    project = make_project(session, qualification_rule="fixed")
    projects.update_settings(session, project, qualification_pass_mark=1.0)
    assert project.qualification_pass_mark == 1.0


# -- API, pages, CLI --------------------------------------------------------------------------------


@pytest.fixture
def failing(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    """A fixed round of two at 0.7 over three qualification clips, one real clip."""
    for env in env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=4, qualification_size=2,
                           qualification_rule="fixed", qualification_pass_mark=0.7):
        with env.session() as session:
            project = db_project(session, env.project_id)
            for clip_id in env.clip_ids[:3]:
                gold.add_gold(session, project, db_clip(session, clip_id), "Fear", purpose="qualification")
            session.commit()
        yield env


def _fail_the_round(client) -> dict:  # noqa: ANN001
    for _ in range(2):
        item = client.get("/api/work/next").json()["item"]
        assert item["is_qualification"]
        body = {"assignment_id": item["assignment_id"], "label": "Sadness", "client_request_id": unique("req")}
        assert client.post("/api/work/submit", json=body).status_code == 200
    return client.get("/api/work/progress").json()


def test_the_failed_annotators_pages_say_when_they_can_retake(failing: Env) -> None:
    annotator = failing.login("annotator")
    progress = _fail_the_round(annotator)
    retake_at = datetime.fromisoformat(progress["qualification"]["retake_at"])
    assert timedelta(hours=23) < retake_at - datetime.now(UTC) <= timedelta(hours=24)
    stamp = f'<time datetime="{retake_at.isoformat()}"'
    page = annotator.get("/annotate").text
    assert "You can retake it from" in page and stamp in page  # local-time.js shows it in their time zone
    assert re.search(r'<p id="check-again" hidden>', page)
    home = annotator.get("/").text
    assert "You can retake it from" in home and stamp in home and "Start labelling" not in home


def test_the_curator_resets_and_waives_from_the_page_and_the_api(failing: Env) -> None:
    annotator = failing.login("annotator")
    _fail_the_round(annotator)
    cur = failing.login("curator")
    aid = failing.user_ids["annotator"]
    page = cur.get(f"/curator/annotators/{aid}").text
    assert "Failed round 1 of 3" in page and 'value="reset"' in page and 'value="waive"' in page
    assert "reset / waive" in cur.get("/curator/annotators").text
    form = {"csrf_token": cur.headers["X-CSRF-Token"], "action": "reset"}
    response = cur.post(f"/curator/annotators/{aid}/qualification", data=form)
    assert response.status_code == 303
    item = annotator.get("/api/work/next").json()["item"]
    assert item["is_qualification"]  # the new round, at once
    # Only one unseen clip was left; now none is: a second reset is refused inline, nothing changes.
    body = {"assignment_id": item["assignment_id"], "label": "Sadness", "client_request_id": unique("req")}
    assert annotator.post("/api/work/submit", json=body).json()["qualification"]["passed"] is False
    refused = cur.post(f"/curator/annotators/{aid}/qualification", data=form)
    assert refused.status_code == 409
    assert 'id="qualification-error"' in refused.text and "has answered every qualification gold clip" in refused.text
    assert "Failed round 2 of 3" in refused.text
    bad = cur.post(f"/api/curator/annotators/{aid}/qualification", json={"action": "forgive"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][-1] == "action"
    waived = cur.post(f"/api/curator/annotators/{aid}/qualification", json={"action": "waive"})
    assert waived.status_code == 200 and waived.json()["qualification"]["waived"] is True
    assert annotator.get("/api/work/next").json()["item"]["clip_id"] == failing.clip_ids[3]
    again = cur.post(f"/api/curator/annotators/{aid}/qualification", json={"action": "waive"})
    assert again.status_code == 409 and "qualified already" in again.json()["detail"]
    trail = cur.get("/api/curator/audit").json()["entries"]
    actions = [(e["action"], e["actor_id"], e["target_id"]) for e in trail if e["action"].startswith("qualification.")]
    assert ("qualification.reset", failing.user_ids["curator"], str(aid)) in actions
    assert ("qualification.waive", failing.user_ids["curator"], str(aid)) in actions


def test_bad_qualification_settings_are_422s_naming_the_field_in_api_and_page(failing: Env) -> None:
    cur = failing.login("curator")
    response = cur.patch("/api/curator/settings", json={"qualification_retake_hours": -2})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"][-1] == "qualification_retake_hours"
    response = cur.patch("/api/curator/settings", json={"qualification_rule": "sequential",
                                                        "qualification_fail_mark": 0.8})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"][-1] == "qualification_fail_mark"
    assert cur.get("/api/curator/settings").json()["qualification_rule"] == "fixed"  # nothing written
    form = {"csrf_token": cur.headers["X-CSRF-Token"], "qualification_rule": "sequential",
            "qualification_fail_mark": "0.8"}
    page = cur.post("/curator/settings", data=form)
    assert page.status_code == 422 and 'id="error-qualification_fail_mark"' in page.text
    ok = cur.patch("/api/curator/settings", json={"qualification_rule": "sequential", "qualification_retake_hours": 2})
    assert ok.status_code == 200 and ok.json()["qualification_retake_hours"] == 2
