"""Ingest bookkeeping: one ``IngestItem`` row per source, clips registered as items finish.

The run is resumable and safe to kill:

1. every item of this shard gets a ``pending`` row first (one short transaction);
2. the library processes items (in worker processes) and writes media under content-hash names,
   atomically;
3. each finished item updates its row *and* creates its clip in one short transaction, so a kill
   leaves either both or neither;
4. a re-run skips items that are accepted, rejected or duplicate, and retries ``error`` ones.

Duplicates: an exact copy (same SHA-256 as a clip of the project) is never imported twice: its
item becomes ``duplicate`` and points at the clip it copies. A near duplicate (perceptual hash
within ``NearDuplicatePolicy.threshold`` bits per sampled frame) is by default *imported* and put
in the other clip's ``duplicate_cluster`` (another encode or crop is still a clip, but splits must
keep the cluster together); with ``action="reject"`` it is treated like an exact copy.

Shards and executors that register at the same time agree on near duplicates because the check
and the insert are decided in the database, in one transaction per item: the transaction first
takes the project's near-duplicate lock (:func:`lock_near_duplicate_decisions`), then brings the
run's :class:`PhashIndex` up to date with the clips other runs committed meanwhile, then decides.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation_app.errors import InvalidInputError
from annotation_app.models import Clip, ClipStatus, IngestItem, IngestStatus, Project
from annotation_app.services.clips import find_by_sha256, join_cluster, phash_rows
from curation.cluster import is_lost_worker
from curation.ingest.pipeline import (
    IngestConfig,
    ItemResult,
    discard_files,
    finish_item,
    process_item,
    sweep_stale_parts,
)
from curation.ingest.sources import SourceItem, in_shard

__all__ = [
    "NearDuplicatePolicy",
    "PhashIndex",
    "IngestReport",
    "enqueue_items",
    "items_to_do",
    "lock_near_duplicate_decisions",
    "record_result",
    "run_ingest",
    "status_counts",
]

DONE = (IngestStatus.accepted, IngestStatus.rejected, IngestStatus.duplicate)
_KEY_CHUNK = 500  # keys per IN (...) query: well under SQLite's bound-parameter limit
# First key of PostgreSQL's two-key advisory locks for near-duplicate decisions (the second is the
# project id); an arbitrary constant ("eMND") so no other lock of ours can collide with it.
_NEAR_DUPLICATE_LOCK = 0x654D4E44


@dataclass(frozen=True)
class NearDuplicatePolicy:
    """When two clips count as near duplicates, and what to do about it.

    ``threshold`` is the mean number of differing bits per 64-bit frame hash: re-encodes of one
    video differ by about 0-4, unrelated clips by about 32.
    """

    threshold: float = 8.0
    action: str = "cluster"  # "cluster": import and cluster; "reject": treat as a duplicate

    def __post_init__(self) -> None:
        if self.action not in {"cluster", "reject"}:
            raise InvalidInputError(f"near-duplicate action must be cluster or reject, not {self.action!r}")
        if not 0 <= self.threshold <= 64:
            raise InvalidInputError("the near-duplicate threshold is in bits per frame hash, 0 to 64")


class PhashIndex:
    """The project's perceptual hashes, loaded once per run, searched with a vectorised XOR-popcount."""

    _POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)

    def __init__(self, rows: Iterable[tuple[int, str, int | None]] = ()) -> None:
        self._ids: dict[int, list[int]] = {}  # hex length → clip ids
        self._bits: dict[int, list[np.ndarray]] = {}  # hex length → chunks of (n, length / 2) uint8
        self._pending: dict[int, list[bytes]] = {}
        self.cluster: dict[int, int | None] = {}
        self.last_id = 0  # the highest clip id read from the database
        for clip_id, phash, cluster in rows:
            self.add(clip_id, phash, cluster)

    @classmethod
    def load(cls, session: Session, project: Project) -> PhashIndex:
        index = cls()
        index.refresh(session, project)
        return index

    def refresh(self, session: Session, project: Project) -> int:
        """Add the hashed clips committed since the last read (by other shards, say); returns how many.

        Reading by id is complete when called under :func:`lock_near_duplicate_decisions`: every
        hashed clip is inserted and committed under that lock, so ids become visible in order.
        """
        added = 0
        for clip_id, phash, cluster in phash_rows(session, project, after_id=self.last_id):
            if clip_id not in self.cluster:
                self.add(clip_id, phash, cluster)
                added += 1
        return added


    def __len__(self) -> int:
        return len(self.cluster)

    def add(self, clip_id: int, phash: str, cluster: int | None = None) -> None:
        if len(phash) % 2:
            return  # not a hash we wrote: unsearchable, ignored
        self._ids.setdefault(len(phash), []).append(clip_id)
        self._pending.setdefault(len(phash), []).append(bytes.fromhex(phash))
        self.cluster[clip_id] = cluster
        self.last_id = max(self.last_id, clip_id)

    def set_cluster(self, clip_id: int, cluster: int) -> None:
        self.cluster[clip_id] = cluster

    def nearest(self, phash: str) -> tuple[int, float] | None:
        """``(clip id, mean differing bits per frame)`` of the closest clip hashed the same way."""
        length = len(phash)
        if length not in self._ids:
            return None
        pending = self._pending.get(length)
        if pending:
            chunk = np.frombuffer(b"".join(pending), dtype=np.uint8).reshape(len(pending), length // 2)
            self._bits.setdefault(length, []).append(chunk)
            pending.clear()
        matrix = np.concatenate(self._bits[length]) if len(self._bits[length]) > 1 else self._bits[length][0]
        self._bits[length] = [matrix]
        query = np.frombuffer(bytes.fromhex(phash), dtype=np.uint8)
        distances = self._POPCOUNT[np.bitwise_xor(matrix, query)].sum(axis=1)  # (n,)
        best = int(np.argmin(distances))
        return self._ids[length][best], float(distances[best]) / (length / 16)


@dataclass
class IngestReport:
    """What one run did. ``skipped`` items were finished by an earlier run."""

    project: str
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    outside_shard: int = 0
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        return len(self.accepted) + len(self.rejected) + len(self.duplicates) + len(self.errors)

    def counts(self) -> dict[str, int]:
        return {"accepted": len(self.accepted), "rejected": len(self.rejected),
                "duplicates": len(self.duplicates), "errors": len(self.errors), "skipped": self.skipped}

    def as_dict(self) -> dict[str, Any]:
        return {"project": self.project, "counts": self.counts(), "outside_shard": self.outside_shard,
                "seconds": round(self.seconds, 3), "accepted": self.accepted, "rejected": self.rejected,
                "duplicates": self.duplicates, "errors": self.errors}


def _rows_by_key(session: Session, project: Project, keys: Sequence[str]) -> dict[str, IngestItem]:
    out: dict[str, IngestItem] = {}
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = list(keys[start:start + _KEY_CHUNK])
        for row in session.scalars(
            select(IngestItem).where(IngestItem.project_id == project.id, IngestItem.source_key.in_(chunk))
        ):
            out[row.source_key] = row
    return out


def enqueue_items(session: Session, project: Project, items: Sequence[SourceItem]) -> int:
    """Add a ``pending`` row for every item not seen before; returns how many were added."""
    known = _rows_by_key(session, project, [i.source_key for i in items])
    added = 0
    for item in items:
        if item.source_key not in known:
            session.add(IngestItem(project_id=project.id, source=item.source, source_key=item.source_key,
                                   status=IngestStatus.pending, details={"kind": item.kind}))
            added += 1
    session.flush()
    return added


def items_to_do(session: Session, project: Project, items: Sequence[SourceItem]) -> list[SourceItem]:
    """The items still to process: no row yet, ``pending`` (never finished) or ``error`` (retry)."""
    rows = _rows_by_key(session, project, [i.source_key for i in items])
    return [i for i in items if i.source_key not in rows or rows[i.source_key].status not in DONE]


def status_counts(session: Session, project: Project) -> dict[str, int]:
    counts = {s.value: 0 for s in IngestStatus}
    for status, in session.execute(select(IngestItem.status).where(IngestItem.project_id == project.id)):
        counts[IngestStatus(status).value] += 1
    return counts


def lock_near_duplicate_decisions(session: Session, project: Project) -> None:
    """Hold the project's near-duplicate lock until this transaction ends.

    Concurrent runs (shards, executors) then decide "is this a near duplicate of a clip already
    here?" one at a time, each seeing the clips the others committed. The lock is the whole
    project, not a bucket of hash values: a near duplicate may differ from its clip in any of the
    bits, so a finer bucket could split a pair. It is held only while one item is registered
    (milliseconds), never while media is processed.

    PostgreSQL: a transaction-scoped advisory lock. SQLite needs nothing more: every transaction
    there starts with ``BEGIN IMMEDIATE`` (``annotation_app.db``), which holds the one write lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:kind, :project)"),
                        {"kind": _NEAR_DUPLICATE_LOCK, "project": project.id})


def record_result(
    session: Session,
    project: Project,
    result: ItemResult,
    *,
    index: PhashIndex | None = None,
    near: NearDuplicatePolicy | None = None,
    clip_status: ClipStatus = ClipStatus.pending,
) -> IngestItem:
    """Write one finished item: its row, and its clip when accepted (flushes; the caller commits)."""
    near = near or NearDuplicatePolicy()
    row = session.scalar(select(IngestItem).where(
        IngestItem.project_id == project.id, IngestItem.source_key == result.source_key))
    if row is None:
        row = IngestItem(project_id=project.id, source=result.source, source_key=result.source_key)
        session.add(row)
    details: dict[str, Any] = {"seconds": result.seconds, "probe": result.probe, "metadata": result.metadata}
    if result.media:
        details["silent_audio"] = result.media.get("silent_audio")
        details["normalised"] = result.normalised
    row.details = details
    row.clip_id = None

    if result.status != "accepted":
        row.status, row.reason = IngestStatus(result.status), result.reason
        session.flush()
        return row

    if result.sha256 is None or result.media_path is None:
        raise InvalidInputError(f"an accepted result needs a SHA-256 and a media path: {result.source}")
    lock_near_duplicate_decisions(session, project)
    if index is not None:
        index.refresh(session, project)
    same = find_by_sha256(session, project, result.sha256)
    if same is not None:
        _mark_duplicate(row, same, f"exact copy of clip #{same.id} (same SHA-256 {result.sha256[:12]}…)")
        session.flush()
        return row

    closest = index.nearest(result.phash) if (index is not None and result.phash) else None
    near_clip: Clip | None = None
    if closest is not None and closest[1] <= near.threshold:
        # Fresh from the database: another run may have put it in a cluster since we last read it.
        near_clip = session.get(Clip, closest[0], populate_existing=True)
        details["near_duplicate_of"] = closest[0]
        details["near_distance"] = round(closest[1], 2)
        if near_clip is not None and near.action == "reject":
            _mark_duplicate(row, near_clip, f"near duplicate of clip #{near_clip.id} "
                                            f"({closest[1]:.1f} of 64 bits per frame differ)")
            row.details = {**details, "discard_files": True}
            session.flush()
            return row

    media = result.media
    clip = Clip(
        project_id=project.id, sha256=result.sha256, phash=result.phash, source_url=result.source,
        media_path=result.media_path, original_path=result.original_path, status=clip_status,
        duration_s=media.get("duration_s"), width=media.get("width"), height=media.get("height"),
        fps=media.get("fps"), has_audio=bool(media.get("has_audio")),
        **{k: _clip_text(k, result.metadata.get(k))
           for k in ("platform", "uploader", "external_id", "title", "language")},
    )
    try:
        with session.begin_nested():
            session.add(clip)
            session.flush()
    except IntegrityError:
        # Another shard registered the same content between our check and our insert.
        same = find_by_sha256(session, project, result.sha256)
        if same is None:
            raise
        _mark_duplicate(row, same, f"exact copy of clip #{same.id} (same SHA-256 {result.sha256[:12]}…)")
        session.flush()
        return row
    reason = ""
    if near_clip is not None:
        cluster = join_cluster(session, clip, near_clip)
        if index is not None:
            index.set_cluster(near_clip.id, cluster)
        reason = f"near duplicate of clip #{near_clip.id}: cluster #{cluster}"
    if index is not None and result.phash:
        index.add(clip.id, result.phash, clip.duplicate_cluster)
    row.status, row.reason, row.clip_id = IngestStatus.accepted, reason, clip.id
    session.flush()
    return row


def _clip_text(key: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    limit = {"platform": 64, "uploader": 255, "external_id": 255, "language": 16}.get(key)
    text = str(value)
    return text[:limit] if limit else text


def _mark_duplicate(row: IngestItem, clip: Clip, reason: str) -> None:
    row.status, row.reason, row.clip_id = IngestStatus.duplicate, reason, clip.id


def _entry(row: IngestItem, result: ItemResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"source": row.source, "status": row.status.value if isinstance(row.status, IngestStatus)
                             else str(row.status), "reason": row.reason}
    if row.clip_id is not None:
        entry["clip_id"] = row.clip_id
    if result.media_path and row.status == IngestStatus.accepted:
        entry["media_path"] = result.media_path
    return entry


def run_ingest(
    session: Session,
    project: Project,
    items: Sequence[SourceItem],
    config: IngestConfig,
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    near: NearDuplicatePolicy | None = None,
    clip_status: ClipStatus = ClipStatus.pending,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[ItemResult, IngestItem], None] | None = None,
    executor: Executor | None = None,
) -> IngestReport:
    """Ingest ``items`` (this shard's share) into ``project``; commits after every item.

    ``workers`` > 1 runs the media work in that many processes; this process alone writes the
    database, one short transaction per item. Every FFmpeg keeps its own thread count
    (``config.ffmpeg_threads``, default FFmpeg's choice): on 16 cores, sharing the cores out
    (cores / workers each) measured slower than letting them overlap. ``on_start(total)`` and ``on_result(result, row)``
    report progress.

    ``executor`` (e.g. ``curation.cluster.dask_executor``'s) runs the media work instead of local
    processes, ``workers`` items at a time; registration stays here. An item whose task was lost
    with its worker ends as an ``error``, which the next run retries.
    """
    if workers < 1:
        raise InvalidInputError("workers must be at least 1")
    started = time.perf_counter()
    near = near or NearDuplicatePolicy()
    report = IngestReport(project=project.name)
    sweep_stale_parts(config.media_dir)
    mine = [i for i in items if in_shard(i.source_key, shard)]
    report.outside_shard = len(items) - len(mine)
    enqueue_items(session, project, mine)
    session.commit()
    todo = items_to_do(session, project, mine)
    report.skipped = len(mine) - len(todo)
    index = PhashIndex.load(session, project)
    # End the read: on SQLite it holds the write lock (BEGIN IMMEDIATE), which would stall a
    # concurrent run for as long as this one's first item takes to process.
    session.commit()
    if on_start is not None:
        on_start(len(todo))

    def finish(result: ItemResult) -> None:
        try:
            row = record_result(session, project, result, index=index, near=near, clip_status=clip_status)
            session.commit()
        except Exception:
            session.rollback()
            raise
        # Files go only after the commit: a kill in between leaves a file a re-run reuses.
        if row.status != IngestStatus.error:
            finish_item(config, result.source_key)
        if (row.details or {}).get("discard_files"):
            discard_files(config, result)
        bucket = {IngestStatus.accepted: report.accepted, IngestStatus.rejected: report.rejected,
                  IngestStatus.duplicate: report.duplicates}.get(IngestStatus(row.status), report.errors)
        bucket.append(_entry(row, result))
        if on_result is not None:
            on_result(result, row)

    if executor is not None:
        _run_window(executor, todo, config, workers, finish)
    elif workers == 1 or len(todo) <= 1:
        for item in todo:
            finish(process_item(item, config))
    else:
        _run_pool(todo, config, workers, finish)
    report.seconds = time.perf_counter() - started
    return report


def _run_pool(todo: Sequence[SourceItem], config: IngestConfig, workers: int,
              finish: Callable[[ItemResult], None]) -> None:
    # forkserver: workers fork from a clean helper process, not from this one with its DB
    # connections and the progress bar's thread (forking a threaded process can deadlock).
    context = multiprocessing.get_context("forkserver")
    # Workers fork from a helper that has imported the pipeline once: no per-worker import cost.
    context.set_forkserver_preload(["curation.ingest.pipeline"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        try:
            _run_window(pool, todo, config, workers, finish)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _run_window(executor: Executor, todo: Sequence[SourceItem], config: IngestConfig, workers: int,
                finish: Callable[[ItemResult], None]) -> None:
    # A bounded window of in-flight items: tens of thousands of futures would only cost memory.
    queue = iter(todo)
    window = 2 * workers
    running: dict[Future[ItemResult], SourceItem] = {}
    for item in queue:
        running[executor.submit(process_item, item, config)] = item
        if len(running) >= window:
            break
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            item = running.pop(future)
            finish(_outcome(future, item))
            nxt = next(queue, None)
            if nxt is not None:
                running[executor.submit(process_item, nxt, config)] = nxt


def _outcome(future: Future[ItemResult], item: SourceItem) -> ItemResult:
    try:
        return future.result()
    except CancelledError:
        raise
    except Exception as exc:
        # process_item never raises for its item: this is the executor losing the task (a Dask
        # worker killed more often than its retries allow). Not the item's fault: retry next run.
        if not is_lost_worker(exc):
            raise
        return ItemResult(source=item.source, source_key=item.source_key, status="error",
                          metadata=item.metadata(), reason=f"its worker was lost ({exc}); run again to retry")
