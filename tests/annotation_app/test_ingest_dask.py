"""``run_ingest`` with its media work on Dask distributed: a LocalCluster of two workers, one of
them killed mid-run; registration stays in the client, so a rerun finishes the rest."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import dask
from distributed import get_task_stream
from sqlalchemy import func, select

from annotation_app import migrations
from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.models import Clip, IngestItem, IngestStatus
from annotation_app.services.ingest import run_ingest
from annotation_app.services.projects import create_project
from curation.cluster import dask_executor
from curation.ingest import IngestConfig, MediaPolicy, expand_sources
from tests.annotation_app.test_ingest_service import _distinct_clips

N_CLIPS = 6


def test_ingest_on_dask_survives_a_killed_worker_and_a_rerun_finishes_the_rest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    migrations.upgrade(url)
    maker = make_sessionmaker(engine := make_engine(url))
    folder, media = tmp_path / "incoming", tmp_path / "media"
    _distinct_clips(folder, N_CLIPS)  # and one broken file
    items = expand_sources([str(folder)])
    config = IngestConfig(media_dir=media, policy=MediaPolicy(preset="ultrafast"))
    killed: list[int] = []

    # No retry of a task whose worker died: the kill then surely costs an item, which the rerun does.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), maker() as session, \
            dask_executor(workers=2) as (executor, slots), get_task_stream() as tasks:
        project = create_project(session, "on-dask")
        session.commit()
        pids = sorted(executor._client.run(os.getpid).values())  # the worker processes
        assert slots == 2 and len(pids) == 2 and os.getpid() not in pids

        def kill_a_worker(result, row) -> None:  # type: ignore[no-untyped-def]
            if not killed:  # after the first registration, with the other items still on the workers
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        first = run_ingest(session, project, items, config, workers=slots, executor=executor,
                           on_result=kill_a_worker)
    assert killed and first.processed == N_CLIPS + 1
    assert first.errors and all("worker was lost" in e["reason"] for e in first.errors), first.errors
    # Every item that finished was a Dask task (the stream records tasks as workers finish them).
    finished = [t for t in tasks.data if "process_item" in t["key"]]
    assert len(finished) >= N_CLIPS + 1 - len(first.errors), "the items ran on the workers"

    with maker() as session, dask_executor(workers=2) as (executor, slots):
        from annotation_app.services.projects import get_project

        project = get_project(session, "on-dask")
        again = run_ingest(session, project, items, config, workers=slots, executor=executor)
        assert again.processed == len(first.errors) and not again.errors
        assert again.skipped == N_CLIPS + 1 - len(first.errors)
        rows = list(session.scalars(select(IngestItem).where(IngestItem.project_id == project.id)))
        clips = list(session.scalars(select(Clip).where(Clip.project_id == project.id)))
        assert sorted(r.status.value for r in rows) == ["accepted"] * N_CLIPS + ["rejected"]
        assert session.scalar(select(func.count()).select_from(Clip)) == N_CLIPS
        assert sorted(c.id for c in clips) == sorted(r.clip_id for r in rows if r.status == IngestStatus.accepted)
        expected = {c.media_path for c in clips} | {c.original_path for c in clips}
    engine.dispose()
    on_disk = {p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()}
    assert on_disk == expected, "no half-written, temporary or orphan file"
