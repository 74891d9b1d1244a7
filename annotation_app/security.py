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
- **Ending sessions**: cookies and tokens are not stored, so each carries the account's
  ``session_version`` at issue and every request compares it with the row it reads anyway.
  Log-out, a password change, deactivation, a role change and "sign out everywhere" add one to the
  version (``services.users.end_sessions``): every cookie and token of the account stops working at
  once, on every worker. Log-out therefore ends the account's sessions on every device.

Failed logins slow guessing without locking the owner out (:class:`LoginThrottle`):

- **per account**: after ``free_failures`` failures for a username in a day (any address), each
  further try waits 1 s after the last failure, doubling per failure up to ``max_delay_s``. A try
  during the wait is refused unchecked (a checked one would let the guessing go on at full speed);
- **per client address**: ``address_budget`` failures in 15 minutes, whatever the usernames, so
  rotating usernames from one address is slowed too;
- **a known browser is not held up**: a successful login leaves a signed device cookie
  (``emotions_device``, the username and a random nonce, kept through log-out). A login for that
  username carrying it skips both limits while the cookie itself has failed fewer than
  ``free_failures`` times in a day. So a colleague behind the same address, or anyone who knows
  the username, can slow the owner's login from a new browser but never block it where they
  logged in before. API clients that keep cookies get the same.

The client address is the connecting one unless the deployment names its reverse proxies
(``EMOTIONS_TRUSTED_PROXIES``, which ``curate serve`` hands to uvicorn as ``forwarded_allow_ips``);
without that, a forged ``X-Forwarded-For`` changes nothing. Failures are ``audit_log`` rows (action
``auth.login_failed``, one per account, address and device cookie), so every worker agrees.
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    "DEVICE_COOKIE",
    "DEVICE_MAX_AGE_S",
    "KnownDevice",
    "LoginThrottle",
    "csrf_matches",
    "check_login_throttle",
    "record_failed_login",
    "authenticate",
]

SESSION_COOKIE = "emotions_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_S = 7 * 24 * 3600
TOKEN_MAX_AGE_S = 12 * 3600
DEVICE_COOKIE = "emotions_device"
DEVICE_MAX_AGE_S = 180 * 24 * 3600
# A verified token is trusted this long before its signature is checked again (at most this many kept).
_VERIFIED_TOKEN_S = 60.0
_VERIFIED_TOKENS_MAX = 4096
_LOGIN_FAILED = "auth.login_failed"
# What a failed-login row counts against (its ``target_type``; the ``target_id`` is the value).
_ACCOUNT, _ADDRESS, _DEVICE = "login_account", "login_address", "login_device"
ACCOUNT_WINDOW = timedelta(days=1)
ADDRESS_WINDOW = timedelta(minutes=15)
_FIRST_DELAY_S = 1.0


@dataclass
class SessionData:
    """What the session cookie holds: who is logged in (None before login), the account's session
    version at login, the CSRF token and the chosen project."""

    user_id: int | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    project_id: int | None = None
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.user_id, "csrf": self.csrf, "pid": self.project_id, "sv": self.version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionData:
        uid, pid, csrf, sv = data.get("uid"), data.get("pid"), data.get("csrf"), data.get("sv", 0)
        if not isinstance(csrf, str) or len(csrf) < 16:
            raise ValueError("session without a CSRF token")
        return cls(
            user_id=uid if isinstance(uid, int) else None,
            csrf=csrf,
            project_id=pid if isinstance(pid, int) else None,
            # Cookies from before session versions read as 0, every account's first version.
            version=sv if isinstance(sv, int) else -1,
        )


@dataclass(frozen=True)
class KnownDevice:
    """A browser (or script) that has logged in as ``username`` before: its device cookie, verified."""

    username: str  # as :func:`account_key` writes it
    nonce: str


