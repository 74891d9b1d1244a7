"""Concurrent ingests agree on near duplicates: the decision is taken in the database, not in
each run's memory (a run's perceptual-hash index is loaded once, at its start)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation_app import migrations
from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.models import Clip, IngestItem, IngestStatus
from annotation_app.services.ingest import PhashIndex, record_result
from annotation_app.services.projects import create_project, get_project
from curation.ffmpeg import ffmpeg_binary
from curation.ingest import ItemResult, expand_sources, in_shard
from tests.conftest import _throwaway_pg

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database that several connections share (the rolled-back ``session`` cannot be)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shards.sqlite3'}"
        migrations.upgrade(url)
        yield url
    else:
        for url in _throwaway_pg("emotions_shards"):
            migrations.upgrade(url)
            yield url


def _accepted(name: str, phash: str) -> ItemResult:
    sha = hashlib.sha256(name.encode()).hexdigest()
    return ItemResult(source=f"/in/{name}.mp4", source_key=sha, status="accepted", sha256=sha, phash=phash,
                      media_path=f"{sha[:2]}/{sha}.mp4", media={"duration_s": 2.0, "has_audio": True})


def test_a_run_started_earlier_still_clusters_with_a_clip_another_run_is_registering(db_url: str) -> None:
    maker = make_sessionmaker(engine := make_engine(db_url))
    with maker() as setup:
        project_id = create_project(setup, "two-runs").id
        setup.commit()
    first, second = maker(), maker()
    try:
        # Both runs loaded their index before either registered anything: both are empty.
        index_first = PhashIndex.load(first, get_project(first, "two-runs"))
        first.commit()
        index_second = PhashIndex.load(second, get_project(second, "two-runs"))
        second.commit()
        original = record_result(first, get_project(first, "two-runs"), _accepted("original", "00" * 64),
                                 index=index_first)  # registered, not yet committed
        outcome: dict[str, object] = {}

        def register_reencode() -> None:
            try:
                row = record_result(second, get_project(second, "two-runs"),
                                    _accepted("reencode", "00" * 63 + "0f"), index=index_second)
                second.commit()
                outcome["row"] = row
            except Exception as exc:  # surfaced by the assertion below
                outcome["error"] = exc

        racer = threading.Thread(target=register_reencode)
        racer.start()
        time.sleep(0.3)  # let the second run reach its decision while the first holds its transaction
        first.commit()
        racer.join(60)
        assert not racer.is_alive() and "error" not in outcome, outcome
    finally:
        first.close()
        second.close()
    with maker() as check:
        clips = {c.source_url: c for c in check.scalars(select(Clip).where(Clip.project_id == project_id))}
        assert clips["/in/original.mp4"].id == original.clip_id
        assert clips["/in/reencode.mp4"].duplicate_cluster == original.clip_id
        assert clips["/in/original.mp4"].duplicate_cluster == original.clip_id
    engine.dispose()


# --- two real ingests at once on PostgreSQL, over near-duplicate pairs split between them ---------

_SHARD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from annotation_app.db import make_engine, make_sessionmaker
    from annotation_app.services.ingest import run_ingest
    from annotation_app.services.projects import get_project
    from curation.ingest import IngestConfig, MediaPolicy, expand_sources

    url, folder, media, shard, barrier = sys.argv[1:6]
    i, n = (int(x) for x in shard.split("/"))

    def both_started(total):
        # Each run has loaded its near-duplicate index: wait for the other before any registration.
        Path(barrier, f"ready-{i}").touch()
        deadline = time.monotonic() + 120
        while len(list(Path(barrier).glob("ready-*"))) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    with make_sessionmaker(make_engine(url))() as session:
        project = get_project(session, "shards")
        config = IngestConfig(media_dir=Path(media), policy=MediaPolicy(preset="ultrafast"))
        report = run_ingest(session, project, expand_sources([folder]), config, shard=(i, n),
                            on_start=both_started)
    print(report.counts())
""")

_PAIRS = {  # one lavfi source per pair: unrelated to each other, each with a smaller, lossier re-encode
    "bars": "smptebars=s=240x180:r=25",
    "mandel": "mandelbrot=s=240x180:r=25",
    "test": "testsrc2=s=240x180:r=25",
}


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _split_name(folder: Path, stem: str, shard: int) -> Path:
    """A file name in ``folder`` whose item lands in ``shard`` of 2."""
    for n in range(100):
        path = folder / f"{stem}-{n}.mp4"
        if in_shard(expand_sources_key(path), (shard, 2)):
            return path
    raise AssertionError("no name found")  # pragma: no cover - 2**-100


def expand_sources_key(path: Path) -> str:
    path.write_bytes(b"")  # expand_sources only lists existing files
    key = expand_sources([str(path)])[0].source_key
    path.unlink()
    return key


def test_two_ingests_at_once_on_postgres_cluster_every_pair_and_import_no_copy_twice(tmp_path: Path) -> None:
    folder, media, barrier = tmp_path / "incoming", tmp_path / "media", tmp_path / "barrier"
    for d in (folder, barrier):
        d.mkdir()
    expected_pairs = {}
    for name, source in _PAIRS.items():
        original, reencode = _split_name(folder, f"{name}-original", 0), _split_name(folder, f"{name}-reencode", 1)
        _ffmpeg("-f", "lavfi", "-i", source, "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", f"file:{original}")
        _ffmpeg("-i", f"file:{original}", "-vf", "scale=160:120", "-c:v", "libx264", "-preset", "ultrafast",
                "-crf", "32", f"file:{reencode}")
        expected_pairs[name] = (original.name, reencode.name)
    copy = _split_name(folder, "bars-copy", 1)
    copy.write_bytes((folder / expected_pairs["bars"][0]).read_bytes())

    for url in _throwaway_pg("emotions_shards"):
        migrations.upgrade(url)
        maker = make_sessionmaker(engine := make_engine(url))
        with maker() as session:
            project_id = create_project(session, "shards").id
            session.commit()
        runs = [subprocess.Popen([sys.executable, "-c", _SHARD, url, str(folder), str(media), f"{i}/2", str(barrier)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(2)]
        outputs = [run.communicate(timeout=300) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        with maker() as session:
            rows = {Path(r.source).name: r for r in session.scalars(
                select(IngestItem).where(IngestItem.project_id == project_id))}
            clips = {c.id: c for c in session.scalars(select(Clip).where(Clip.project_id == project_id))}
        engine.dispose()

    assert len(rows) == 7 and all(r.status != IngestStatus.error for r in rows.values()), outputs
    # Whichever run registered the content first keeps it; the other item points at that clip.
    same = sorted([rows[copy.name], rows[expected_pairs["bars"][0]]], key=lambda r: r.status != IngestStatus.accepted)
    assert [r.status for r in same] == [IngestStatus.accepted, IngestStatus.duplicate]
    assert same[0].clip_id == same[1].clip_id
    assert len(clips) == 6 and len({c.sha256 for c in clips.values()}) == 6
    clusters = []
    for original, reencode in expected_pairs.values():
        a, b = clips[rows[original].clip_id], clips[rows[reencode].clip_id]
        assert a.duplicate_cluster is not None and a.duplicate_cluster == b.duplicate_cluster, (original, reencode)
        clusters.append(a.duplicate_cluster)
    assert len(set(clusters)) == 3, "unrelated pairs stay apart"
