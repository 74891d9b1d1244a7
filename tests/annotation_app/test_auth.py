"""Log in / log out, the session cookie, CSRF, the DB-backed login rate limit, API bearer tokens."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.main import create_app
from annotation_app.models import LoginFailure, User
from annotation_app.errors import AuthenticationError, RateLimitedError
from annotation_app.security import (
    DEVICE_COOKIE,
    SESSION_COOKIE,
    KnownDevice,
    LoginThrottle,
    SessionCodec,
    authenticate,
    check_login_throttle,
)
from tests.annotation_app._http import PASSWORD, Env, env_fixture, page_csrf, tiny_video  # noqa: F401
from tests.annotation_app.factories import make_annotator, unique


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


def _login(client, username: str, password: str):  # type: ignore[no-untyped-def]
    csrf = page_csrf(client.get("/login"))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf})


def test_a_browser_that_logged_in_before_gets_in_while_the_account_is_under_attack(env: Env) -> None:
    owner = env.client()
    assert _login(owner, "expert1", PASSWORD).status_code == 303
    assert DEVICE_COOKIE in owner.cookies  # kept through log-out: it marks the browser, not the session
    owner.post("/logout", data={"csrf_token": page_csrf(owner.get("/"))})
    assert DEVICE_COOKIE in owner.cookies and owner.get("/annotate").status_code == 303

    # Someone behind the same address guesses until the account's delay holds them up.
    attacker = env.client()
    replies = []
    for _ in range(env.settings.login_free_failures + 12):
        replies.append(_login(attacker, "expert1", "wrong-pass"))
        if replies[-1].status_code == 429:
            break
    codes = [r.status_code for r in replies]
    assert codes[: env.settings.login_free_failures] == [401] * env.settings.login_free_failures
    assert codes[-1] == 429 and set(codes) == {401, 429}
    assert "too many failed logins for this account" in replies[-1].text
    assert int(replies[-1].headers["Retry-After"]) >= 1
    # The owner's browser is not held up, neither on the page nor through the API.
    assert _login(owner, "expert1", PASSWORD).status_code == 303
    token = owner.post("/api/auth/token", json={"username": "expert1", "password": PASSWORD})
    assert token.status_code == 200 and token.json()["token_type"] == "bearer"


def test_rotating_usernames_spends_the_address_budget_in_the_database(env: Env) -> None:
    owner = env.client()
    assert _login(owner, "annotator1", PASSWORD).status_code == 303
    client = env.client()
    budget = env.settings.login_address_budget
    for n in range(budget):  # a different username each time: no account ever reaches its delay
        assert _login(client, f"guess{n}", "wrong-pass").status_code == 401
    blocked = _login(client, "expert1", PASSWORD)
    assert blocked.status_code == 429 and "too many failed logins from your address" in blocked.text
    # Another app instance (another worker) on the same database agrees: the count is in the DB.
    with TestClient(create_app(env.settings)) as worker:
        api = worker.post("/api/auth/token", json={"username": "expert1", "password": PASSWORD})
        assert api.status_code == 429 and api.json()["detail"].startswith("too many failed logins")
        assert int(api.headers["Retry-After"]) >= 1
    # Another address has its own budget; a browser that logged in here before is not held up.
    with TestClient(create_app(env.settings), client=("198.51.100.7", 50000)) as elsewhere:
        assert elsewhere.post("/api/auth/token", json={"username": "expert1", "password": PASSWORD}).status_code == 200
    assert _login(owner, "annotator1", PASSWORD).status_code == 303
    with env.session() as session:
        rows = session.execute(select(LoginFailure.kind, LoginFailure.key, LoginFailure.failures)).all()
        assert sorted(k for k, _, _ in rows) == ["account"] * budget + ["address"] * len(
            [r for r in rows if r[0] == "address"])  # one row per username; the address's per minute
        assert {key for kind, key, _ in rows if kind == "address"} == {"testclient"}
        assert sum(n for kind, _, n in rows if kind == "address") == budget


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
        assert codec.load_token(token) == (42, 0)
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now + 31)
    monkeypatch.setattr(security.time, "time", lambda: now + 31)
    assert codec.load_token(token) is None
    assert codec.load_token(token[:-2] + "xx") is None
    assert token[:-2] + "xx" not in codec._verified


# -- the throttle's rules on a clock of the test's own (SQLite and PostgreSQL) -----------------------

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
THROTTLE = LoginThrottle(free_failures=3, max_delay_s=60.0, address_budget=5)


def _s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _fail(session: Session, username: str, client: str, at: datetime, device: KnownDevice | None = None) -> None:
    with pytest.raises(AuthenticationError):
        authenticate(session, username, "wrong-pass", client, throttle=THROTTLE, device=device, now=at)


def _can_log_in(session: Session, username: str) -> None:
    make_annotator(session, username).is_simulated = False  # simulated annotators never log in
    session.flush()


def _waits(session: Session, username: str, client: str, at: datetime) -> int | None:
    """The Retry-After of a login tried now (None: not held up)."""
    try:
        check_login_throttle(session, username, client, throttle=THROTTLE, now=at)
    except RateLimitedError as exc:
        return exc.retry_after_s
    return None


def test_an_account_waits_twice_as_long_after_each_failure_past_the_free_ones(session: Session) -> None:
    name = unique("victim")
    _can_log_in(session, name)
    for n, client in enumerate(["10.0.0.1", "10.0.0.2", "10.0.0.3"]):  # any address counts for the account
        assert _waits(session, name, "192.0.2.1", _s(n)) is None
        _fail(session, name, client, _s(n))
    assert _waits(session, name, "192.0.2.1", _s(2.5)) == 1  # 3 failures: 1 s after the last (at 2 s)
    assert _waits(session, name, "192.0.2.1", _s(3)) is None
    _fail(session, name, "10.0.0.4", _s(3))
    assert _waits(session, name, "192.0.2.1", _s(4.5)) == 1 and _waits(session, name, "x", _s(5)) is None  # 2 s
    _fail(session, name, "10.0.0.4", _s(5))
    assert _waits(session, name.upper(), "192.0.2.1", _s(5.5)) == 4  # 4 s after 5 s; case does not matter
    for n in range(6, 12):
        _fail(session, name, f"10.0.1.{n}", _s(100 * n))  # far apart: each try after its wait
    assert _waits(session, name, "192.0.2.1", _s(1100)) == 60  # capped at max_delay_s
    # A wrong try during the wait is refused unchecked and not counted; a day later all is forgotten.
    with pytest.raises(RateLimitedError):
        authenticate(session, name, "test-password", "192.0.2.1", throttle=THROTTLE, now=_s(1101))
    assert authenticate(session, name, "test-password", "192.0.2.1", throttle=THROTTLE,
                        now=_s(1100) + timedelta(days=1, seconds=1)).username == name


def test_an_address_has_a_budget_across_usernames(session: Session) -> None:
    for n in range(THROTTLE.address_budget):
        _fail(session, unique("nobody"), "203.0.113.5", _s(n))
    # Until the failures age out: counted per minute, the minute's go together with its last (at 4 s).
    assert _waits(session, unique("someone"), "203.0.113.5", _s(60)) == 15 * 60 + 4 - 60
    assert _waits(session, unique("someone"), "203.0.113.6", _s(60)) is None  # another address
    assert _waits(session, unique("someone"), "203.0.113.5", _s(15 * 60 + 5)) is None


def test_a_known_device_skips_the_limits_for_its_own_user_only(session: Session) -> None:
    owner, other = unique("owner"), unique("other")
    _can_log_in(session, owner)
    _can_log_in(session, other)
    for n in range(THROTTLE.address_budget):  # both the accounts and the shared address are spent
        _fail(session, owner if n % 2 else other, "198.51.100.1", _s(n))
    codec = SessionCodec("k" * 40)
    device = codec.load_device(codec.dump_device(owner.upper()))
    assert device is not None and device.username == owner
    assert codec.load_device(codec.dump_device(owner)[:-2] + "xx") is None  # forged: no device
    user = authenticate(session, owner, "test-password", "198.51.100.1", throttle=THROTTLE, device=device, now=_s(10))
    assert user.username == owner
    with pytest.raises(RateLimitedError):  # the owner's cookie does not vouch for anyone else
        authenticate(session, other, "test-password", "198.51.100.1", throttle=THROTTLE, device=device, now=_s(10))
    # A cookie that keeps failing stops being trusted after the free failures.
    for n in range(THROTTLE.free_failures):
        _fail(session, owner, "198.51.100.1", _s(20 + n), device=device)
    with pytest.raises(RateLimitedError):
        authenticate(session, owner, "test-password", "198.51.100.1", throttle=THROTTLE, device=device, now=_s(30))


def test_the_throttle_docstring_example_runs() -> None:
    from annotation_app import security

    assert doctest.testmod(security).failed == 0