class SessionCodec:
    """Signs and verifies session cookies and API bearer tokens with one secret.

    >>> codec = SessionCodec("k" * 32)
    >>> codec.load_session(codec.dump_session(SessionData(user_id=7, csrf="c" * 20))).user_id
    7
    >>> codec.load_token(codec.issue_token(7, version=2))
    (7, 2)
    """

    def __init__(self, secret: str) -> None:
        self._session = URLSafeTimedSerializer(secret, salt="emotions.session")
        self._token = URLSafeTimedSerializer(secret, salt="emotions.api-token")
        self._device = URLSafeTimedSerializer(secret, salt="emotions.device")
        # Verified tokens: raw token -> (user id, session version, verified until). A script sends
        # the same token on every request, and checking its HMAC again cost more than a query; an
        # entry never outlives the token's own expiry. Whether the version is still the account's
        # is checked on every request against the user's row, so a cached entry revokes as fast.
        self._verified: dict[str, tuple[int, int, float]] = {}

    def dump_session(self, data: SessionData) -> str:
        return self._session.dumps(data.to_dict())

    def load_session(self, raw: str | None) -> SessionData | None:
        if not raw:
            return None
        try:
            return SessionData.from_dict(self._session.loads(raw, max_age=SESSION_MAX_AGE_S))
        except (BadSignature, SignatureExpired, ValueError, TypeError, AttributeError):
            return None

    def dump_device(self, username: str) -> str:
        """A device cookie for a browser that just logged in as ``username`` (a fresh nonce)."""
        return self._device.dumps({"u": account_key(username), "n": secrets.token_urlsafe(12)})

    def load_device(self, raw: str | None) -> KnownDevice | None:
        if not raw:
            return None
        try:
            data = self._device.loads(raw, max_age=DEVICE_MAX_AGE_S)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("n"), str):
            return None
        return KnownDevice(username=data["u"], nonce=data["n"][:32])

    def issue_token(self, user_id: int, *, version: int = 0) -> str:
        """A bearer token for ``user_id`` under the account's session ``version``."""
        return self._token.dumps({"uid": user_id, "sv": version})

    def load_token(self, raw: str) -> tuple[int, int] | None:
        """(user id, session version) of a valid, unexpired token; None otherwise."""
        now = time.time()
        hit = self._verified.get(raw)
        if hit is not None and hit[2] > now:
            return hit[0], hit[1]
        try:
            data, signed_at = self._token.loads(raw, max_age=TOKEN_MAX_AGE_S, return_timestamp=True)
        except (BadSignature, SignatureExpired):
            return None
        uid = data.get("uid") if isinstance(data, dict) else None
        version = data.get("sv", 0) if isinstance(data, dict) else None
        if not isinstance(uid, int) or not isinstance(version, int):
            return None
        if len(self._verified) >= _VERIFIED_TOKENS_MAX:
            self._verified.clear()
        self._verified[raw] = (uid, version, min(now + _VERIFIED_TOKEN_S, signed_at.timestamp() + TOKEN_MAX_AGE_S))
        return uid, version


def csrf_matches(expected: str, supplied: str | None) -> bool:
    return bool(supplied) and hmac.compare_digest(expected.encode(), str(supplied).encode())


def account_key(username: str) -> str:
    """The username as failed logins are counted: case and surrounding blanks do not make another account."""
    return username.strip().lower()[:64]


@dataclass(frozen=True)
class LoginThrottle:
    """How failed logins slow guessing (the module docstring has the rules; ``Settings.login_*``).

    >>> [LoginThrottle(free_failures=5, max_delay_s=60.0).delay_s(n) for n in (4, 5, 6, 7, 20)]
    [0.0, 1.0, 2.0, 4.0, 60.0]
    """

    free_failures: int = 5
    max_delay_s: float = 900.0
    address_budget: int = 50

    @classmethod
    def from_settings(cls, settings: Any) -> LoginThrottle:
        return cls(free_failures=settings.login_free_failures, max_delay_s=float(settings.login_max_delay_s),
                   address_budget=settings.login_address_budget)

    def delay_s(self, failures: int) -> float:
        """The wait after the last failure once an account has ``failures`` of them in a day."""
        if failures < self.free_failures:
            return 0.0
        doublings = min(failures - self.free_failures, 40)  # 2**40 s is past any cap
        return min(_FIRST_DELAY_S * 2.0**doublings, self.max_delay_s)


def _aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone=True columns; everything stored is UTC.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _failures(target_type: str, target_id: str, since: datetime) -> Any:
    return (AuditEntry.action == _LOGIN_FAILED, AuditEntry.target_type == target_type,
            AuditEntry.target_id == target_id[:64], AuditEntry.created_at > since)


