"""Bad input gets a specific 4xx with a message, and nothing is lost or duplicated."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from annotation_app.main import MAX_BODY_BYTES
from annotation_app.models import Assignment, Clip, ClipStatus, Judgement, utcnow
from tests.annotation_app._http import Env, env_fixture, tiny_video  # noqa: F401


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=4, extra_annotators=1)


def rid() -> str:
    return uuid.uuid4().hex


def lease(client: TestClient) -> dict:
    item = client.get("/api/work/next").json()["item"]
    assert item is not None
    return item


def judgements(env: Env) -> int:
    with env.session() as session:
        return int(session.scalar(select(func.count(Judgement.id))) or 0)


def body(item: dict, **overrides: object) -> dict:
    return {"assignment_id": item["assignment_id"], "label": "Fear", "client_request_id": rid(), **overrides}


@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ({"label": "Joy"}, 422, "unknown label 'Joy'"),
        ({"confidence": 7}, 422, "confidence: Input should be less than or equal to 5"),
        ({"confidence": "high"}, 422, "confidence: Input should be a valid integer"),
        ({"label": None}, 422, "choose a label, or flag the clip"),
        ({"label": None, "broken": True}, 422, "say why the clip is flagged"),
        ({"label": "Fear", "cant_judge": True, "flag_reason": "dark"}, 422, "a flagged clip takes no label"),
        ({"flag_reason": "x" * 501}, 422, "flag_reason: String should have at most 500 characters"),
        ({"client_request_id": "short"}, 422, "client_request_id: String should match pattern"),
        ({"time_on_task_s": -1}, 422, "time_on_task_s: Input should be greater than or equal to 0"),
        ({"surprise": 1}, 422, "surprise: Extra inputs are not permitted"),
        ({"assignment_id": "abc"}, 422, "assignment_id: Input should be a valid integer"),
    ],
)
def test_invalid_submissions(env: Env, overrides: dict, status: int, message: str) -> None:
    client = env.login("annotator")
    item = lease(client)
    response = client.post("/api/work/submit", json=body(item, **overrides))
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert judgements(env) == 0
    # The lease is intact: a correct submission still goes through.
    assert client.post("/api/work/submit", json=body(item)).status_code == 200
    assert judgements(env) == 1


def test_malformed_json_and_oversized_bodies(env: Env) -> None:
    client = env.login("annotator")
    lease(client)
    bad = client.post("/api/work/submit", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 422 and "JSON" in bad.json()["detail"]
    big = client.post("/api/work/submit", content=b"x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and "KiB" in big.json()["detail"]

    def chunks():  # no Content-Length: the limit is counted while streaming
        for _ in range(20):
            yield b"y" * 8192

    streamed = client.post("/api/work/submit", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    form_big = client.post("/annotate/submit", data={"flag_reason": "z" * (MAX_BODY_BYTES + 10)})
    assert form_big.status_code == 413
    assert judgements(env) == 0


def test_malformed_form_gets_an_html_error_page_with_the_message(env: Env) -> None:
    client = env.login("annotator")
    lease(client)
    token = client.headers["X-CSRF-Token"]
    response = client.post("/annotate/submit", data={"csrf_token": token, "assignment_id": "abc",
                                                     "label": "Fear", "client_request_id": rid()})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "assignment_id: Input should be a valid integer" in response.text


def test_submitting_for_a_clip_leased_to_someone_else(env: Env) -> None:
    a = env.login("annotator")
    b = env.login("annotator2")
    item_a = lease(a)
    lease(b)
    response = b.post("/api/work/submit", json=body(item_a))
    assert response.status_code == 409 and "not leased to you" in response.json()["detail"]
    assert b.post("/api/work/submit", json=body({"assignment_id": 999_999})).status_code == 404
    assert judgements(env) == 0


def test_double_submit(env: Env) -> None:
    client = env.login("annotator")
    item = lease(client)
    first = body(item)
    ok = client.post("/api/work/submit", json=first)
    assert ok.status_code == 200
    # The same request again (a retry) is the same result, not a second row.
    again = client.post("/api/work/submit", json=first)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["judgement_id"] == ok.json()["judgement_id"]
    # A second, different submission for the same lease is refused with a hint.
    other = client.post("/api/work/submit", json=body(item, label="Sadness"))
    assert other.status_code == 409 and "already submitted" in other.json()["detail"]
    assert judgements(env) == 1


def test_expired_lease(env: Env) -> None:
    client = env.login("annotator")
    item = lease(client)
    with env.session() as session:
        assignment = session.get(Assignment, item["assignment_id"])
        assignment.lease_expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    response = client.post("/api/work/submit", json=body(item))
    assert response.status_code == 409 and "expired" in response.json()["detail"]
    assert judgements(env) == 0


def test_clip_withdrawn_or_deleted_meanwhile(env: Env) -> None:
    a = env.login("annotator")
    item = lease(a)
    with env.session() as session:
        session.get(Clip, item["clip_id"]).status = ClipStatus.pending
        session.commit()
    withdrawn = a.post("/api/work/submit", json=body(item))
    assert withdrawn.status_code == 404 and "no longer open" in withdrawn.json()["detail"]

    b = env.login("annotator2")
    item_b = lease(b)
    with env.session() as session:
        session.execute(delete(Clip).where(Clip.id == item_b["clip_id"]))
        session.commit()
    gone = b.post("/api/work/submit", json=body(item_b))
    assert gone.status_code == 404 and "removed" in gone.json()["detail"]
    assert b.get(f"/media/clips/{item_b['clip_id']}").status_code == 403
    assert judgements(env) == 0


def test_unknown_routes_and_methods(env: Env) -> None:
    client = env.login("annotator")
    assert client.get("/api/nope").status_code == 404
    assert client.get("/api/work/submit").status_code == 405
    page = client.get("/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    # An error page keeps the session usable: its log-out form carries the CSRF token.
    refused = client.get("/curator")
    assert refused.status_code == 403 and "curation is for curators" in refused.text
    assert f'name="csrf_token" value="{client.headers["X-CSRF-Token"]}"' in refused.text
