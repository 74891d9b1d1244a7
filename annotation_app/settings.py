"""One settings object for the whole toolkit, read from ``EMOTIONS_*`` environment variables and ``.env``."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from annotation_app.errors import SettingsError

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Where data lives and how to reach it.

    >>> s = Settings(data_dir="/tmp/emo")
    >>> s.database_url.startswith("sqlite:///") and s.media_dir == Path("/tmp/emo/media")
    True
    """

    model_config = SettingsConfigDict(env_prefix="EMOTIONS_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Root of the embedded deployment's files.")
    database_url: str = Field("", description="SQLAlchemy URL; default a SQLite file in data_dir.")
    dashboard_url: str | None = Field(
        None, description="Where curators' browsers reach the dashboard (curate dashboard), e.g. "
        "http://localhost:8501; the curator pages link to its matching page. None: no links.")
    media_dir: Path | None = Field(None, description="Normalised clips; default data_dir/media.")
    ffmpeg: str | None = Field(None, description="FFmpeg binary; else PATH, else imageio-ffmpeg's.")
    secret_key: str | None = Field(
        None, description="Signs session cookies; default a random key kept in data_dir/secret_key."
    )
    cookie_secure: bool = Field(False, description="Send the session cookie over HTTPS only.")
    sqlite_busy_timeout_ms: int = 30_000
    db_pool_pre_ping: bool = Field(
        True, description=(
            "PostgreSQL: test each pooled connection with an empty round trip as a request takes it, so "
            "a server restart costs no failed request (#22). Off only to measure what the test costs "
            "(bench/bench_annotation_http.py --pre-ping on,off)."
        ),
    )
    app_threads: int = Field(
        0, ge=0, le=64,
        description=(
            "Thread-pool size of each app worker process (sync handlers; the annotator queue has its "
            "own pool of this size). 0: 4 on PostgreSQL, 2 on SQLite."
        ),
    )
    # Failed logins (security.LoginThrottle). A browser that has logged in as the user before is
    # held up by none of these: an attacker can slow a colleague's login elsewhere, never block it.
    login_free_failures: int = Field(
        5, ge=1, description="Failed logins per account in a day before each further try waits (1 s, doubling).")
    login_max_delay_s: int = Field(900, ge=1, description="The longest such wait, seconds.")
    login_address_budget: int = Field(
        50, ge=1, description="Failed logins from one client address in 15 minutes, whatever the usernames.")
    # Password checks (security.LoginBudget): argon2 costs ~0.1-0.3 s of CPU a check, so these bound
    # what a flood of guesses can take from everyone else, before the database or argon2 is asked.
    # Per process (in its memory): N workers spend up to N times this, on N times the cores.
    login_checks_per_s: float = Field(
        4.0, gt=0, le=1000,
        description="Password checks one app process starts per second, all clients together (then 503).")
    login_checks_burst: int = Field(
        16, ge=1, le=10_000, description="Password checks that may start at once after a quiet spell.")
    login_checks_at_once: int = Field(
        0, ge=0, le=64, description=(
            "Password checks running at the same time in one process. 0: one less than app_threads "
            "(at least 1), so a thread is always left for other requests."))
    login_address_checks_per_s: float = Field(
        2.0, gt=0, le=1000, description="Password checks per second for one client address (then 429).")
    login_address_checks_burst: int = Field(
        30, ge=1, le=10_000,
        description="Password checks one client address may start in a row (a lab behind one NAT logging in).")
    trusted_proxies: str = Field(
        "", description=(
            "Comma-separated addresses or networks of the reverse proxies in front of the app, whose "
            "X-Forwarded-For gives the client's address (uvicorn's --forwarded-allow-ips). Empty: none; "
            "the connecting address is the client's."
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                # uvicorn would keep a typo as a literal that never matches: the proxy's header would
                # be ignored without a word, so say it here.
                raise ValueError(
                    f"trusted proxy {entry!r} is not an IP address or network (0.0.0.0/0 trusts every address)"
                ) from None
        return ",".join(entries)

    @property
    def trusted_proxy_list(self) -> list[str]:
        return self.trusted_proxies.split(",") if self.trusted_proxies else []

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.data_dir = Path(self.data_dir)
        if self.media_dir is None:
            self.media_dir = self.data_dir / "media"
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'emotions.sqlite3').resolve()}"
        if self.app_threads == 0:
            # A queue unit waits on PostgreSQL for about two thirds of its wall time, so a worker needs
            # a few threads to keep its share of the cores busy; SQLite takes one writer at a time,
            # and more threads only queue for its lock (bench/bench_annotation_http.py, paced 300/s
            # at 200 clients: PostgreSQL p99 36-103 ms with 2 threads, 15-23 ms with 3-4; SQLite
            # 22-125 ms with 2, 134-184 ms with 4).
            self.app_threads = 2 if self.is_sqlite else 4
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def session_secret(self) -> str:
        """The cookie-signing key: configured, or created once and kept beside the data."""
        if self.secret_key:
            return self.secret_key
        import secrets

        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment; a bad value is a ``SettingsError`` naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "EMOTIONS_" + "_".join(str(part) for part in error.get("loc", ())).upper()
            problems.append(f"{name}: {str(error.get('msg', 'invalid')).removeprefix('Value error, ')}")
        raise SettingsError("; ".join(problems)) from None
