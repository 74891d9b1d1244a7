"""``curate dashboard``: the curator dashboard (Streamlit), read-only on the configured database."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from curate_cli.common import DatabaseNotReadyError, console, settings

__all__ = ["register", "dashboard_command", "DASHBOARD_APP"]

DASHBOARD_APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


def dashboard_command(
    *, host: str, port: int, database_url: str, project: str | None, exports: Path | None, runs: Path | None,
    n_boot: int | None,
) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and its environment (the dashboard reads its settings from it)."""
    env = dict(os.environ)
    # Resolved here so a relative EMOTIONS_DATA_DIR means the same folder to the Streamlit process.
    env["EMOTIONS_DATABASE_URL"] = database_url
    for name, value in (("EMOTIONS_DASHBOARD_PROJECT", project), ("EMOTIONS_DASHBOARD_EXPORTS", exports),
                        ("EMOTIONS_DASHBOARD_RUNS", runs), ("EMOTIONS_DASHBOARD_N_BOOT", n_boot)):
        if value is not None:
            env[name] = str(Path(value).resolve()) if isinstance(value, Path) else str(value)
    command = [
        sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        # Curators see the dashboard, not Streamlit's developer menu and its "Deploy" button.
        "--client.toolbarMode", "viewer",
    ]
    return command, env


def dashboard(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8501,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 in a container).")] = "127.0.0.1",
    project: Annotated[str | None, typer.Option(help="Project shown first (default: the first one).")] = None,
    exports: Annotated[
        Path | None, typer.Option(help="Folder of variant exports (default DATA_DIR/exports).")
    ] = None,
    runs: Annotated[Path | None, typer.Option(help="Folder of training runs (default DATA_DIR/runs).")] = None,
    n_boot: Annotated[
        int | None, typer.Option(help="Bootstrap resamples for agreement intervals (default 500).")
    ] = None,
) -> None:
    """Start the curator dashboard: progress, agreement, annotators, clips needing attention, builds and runs."""
    from sqlalchemy import inspect, make_url

    from dashboard.data import read_only_engine

    cfg = settings()
    engine = read_only_engine(cfg.database_url)
    where = make_url(cfg.database_url).render_as_string(hide_password=True)
    try:
        ready = inspect(engine).has_table("alembic_version")
    except Exception as exc:  # an unreachable server or a missing SQLite file: say which, in one line
        raise DatabaseNotReadyError(
            f"cannot open the database at {where}: "
            f"{str(exc).splitlines()[0]}") from exc
    if not ready:
        raise DatabaseNotReadyError(
            f"the database at {where} is not initialised: "
            "run `curate db upgrade`")
    command, env = dashboard_command(host=host, port=port, database_url=cfg.database_url, project=project,
                                     exports=exports or cfg.data_dir / "exports", runs=runs or cfg.data_dir / "runs",
                                     n_boot=n_boot)
    console.print(f"curator dashboard on [bold]http://{escape(host)}:{port}/[/]  (read-only; Ctrl+C stops it)")
    console.file.flush()
    # Become the Streamlit server (exec, not a child): a stop signal (Ctrl+C, `docker stop`) reaches it
    # directly, and no orphan survives when this process is terminated.
    os.execve(command[0], command, env)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
