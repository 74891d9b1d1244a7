"""Sessions end when they should: log-out, a password change, deactivation, a role change and "sign
out everywhere" end every cookie and token of the account at once (``users.session_version``).

Real HTTP through the app on a real SQLite file; a copied cookie is the attacker's copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from annotation_app.security import SESSION_COOKIE
from tests.annotation_app._http import PASSWORD, Env, env_fixture, tiny_video  # noqa: F401


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=2)


def copy_of(env: Env, client: TestClient) -> TestClient:
    """Another client holding the same session cookie (and CSRF header), as a thief's copy would."""
    thief = env.client()
    thief.cookies.set(SESSION_COOKIE, client.cookies[SESSION_COOKIE])
    thief.headers["X-CSRF-Token"] = client.headers["X-CSRF-Token"]
    return thief


def token_for(env: Env, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = env.client().post("/api/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def logged_in(client: TestClient, headers: dict[str, str] | None = None) -> bool:
    """Whether the client's cookie or ``headers``' token still logs in: on /api/auth/me and on the
    annotator queue's fast path (which checks the caller in its own statement)."""
    me = client.get("/api/auth/me", headers=headers).status_code
    queue = client.get("/api/work/next", headers=headers).status_code
    assert me == queue or {me, queue} <= {200, 401}, (me, queue)
    assert (me == 200) == (queue == 200), f"/api/auth/me {me} but /api/work/next {queue}"
    return me == 200


def test_logout_ends_a_cookie_copied_before(env: Env) -> None:
    owner = env.login("annotator")
    thief = copy_of(env, owner)
    assert logged_in(thief)
    assert owner.post("/logout").status_code == 303
    assert not logged_in(thief)
    assert not logged_in(owner)
    page = thief.get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_logout_ends_the_accounts_tokens_too(env: Env) -> None:
    token = token_for(env, "annotator1")
    other = token_for(env, "annotator1")
    anon = env.client()
    assert logged_in(anon, token) and logged_in(anon, other)
    assert anon.post("/api/auth/logout", headers=token).status_code == 200
    assert not logged_in(anon, token)
    assert not logged_in(anon, other)
    # Someone else's session is not touched, and the owner can log in again.
    assert logged_in(anon, token_for(env, "annotator2"))
    assert logged_in(anon, token_for(env, "annotator1"))


def test_a_cookie_that_no_longer_logs_in_cannot_log_the_owner_out(env: Env) -> None:
    owner = env.login("annotator")
    stale = copy_of(env, owner)
    owner.post("/logout")
    owner = env.login("annotator")
    stale.post("/logout")  # the old cookie, with its own valid CSRF token
    assert logged_in(owner)


def test_password_change_ends_every_other_session(env: Env) -> None:
    browser = env.login("annotator")
    script = token_for(env, "annotator1")
    thief = copy_of(env, browser)
    wrong = browser.post("/api/auth/password", json={"current_password": "nope-nope", "new_password": "n" * 12})
    assert wrong.status_code == 403 and "current password" in wrong.json()["detail"]
    assert logged_in(browser)
    changed = browser.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "new-pass-2"})
    assert changed.status_code == 200, changed.text
    assert logged_in(browser)  # the session that changed it goes on, under a fresh cookie
    assert not logged_in(thief)
    anon = env.client()
    assert not logged_in(anon, script)
    assert logged_in(anon, {"Authorization": f"Bearer {changed.json()['access_token']}"})
    assert env.client().post("/api/auth/token", json={"username": "annotator1", "password": PASSWORD}).status_code == 401
    assert logged_in(anon, token_for(env, "annotator1", "new-pass-2"))


def test_deactivation_ends_sessions_and_reactivation_does_not_revive_them(env: Env) -> None:
    annotator = env.login("annotator")
    token = token_for(env, "annotator1")
    curator = env.login("curator")
    uid = env.user_ids["annotator"]
    assert curator.patch(f"/api/curator/annotators/{uid}", json={"is_active": False}).status_code == 200
    assert not logged_in(annotator)
    assert curator.patch(f"/api/curator/annotators/{uid}", json={"is_active": True}).status_code == 200
    assert not logged_in(annotator)
    assert not logged_in(env.client(), token)
    assert logged_in(env.login("annotator"))


def test_a_role_change_ends_the_persons_sessions(env: Env) -> None:
    expert = env.login("expert")
    assert expert.get("/api/expert/queue").status_code == 200
    admin = env.login("admin")
    assert admin.patch(f"/api/curator/annotators/{env.user_ids['expert']}", json={"role": "annotator"}).status_code == 200
    assert not logged_in(expert)
    # A change that leaves the role as it was ends nothing.
    annotator = env.login("annotator")
    assert admin.patch(f"/api/curator/annotators/{env.user_ids['annotator']}",
                       json={"role": "annotator", "gender": "female"}).status_code == 200
    assert logged_in(annotator)


@pytest.mark.parametrize("via", ["api", "page"])
def test_sign_out_everywhere(env: Env, via: str) -> None:
    browser = env.login("annotator")
    script = token_for(env, "annotator1")
    bystander = env.login("annotator2")
    admin = env.login("admin")
    uid = env.user_ids["annotator"]
    if via == "api":
        response = admin.post(f"/api/curator/annotators/{uid}/sign-out")
        assert response.status_code == 200, response.text
    else:
        response = admin.post(f"/curator/annotators/{uid}/sign-out", data={"csrf_token": admin.headers["X-CSRF-Token"]})
        assert response.status_code == 303, response.text
        assert "Sign annotator1 out everywhere" in admin.get(f"/curator/annotators/{uid}").text
    assert not logged_in(browser)
    assert not logged_in(env.client(), script)
    assert logged_in(bystander) and logged_in(admin)
    assert logged_in(env.login("annotator"))
    with env.session() as session:
        from sqlalchemy import select

        from annotation_app.models import AuditEntry

        actions = session.scalars(select(AuditEntry.details).where(
            AuditEntry.action == "user.sign_out", AuditEntry.target_id == str(uid))).all()
    assert actions and "signed out by admin1" in actions[-1]["reason"]
