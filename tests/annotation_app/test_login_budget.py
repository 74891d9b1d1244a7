"""The login's CPU budget (``security.LoginBudget``) and failed logins counted per minute (#22).

A password check is an argon2 hash (~0.1-0.3 s of CPU). Guesses with a new username each time
were never throttled per account, and each cost a hash and an audit row: 8 anonymous clients had
raised ``/healthz``'s median latency from 66 ms to 1,648 ms. The budget refuses a check before the
database or argon2 is touched once the process (503) or the client address (429) is over it, and
failures are one row per key and minute with a count.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from annotation_app.errors import BusyError, RateLimitedError
from annotation_app.main import create_app
from annotation_app.models import LoginFailure
from annotation_app.security import LoginBudget
from annotation_app.settings import Settings
from tests.annotation_app._http import (  # noqa: F401
    PASSWORD,
    Env,
    env_fixture,
    free_port,
    page_csrf,
    stop_server,
    tiny_video,
    wait_until_healthy,
)

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _budget(clock: Clock, **kw: float) -> LoginBudget:
    args = {"per_s": 2.0, "burst": 4, "address_per_s": 1.0, "address_burst": 3, "at_once": 8}
    args.update(kw)
    return LoginBudget(**args, clock=clock)  # type: ignore[arg-type]


def _run(budget: LoginBudget, client: str, *, known: bool = False) -> str:
    try:
        with budget.password_check(client, known=known):
            return "ran"
    except BusyError as exc:
        return f"busy {exc.retry_after_s}"
    except RateLimitedError as exc:
        return f"address {exc.retry_after_s}"


def test_the_overall_budget_refills_at_its_rate_and_keeps_a_reserve_for_known_browsers() -> None:
    clock = Clock()
    budget = _budget(clock, burst=8)  # reserve: 8 // 4 = 2 tokens only a known browser may take
    runs = [_run(budget, f"10.0.0.{n}") for n in range(8)]
    assert runs == ["ran"] * 6 + ["busy 1"] * 2  # new addresses each time: only the overall budget holds
    assert _run(budget, "10.0.0.99", known=True) == "ran"  # a browser that logged in before still gets in
    assert _run(budget, "10.0.0.98", known=True) == "ran"
    assert _run(budget, "10.0.0.97", known=True) == "busy 1"  # the reserve is spent too
    clock.now += 1.5  # 2 a second: 3 tokens back, one more than the reserve
    assert [_run(budget, f"10.0.1.{n}") for n in range(2)] == ["ran", "busy 1"]


def test_an_address_has_its_own_budget_and_a_known_browser_skips_it() -> None:
    clock = Clock()
    budget = _budget(clock, per_s=100.0, burst=100)
    assert [_run(budget, "192.0.2.1") for _ in range(4)] == ["ran"] * 3 + ["address 1"]
    assert _run(budget, "192.0.2.2") == "ran"  # another address
    assert _run(budget, "192.0.2.1", known=True) == "ran"
    clock.now += 1.0
    assert [_run(budget, "192.0.2.1") for _ in range(2)] == ["ran", "address 1"]


def test_checks_at_once_are_bounded_and_a_refused_check_gives_its_tokens_back() -> None:
    clock = Clock()
    budget = _budget(clock, per_s=0.001, burst=8, at_once=1, address_burst=2)
    with budget.password_check("10.0.0.1", known=False):
        assert _run(budget, "10.0.0.2") == "busy 1"  # one check is running: the thread pool keeps a thread
        assert _run(budget, "10.0.0.3", known=True) == "ran"  # a known browser may run one more
    for _ in range(5):  # checks the throttle refused before hashing cost nothing
        with budget.password_check("10.0.0.4", known=False) as check:
            check.refund()
    assert _run(budget, "10.0.0.4") == "ran"
    assert _run(budget, "10.0.0.5") == "ran"


def test_addresses_remembered_are_bounded() -> None:
    clock = Clock()
    budget = _budget(clock, per_s=1000.0, burst=10**6)
    budget.ADDRESSES_MAX = 50
    for n in range(500):
        assert _run(budget, f"10.1.{n // 250}.{n % 250}") == "ran"
    assert len(budget._addresses) <= 50
    assert _run(budget, "10.1.1.249") == "ran"  # the newest are kept (2 of 3 left)


def test_the_default_budget_never_holds_up_people_logging_in() -> None:
    # People typing passwords are far below every default: a class of thirty behind one NAT logging
    # in within ten seconds, then twenty people elsewhere, then someone every half second.
    clock = Clock()
    budget = LoginBudget.from_settings(Settings(data_dir="/tmp/unused", database_url="sqlite:///x.db"), clock=clock)
    runs = []
    for n in range(30):
        runs.append(_run(budget, "192.0.2.10"))
        clock.now += 0.33
    for n in range(20):
        runs.append(_run(budget, f"198.51.100.{n}"))
        clock.now += 0.35
    for n in range(50):
        runs.append(_run(budget, f"203.0.113.{n}"))
        clock.now += 0.5
    assert runs == ["ran"] * 100
    assert budget.at_once == 1  # SQLite: 2 request threads, one always left for other requests


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=1)


def _guess(client: TestClient, username: str) -> httpx.Response:
    return client.post("/api/auth/token", json={"username": username, "password": "wrong-pass"})


def test_over_budget_is_refused_before_the_database_and_counted_per_minute(env: Env) -> None:
    # The DB throttle's address budget out of the way: what is left is the process's budget.
    settings = env.settings.model_copy(update={"login_address_budget": 10_000, "login_address_checks_burst": 6,
                                               "login_address_checks_per_s": 0.01})
    with TestClient(create_app(settings)) as client:
        replies = [_guess(client, f"random-{uuid.uuid4().hex[:12]}") for _ in range(20)]
        codes = [r.status_code for r in replies]
        assert codes == [401] * 6 + [429] * 14, codes
        assert "too many logins from your address" in replies[-1].json()["detail"]
        assert int(replies[-1].headers["Retry-After"]) >= 1
        # The page says the same inline, with Retry-After.
        csrf = page_csrf(client.get("/login"))
        page = client.post("/login", data={"username": "annotator1", "password": PASSWORD, "csrf_token": csrf})
        assert page.status_code == 429 and "too many logins from your address" in page.text
        assert int(page.headers["Retry-After"]) >= 1
    with env.session() as session:
        rows = session.execute(select(LoginFailure.kind, LoginFailure.failures)).all()
    # Only the 6 checks that ran were counted: one row per username, and the address's failures in
    # one row per minute (the 6 came within a minute or two), not one row per failure.
    assert sorted(kind for kind, _ in rows if kind == "account") == ["account"] * 6
    address_rows = [n for kind, n in rows if kind == "address"]
    assert sum(address_rows) == 6 and len(address_rows) <= 2


def test_the_process_budget_answers_503_with_retry_after(env: Env) -> None:
    settings = env.settings.model_copy(update={"login_checks_per_s": 0.01, "login_checks_burst": 1,
                                               "login_checks_at_once": 0})
    with TestClient(create_app(settings)) as client:
        first = _guess(client, "nobody-1")
        busy = _guess(client, "nobody-2")
        assert first.status_code == 401
        assert busy.status_code == 503, busy.text
        assert busy.json()["detail"].startswith("the server is busy checking other logins")
        assert int(busy.headers["Retry-After"]) >= 1


# -- a burst of random usernames against a real server ------------------------------------------------


def _median_healthz(base: str, samples: int, pause_s: float) -> float:
    latencies = []
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/healthz")  # the connection, before timing
        for _ in range(samples):
            start = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(pause_s)
    return statistics.median(latencies)


# The attacking clients run in a process of their own, so that their threads do not take the GIL
# from the measuring client: 8 connections, each guessing as fast as answers come, a new username
# and a new address (through the trusted proxy) each time, until the stop file appears.
ATTACKER = """
import json, sys, threading, uuid, pathlib, httpx
base, stop_file, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
codes, lock = {}, threading.Lock()
def attack(n):
    with httpx.Client(base_url=base, timeout=60) as client:
        i = 0
        while not stop_file.exists():
            i += 1
            reply = client.post("/api/auth/token", json={"username": f"u{n}-{uuid.uuid4().hex[:10]}", "password": "guess"},
                                headers={"X-Forwarded-For": f"10.{n}.{i // 250 % 250}.{i % 250}"})
            with lock:
                codes[reply.status_code] = codes.get(reply.status_code, 0) + 1
