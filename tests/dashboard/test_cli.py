"""``curate dashboard``: the command line it runs, its refusal on a missing database, a real start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from annotation_app.settings import get_settings
from curate_cli.cmd_dashboard import DASHBOARD_APP, dashboard_command
from curate_cli.main import run
from tests.annotation_app._http import free_port
from tests.dashboard.conftest import REPO, Demo


def test_dashboard_command_passes_settings_by_environment(tmp_path: Path) -> None:
    command, env = dashboard_command(host="0.0.0.0", port=8600, database_url="sqlite:////x/db.sqlite3",
                                     project="demo", exports=tmp_path / "exp", runs=None, n_boot=20)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP)]
    assert DASHBOARD_APP.is_file()
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert flags == {"--server.headless": "true", "--server.address": "0.0.0.0", "--server.port": "8600",
                     "--browser.gatherUsageStats": "false", "--client.toolbarMode": "viewer"}
    assert env["EMOTIONS_DATABASE_URL"] == "sqlite:////x/db.sqlite3"
    assert env["EMOTIONS_DASHBOARD_PROJECT"] == "demo" and env["EMOTIONS_DASHBOARD_N_BOOT"] == "20"
    assert env["EMOTIONS_DASHBOARD_EXPORTS"] == str((tmp_path / "exp").resolve())
    assert env.get("EMOTIONS_DASHBOARD_RUNS") == os.environ.get("EMOTIONS_DASHBOARD_RUNS")  # not given: unchanged


def test_dashboard_refuses_a_database_that_is_not_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EMOTIONS_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.delenv("EMOTIONS_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        code = run(["dashboard", "--port", "1"])
    finally:
        get_settings.cache_clear()
    assert code == 9
    assert "cannot open the database" in capsys.readouterr().err


def test_dashboard_serves_the_pages(demo: Demo, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "EMOTIONS_DATA_DIR": str(demo.data_dir)}
    env.pop("EMOTIONS_DATABASE_URL", None)
    log = (tmp_path / "dashboard.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "curate_cli.main", "dashboard", "--port", str(port)],
                              env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "dashboard.log").read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "dashboard.log").read_text()
            time.sleep(0.3)
        assert health.text == "ok"
        assert "<title>" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()
