"""Hostile input gets a clear 4xx with a message, the same on SQLite and PostgreSQL, and changes
nothing: nulls for NOT NULL columns, lone UTF-16 surrogates, NUL characters, ids past 64 bits,
settings past their columns' range. And the one translation of database refusals (an integrity
or data error) into 409 / 422.

Real HTTP through the app on a real SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from annotation_app.db import database_error
from annotation_app.deps import SessionDep
from annotation_app.errors import ConflictError, InvalidInputError
from annotation_app.models import Project, User
from annotation_app.services import projects
from tests.annotation_app._backends import BACKENDS, env_on
from tests.annotation_app._http import Env, tiny_video  # noqa: F401

BIG = 2**70
INT64_MAX = 2**63 - 1


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_url: str,
        tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
    yield from env_on(request.param, tmp_path_factory.mktemp(request.param), sqlite_url, tiny_video)


@pytest.fixture(scope="module")
def clients(env: Env) -> dict[str, TestClient]:
    return {role: env.login(role) for role in ("annotator", "expert", "curator")}


def raw_json(client: TestClient, method: str, url: str, text: str) -> Any:
    """A JSON body sent byte for byte (a lone surrogate survives only as a JSON escape)."""
    return client.request(method, url, content=text.encode(), headers={"Content-Type": "application/json"})


def annotator_row(env: Env) -> tuple[Any, ...]:
    with env.session() as session:
        user = session.get(User, env.user_ids["annotator"])
        assert user is not None
        return (user.is_active, user.role, user.gender, user.region, user.session_version)


def test_nulls_surrogates_and_nul_in_a_profile_are_refused(env: Env, clients: dict[str, TestClient]) -> None:
    curator = clients["curator"]
    url = f"/api/curator/annotators/{env.user_ids['annotator']}"
    before = annotator_row(env)
    for body, where, message in [
        ('{"is_active": null}', "is_active", "may not be null"),
        ('{"role": null}', "role", "may not be null"),
        ('{"gender": "\\ud800"}', "gender", "unicode"),
        ('{"region": "ok \\udfff"}', "region", "unicode"),
        ('{"region": "a\\u0000b"}', "region", "NUL"),
        ('{"languages": ["en", "\\ud83d"]}', "languages", "unicode"),
        ('{"background": "' + "x" * 65 + '"}', "background", "at most 64 characters"),
    ]:
        response = raw_json(curator, "PATCH", url, body)
        assert response.status_code == 422, (body, response.status_code, response.text)
        detail = response.json()["detail"]
        assert where in detail and message.lower() in detail.lower(), (body, detail)
        assert response.json()["errors"][0]["loc"][-1] in (where, 1, "list[str]", "str"), response.json()
    assert annotator_row(env) == before
    # A paired surrogate is a real character (an emoji) and is stored as it is.
    ok = raw_json(curator, "PATCH", url, '{"region": "\\ud83d\\ude00"}')
    assert ok.status_code == 200 and ok.json()["region"] == "😀"


@pytest.mark.parametrize(("role", "method", "path", "body"), [
    ("annotator", "GET", "/media/clips/9223372036854775808", None),
    ("expert", "GET", f"/api/expert/clips/{BIG}", None),
    ("curator", "GET", f"/api/curator/annotators/{BIG}", None),
    ("curator", "POST", f"/api/curator/annotators/{BIG}/exclude", {"reason": "x"}),
    ("curator", "POST", f"/api/curator/annotators/{2**63}/pause", {"paused": True, "reason": "x"}),
    ("annotator", "POST", f"/api/work/judgements/{BIG}/correct", {"label": "Fear", "client_request_id": "r" * 10}),
    ("annotator", "POST", "/api/work/submit", {"assignment_id": BIG, "label": "Fear", "client_request_id": "r" * 10}),
    ("annotator", "POST", "/api/work/submit", {"assignment_id": 2**63, "label": "Fear", "client_request_id": "r" * 11}),
    ("curator", "GET", f"/curator/annotators/{BIG}", None),
])
def test_ids_past_64_bits_are_refused(clients: dict[str, TestClient], role: str, method: str, path: str,
                                       body: dict[str, Any] | None) -> None:
    response = clients[role].request(method, path, json=body) if body is not None else clients[role].request(method, path)
    assert response.status_code == 422, response.text
    assert "less than or equal to 2147483647" in response.text


ID_ROUTES = [
    ("expert", "GET", "/media/clips/{id}", None),
    ("expert", "GET", "/api/expert/clips/{id}", None),
    ("curator", "POST", "/api/curator/annotators/{id}/exclude", {"reason": "x"}),
    ("curator", "POST", "/api/curator/annotators/{id}/sign-out", None),
    ("annotator", "POST", "/api/work/submit", {"assignment_id": "{id}", "label": "Fear"}),
]


@pytest.mark.parametrize(("role", "method", "path", "body"), ID_ROUTES)
@pytest.mark.parametrize("big", [2**31 - 1, 2**31, INT64_MAX])
def test_ids_answer_alike_on_both_databases(env: Env, clients: dict[str, TestClient], role: str, method: str,
                                            path: str, body: dict[str, Any] | None, big: int) -> None:
    # The largest id the id columns hold (PostgreSQL's integer) is simply not there: 404. One past it
    # is refused at the edge on both databases (422), never sent to PostgreSQL to fail there.
    if body is not None:
        body = {k: big if v == "{id}" else v for k, v in body.items()}
        if "assignment_id" in body:
            body["client_request_id"] = uuid.uuid4().hex
    url = path.format(id=big)
    response = clients[role].request(method, url, json=body) if body is not None else clients[role].request(method, url)
    if big > 2**31 - 1:
        assert response.status_code == 422, response.text
        assert "less than or equal to 2147483647" in response.text
    else:
        assert response.status_code == 404, response.text
        assert (response.json()["detail"] if url.startswith("/api/") else "no clip" in response.text)


@pytest.mark.parametrize("query", ["project=a%00b", "project=" + "p" * 121])
def test_a_hostile_project_name_is_refused_on_the_queue(clients: dict[str, TestClient], query: str) -> None:
    for method, path, body in [("GET", "/api/work/next", None), ("GET", "/api/work/progress", None),
                               ("POST", "/api/work/submit", {"assignment_id": 1, "label": "Fear",
                                                             "client_request_id": uuid.uuid4().hex})]:
        response = clients["annotator"].request(method, f"{path}?{query}", json=body)
        assert response.status_code == 422, (path, response.text)
        assert "project" in response.json()["detail"]


def test_settings_past_their_columns_are_refused(env: Env, clients: dict[str, TestClient]) -> None:
    curator = clients["curator"]
    before = curator.get("/api/curator/settings").json()
    for change, where in [({"overlap_k": 2**40}, "overlap_k"), ({"daily_cap": 2**31}, "daily_cap"),
                          ({"stage2_extra": -1}, "stage2_extra"), ({"overlap_k": None}, "overlap_k"),
                          ({"quality_floor": 2}, "quality_floor"), ({"lease_minutes": BIG}, "lease_minutes"),
                          ({"balance_attributes": ["a\x00"]}, "balance_attributes"), ({"surprise": 1}, "surprise"),
                          ({"weighted_consensus": "maybe"}, "weighted_consensus")]:
        response = curator.patch("/api/curator/settings", json=change)
        assert response.status_code == 422, (change, response.text)
        assert where in response.json()["detail"], (change, response.json())
    assert curator.get("/api/curator/settings").json() == before
    # The bounds are the columns': PostgreSQL's integer holds 2**31 - 1.
    assert curator.patch("/api/curator/settings", json={"daily_cap": 2**31 - 1}).json()["daily_cap"] == 2**31 - 1
    form = curator.post("/curator/settings", data={"csrf_token": curator.headers["X-CSRF-Token"], "daily_cap": str(2**40)})
    assert form.status_code == 422 and "daily_cap" in form.text
    assert curator.patch("/api/curator/settings", json={"daily_cap": before["daily_cap"]}).status_code == 200


def test_hostile_page_forms_are_refused(env: Env, clients: dict[str, TestClient]) -> None:
    anon_login = TestClient(env.app, base_url="http://testserver")
    response = anon_login.post("/login", data={"username": "a\x00", "password": "x"})
    assert response.status_code in (403, 422)  # no session yet: CSRF first; never a 500
    curator = clients["curator"]
    response = curator.post(f"/curator/annotators/{env.user_ids['annotator']}",
                            data={"csrf_token": curator.headers["X-CSRF-Token"], "region": "a\x00b"})
    assert response.status_code == 422 and "NUL" in response.text
    assert curator.get("/curator/clips?stage=%C2%B2").status_code == 200  # "²" is a digit to str.isdigit


def test_an_export_of_a_project_with_a_non_latin_name_downloads(env: Env, clients: dict[str, TestClient]) -> None:
    with env.session() as session:
        if session.scalar(select(Project.id).where(Project.name == "情绪 \"1\"")) is None:
            projects.create_project(session, "情绪 \"1\"")
            session.commit()
    response = clients["curator"].get("/api/curator/judgements.csv", params={"project": "情绪 \"1\""})
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    assert "filename*=UTF-8''%E6%83%85%E7%BB%AA%20%221%22-judgements.csv" in disposition
    assert 'filename="__ _1_-judgements.csv"' in disposition


# -- The one translation of database refusals ------------------------------------------------------


def _refused(session: Session, row: Any) -> IntegrityError | DataError:
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except (IntegrityError, DataError) as exc:
        return exc
    raise AssertionError("the database took the row")


def test_integrity_errors_become_conflicts_naming_the_rule(session: Session) -> None:
    session.add(User(username="taken", password_hash="x"))
    session.flush()
    duplicate = database_error(_refused(session, User(username="taken", password_hash="x")))
    assert isinstance(duplicate, ConflictError) and duplicate.http_status == 409
    assert "username" in str(duplicate) and "taken" not in str(duplicate).replace("the change", "")
    null = database_error(_refused(session, User(username="nullish", password_hash=None)))
    assert isinstance(null, ConflictError) and "password_hash" in str(null)
    check = database_error(_refused(session, Project(name="bad-k", overlap_k=0)))
    assert isinstance(check, ConflictError) and "overlap_k_positive" in str(check)


@pytest.mark.postgres
def test_data_errors_become_invalid_input(pg_session: Session) -> None:
    error = database_error(_refused(pg_session, Project(name="huge", daily_cap=2**40)))
    assert isinstance(error, InvalidInputError) and error.http_status == 422
    assert "integer out of range" in str(error) and "INSERT" not in str(error)


def test_a_database_refusal_answers_409_over_http(env: Env, clients: dict[str, TestClient]) -> None:
    # A write the services did not check first (as when two requests race for one name): the
    # database's own refusal, through the app's handler.
    def duplicate_username(session: SessionDep) -> dict[str, str]:
        session.add(User(username="curator1", password_hash="x"))
        session.flush()
        return {"stored": "yes"}

    if not any(getattr(r, "path", "") == "/api/test/duplicate" for r in env.app.routes):
        env.app.add_api_route("/api/test/duplicate", duplicate_username, methods=["POST"])
    response = clients["curator"].post("/api/test/duplicate")
    assert response.status_code == 409, response.text
    assert response.json()["detail"].startswith("the change breaks a rule of the data:")
    assert "username" in response.json()["detail"] and "INSERT" not in response.text
    assert json.loads(response.text).keys() == {"detail"}
