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
without that, a forged ``X-Forwarded-For`` changes nothing. Failures are counted in the database
(``login_failures``: one row per account, address or device cookie and minute, with a count), so
every worker agrees and a flood of guesses updates a few rows instead of writing one per guess.

Password checks are bounded before any of that (:class:`LoginBudget`): an argon2 check costs about
0.1-0.3 s of CPU, so a flood of guesses, each with a new username from many addresses, would take
the process's cores from everyone else. Each process starts at most ``login_checks_per_s`` checks a
second overall, ``login_address_checks_per_s`` per client address, and ``login_checks_at_once`` at
a time; past that a login is refused before the database or argon2 is touched (429 for one
address, 503 for the whole process, both with ``Retry-After``). These budgets are in the memory of
the process: they protect the CPU of that process, which is what they are for, and every request
thread of it shares them; N worker processes spend up to N times the budget on N times the cores.
A known browser skips the per-address budget and may use the last tokens an unknown one may not.
"""

from __future__ import annotations

import hmac
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from annotation_app.errors import AuthenticationError, BusyError, RateLimitedError
from annotation_app.models import LoginFailure, User, utcnow
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
    "LoginBudget",
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
# What a ``login_failures`` row counts against (its ``kind``; the ``key`` is the value).
_ACCOUNT, _ADDRESS, _DEVICE = "account", "address", "device"
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


def _recent(kind: str, key: str, since: datetime) -> Any:
    """A key's rows with a failure after ``since``. A row counts whole while its last failure is in
    the window, so a minute's failures age out together (at most a minute late: the safe side)."""
    return (LoginFailure.kind == kind, LoginFailure.key == key[:64],
            LoginFailure.minute > since - timedelta(minutes=1), LoginFailure.last_failed_at > since)


def _device_failures(session: Session, device: KnownDevice, now: datetime) -> int:
    return int(session.scalar(
        select(func.sum(LoginFailure.failures)).where(*_recent(_DEVICE, device.nonce, now - ACCOUNT_WINDOW))
    ) or 0)


def _wait_message(seconds: float) -> str:
    return f"{math.ceil(seconds)} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"


def check_login_throttle(
    session: Session, username: str, client: str, *, throttle: LoginThrottle, now: datetime | None = None
) -> None:
    """Raise ``RateLimitedError`` when a login for ``username`` from ``client`` must wait (an unknown
    browser's: :func:`authenticate` does not ask for a known one)."""
    now = now or utcnow()
    # The address: spent once its budget-th most recent failure is still inside the window (newest
    # minutes first; at most 16 rows); the wait ends when that failure's minute ages out.
    seen = 0
    for failures, last in session.execute(
        select(LoginFailure.failures, LoginFailure.last_failed_at)
        .where(*_recent(_ADDRESS, client, now - ADDRESS_WINDOW)).order_by(LoginFailure.minute.desc())
    ):
        seen += failures
        if seen >= throttle.address_budget:
            wait = (_aware(last) + ADDRESS_WINDOW - now).total_seconds()
            raise RateLimitedError(
                f"too many failed logins from your address: try again in {_wait_message(wait)}, or from a "
                "browser you have logged in with before", retry_after_s=max(math.ceil(wait), 1))
    # The account: exponential delay after its free failures of the day.
    count, last = session.execute(
        select(func.sum(LoginFailure.failures), func.max(LoginFailure.last_failed_at))
        .where(*_recent(_ACCOUNT, account_key(username), now - ACCOUNT_WINDOW))
    ).one()
    if last is None:
        return
    wait = (_aware(last) + timedelta(seconds=throttle.delay_s(int(count))) - now).total_seconds()
    if wait > 0:
        raise RateLimitedError(
            f"too many failed logins for this account: try again in {_wait_message(wait)}, or from a "
            "browser you have logged in with before", retry_after_s=max(math.ceil(wait), 1))


