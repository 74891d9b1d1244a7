"""``curate serve`` believes X-Forwarded-For only from the proxies the deployment names.

A real ``curate serve`` process on a SQLite file, real HTTP from 127.0.0.1: the login throttle's
address budget shows which address each failed login was counted against.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from annotation_app.models import LoginFailure
from tests.annotation_app._http import free_port, stop_server, wait_until_healthy

REPO = Path(__file__).resolve().parents[2]
BUDGET = 3  # failed logins per address in 15 minutes, for these servers


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("serve") / "data"
    env = {**os.environ, "EMOTIONS_DATA_DIR": str(data), "EMOTIONS_SECRET_KEY": "p" * 48,
           "EMOTIONS_LOGIN_ADDRESS_BUDGET": str(BUDGET)}
    for name in ("EMOTIONS_DATABASE_URL", "EMOTIONS_MEDIA_DIR", "EMOTIONS_TRUSTED_PROXIES"):
        env.pop(name, None)
    subprocess.run([sys.executable, "-m", "curate_cli.main", "db", "upgrade"], env=env, cwd=REPO, check=True,
                   capture_output=True, timeout=120)
    return env


@contextmanager
def _serve(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("ab") as out:
        server = subprocess.Popen([sys.executable, "-m", "curate_cli.main", "serve", "--port", str(port)],
                                  env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(server, base, log)
        yield base
    finally:
        stop_server(server)


def _guess(base: str, n: int, forwarded_for: str) -> int:
    """A wrong password for a username used once, claiming to come from ``forwarded_for``."""
    reply = httpx.post(f"{base}/api/auth/token", json={"username": f"guess-{forwarded_for}-{n}", "password": "nope"},
                       headers={"X-Forwarded-For": forwarded_for}, timeout=30)
    return reply.status_code


def _counted_addresses(env: dict[str, str]) -> dict[str, int]:
    """Failed logins counted per client address."""
    engine = create_engine(f"sqlite:///{Path(env['EMOTIONS_DATA_DIR']) / 'emotions.sqlite3'}")
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(LoginFailure.key, func.sum(LoginFailure.failures))
                                     .where(LoginFailure.kind == "address").group_by(LoginFailure.key)).all())
    finally:
        engine.dispose()


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(deployment: dict[str, str], tmp_path: Path) -> None:
    # No proxy named: a new X-Forwarded-For on every try from loopback is still one address.
    with _serve(deployment, tmp_path / "untrusted.log") as base:
        codes = [_guess(base, n, f"203.0.113.{n}") for n in range(BUDGET + 1)]
    assert codes == [401] * BUDGET + [429]
    assert _counted_addresses(deployment) == {"127.0.0.1": BUDGET}

    # Loopback named as the proxy: each forwarded address is a client with its own budget (127.0.0.1's,
    # spent above, is no longer what these requests count against).
    trusted = {**deployment, "EMOTIONS_TRUSTED_PROXIES": "127.0.0.1"}
    with _serve(trusted, tmp_path / "trusted.log") as base:
        spread = [_guess(base, n, f"198.51.100.{n}") for n in range(BUDGET + 1)]
        one_client = [_guess(base, n, "192.0.2.77") for n in range(BUDGET + 1)]
    assert spread == [401] * (BUDGET + 1)
    assert one_client == [401] * BUDGET + [429]
    assert _counted_addresses(deployment) == {"127.0.0.1": BUDGET, "192.0.2.77": BUDGET,
                                              **{f"198.51.100.{n}": 1 for n in range(BUDGET + 1)}}


def test_a_malformed_proxy_address_stops_serve_with_one_line(deployment: dict[str, str]) -> None:
    env = {**deployment, "EMOTIONS_TRUSTED_PROXIES": "10.0.0.1, proxy.local"}
    result = subprocess.run([sys.executable, "-m", "curate_cli.main", "serve", "--port", str(free_port())],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "'proxy.local' is not an IP address or network" in result.stderr
