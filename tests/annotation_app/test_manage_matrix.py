"""Who may manage whom, on every curator operation that acts on a person: the actor's role × the
target's role (``services.access``). Curators manage annotators and experts; admins manage
everyone. A refusal is 403 with the rule's message and leaves the person as they were.

Real HTTP through the app (API and pages) on a real SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from annotation_app.models import User
from annotation_app.services import users
from annotation_app.services.access import may_manage
from tests.annotation_app._http import PASSWORD, Env, env_fixture, tiny_video  # noqa: F401

ACTORS = ("curator", "admin")
TARGETS = {"annotator": "annotator1", "expert": "expert1", "curator": "curator2", "admin": "admin2"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    for env in env_fixture(tmp_path_factory.mktemp("manage"), sqlite_url, tiny_video, n_clips=2):
        with env.session() as session:  # a second curator and admin to be the targets
            for name in ("curator2", "admin2"):
                users.create_user(session, name, role=name[:-1], password=PASSWORD)
            session.commit()
        yield env


@pytest.fixture(scope="module")
def actors(env: Env) -> dict[str, TestClient]:
    return {role: env.login(role) for role in ACTORS}


def person(env: Env, username: str) -> User:
    with env.session() as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        session.expunge(user)
        return user


@dataclass(frozen=True)
class Operation:
    name: str
    call: Callable[[TestClient, User, str], Any]  # (actor client, target, target role) -> response
    # What the operation changes on the target; equal before and after a refusal.
    state: Callable[[Env, User, str], Any]
    ok: int


def _form(client: TestClient, **fields: Any) -> dict[str, Any]:
    return {"csrf_token": client.headers["X-CSRF-Token"], **fields}


_seq = iter(range(10**6))


def _new_name(role: str) -> str:
    return f"new-{role}-{next(_seq)}"


OPERATIONS = [
    Operation("api: edit profile", lambda c, t, r: c.patch(f"/api/curator/annotators/{t.id}", json={"region": "edited"}),
              lambda e, t, r: person(e, t.username).region, 200),
    Operation("api: pause", lambda c, t, r: c.post(f"/api/curator/annotators/{t.id}/pause",
                                                   json={"paused": True, "reason": "matrix"}),
              lambda e, t, r: person(e, t.username).paused, 200),
    Operation("api: exclude", lambda c, t, r: c.post(f"/api/curator/annotators/{t.id}/exclude", json={"reason": "matrix"}),
              lambda e, t, r: person(e, t.username).paused, 200),
    Operation("api: sign out", lambda c, t, r: c.post(f"/api/curator/annotators/{t.id}/sign-out"),
              lambda e, t, r: person(e, t.username).session_version, 200),
    Operation("api: create with role", lambda c, t, r: c.post("/api/curator/annotators", json={
        "username": _new_name(r), "password": PASSWORD, "role": r}),
              lambda e, t, r: _count(e, r), 201),
    Operation("api: give the role", lambda c, t, r: c.patch(f"/api/curator/annotators/{_annotator(c)}", json={"role": r}),
              lambda e, t, r: _count(e, r), 200),
    Operation("page: edit profile", lambda c, t, r: c.post(f"/curator/annotators/{t.id}", data=_form(c, region="edited")),
              lambda e, t, r: person(e, t.username).region, 303),
    Operation("page: pause", lambda c, t, r: c.post(f"/curator/annotators/{t.id}/pause",
                                                    data=_form(c, paused="true", reason="matrix")),
              lambda e, t, r: person(e, t.username).paused, 303),
    Operation("page: exclude", lambda c, t, r: c.post(f"/curator/annotators/{t.id}/exclude", data=_form(c, reason="matrix")),
              lambda e, t, r: person(e, t.username).paused, 303),
    Operation("page: sign out", lambda c, t, r: c.post(f"/curator/annotators/{t.id}/sign-out", data=_form(c)),
              lambda e, t, r: person(e, t.username).session_version, 303),
    Operation("page: create with role", lambda c, t, r: c.post("/curator/annotators", data=_form(
        c, username=_new_name(r), password=PASSWORD, role=r)),
              lambda e, t, r: _count(e, r), 303),
]

def _count(env: Env, role: str) -> int:
    with env.session() as session:
        return len(session.scalars(select(User.id).where(User.role == role)).all())


def _annotator(client: TestClient) -> int:
    """A fresh annotator to promote (so that each promotion starts from the same role)."""
    created = client.post("/api/curator/annotators", json={"username": _new_name("plain"), "password": PASSWORD})
    assert created.status_code == 201, created.text
    return created.json()["id"]


CASES = [(op, actor, role) for op in OPERATIONS for actor in ACTORS for role in TARGETS]


@pytest.mark.parametrize(("operation", "actor", "target_role"), CASES,
                         ids=[f"{op.name} | {actor} -> {role}" for op, actor, role in CASES])
def test_who_may_manage_whom(env: Env, actors: dict[str, TestClient], operation: Operation, actor: str,
                             target_role: str) -> None:
    client = actors[actor]
    target = person(env, TARGETS[target_role])
    before = operation.state(env, target, target_role)
    response = operation.call(client, target, target_role)
    if may_manage(actor, target_role):
        assert response.status_code == operation.ok, response.text[:300]
    else:
        assert response.status_code == 403, response.text[:300]
        assert f"a {actor} may not manage a {target_role}" in response.text
        assert operation.state(env, target, target_role) == before
    assert client.get("/api/auth/me").status_code == 200  # the actor was never the target


def test_the_rule_itself() -> None:
    assert [t for t in TARGETS if may_manage("curator", t)] == ["annotator", "expert"]
    assert [t for t in TARGETS if may_manage("admin", t)] == list(TARGETS)
    assert not any(may_manage(a, t) for a in ("annotator", "expert") for t in TARGETS)
