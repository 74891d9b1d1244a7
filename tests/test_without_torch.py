"""Without the ``model`` extra: the app, the curation engine, the dashboard and the CLI run; the
baseline's commands say how to install it.

``pip install .`` without extras must not bring torch (its CUDA libraries are most of 7 GB), and
nothing but ``model`` may need it. Installing a fresh environment takes minutes, so the check runs in
a subprocess of this environment where an import hook makes ``torch`` and ``torchvision``
unimportable, as they are in such an install (torch is installed here: the model's tests need it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_BLOCKER = '''
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    """As if the model extra were not installed: torch and torchvision cannot be imported."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
'''


def _run_without_torch(code: str, tmp_path: Path) -> dict:
    script = _BLOCKER + textwrap.dedent(code)
    env_code = f"import os; os.environ['EMOTIONS_DATA_DIR'] = {str(tmp_path)!r}\n"
    done = subprocess.run([sys.executable, "-c", env_code + script], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_base_dependencies_leave_torch_to_the_model_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()
             for dep in project["dependencies"]}
    assert not names & {"torch", "torchvision", "torchaudio"}
    extra = {dep.split(">")[0].split("<")[0].strip().lower() for dep in project["optional-dependencies"]["model"]}
    assert {"torch", "torchvision"} <= extra
    # ./dev installs everything, so `./dev up` and `./dev test` need no third command.
    assert '".[model${extras:+,$extras}]"' in (REPO / "dev").read_text()


def test_app_curation_dashboard_and_cli_run_without_torch(tmp_path: Path) -> None:
    result = _run_without_torch('''
        import importlib, io, json, pkgutil, contextlib
        import annotation_app, curation, dashboard, curate_cli
        imported = []
        for package in (annotation_app, curation, dashboard, curate_cli):
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                # The dashboard's page scripts draw when imported: AppTest runs them below.
                if info.name == "dashboard.app" or info.name.startswith("dashboard.pages."):
                    continue
                importlib.import_module(info.name)
                imported.append(info.name)

        from fastapi.testclient import TestClient
        from annotation_app import migrations
        from annotation_app.main import create_app
        from annotation_app.settings import get_settings
        settings = get_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrations.upgrade(settings.database_url)
        with TestClient(create_app(settings)) as client:
            app_status = [client.get("/healthz").status_code, client.get("/login").status_code,
                          client.get("/docs").status_code]

        from streamlit.testing.v1 import AppTest
        page = AppTest.from_file("dashboard/app.py", default_timeout=60).run()
        dashboard_ok = not page.exception

        from curate_cli.main import run
        def curate(*argv):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = run(list(argv))
            return code, err.getvalue()

        help_code, _ = curate("--help")
        serve_help, _ = curate("serve", "--help")
        project_code, _ = curate("project", "create", "p1")
        train_code, train_err = curate("train-baseline", "--export", ".", "--out", "runs")
        evaluate_code, evaluate_err = curate("evaluate", "--checkpoint", "x.pt", "--export", ".", "--out", "o")
        import sys
        print(json.dumps({
            "imported": imported, "app": app_status, "dashboard_ok": dashboard_ok, "help": help_code,
            "serve_help": serve_help, "project": project_code, "train": [train_code, train_err],
            "evaluate": [evaluate_code, evaluate_err],
            "torch_loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")),
        }))
    ''', tmp_path)
    assert {"annotation_app.main", "curation.agreement", "dashboard.data", "curate_cli.cmd_baseline"} <= set(
        result["imported"])
    assert result["app"] == [200, 200, 200]
    assert result["dashboard_ok"]
    assert result["help"] == 0 and result["serve_help"] == 0 and result["project"] == 0
    for command in ("train", "evaluate"):
        code, err = result[command]
        # One line, a non-zero exit, and what to install.
        assert code != 0 and len(err.strip().splitlines()) == 1, err
        assert "pip install 'emotions-toolkit[model]'" in err and "Traceback" not in err
    assert result["torch_loaded"] == []
