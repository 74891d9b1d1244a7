"""Hostile JSON bodies (#22): deep nesting and invalid UTF-8 are a 422 before any parser or the
database, also unauthenticated; and an error answer leaves the keep-alive connection usable.
Real uvicorn over a real socket for the connection, a real SQLite file behind the app.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from annotation_app.main import MAX_JSON_DEPTH
from tests.annotation_app._http import Env, env_fixture, serve_in_thread, tiny_video  # noqa: F401

DEEP_ARRAY = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path_factory.mktemp("guard"), sqlite_url, tiny_video)


@pytest.mark.parametrize("path", ["/api/work/submit", "/api/auth/token", "/api/curator/settings"])
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize("who", ["anonymous", "curator"])
def test_deep_nesting_is_a_422(env: Env, path: str, body: str, who: str) -> None:
    client = env.client() if who == "anonymous" else env.login("curator")
    method = "PATCH" if path.endswith("settings") else "POST"
    response = client.request(method, path, content=body.encode(), headers=JSON)
    assert response.status_code == 422, response.text
    assert f"deeper than {MAX_JSON_DEPTH} levels" in response.json()["detail"]


def test_invalid_utf8_is_a_422(env: Env) -> None:
    response = env.client().post("/api/auth/token", content=b'{"username": "\xff", "password": "x"}', headers=JSON)
    assert response.status_code == 422 and "not valid UTF-8" in response.json()["detail"]


def test_brackets_inside_strings_do_not_count(env: Env) -> None:
    annotator = env.login("annotator")
    item = annotator.get("/api/work/next").json()["item"]
    reason = "[{" * 100
    response = annotator.post("/api/work/submit", json={
        "assignment_id": item["assignment_id"], "cant_judge": True, "flag_reason": reason,
        "client_request_id": uuid.uuid4().hex})
    assert response.status_code == 200, response.text
    assert annotator.get("/api/work/recent").json()["judgements"][0]["flag_reason"] == reason


def test_an_error_answer_keeps_the_connection_usable(env: Env) -> None:
    @env.app.get("/boom-for-test")
    def boom() -> None:
        raise RuntimeError("a bug")

    with serve_in_thread(env.app) as base:
        parts = urlsplit(base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            for method, path, body, status in [("POST", "/api/work/submit", DEEP_ARRAY, 422),
                                               ("GET", "/healthz", None, 200),
                                               ("GET", "/boom-for-test", None, 500),
                                               ("GET", "/healthz", None, 200)]:
                conn.request(method, path, body=body, headers=JSON if body else {})
                response = conn.getresponse()
                payload = response.read()
                assert response.status == status, (path, payload)
            assert json.loads(payload) == {"status": "ok"}
        finally:
            conn.close()
