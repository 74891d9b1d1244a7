"""Ingest bookkeeping on SQLite and PostgreSQL: outcomes, duplicates, clusters, shards, resumability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation_app import migrations
from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.errors import InvalidInputError
from annotation_app.models import Clip, ClipStatus, IngestItem, IngestStatus
from annotation_app.services.clips import cluster_members
from annotation_app.services.ingest import (
    NearDuplicatePolicy,
    PhashIndex,
    items_to_do,
    record_result,
    run_ingest,
    status_counts,
)
from annotation_app.services.projects import create_project
from curation.ffmpeg import ffmpeg_binary
from curation.ingest import IngestConfig, ItemResult, MediaPolicy, SourceItem, expand_sources
from tests.curation.ingest.zoo import make_zoo

REPO = Path(__file__).resolve().parents[2]
FAST = MediaPolicy(preset="ultrafast")


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_zoo(tmp_path_factory.mktemp("zoo"), {"plain", "copy", "reencoded", "noaudio", "zero", "text"})


def _by_name(items: list[SourceItem]) -> dict[str, SourceItem]:
    return {Path(i.source).name: i for i in items}


def _rows(session: Session, project_id: int) -> dict[str, IngestItem]:
    rows = session.scalars(select(IngestItem).where(IngestItem.project_id == project_id))
    return {Path(r.source).name: r for r in rows}


def test_outcomes_duplicates_and_clusters(session: Session, small_zoo: dict[str, Path], tmp_path: Path) -> None:
    project = create_project(session, "ingest-outcomes")
    config = IngestConfig(media_dir=tmp_path / "media", policy=FAST)
    items = expand_sources([str(p) for p in small_zoo.values()])
    report = run_ingest(session, project, items, config)
    assert report.counts() == {"accepted": 3, "rejected": 2, "duplicates": 1, "errors": 0, "skipped": 0}

    rows = _rows(session, project.id)
    plain, copy = rows[small_zoo["plain"].name], rows[small_zoo["copy"].name]
    original, duplicate = sorted([plain, copy], key=lambda r: r.status != IngestStatus.accepted)
    assert (original.status, duplicate.status) == (IngestStatus.accepted, IngestStatus.duplicate)
    assert duplicate.clip_id == original.clip_id and "exact copy" in duplicate.reason
    assert rows[small_zoo["zero"].name].reason == "empty file (0 bytes)"
    assert rows[small_zoo["text"].name].reason.startswith("not a media file")

    first = session.get(Clip, original.clip_id)
    reencoded = session.get(Clip, rows[small_zoo["reencoded"].name].clip_id)
    noaudio = session.get(Clip, rows[small_zoo["noaudio"].name].clip_id)
    # The re-encode is imported, in the cluster named after its first clip.
    assert reencoded.duplicate_cluster == first.id == first.duplicate_cluster
    assert [c.id for c in cluster_members(session, project, first.id)] == sorted([first.id, reencoded.id])
    assert noaudio.duplicate_cluster is None and noaudio.has_audio is False
    assert first.status == ClipStatus.pending and first.width == 320 and first.fps == 30
    assert (config.media_dir / first.media_path).is_file()
    assert (config.media_dir / first.original_path).is_file()

    again = run_ingest(session, project, items, config)
    assert again.counts() == {"accepted": 0, "rejected": 0, "duplicates": 0, "errors": 0, "skipped": 6}
    assert session.scalar(select(func.count()).select_from(Clip).where(Clip.project_id == project.id)) == 3
    assert status_counts(session, project)["accepted"] == 3


def test_near_duplicates_can_be_rejected(session: Session, small_zoo: dict[str, Path], tmp_path: Path) -> None:
    project = create_project(session, "ingest-strict")
    config = IngestConfig(media_dir=tmp_path / "media", policy=FAST)
    items = _by_name(expand_sources([str(small_zoo["plain"]), str(small_zoo["reencoded"])]))
    report = run_ingest(session, project, [items[small_zoo["plain"].name], items[small_zoo["reencoded"].name]],
                        config, near=NearDuplicatePolicy(action="reject"))
    assert len(report.accepted) == 1 and len(report.duplicates) == 1
    dup = report.duplicates[0]
    assert "near duplicate of clip" in dup["reason"] and dup["clip_id"] == report.accepted[0]["clip_id"]
    # Its master and original were removed: only the kept clip's files remain.
    files = sorted(p.name for p in config.media_dir.rglob("*.*") if p.is_file())
    clip = session.get(Clip, dup["clip_id"])
    assert files == sorted([Path(clip.media_path).name, Path(clip.original_path).name])


def test_errors_are_retried_and_finished_items_are_not(session: Session, tmp_path: Path) -> None:
    project = create_project(session, "ingest-retry")
    items = [SourceItem(source=f"/x/{n}.mp4", kind="file", source_key=f"{n:064x}") for n in range(3)]
    record_result(session, project, ItemResult(items[0].source, items[0].source_key, "error", "timeout"))
    record_result(session, project, ItemResult(items[1].source, items[1].source_key, "rejected", "empty file"))
    assert [i.source for i in items_to_do(session, project, items)] == ["/x/0.mp4", "/x/2.mp4"]


def test_shards_share_the_work(session: Session, small_zoo: dict[str, Path], tmp_path: Path) -> None:
    project = create_project(session, "ingest-shards")
    config = IngestConfig(media_dir=tmp_path / "media", policy=FAST)
    items = expand_sources([str(p) for p in small_zoo.values()])
    reports = [run_ingest(session, project, items, config, shard=(i, 2)) for i in range(2)]
    assert sum(r.processed for r in reports) == len(items)
    assert [r.outside_shard + r.processed for r in reports] == [len(items), len(items)]
    counts = status_counts(session, project)
    assert counts["pending"] == 0 and sum(counts.values()) == len(items)


def test_phash_index_finds_the_nearest() -> None:
    index = PhashIndex([(1, "00" * 16, None), (2, "ff" * 16, 2)])
    assert index.nearest("00" * 15 + "0f") == (1, 2.0)
    index.add(3, "f0" * 16)
    assert index.nearest("f0" * 16) == (3, 0.0)
    assert index.nearest("00" * 8) is None  # hashed with another frame count
    with pytest.raises(InvalidInputError):
        NearDuplicatePolicy(action="merge")


# --- resumability: kill a real run with SIGKILL, run again -------------------------------------

_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from annotation_app.db import make_engine, make_sessionmaker
    from annotation_app.services.ingest import run_ingest
    from annotation_app.services.projects import get_project
    from curation.ingest import IngestConfig, MediaPolicy, expand_sources

    url, folder, media = sys.argv[1:4]
    with make_sessionmaker(make_engine(url))() as session:
        project = get_project(session, "killme")
        config = IngestConfig(media_dir=Path(media), policy=MediaPolicy(preset="medium"))
        run_ingest(session, project, expand_sources([folder]), config)
""")


