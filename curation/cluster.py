"""Media work past one machine, on Dask distributed (an existing engine, not a scheduler of ours).

:func:`dask_executor` yields a ``concurrent.futures.Executor`` whose tasks run on Dask workers: a
``LocalCluster`` of ``workers`` processes when no scheduler is named, else the cluster behind
``tcp://HOST:8786``. ``curate ingest`` and ``curate prepare-features`` hand it their per-item work
(probe, normalise, hash; decode) and keep the bookkeeping in the client, one transaction per
item. Workers on other machines need the same code, the same media store path and FFmpeg; they
never touch the database.

The ``cluster`` extra installs Dask (``pip install 'emotions-toolkit[cluster]'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

from curation.errors import CurationError

__all__ = ["ClusterError", "EXECUTORS", "dask_executor", "is_lost_worker"]

EXECUTORS = ("processes", "dask")


class ClusterError(CurationError):
    """Dask is not installed, or its scheduler cannot be reached."""

    exit_code = 10


@contextmanager
def dask_executor(*, workers: int = 1, scheduler: str | None = None,
                  connect_timeout_s: float = 30.0) -> Iterator[tuple[Executor, int]]:
    """``(executor, slots)``: an Executor on Dask and how many tasks its workers run at once.

    A local cluster gets ``workers`` single-threaded worker processes: every task runs FFmpeg or a
    decoder, which brings its own threads.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ClusterError("--executor dask needs Dask: pip install 'emotions-toolkit[cluster]'") from exc
    if workers < 1:
        raise ClusterError("workers must be at least 1")
    cluster = None
    try:
        if scheduler is None:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout=connect_timeout_s)
    except OSError as exc:  # distributed raises OSError subclasses (TimeoutError) for a dead address
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    try:
        slots = sum(client.nthreads().values()) or workers
        yield client.get_executor(pure=False), slots
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def is_lost_worker(exc: BaseException) -> bool:
    """Whether a task failed because Dask lost its worker (too many times), not because of its item."""
    try:
        from distributed import KilledWorker
    except ImportError:
        return False
    return isinstance(exc, KilledWorker)
