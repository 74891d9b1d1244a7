"""Role × endpoint matrix: every route refuses every role not allowed to use it, and anonymous users.

The routes are enumerated from ``app.routes``: a new endpoint missing from ``POLICY`` fails
``test_every_route_has_a_policy``, so none can escape the matrix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount

from annotation_app.main import create_app
from annotation_app.settings import Settings
from tests.annotation_app._http import Env, env_fixture, tiny_video  # noqa: F401

ROLES = ("annotator", "expert", "curator", "admin")
PUBLIC = frozenset({"anonymous", *ROLES})
ANNOTATOR = frozenset(ROLES)  # everyone logged in: experts annotate too
EXPERT = frozenset({"expert", "admin"})  # adjudication (a curator is not an expert)
CURATOR = frozenset({"curator", "admin"})

POLICY: dict[tuple[str, str], frozenset[str]] = {
    # public
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("POST", "/api/auth/token"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # every logged-in user
    ("GET", "/"): ANNOTATOR,
    ("POST", "/projects/select"): ANNOTATOR,
    ("GET", "/api/auth/me"): ANNOTATOR,
    ("POST", "/api/auth/logout"): ANNOTATOR,
    ("POST", "/api/auth/password"): ANNOTATOR,
    ("GET", "/annotate"): ANNOTATOR,
    ("POST", "/annotate/submit"): ANNOTATOR,
    ("GET", "/annotate/recent"): ANNOTATOR,
    ("POST", "/annotate/judgements/{judgement_id}/correct"): ANNOTATOR,
    ("GET", "/media/clips/{clip_id}"): ANNOTATOR,  # and then only a clip leased to them
    ("GET", "/api/work/labels"): ANNOTATOR,
    ("GET", "/api/work/next"): ANNOTATOR,
    ("POST", "/api/work/submit"): ANNOTATOR,
    ("GET", "/api/work/progress"): ANNOTATOR,
    ("GET", "/api/work/recent"): ANNOTATOR,
    ("POST", "/api/work/judgements/{judgement_id}/correct"): ANNOTATOR,
    ("GET", "/annotate/guidelines"): ANNOTATOR,
    ("POST", "/annotate/guidelines/confirm"): ANNOTATOR,
    ("GET", "/api/work/guidelines"): ANNOTATOR,
    ("POST", "/api/work/guidelines/confirm"): ANNOTATOR,
    # experts and admins
    ("GET", "/expert"): EXPERT,
    ("GET", "/expert/clips/{clip_id}"): EXPERT,
    ("POST", "/expert/clips/{clip_id}"): EXPERT,
    ("GET", "/api/expert/queue"): EXPERT,
    ("GET", "/api/expert/clips/{clip_id}"): EXPERT,
    ("POST", "/api/expert/clips/{clip_id}/adjudicate"): EXPERT,
    # curators and admins
    ("GET", "/curator"): CURATOR,
    ("GET", "/curator/settings"): CURATOR,
    ("POST", "/curator/settings"): CURATOR,
    ("GET", "/curator/annotators"): CURATOR,
    ("POST", "/curator/annotators"): CURATOR,
    ("GET", "/curator/annotators/{user_id}"): CURATOR,
    ("POST", "/curator/annotators/{user_id}"): CURATOR,
    ("POST", "/curator/annotators/{user_id}/pause"): CURATOR,
    ("POST", "/curator/annotators/{user_id}/exclude"): CURATOR,
    ("POST", "/curator/annotators/{user_id}/sign-out"): CURATOR,
    ("POST", "/curator/annotators/{user_id}/qualification"): CURATOR,
    ("GET", "/curator/clips"): CURATOR,
    ("GET", "/curator/audit"): CURATOR,
    ("GET", "/curator/judgements.{fmt}"): CURATOR,
    ("GET", "/api/curator/progress"): CURATOR,
    ("GET", "/api/curator/attention"): CURATOR,
    ("GET", "/api/curator/settings"): CURATOR,
    ("PATCH", "/api/curator/settings"): CURATOR,
    ("POST", "/curator/settings/guidelines"): CURATOR,
    ("POST", "/curator/settings/examples"): CURATOR,
    ("GET", "/api/curator/guidelines"): CURATOR,
    ("PUT", "/api/curator/guidelines"): CURATOR,
    ("PUT", "/api/curator/guidelines/examples"): CURATOR,
    ("GET", "/api/curator/annotators"): CURATOR,
    ("POST", "/api/curator/annotators"): CURATOR,
    ("GET", "/api/curator/annotators/{user_id}"): CURATOR,
    ("PATCH", "/api/curator/annotators/{user_id}"): CURATOR,
    ("POST", "/api/curator/annotators/{user_id}/pause"): CURATOR,
    ("POST", "/api/curator/annotators/{user_id}/exclude"): CURATOR,
    ("POST", "/api/curator/annotators/{user_id}/qualification"): CURATOR,
    ("POST", "/api/curator/annotators/{user_id}/sign-out"): CURATOR,
    ("GET", "/api/curator/clips"): CURATOR,
    ("GET", "/api/curator/audit"): CURATOR,
    ("GET", "/api/curator/judgements.{fmt}"): CURATOR,
}
# Routes that refuse even an allowed role unless the clip is leased to them (blind labelling).
LEASE_GUARDED = {("GET", "/media/clips/{clip_id}")}
# Routes that end the caller's sessions when they succeed (all of the account's: one session
# version per account): the module's shared client of each role logs in again afterwards.
SESSION_ENDING = {("POST", "/api/auth/logout")}
# Ids that exist nowhere, so an allowed request can do no harm (it gets 404/422, never 401/403).
PATH_VALUES = {"judgement_id": "999999", "clip_id": "999999", "user_id": "999999", "fmt": "csv"}


def app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(data_dir="/tmp/emotions-matrix", secret_key="m" * 40))
    found = set()
    for path, route in _flatten(app.routes):
        if isinstance(route, Mount):
            assert path == "/static", f"unexpected mount {path}: it would escape the matrix"
            continue
        methods = getattr(route, "methods", None)
        assert methods, f"route {path} ({type(route).__name__}) has no methods: extend the matrix for it"
        found.update((method, path) for method in methods if method != "HEAD")
    return found


def _flatten(routes: list) -> Iterator[tuple[str, object]]:
    """(full path, route) of every route, through included routers."""
    for route in routes:
        if hasattr(route, "effective_route_contexts"):
            # FastAPI >= 0.16x keeps included routers as lazy nodes; each context has the full path.
            for context in route.effective_route_contexts():
                yield context.path, context.original_route
        else:
            yield route.path, route


def test_every_route_has_a_policy() -> None:
    routes = app_routes()
    missing = sorted(routes - POLICY.keys())
    stale = sorted(POLICY.keys() - routes)
    assert not missing, f"routes without a role policy in the matrix: {missing}"
    assert not stale, f"policy entries for routes that no longer exist: {stale}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path_factory.mktemp("matrix"), sqlite_url, tiny_video, n_clips=2)


@pytest.fixture(scope="module")
def clients(env: Env) -> dict[str, TestClient]:
    return {"anonymous": env.client(), **{role: env.login(role) for role in ROLES}}


def call(client: TestClient, method: str, path: str) -> object:
    url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
    token = client.headers.get("X-CSRF-Token", "")
    if method == "GET":
        return client.get(url)
    if path.startswith("/api/"):
        return client.request(method, url, json={})
    return client.request(method, url, data={"csrf_token": token})


PROTECTED = sorted(k for k, v in POLICY.items() if v != PUBLIC)


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_route_refuses_lower_roles_and_admits_its_roles(
    env: Env, clients: dict[str, TestClient], method: str, path: str
) -> None:
    allowed = POLICY[(method, path)]
    anon = call(clients["anonymous"], method, path)
    if path.startswith("/api/"):
        assert anon.status_code == 401, (anon.status_code, anon.text)  # type: ignore[attr-defined]
        assert anon.json()["detail"]  # type: ignore[attr-defined]
    elif method == "GET":
        assert anon.status_code == 303 and anon.headers["location"].startswith("/login")  # type: ignore[attr-defined]
    else:
        assert anon.status_code == 401  # type: ignore[attr-defined]
    for role in ROLES:
        response = call(clients[role], method, path)
        if (method, path) in SESSION_ENDING:
            clients[role] = env.login(role)
        status = response.status_code  # type: ignore[attr-defined]
        if role not in allowed:
            assert status == 403, f"{role} got {status} on {method} {path}"
            detail = response.json()["detail"] if path.startswith("/api/") else response.text  # type: ignore[attr-defined]
            assert f"you are {role}" in detail
        elif (method, path) in LEASE_GUARDED and role == "annotator":
            assert status == 403 and "not leased to you" in response.text  # type: ignore[attr-defined]
        else:
            assert status not in (401, 403), f"{role} refused ({status}) on {method} {path}: {response.text[:200]}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/healthz", "/login", "/openapi.json"])
def test_public_routes_answer_anonymous_users(clients: dict[str, TestClient], path: str) -> None:
    assert clients["anonymous"].get(path).status_code == 200


def test_the_matrix_matches_the_service_layer_roles() -> None:
    from annotation_app.services.adjudication import ADJUDICATING_ROLES
    from annotation_app.services.curator import CURATING_ROLES

    assert {r.value for r in ADJUDICATING_ROLES} == EXPERT
    assert {r.value for r in CURATING_ROLES} == CURATOR


def test_bearer_tokens_follow_the_same_matrix(env: Env, clients: dict[str, TestClient]) -> None:
    anon = clients["anonymous"]
    from tests.annotation_app._http import PASSWORD

    token = anon.post("/api/auth/token", json={"username": "expert1", "password": PASSWORD}).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert anon.get("/api/expert/queue", headers=auth).status_code == 200
    assert anon.get("/api/curator/progress", headers=auth).status_code == 403
    curator = anon.post("/api/auth/token", json={"username": "curator1", "password": PASSWORD}).json()["access_token"]
    assert anon.get("/api/expert/queue", headers={"Authorization": f"Bearer {curator}"}).status_code == 403
    assert anon.post("/api/curator/annotators/999999/exclude", headers=auth, json={"reason": "x"}).status_code == 403
