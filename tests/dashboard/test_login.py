"""The dashboard is behind the annotation app's login, curators and admins only: a real browser
(Playwright driving Debian's Chromium) against the real app (uvicorn) and the real dashboard
(``curate dashboard``), both on the demo database, on two ports of one host."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from annotation_app.main import create_app
from annotation_app.settings import Settings
from curate_cli.demo import DEMO_PASSWORD
from dashboard.auth import DashboardLoginError, viewer_for
from tests.annotation_app._http import free_port, serve_in_thread
from tests.dashboard import page_checks
from tests.dashboard.conftest import REPO, Demo


@pytest.fixture(scope="module")
def app_url(demo: Demo) -> Iterator[str]:

    app = create_app(Settings(data_dir=demo.data_dir, database_url=demo.database_url))
    with serve_in_thread(app) as url:
        yield url


def session_cookie(app_url: str, username: str) -> str:
    with httpx.Client(base_url=app_url) as client:
        page = client.get("/login").text
        csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        response = client.post("/login", data={"username": username, "password": DEMO_PASSWORD, "csrf_token": csrf})
        assert response.status_code == 303, response.text
        return client.cookies["emotions_session"]


def test_the_app_decides_who_sees_the_dashboard(app_url: str) -> None:
    assert viewer_for(session_cookie(app_url, "curator"), url=app_url).role == "curator"
    assert viewer_for(session_cookie(app_url, "admin"), url=app_url).role == "admin"
    for cookie, reason in [(None, "login"), ("forged", "login"), (session_cookie(app_url, "annotator1"), "role"),
                           (session_cookie(app_url, "expert"), "role")]:
        with pytest.raises(DashboardLoginError) as refused:
            viewer_for(cookie, url=app_url)
        assert refused.value.reason == reason
    # Logging out in the app ends the dashboard too.
    cookie = session_cookie(app_url, "curator")
    with httpx.Client(base_url=app_url, cookies={"emotions_session": cookie}) as client:
        csrf = client.get("/login").text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    with pytest.raises(DashboardLoginError) as ended:
        viewer_for(cookie, url=app_url)
    assert ended.value.reason == "login"
    with pytest.raises(DashboardLoginError) as down:
        viewer_for(session_cookie(app_url, "curator"), url=f"http://127.0.0.1:{free_port()}")
    assert down.value.reason == "unreachable"


def test_without_a_session_the_entry_shows_no_page(dashboard_env: Demo) -> None:
    at = AppTest.from_file(str(page_checks.APP), default_timeout=60).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["eMotions curator dashboard"]
    assert "log in to the annotation app" in at.warning[0].value
    assert not at.metric and not at.dataframe  # no figure of anyone's


@pytest.fixture(scope="module")
def dashboard_url(demo: Demo, app_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "EMOTIONS_DATA_DIR": str(demo.data_dir), "EMOTIONS_DATABASE_URL": demo.database_url,
           "EMOTIONS_DASHBOARD_APP_URL": app_url}
    log_path = tmp_path_factory.mktemp("dash") / "dashboard.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "curate_cli.main", "dashboard", "--port", str(port)],
                                  env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.3)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=15)


@pytest.mark.browser
def test_a_browser_sees_the_dashboard_only_as_a_curator(browser, app_url: str, dashboard_url: str) -> None:  # type: ignore[no-untyped-def]
    # ``browser`` first: where chromium is missing the test is skipped before the dashboard starts.
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(dashboard_url)
        page.get_by_text("log in to the annotation app as a curator or admin first").wait_for(timeout=30_000)
        assert page.get_by_role("link", name="Log in to the annotation app").get_attribute("href") == f"{app_url}/login"

        def log_in(username: str) -> None:
            page.goto(f"{app_url}/login")
            page.fill('input[name="username"]', username)
            page.fill('input[name="password"]', DEMO_PASSWORD)
            page.click('button[type="submit"]')
            page.wait_for_url(f"{app_url}/")

        log_in("annotator1")
        page.goto(dashboard_url)
        page.get_by_text("the dashboard is for curators and admins; annotator1 is annotator").wait_for(timeout=30_000)
        page.goto(f"{app_url}/")
        page.click("form.logout button")
        log_in("curator")
        page.goto(dashboard_url)
        page.get_by_role("heading", name="Progress").wait_for(timeout=60_000)
        page.get_by_text("curator · curator").wait_for(timeout=10_000)
        # A curator's tool, not a developer's: no Streamlit "Deploy" button, no developer menu.
        assert page.get_by_role("button", name="Deploy").count() == 0
        assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
        page.get_by_role("link", name="Annotators").click()
        page.get_by_role("heading", name="Annotators").wait_for(timeout=60_000)
        # Logging out of the app ends the dashboard at its next run.
        page.goto(f"{app_url}/")
        page.click("form.logout button")
        page.goto(dashboard_url)
        page.get_by_text("log in to the annotation app").first.wait_for(timeout=30_000)
        assert page.get_by_role("heading", name="Progress").count() == 0
    finally:
        context.close()