def _count_failure(session: Session, kind: str, key: str, username: str, now: datetime) -> None:
    """One more failure in the key's row for this minute: an insert, or an update of the row that is
    there (one statement, so concurrent failures on several workers all count)."""
    table = LoginFailure.__table__
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(kind=kind, key=key[:64], minute=now.replace(second=0, microsecond=0),
                                     failures=1, last_failed_at=now, last_username=username[:64])
    later = statement.excluded.last_failed_at > table.c.last_failed_at
    session.execute(statement.on_conflict_do_update(
        index_elements=[table.c.kind, table.c.key, table.c.minute],
        set_={"failures": table.c.failures + 1,
              "last_failed_at": case((later, statement.excluded.last_failed_at), else_=table.c.last_failed_at),
              "last_username": statement.excluded.last_username},
    ))


def record_failed_login(
    session: Session, username: str, client: str, *, device: KnownDevice | None = None, now: datetime | None = None
) -> None:
    """Count a failure against the account, the address and (when one came) the device cookie."""
    now = now or utcnow()
    targets = [(_ACCOUNT, account_key(username)), (_ADDRESS, client)]
    if device is not None:
        targets.append((_DEVICE, device.nonce))
    for kind, key in targets:
        _count_failure(session, kind, key, username, now)


class LoginBudget:
    """How many password checks one process starts: a second overall and per client address, and
    at once (the module docstring says why). Token buckets in memory, shared by the process's
    threads under one lock: taking a token is a few arithmetic operations, nothing is asked of
    the database.

    >>> clock = [0.0]
    >>> budget = LoginBudget(per_s=1, burst=1, address_per_s=1, address_burst=5, at_once=4, clock=lambda: clock[0])
    >>> with budget.password_check("10.0.0.1", known=False): pass
    >>> with budget.password_check("10.0.0.2", known=False): pass
    Traceback (most recent call last):
    ...
    annotation_app.errors.BusyError: the server is busy checking other logins: try again in 1 s
    """

    # Addresses remembered at most; past that, the ones whose bucket has refilled are forgotten.
    ADDRESSES_MAX = 10_000

    def __init__(self, *, per_s: float, burst: int, address_per_s: float, address_burst: int, at_once: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s, self.burst = float(per_s), float(burst)
        self.address_per_s, self.address_burst = float(address_per_s), float(address_burst)
        self.at_once = at_once
        # An unknown browser leaves this many tokens of the overall budget to known ones, so that
        # a flood from new addresses does not keep the people who logged in before out.
        self.reserve = float(burst // 4)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens, self._at = self.burst, clock()
        self._addresses: dict[str, tuple[float, float]] = {}
        self._running = 0
        # The hashes themselves run on threads of their own at a lower CPU priority (argon2's lane
        # threads inherit it), so that while one runs the request threads and the event loop come
        # first: a hash waits a little longer, everything else does not wait for it.
        self._hashers = ThreadPoolExecutor(at_once + 1, thread_name_prefix="password",
                                           initializer=_lower_priority)

    @classmethod
    def from_settings(cls, settings: Any, *, clock: Callable[[], float] = time.monotonic) -> LoginBudget:
        return cls(per_s=settings.login_checks_per_s, burst=settings.login_checks_burst,
                   address_per_s=settings.login_address_checks_per_s,
                   address_burst=settings.login_address_checks_burst,
                   at_once=settings.login_checks_at_once or max(1, settings.app_threads - 1), clock=clock)

    def _address_tokens(self, client: str, now: float) -> float:
        tokens, at = self._addresses.get(client, (self.address_burst, now))
        return min(self.address_burst, tokens + (now - at) * self.address_per_s)

    def _take(self, client: str, known: bool) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_s)
            self._at = now
            address = None if known else self._address_tokens(client, now)
            if address is not None and address < 1:
                wait = (1 - address) / self.address_per_s
                raise RateLimitedError(f"too many logins from your address at once: try again in "
                                       f"{_wait_message(wait)}", retry_after_s=max(math.ceil(wait), 1))
            needed = 1 if known else 1 + self.reserve
            if self._tokens < needed:
                wait = (needed - self._tokens) / self.per_s
                raise BusyError(f"the server is busy checking other logins: try again in {_wait_message(wait)}",
                                retry_after_s=max(math.ceil(wait), 1))
            if self._running >= self.at_once + (1 if known else 0):
                raise BusyError("the server is busy checking other logins: try again in 1 s", retry_after_s=1)
            self._tokens -= 1
            self._running += 1
            if address is not None:
                if client not in self._addresses and len(self._addresses) >= self.ADDRESSES_MAX:
                    self._forget_full(now)
                self._addresses[client] = (address - 1, now)

    def _forget_full(self, now: float) -> None:
        full = [c for c in self._addresses if self._address_tokens(c, now) >= self.address_burst]
        for client in full or list(self._addresses):  # none refilled: start over (the overall budget holds)
            del self._addresses[client]

    def _release(self, client: str, known: bool, refund: bool) -> None:
        with self._lock:
            self._running -= 1
            if refund:  # the check did not run: its tokens go back
                self._tokens = min(self.burst, self._tokens + 1)
                if not known and client in self._addresses:
                    tokens, at = self._addresses[client]
                    self._addresses[client] = (min(self.address_burst, tokens + 1), at)

    def verify(self, password_hash: str, password: str) -> bool:
        """``verify_password`` on the low-priority hashing threads (the caller waits for it)."""
        return self._hashers.submit(verify_password, password_hash, password).result()

    @contextmanager
    def password_check(self, client: str, *, known: bool) -> Iterator[_Check]:
        """Hold a place for one password check, or raise ``RateLimitedError`` (this address is over its
        budget) / ``BusyError`` (the process is). ``check.refund()`` when no hash was computed after all."""
        self._take(client, known)
        check = _Check()
        try:
            yield check
        finally:
            self._release(client, known, check.refunded)


def _lower_priority() -> None:
    # Linux: the nice value is per thread and PRIO_PROCESS with a thread id sets this thread's.
    # Elsewhere (or where refused) the hashes run at the normal priority; the budget still holds.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


class _Check:
    refunded = False

    def refund(self) -> None:
        self.refunded = True


_DUMMY_HASH: str | None = None


def authenticate(
    session: Session,
    username: str,
    password: str,
    client: str,
    *,
    throttle: LoginThrottle,
    budget: LoginBudget | None = None,
    device: KnownDevice | None = None,
    now: datetime | None = None,
) -> User:
    """The active, non-simulated user with these credentials; failures are counted for the throttle.

    ``device``: the request's verified device cookie, if any. It spares the login both limits when
    it names this username and has failed fewer than ``throttle.free_failures`` times in a day.
    ``budget``: the process's :class:`LoginBudget`, checked first, before the database (None: no
    budget, as for a script on its own session). Raises ``BusyError`` or ``RateLimitedError``
    (wait first) or ``AuthenticationError``. A failure is committed at once so that the count
    survives the error response.
    """
    device = device if device is not None and device.username == account_key(username) else None
    if budget is None:
        return _authenticate(session, username, password, client, throttle=throttle, device=device, now=now,
                             verify=verify_password)
    with budget.password_check(client, known=device is not None) as check:
        try:
            return _authenticate(session, username, password, client, throttle=throttle, device=device, now=now,
                                 verify=budget.verify)
        except RateLimitedError:
            check.refund()  # the throttle refused it before any hashing
            raise


def _authenticate(session: Session, username: str, password: str, client: str, *, throttle: LoginThrottle,
                  device: KnownDevice | None, now: datetime | None, verify: Callable[[str, str], bool]) -> User:
    global _DUMMY_HASH
    now = now or utcnow()
    known = device is not None and _device_failures(session, device, now) < throttle.free_failures
    if not known:
        check_login_throttle(session, username, client, throttle=throttle, now=now)
    user = session.scalar(select(User).where(User.username == username)) if username else None
    # End the reading transaction before hashing (the session keeps what it loaded): on SQLite a
    # transaction holds the write lock (BEGIN IMMEDIATE) and every other request, /healthz included,
    # would wait out each hash; on PostgreSQL it would sit idle in a transaction meanwhile.
    session.commit()
    if user is None:
        # Spend the same hashing time as for a real account, so timing does not reveal usernames.
        _DUMMY_HASH = _DUMMY_HASH or hash_password(secrets.token_urlsafe(16))
        verify(_DUMMY_HASH, password)
    elif verify(user.password_hash, password) and user.is_active and not user.is_simulated:
        return user
    record_failed_login(session, username, client, device=device, now=now)
    session.commit()
    raise AuthenticationError("wrong username or password")
