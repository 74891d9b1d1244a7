"""Sessions, CSRF, API tokens and the login rate limit.

How a request is authenticated:

- **Browser**: a signed session cookie (``emotions_session``; itsdangerous, keyed by
  ``Settings.session_secret()``), HttpOnly, SameSite=Lax, Secure when ``cookie_secure``. The cookie
  carries the user id and a per-session CSRF token. Every state-changing request authenticated by the
  cookie must echo that token: a ``csrf_token`` form field, or the ``X-CSRF-Token`` header for the
  page's JSON calls.
- **API clients**: ``POST /api/auth/token`` (username + password) returns a bearer token signed with
  the same key (valid 12 h). ``Authorization: Bearer <token>`` needs no CSRF token: a browser never
  attaches it on its own, so a cross-site page cannot forge it.

Failed logins are rate-limited per username and client address. The count lives in the database
(``audit_log`` rows with action ``auth.login_failed``), so the limit holds across app workers.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation_app.errors import AuthenticationError, RateLimitedError
from annotation_app.models import AuditEntry, User, utcnow
from annotation_app.services import audit
from annotation_app.services.users import hash_password, verify_password

__all__ = [
    "SESSION_COOKIE",
    "CSRF_HEADER",
    "CSRF_FIELD",
    "SESSION_MAX_AGE_S",
    "TOKEN_MAX_AGE_S",
    "SessionData",
    "SessionCodec",
    "csrf_matches",
    "check_login_rate",
    "record_failed_login",
    "authenticate",
]

SESSION_COOKIE = "emotions_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_S = 7 * 24 * 3600
TOKEN_MAX_AGE_S = 12 * 3600
# A verified token is trusted this long before its signature is checked again (at most this many kept).
_VERIFIED_TOKEN_S = 60.0
_VERIFIED_TOKENS_MAX = 4096
_LOGIN_FAILED = "auth.login_failed"


@dataclass
class SessionData:
    """What the session cookie holds: who is logged in (None before login) and the CSRF token."""

    user_id: int | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    project_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.user_id, "csrf": self.csrf, "pid": self.project_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionData:
        uid, pid, csrf = data.get("uid"), data.get("pid"), data.get("csrf")
        if not isinstance(csrf, str) or len(csrf) < 16:
            raise ValueError("session without a CSRF token")
        return cls(
            user_id=uid if isinstance(uid, int) else None,
            csrf=csrf,
            project_id=pid if isinstance(pid, int) else None,
        )


class SessionCodec:
    """Signs and verifies session cookies and API bearer tokens with one secret.

    >>> codec = SessionCodec("k" * 32)
    >>> codec.load_session(codec.dump_session(SessionData(user_id=7, csrf="c" * 20))).user_id
    7
    >>> codec.load_token(codec.issue_token(7))
    7
    """

    def __init__(self, secret: str) -> None:
        self._session = URLSafeTimedSerializer(secret, salt="emotions.session")
        self._token = URLSafeTimedSerializer(secret, salt="emotions.api-token")
        # Verified tokens: raw token -> (user id, verified until). A script sends the same token on
        # every request, and checking its HMAC again cost more than a query; an entry never
        # outlives the token's own expiry.
        self._verified: dict[str, tuple[int, float]] = {}

    def dump_session(self, data: SessionData) -> str:
        return self._session.dumps(data.to_dict())

    def load_session(self, raw: str | None) -> SessionData | None:
        if not raw:
            return None
        try:
            return SessionData.from_dict(self._session.loads(raw, max_age=SESSION_MAX_AGE_S))
        except (BadSignature, SignatureExpired, ValueError, TypeError, AttributeError):
            return None

    def issue_token(self, user_id: int) -> str:
        return self._token.dumps({"uid": user_id})

    def load_token(self, raw: str) -> int | None:
        now = time.time()
        hit = self._verified.get(raw)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            data, signed_at = self._token.loads(raw, max_age=TOKEN_MAX_AGE_S, return_timestamp=True)
        except (BadSignature, SignatureExpired):
            return None
        uid = data.get("uid") if isinstance(data, dict) else None
        if not isinstance(uid, int):
            return None
        if len(self._verified) >= _VERIFIED_TOKENS_MAX:
            self._verified.clear()
        self._verified[raw] = (uid, min(now + _VERIFIED_TOKEN_S, signed_at.timestamp() + TOKEN_MAX_AGE_S))
        return uid


def csrf_matches(expected: str, supplied: str | None) -> bool:
    return bool(supplied) and hmac.compare_digest(expected.encode(), str(supplied).encode())


def _login_key(username: str, client: str) -> str:
    return f"{username.strip().lower()[:40]}|{client}"[:64]


def check_login_rate(session: Session, username: str, client: str, *, per_minute: int) -> None:
    """Raise ``RateLimitedError`` when this username+address failed ``per_minute`` times in the last minute."""
    since = utcnow() - timedelta(minutes=1)
    failures = session.scalar(
        select(func.count(AuditEntry.id)).where(
            AuditEntry.action == _LOGIN_FAILED,
            AuditEntry.target_id == _login_key(username, client),
            AuditEntry.created_at >= since,
        )
    )
    if failures and failures >= per_minute:
        raise RateLimitedError("too many failed logins: wait a minute before trying again")


def record_failed_login(session: Session, username: str, client: str) -> None:
    audit.record(session, _LOGIN_FAILED, target_type="login", target_id=_login_key(username, client),
                 details={"username": username[:64], "client": client})


_DUMMY_HASH: str | None = None


def authenticate(session: Session, username: str, password: str, client: str, *, per_minute: int) -> User:
    """The active, non-simulated user with these credentials; failures are counted for the rate limit.

    Raises ``RateLimitedError`` (too many recent failures) or ``AuthenticationError``. A failure is
    committed at once so that the count survives the error response.
    """
    global _DUMMY_HASH
    check_login_rate(session, username, client, per_minute=per_minute)
    user = session.scalar(select(User).where(User.username == username)) if username else None
    if user is None:
        # Spend the same hashing time as for a real account, so timing does not reveal usernames.
        _DUMMY_HASH = _DUMMY_HASH or hash_password(secrets.token_urlsafe(16))
        verify_password(_DUMMY_HASH, password)
    elif verify_password(user.password_hash, password) and user.is_active and not user.is_simulated:
        return user
    record_failed_login(session, username, client)
    session.commit()
    raise AuthenticationError("wrong username or password")