threads = [threading.Thread(target=attack, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
out.write_text(json.dumps(codes))
"""


@pytest.mark.slow
def test_a_burst_of_random_usernames_leaves_healthz_fast(tmp_path: Path) -> None:
    """8 anonymous clients guessing with a new username and a new address (through a trusted
    proxy) each time against ``curate serve`` with the default budgets: ``/healthz``'s median
    latency stays within a bound set by its own median measured just before, on the same machine.

    The bound, max(5 x baseline, baseline + 200 ms), is loose on purpose: 8 connections sending
    as fast as they are answered are load whatever they ask for, and on a 2-core machine with other
    work on it a median of a few ms moves by tens (hence the absolute 200 ms). Without the budget
    each guess holds a request thread (and, on SQLite, the write lock) for a whole argon2 check
    and healthz waits behind them: seconds here (the issue's run: 66 ms -> 1,648 ms).
    """
    data = tmp_path / "data"
    env = {**os.environ, "EMOTIONS_DATA_DIR": str(data), "EMOTIONS_SECRET_KEY": "b" * 48,
           "EMOTIONS_TRUSTED_PROXIES": "127.0.0.1"}
    for name in ("EMOTIONS_DATABASE_URL", "EMOTIONS_MEDIA_DIR"):
        env.pop(name, None)
    for name in [n for n in env if n.startswith("EMOTIONS_LOGIN_")]:
        env.pop(name)  # the defaults are what is tested
    subprocess.run([sys.executable, "-m", "curate_cli.main", "db", "upgrade"], env=env, cwd=REPO, check=True,
                   capture_output=True, timeout=120)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        server = subprocess.Popen([sys.executable, "-m", "curate_cli.main", "serve", "--port", str(port)],
                                  env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    codes: dict[int, int] = {}
    rounds: list[str] = []
    elapsed = 0.0
    try:
        wait_until_healthy(server, base, log)
        # Up to three rounds, passing on the first within the bound: a round can be disturbed by
        # other work on a shared machine, while a missing budget shows as seconds in every round.
        for n in range(3):
            baseline = _median_healthz(base, 30, 0.02)
            stop_file, counts = tmp_path / f"stop{n}", tmp_path / f"codes{n}.json"
            started = time.monotonic()
            attackers = subprocess.Popen([sys.executable, "-c", ATTACKER, base, str(stop_file), str(counts)],
                                         cwd=REPO)
            try:
                time.sleep(2.0)  # the initial burst spent: the steady state is what the bound is about
                under_burst = _median_healthz(base, 30, 0.02)
            finally:
                stop_file.touch()
                attackers.wait(timeout=120)
            elapsed += time.monotonic() - started
            for code, count in json.loads(counts.read_text()).items():
                codes[int(code)] = codes.get(int(code), 0) + count
            bound = max(5 * baseline, baseline + 0.2)
            rounds.append(f"baseline {baseline * 1000:.1f} ms, under the burst {under_burst * 1000:.1f} ms "
                          f"(bound {bound * 1000:.0f} ms)")
            if under_burst <= bound:
                break
    finally:
        stop_server(server)
    summary = f"{'; '.join(rounds)}; answers {codes}"
    print(summary)
    assert set(codes) <= {401, 429, 503}, summary
    defaults = Settings(data_dir=data)
    checks_run = codes.get(401, 0)
    # The budget, not luck: at most its burst plus its rate's worth of checks ran, and most guesses
    # were refused unchecked.
    assert checks_run <= defaults.login_checks_burst * len(rounds) + defaults.login_checks_per_s * elapsed + 1, summary
    assert codes.get(503, 0) > checks_run, summary
    assert under_burst <= bound, summary  # the last round's
    engine = create_engine(f"sqlite:///{data / 'emotions.sqlite3'}")
    try:
        with engine.connect() as conn:
            failures = conn.scalar(select(func.sum(LoginFailure.failures)).where(LoginFailure.kind == "account"))
            rows = conn.scalar(select(func.count(LoginFailure.id)))
    finally:
        engine.dispose()
    assert (failures or 0) == checks_run and rows <= 2 * checks_run, summary  # nothing written for a refused guess
