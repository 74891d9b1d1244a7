"""What every command shares: settings, a session on a migrated database, consoles, progress bars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from annotation_app.db import session_scope
from annotation_app.errors import AppError
from annotation_app.settings import Settings, get_settings

__all__ = ["console", "err_console", "settings", "open_session", "progress_bar", "TaskProgress", "DatabaseNotReadyError",
           "ExecutorChoice", "media_executor"]

# soft_wrap: a long path or name is printed whole, for the terminal to fold, never cut by a newline
# (a report path split mid-name cannot be copied).
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class DatabaseNotReadyError(AppError):
    exit_code = 9


def settings() -> Settings:
    return get_settings()


@contextmanager
def open_session(cfg: Settings | None = None) -> Iterator[Session]:
    """A session on a database that has been migrated; committed on success, rolled back on error."""
    cfg = cfg or settings()
    if cfg.is_sqlite:
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
    with session_scope(cfg) as session:
        engine = session.get_bind()
        if not inspect(engine).has_table("alembic_version"):
            raise DatabaseNotReadyError(
                f"the database at {engine.url.render_as_string(hide_password=True)} is not initialised: "
                "run `curate db upgrade`"
            )
        yield session


def progress_bar(**kwargs) -> Progress:  # type: ignore[no-untyped-def]
    return Progress(
        # Descriptions can name files or splits (user text): styled, never read as markup.
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        **kwargs,
    )


class TaskProgress:
    """A rich Progress as the ``Progress`` protocol the libraries tick (``model.train.Progress``): one task at a time."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task: TaskID | None = None

    def start(self, description: str, total: int) -> None:
        self.finish()
        self.task = self.bar.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, steps)

    def finish(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None


class ExecutorChoice(StrEnum):
    """Where per-item media work runs (``--executor``)."""

    processes = "processes"
    dask = "dask"


@contextmanager
def media_executor(executor: str, workers: int, scheduler: str | None) -> Iterator[tuple[Any, int]]:
    """``(executor, items at a time)`` for ``--executor/--workers/--scheduler``.

    The executor is None for local processes (the library's own pool of ``workers``), else a Dask
    one (``curation.cluster``): a LocalCluster of ``workers`` processes, or ``scheduler``'s cluster.
    """
    from curation.cluster import ClusterError, dask_executor

    if executor != ExecutorChoice.dask:
        if scheduler is not None:
            raise ClusterError("--scheduler needs --executor dask")
        yield None, workers
        return
    with dask_executor(workers=workers, scheduler=scheduler) as (pool, slots):
        yield pool, slots
