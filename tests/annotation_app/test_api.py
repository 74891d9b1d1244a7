"""The JSON API end to end: next clip → submit → progress; corrections; expert; curator; OpenAPI."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from annotation_app.models import AuditEntry, Clip, ClipStatus, Judgement, User
from tests.annotation_app._http import Env, env_fixture, tiny_video  # noqa: F401


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=4, extra_annotators=2)


def rid() -> str:
    return uuid.uuid4().hex


def label_next(client: TestClient, label: str) -> dict:
    item = client.get("/api/work/next").json()["item"]
    assert item is not None
    body = {"assignment_id": item["assignment_id"], "label": label, "confidence": 4,
            "time_on_task_s": 3.5, "client_request_id": rid()}
    response = client.post("/api/work/submit", json=body)
    assert response.status_code == 200, response.text
    return {"item": item, **response.json()}


def test_next_submit_progress_and_idempotent_retry(env: Env) -> None:
    client = env.login("annotator")
    first = client.get("/api/work/next").json()
    item = first["item"]
    assert item["stage"] == 1 and item["clip_id"] in env.clip_ids and item["is_qualification"] is False
    assert item["sources"][0] == {"src": f"/media/clips/{item['clip_id']}", "type": "video/mp4"}
    assert first["progress"]["total_done"] == 0
    # A reload resumes the same lease.
    assert client.get("/api/work/next").json()["item"]["assignment_id"] == item["assignment_id"]
    body = {"assignment_id": item["assignment_id"], "label": "Fear", "confidence": 3, "time_on_task_s": 2.25,
            "client_request_id": rid()}
    result = client.post("/api/work/submit", json=body).json()
    assert result["duplicate"] is False
    retry = client.post("/api/work/submit", json=body).json()
    assert retry == {**result, "duplicate": True}
    other = client.post("/api/work/submit", json={**body, "label": "Sadness"})  # the key reused: not a retry
    assert other.status_code == 409 and body["client_request_id"] in other.json()["detail"]
    progress = client.get("/api/work/progress").json()
    assert progress["done_today"] == 1 and progress["total_done"] == 1
    with env.session() as session:
        rows = session.scalars(select(Judgement).where(Judgement.annotator_id == env.user_ids["annotator"])).all()
        assert len(rows) == 1
        assert rows[0].label.name == "Fear" and rows[0].confidence == 3 and rows[0].time_on_task_s == 2.25
        assert rows[0].id == result["judgement_id"]
    nxt = client.get("/api/work/next").json()["item"]
    assert nxt is not None and nxt["clip_id"] != item["clip_id"]


def test_labels_in_the_annotators_language(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> None:  # noqa: F811
    for env in env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=1, languages={"annotator1": ["zh", "en"]}):
        zh = env.login("annotator").get("/api/work/labels").json()["labels"]
        en = env.login("expert").get("/api/work/labels").json()["labels"]
        assert [lab["display_name"] for lab in zh][:2] == ["兴奋", "恐惧"]
        assert [lab["display_name"] for lab in en][:2] == ["Excitation", "Fear"]
        assert [lab["hotkey"] for lab in zh] == ["1", "2", "3", "4", "5", "6"]


def test_recent_shows_only_own_and_correction_is_a_new_row(env: Env) -> None:
    a = env.login("annotator")
    b = env.login("annotator2")
    # overlap_k=1 resolves a clip at its first label: keep the stage open (k=3) for the correction.
    env.login("curator").patch("/api/curator/settings", json={"overlap_k": 3})
    mine = label_next(a, "Fear")
    label_next(b, "Tension")
    recent = a.get("/api/work/recent").json()["judgements"]
    assert [r["judgement_id"] for r in recent] == [mine["judgement_id"]]
    assert recent[0]["correctable"] is True
    fixed = a.post(f"/api/work/judgements/{mine['judgement_id']}/correct",
                   json={"label": "Sadness", "client_request_id": rid()})
    assert fixed.status_code == 200, fixed.text
    with env.session() as session:
        new = session.get(Judgement, fixed.json()["judgement_id"])
        old = session.get(Judgement, mine["judgement_id"])
        assert new.replaces_id == old.id and new.label.name == "Sadness" and new.live is True
        assert old.live is None and old.label.name == "Fear"  # history kept
    # Nobody may correct someone else's judgement.
    stolen = b.post(f"/api/work/judgements/{fixed.json()['judgement_id']}/correct",
                    json={"label": "Fear", "client_request_id": rid()})
    assert stolen.status_code in (403, 404, 409) and stolen.json()["detail"]


def test_expert_resolves_a_contested_clip(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> None:  # noqa: F811
    for env in env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=1, overlap_k=2, extra_annotators=1):
        label_next(env.login("annotator"), "Fear")
        label_next(env.login("annotator2"), "Sadness")  # a tie: never broken silently → expert
        expert = env.login("expert")
        queue = expert.get("/api/expert/queue").json()["clips"]
        assert [row["clip_id"] for row in queue] == env.clip_ids
        evidence = expert.get(f"/api/expert/clips/{env.clip_ids[0]}").json()
        assert {k: v for k, v in evidence["distribution"].items() if v} == {"Fear": 1, "Sadness": 1}
        assert set(evidence["reliability"]) == set(evidence["distribution"])
        assert "annotator1" not in str(evidence) and "annotator2" not in str(evidence)
        no_reason = expert.post(f"/api/expert/clips/{env.clip_ids[0]}/adjudicate", json={"discard": True})
        assert no_reason.status_code == 422 and "a discard needs a reason" in no_reason.json()["detail"]
        unknown = expert.post(f"/api/expert/clips/{env.clip_ids[0]}/adjudicate", json={"label": "Joy"})
        assert unknown.status_code == 422 and "Joy" in unknown.json()["detail"]
        annotator = env.login("annotator3")
        assert annotator.get(f"/api/expert/clips/{env.clip_ids[0]}").status_code == 403  # blind: no distribution
        decided = expert.post(f"/api/expert/clips/{env.clip_ids[0]}/adjudicate", json={"label": "Sadness"})
        assert decided.status_code == 200, decided.text
        again = expert.post(f"/api/expert/clips/{env.clip_ids[0]}/adjudicate", json={"label": "Fear"})
        assert again.status_code == 409
        with env.session() as session:
            clip = session.get(Clip, env.clip_ids[0])
            assert clip.status == ClipStatus.resolved and clip.final_label.name == "Sadness" and clip.resolved_stage == 3
        assert expert.get("/api/expert/queue").json()["clips"] == []


def test_curator_api(env: Env) -> None:
    annotator = env.login("annotator")
    label_next(annotator, "Neutral")
    cur = env.login("curator")
    assert cur.get("/api/curator/settings").json()["overlap_k"] == 1
    assert cur.patch("/api/curator/settings", json={"daily_cap": 50}).json()["daily_cap"] == 50
    bad = cur.patch("/api/curator/settings", json={"no_such_setting": 1})
    assert bad.status_code == 422 and "no_such_setting" in bad.json()["detail"]
    policy = cur.patch("/api/curator/settings", json={"policy": "adaptive", "k_min": 2, "k_max": 4, "margin": 1.5,
                                                      "weighting": "gold"}).json()
    assert (policy["policy"], policy["k_min"], policy["k_max"], policy["margin"], policy["weighting"]) == (
        "adaptive", 2, 4, 1.5, "gold")
    assert cur.patch("/api/curator/settings", json={"k_max": 1}).status_code == 422  # below k_min
    assert cur.patch("/api/curator/settings", json={"policy": "greedy"}).status_code == 422
    assert cur.get("/api/curator/progress").status_code == 200
    quality = cur.get("/api/curator/annotators").json()["annotators"]
    assert quality
    created = cur.post("/api/curator/annotators", json={
        "username": "newbie", "password": "long-enough-1", "gender": "female", "age_band": "18-24", "languages": ["zh"]})
    assert created.status_code == 201 and created.json()["languages"] == ["zh"]
    new_id = created.json()["id"]
    assert cur.patch(f"/api/curator/annotators/{new_id}", json={"region": "Sichuan"}).json()["region"] == "Sichuan"
    # A curator may not make admins; an admin may.
    assert cur.patch(f"/api/curator/annotators/{new_id}", json={"role": "admin"}).status_code == 403
    assert env.login("admin").patch(f"/api/curator/annotators/{new_id}", json={"role": "curator"}).status_code == 200
    paused = cur.post(f"/api/curator/annotators/{env.user_ids['annotator2']}/pause", json={"paused": True, "reason": "slow"})
    assert paused.status_code == 200 and paused.json()["paused"] is True
    export = cur.get("/api/curator/judgements.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 1 and rows[0]["label"] == "Neutral"
    assert {"annotator_id", "stage", "time_on_task_s", "submitted_at"} <= set(rows[0])
    parquet = cur.get("/api/curator/judgements.parquet")
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
    assert len(pd.read_parquet(io.BytesIO(parquet.content))) == len(rows)
    excluded = cur.post(f"/api/curator/annotators/{env.user_ids['annotator']}/exclude", json={"reason": "spam"})
    assert excluded.status_code == 200 and len(excluded.json()["reopened_clips"]) == 1
    audit = cur.get("/api/curator/audit").json()["entries"]
    assert audit
    clips = cur.get("/api/curator/clips", params={"status": "active"}).json()["clips"]
    assert clips
    with env.session() as session:
        actions = set(session.scalars(select(AuditEntry.action)).all())
        assert any("exclude" in a for a in actions) and any("pause" in a for a in actions)
        assert session.scalar(select(func.count(User.id)).where(User.username == "newbie")) == 1


def test_openapi_documents_the_api(env: Env) -> None:
    schema = env.client().get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/auth/token", "/api/work/next", "/api/work/submit", "/api/expert/queue",
                 "/api/curator/annotators", "/api/curator/judgements.{fmt}"):
        assert path in paths
    assert "Bearer" in schema["info"]["description"]


def test_cant_judge_and_broken_flags_are_stored_with_their_reason(env: Env) -> None:
    client = env.login("annotator")
    for flag, reason in (("cant_judge", "too dark to see a face"), ("broken", "no sound track")):
        item = client.get("/api/work/next").json()["item"]
        response = client.post("/api/work/submit", json={
            "assignment_id": item["assignment_id"], flag: True, "flag_reason": reason, "client_request_id": rid()})
        assert response.status_code == 200, response.text
        with env.session() as session:
            row = session.get(Judgement, response.json()["judgement_id"])
            assert row.label_id is None and getattr(row, flag) is True and row.flag_reason == reason


def test_the_queue_refuses_a_deactivated_caller_and_a_bad_token(env: Env) -> None:
    # Next and submit check the caller's row inside their one unit of work, not in a dependency:
    # the rule must still be current_user's (active, not simulated), read fresh on every request.
    client = env.login("annotator")
    item = client.get("/api/work/next").json()["item"]
    assert item is not None
    with env.session() as session:
        session.get(User, env.user_ids["annotator"]).is_active = False
        session.commit()
    body = {"assignment_id": item["assignment_id"], "label": "Fear", "client_request_id": rid()}
    for response in (client.get("/api/work/next"), client.post("/api/work/submit", json=body)):
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "log in first"}
    with env.session() as session:
        assert session.scalar(select(func.count()).select_from(Judgement)) == 0
    forged = env.client()
    forged.headers["Authorization"] = "Bearer not-a-token"
    response = forged.get("/api/work/next")
    assert response.status_code == 401 and "invalid or expired API token" in response.text


def test_next_reports_the_progress_a_fresh_read_gives(env: Env) -> None:
    # serve_next computes the progress from the state it read before leasing; a separate
    # /progress request must agree with it right after.
    client = env.login("annotator")
    for _ in range(2):
        label_next(client, "Fear")
    answer = client.get("/api/work/next").json()
    assert answer["item"] is not None
    assert answer["progress"] == client.get("/api/work/progress").json()
    assert answer["progress"]["done_today"] == 2 and answer["progress"]["total_done"] == 2


def test_the_queue_chooses_the_project_like_every_other_route(env: Env) -> None:
    # Next reads the caller and the project in one statement; the choice must stay the
    # dependency's: the named project, else the only one; several and none named is an error.
    from annotation_app.services import projects

    client = env.login("annotator")
    with env.session() as session:
        only = session.scalar(select(func.min(Clip.project_id)))
        name = projects.get_project(session, None).name
        assert session.get(projects.Project, only).name == name
        projects.create_project(session, "second-campaign")
        session.commit()
    several = client.get("/api/work/next")
    assert several.status_code == 422 and "several projects exist" in several.json()["detail"]
    named = client.get("/api/work/next", params={"project": name})
    assert named.status_code == 200 and named.json()["item"]["clip_id"] in env.clip_ids
    empty = client.get("/api/work/next", params={"project": "second-campaign"})
    assert empty.status_code == 200 and empty.json()["item"] is None
    missing = client.get("/api/work/next", params={"project": "nope"})
    assert missing.status_code == 404 and missing.json() == {"detail": "no project named 'nope'"}
    assert client.get("/api/work/progress", params={"project": "nope"}).json() == missing.json()
