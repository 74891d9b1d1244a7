"""Log in / log out, the session cookie, CSRF, the DB-backed login rate limit, API bearer tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from annotation_app.main import create_app
from annotation_app.models import AuditEntry, User
from annotation_app.security import SESSION_COOKIE
from tests.annotation_app._http import PASSWORD, Env, env_fixture, page_csrf, tiny_video  # noqa: F401


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=2)


def _set_cookie_header(response) -> str:  # type: ignore[no-untyped-def]
    return "; ".join(v for k, v in response.headers.multi_items() if k.lower() == "set-cookie")


def test_login_sets_httponly_samesite_cookie_and_logout_clears_it(env: Env) -> None:
    client = env.client()
    page = client.get("/login")
    assert page.status_code == 200
    anon_cookie = _set_cookie_header(page)
    assert SESSION_COOKIE in anon_cookie and "HttpOnly" in anon_cookie and "SameSite=lax" in anon_cookie
    assert "Secure" not in anon_cookie  # cookie_secure is off in this settings object
    response = client.post("/login", data={"username": "annotator1", "password": PASSWORD,
                                           "csrf_token": page_csrf(page), "next": "/annotate"})
    assert response.status_code == 303 and response.headers["location"] == "/annotate"
    assert "HttpOnly" in _set_cookie_header(response)
    assert client.get("/").status_code == 200
    csrf = page_csrf(client.get("/"))
    out = client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    after = client.get("/annotate")
    assert after.status_code == 303 and after.headers["location"].startswith("/login")


def test_secure_cookie_when_configured(env: Env) -> None:
    settings = env.settings.model_copy(update={"cookie_secure": True})
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings), base_url="https://testserver") as client:
        assert "Secure" in _set_cookie_header(client.get("/login"))


def test_wrong_password_is_401_with_message_and_no_session(env: Env) -> None:
    client = env.client()
    csrf = page_csrf(client.get("/login"))
    response = client.post("/login", data={"username": "annotator1", "password": "nope-nope", "csrf_token": csrf})
    assert response.status_code == 401
    assert "wrong username or password" in response.text
    assert client.get("/annotate").status_code == 303


def test_login_without_csrf_token_is_refused(env: Env) -> None:
    client = env.client()
    client.get("/login")
    response = client.post("/login", data={"username": "annotator1", "password": PASSWORD})
    assert response.status_code == 403 and "CSRF" in response.text


def test_form_post_without_csrf_is_403_even_when_logged_in(env: Env) -> None:
    client = env.login("curator")
    del client.headers["X-CSRF-Token"]
    response = client.post("/curator/settings", data={"daily_cap": "7"})
    assert response.status_code == 403
    wrong = client.post("/curator/settings", data={"daily_cap": "7", "csrf_token": "x" * 40})
    assert wrong.status_code == 403
    with env.session() as session:
        from annotation_app.models import Project

        assert session.get(Project, env.project_id).daily_cap != 7  # type: ignore[union-attr]


def test_json_post_needs_csrf_header_with_cookie_auth(env: Env) -> None:
    client = env.login("curator")
    token = client.headers.pop("X-CSRF-Token")
    body = {"gold_rate": 0.0}
    assert client.patch("/api/curator/settings", json=body).status_code == 403
    assert client.patch("/api/curator/settings", json=body, headers={"X-CSRF-Token": token}).status_code == 200


def test_tampered_cookie_is_anonymous(env: Env) -> None:
    client = env.login("annotator")
    raw = client.cookies.get(SESSION_COOKIE)
    assert raw
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, raw[:-3] + ("AAA" if not raw.endswith("AAA") else "BBB"))
    assert client.get("/api/auth/me").status_code == 401


def test_login_rate_limit_is_per_username_and_held_in_the_database(env: Env) -> None:
    client = env.client()
    csrf = page_csrf(client.get("/login"))
    for _ in range(env.settings.login_attempts_per_minute):
        bad = client.post("/login", data={"username": "expert1", "password": "wrong-pass", "csrf_token": csrf})
        assert bad.status_code == 401
    blocked = client.post("/login", data={"username": "expert1", "password": PASSWORD, "csrf_token": csrf})
    assert blocked.status_code == 429 and "too many failed logins" in blocked.text
    # Another app instance (another worker) on the same database refuses too: the count is in the DB.
    from fastapi.testclient import TestClient

    with TestClient(create_app(env.settings)) as other:
        api = other.post("/api/auth/token", json={"username": "expert1", "password": PASSWORD})
        assert api.status_code == 429 and api.json()["detail"].startswith("too many failed logins")
    # Another username from the same address is not affected.
    ok = client.post("/login", data={"username": "annotator1", "password": PASSWORD, "csrf_token": csrf})
    assert ok.status_code == 303
    with env.session() as session:
        failures = session.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.action == "auth.login_failed"))
        assert failures == env.settings.login_attempts_per_minute


def test_passwords_are_argon2_hashes(env: Env) -> None:
    with env.session() as session:
        user = session.scalar(select(User).where(User.username == "annotator1"))
        assert user is not None and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash


def test_bearer_token_for_api_clients(env: Env) -> None:
    client = env.client()
    bad = client.post("/api/auth/token", json={"username": "annotator1", "password": "wrong-pass"})
    assert bad.status_code == 401 and bad.json() == {"detail": "wrong username or password"}
    token = client.post("/api/auth/token", json={"username": "annotator1", "password": PASSWORD}).json()
    assert token["token_type"] == "bearer"
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    me = client.get("/api/auth/me", headers=auth)
    assert me.status_code == 200 and me.json()["username"] == "annotator1" and me.json()["role"] == "annotator"
    assert client.get("/api/auth/me", headers={"Authorization": "Bearer forged.token.value"}).status_code == 401
    assert client.get("/api/auth/me").status_code == 401
    # A bearer-authenticated POST needs no CSRF token (a browser never sends the header on its own).
    assert client.get("/api/work/progress", headers=auth).status_code == 200


def test_open_redirect_after_login_is_refused(env: Env) -> None:
    client = env.client()
    csrf = page_csrf(client.get("/login"))
    response = client.post("/login", data={"username": "annotator1", "password": PASSWORD, "csrf_token": csrf,
                                           "next": "//evil.example/"})
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_healthz_and_security_headers(env: Env) -> None:
    response = env.client().get("/healthz")
    assert response.json() == {"status": "ok"}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_a_cached_token_never_outlives_its_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    # load_token remembers verified tokens (the HMAC check cost more than a query per request);
    # the memory must end when the token does, and a bad token is never remembered.
    import itsdangerous.timed

    from annotation_app import security

    codec = security.SessionCodec("k" * 40)
    now = 2_000_000_000.0
    signed_at = now - security.TOKEN_MAX_AGE_S + 30  # the token has 30 s to live
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: signed_at)
    token = codec.issue_token(42)
    for clock in (now, now + 20):
        monkeypatch.setattr(itsdangerous.timed.time, "time", lambda clock=clock: clock)
        monkeypatch.setattr(security.time, "time", lambda clock=clock: clock)
        assert codec.load_token(token) == 42
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now + 31)
    monkeypatch.setattr(security.time, "time", lambda: now + 31)
    assert codec.load_token(token) is None
    assert codec.load_token(token[:-2] + "xx") is None
    assert token[:-2] + "xx" not in codec._verified