def _device_failures(session: Session, device: KnownDevice, now: datetime) -> int:
    return int(session.scalar(
        select(func.count(AuditEntry.id)).where(*_failures(_DEVICE, device.nonce, now - ACCOUNT_WINDOW))
    ) or 0)


def _wait_message(seconds: float) -> str:
    return f"{math.ceil(seconds)} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"


def check_login_throttle(
    session: Session, username: str, client: str, *, throttle: LoginThrottle, now: datetime | None = None
) -> None:
    """Raise ``RateLimitedError`` when a login for ``username`` from ``client`` must wait (an unknown
    browser's: :func:`authenticate` does not ask for a known one)."""
    now = now or utcnow()
    # The address: its budget-th most recent failure still inside the window means it is spent.
    spent_at = session.scalar(
        select(AuditEntry.created_at).where(*_failures(_ADDRESS, client, now - ADDRESS_WINDOW))
        .order_by(AuditEntry.created_at.desc()).offset(throttle.address_budget - 1).limit(1)
    )
    if spent_at is not None:
        wait = (_aware(spent_at) + ADDRESS_WINDOW - now).total_seconds()
        raise RateLimitedError(
            f"too many failed logins from your address: try again in {_wait_message(wait)}, or from a "
            "browser you have logged in with before", retry_after_s=max(math.ceil(wait), 1))
    # The account: exponential delay after its free failures of the day.
    count, last = session.execute(
        select(func.count(AuditEntry.id), func.max(AuditEntry.created_at))
        .where(*_failures(_ACCOUNT, account_key(username), now - ACCOUNT_WINDOW))
    ).one()
    if last is None:
        return
    wait = (_aware(last) + timedelta(seconds=throttle.delay_s(int(count))) - now).total_seconds()
    if wait > 0:
        raise RateLimitedError(
            f"too many failed logins for this account: try again in {_wait_message(wait)}, or from a "
            "browser you have logged in with before", retry_after_s=max(math.ceil(wait), 1))


def record_failed_login(
    session: Session, username: str, client: str, *, device: KnownDevice | None = None, now: datetime | None = None
) -> None:
    """Count a failure against the account, the address and (when one came) the device cookie."""
    now = now or utcnow()
    details = {"username": username[:64], "client": client[:64]}
    targets = [(_ACCOUNT, account_key(username)), (_ADDRESS, client)]
    if device is not None:
        targets.append((_DEVICE, device.nonce))
    for target_type, target_id in targets:
        audit.record(session, _LOGIN_FAILED, target_type=target_type, target_id=target_id[:64],
                     details=details, created_at=now)


_DUMMY_HASH: str | None = None


def authenticate(
    session: Session,
    username: str,
    password: str,
    client: str,
    *,
    throttle: LoginThrottle,
    device: KnownDevice | None = None,
    now: datetime | None = None,
) -> User:
    """The active, non-simulated user with these credentials; failures are counted for the throttle.

    ``device``: the request's verified device cookie, if any. It spares the login both limits when
    it names this username and has failed fewer than ``throttle.free_failures`` times in a day.
    Raises ``RateLimitedError`` (wait first) or ``AuthenticationError``. A failure is committed at
    once so that the count survives the error response.
    """
    global _DUMMY_HASH
    now = now or utcnow()
    device = device if device is not None and device.username == account_key(username) else None
    known = device is not None and _device_failures(session, device, now) < throttle.free_failures
    if not known:
        check_login_throttle(session, username, client, throttle=throttle, now=now)
    user = session.scalar(select(User).where(User.username == username)) if username else None
    if user is None:
        # Spend the same hashing time as for a real account, so timing does not reveal usernames.
        _DUMMY_HASH = _DUMMY_HASH or hash_password(secrets.token_urlsafe(16))
        verify_password(_DUMMY_HASH, password)
    elif verify_password(user.password_hash, password) and user.is_active and not user.is_simulated:
        return user
    record_failed_login(session, username, client, device=device, now=now)
    session.commit()
    raise AuthenticationError("wrong username or password")
