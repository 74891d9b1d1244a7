"""``api_work.QueueFastPath`` answers the queue's two requests exactly as FastAPI's routes do.

Two apps on identical databases, one with the fast path and one without (FastAPI's routes alone),
get the same scripted requests — the plain case, each kind of refusal, bodies FastAPI must word
(invalid JSON, a model error), cookie and bearer authentication — and must give the same answers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.testclient import TestClient

from annotation_app.routers.api_work import QueueFastPath, _encode
from tests.annotation_app._http import PASSWORD, build_env, tiny_video  # noqa: F401


def _script(env: Any) -> list[tuple[int, Any]]:
    """The answers (status, JSON body) to a fixed sequence of queue requests."""
    answers: list[tuple[int, Any]] = []

    def keep(response: Any) -> Any:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("item"), dict):
            body["item"]["lease_expires_at"] = "(a time)"  # the only value that depends on the clock
        answers.append((response.status_code, body))
        return body

    anonymous = env.client()
    keep(anonymous.get("/api/work/next"))
    keep(anonymous.post("/api/work/submit", json={"assignment_id": 1, "label": "Fear", "client_request_id": "r" * 8}))
    client = env.login("annotator")
    item = keep(client.get("/api/work/next"))["item"]
    keep(client.get("/api/work/next?project=no-such-project"))
    good = {"assignment_id": item["assignment_id"], "label": "Fear", "confidence": 4, "time_on_task_s": 2.5,
            "client_request_id": "request-0001"}
    keep(client.post("/api/work/submit", json=good, headers={"X-CSRF-Token": "wrong"}))
    keep(client.post("/api/work/submit", json={**good, "label": "Boredom", "client_request_id": "request-0002"}))
    keep(client.post("/api/work/submit", json={**good, "assignment_id": 99_999, "client_request_id": "request-0003"}))
    keep(client.post("/api/work/submit", content=b'{"assignment_id": 1,', headers={"Content-Type": "application/json"}))
    keep(client.post("/api/work/submit", json={**good, "cant_judge": True}))
    keep(client.post("/api/work/submit", json={**good, "extra": 1}))
    keep(client.post("/api/work/submit", json=[good]))
    keep(client.post("/api/work/submit", json=good))
    keep(client.post("/api/work/submit", json=good))  # the retry: the first result, as a duplicate
    keep(client.post("/api/work/submit", json={**good, "client_request_id": "request-0004"}))  # submitted already
    keep(client.post("/api/work/submit?project=http-test", data={"assignment_id": "1"}))  # a form, not JSON
    token = env.client().post("/api/auth/token", json={"username": "annotator2", "password": PASSWORD}).json()
    bearer = env.client()
    bearer.headers["Authorization"] = f"Bearer {token['access_token']}"
    second = keep(bearer.get("/api/work/next"))["item"]
    keep(bearer.post("/api/work/submit", json={"assignment_id": second["assignment_id"], "cant_judge": True,
                                                "flag_reason": "no sound", "client_request_id": "request-0005"}))
    forged = env.client()
    forged.headers["Authorization"] = "Bearer not-a-token"
    keep(forged.get("/api/work/next"))
    return answers


def test_the_fast_path_answers_as_fastapis_routes(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> None:  # noqa: F811
    (tmp_path / "fast").mkdir()
    (tmp_path / "plain").mkdir()
    fast = build_env(tmp_path / "fast", sqlite_url, tiny_video, n_clips=4, overlap_k=2)
    plain = build_env(tmp_path / "plain", sqlite_url, tiny_video, n_clips=4, overlap_k=2)
    try:
        assert any(m.cls is QueueFastPath for m in fast.app.user_middleware)
        plain.app.user_middleware = [m for m in plain.app.user_middleware if m.cls is not QueueFastPath]
        expected = _script(plain)
        assert _script(fast) == expected
        statuses = [status for status, _ in expected]
        # The script covers the plain case and every kind of answer.
        assert set(statuses) == {200, 401, 403, 404, 409, 422} and statuses.count(200) == 5
    finally:
        fast.close()
        plain.close()


def test_responses_are_encoded_as_fastapi_encodes_them() -> None:
    content = {"item": {"lease_expires_at": datetime(2026, 11, 26, 9, 30, tzinfo=UTC), "clip_id": 3,
                        "sources": [{"src": "/media/clips/3", "type": "video/mp4"}]},
               "progress": {"blocked_reason": "pausé", "qualification": {"passed": None}, "done_today": 0}}
    assert json.loads(_encode(content)) == jsonable_encoder(content)
    assert "pausé" in _encode(content).decode()  # not \\u-escaped, as FastAPI's JSONResponse


def test_other_requests_pass_through(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> None:  # noqa: F811
    env = build_env(tmp_path, sqlite_url, tiny_video, n_clips=1)
    try:
        client = env.login("annotator")
        assert client.post("/api/work/next").status_code == 405
        assert client.get("/api/work/submit").status_code == 405
        assert client.get("/api/work/progress").status_code == 200
        assert client.get("/api/work/next/").status_code in (307, 404)
    finally:
        env.close()


def test_the_queue_routes_stay_documented(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> None:  # noqa: F811
    env = build_env(tmp_path, sqlite_url, tiny_video, n_clips=1)
    try:
        with TestClient(env.app) as client:
            paths = client.get("/openapi.json").json()["paths"]
        assert "get" in paths["/api/work/next"] and "post" in paths["/api/work/submit"]
        assert "SubmitIn" in json.dumps(paths["/api/work/submit"]["post"]["requestBody"])
    finally:
        env.close()