def _distinct_clips(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        subprocess.run(
            [ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
             f"life=s=320x240:r=25:seed={i + 1}:mold=10", "-f", "lavfi", "-i", f"sine=frequency={300 + 50 * i}",
             "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", f"file:{folder}/clip {i}.mp4"],
            check=True,
        )
    (folder / "broken.mp4").write_bytes(b"\x00" * 1000)


def test_killed_run_resumes_without_redoing_or_leaving_debris(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    migrations.upgrade(url)
    maker = make_sessionmaker(make_engine(url))
    with maker() as session:
        create_project(session, "killme")
        session.commit()
    folder, media = tmp_path / "incoming", tmp_path / "media"
    _distinct_clips(folder, 8)

    child = subprocess.Popen([sys.executable, "-c", _CHILD, url, str(folder), str(media)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            with maker() as session:
                accepted = session.scalar(select(func.count()).select_from(IngestItem)
                                          .where(IngestItem.status == IngestStatus.accepted))
            if accepted >= 2:
                break
            time.sleep(0.02)
        # Prefer to strike while FFmpeg is writing a temporary file.
        strike = time.monotonic() + 2
        while time.monotonic() < strike and child.poll() is None and not list(media.rglob("*.part")):
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    stderr = child.stderr.read().decode() if child.stderr else ""
    if child.stderr:
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL, stderr

    with maker() as session:
        project_id = session.scalar(select(IngestItem.project_id).limit(1))
        done_before = session.scalar(select(func.count()).select_from(IngestItem)
                                     .where(IngestItem.status != IngestStatus.pending))
        from annotation_app.services.projects import get_project

        project = get_project(session, "killme")
        report = run_ingest(session, project, expand_sources([str(folder)]),
                            IngestConfig(media_dir=media, policy=FAST))
        assert done_before < 9, "the kill came after the run had finished"
        assert report.skipped == done_before and report.processed == 9 - done_before

        rows = list(session.scalars(select(IngestItem).where(IngestItem.project_id == project_id)))
        assert len(rows) == 9 and len({r.source_key for r in rows}) == 9
        assert sorted(r.status.value for r in rows).count("accepted") == 8
        assert [r.reason for r in rows if r.status == IngestStatus.rejected] == ["not a media file (Invalid data found when processing input)"]
        clips = list(session.scalars(select(Clip).where(Clip.project_id == project_id)))
        # Every clip belongs to exactly one accepted item, and every accepted item has its clip.
        assert sorted(c.id for c in clips) == sorted(r.clip_id for r in rows if r.status == IngestStatus.accepted)
        expected = {c.media_path for c in clips} | {c.original_path for c in clips}
    on_disk = {p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()}
    assert on_disk == expected, "no half-written, temporary or orphan file"
