"""Process one ingest item: fetch, hash, probe, validate, normalise, hash the master.

:func:`process_item` is a plain module-level function of picklable arguments, so a
``ProcessPoolExecutor`` can run it; it never touches a database and never raises for a bad item:
it returns an :class:`ItemResult` whose ``status`` says what happened. Registering the result (and
catching duplicates against clips already in the project) is the caller's job.

Files land under content-hash names in the media folder::

    MEDIA/ab/abcdef….mp4                the master (name = SHA-256 of the source file)
    MEDIA/originals/ab/abcdef….webm     the untouched source, when the policy keeps originals
    MEDIA/.downloads/<source key>/      a URL's download, until its item is registered

Every file is written under a temporary name and renamed into place, so a killed run leaves no
half-written file under a final name; :func:`sweep_stale_parts` removes the temporaries of dead
runs on this host.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import MediaError
from curation.ingest.atomic import host_tag, parse_part_name, part_name
from curation.ingest.download import DownloadOptions, download
from curation.ingest.errors import MediaRejected
from curation.ingest.hashing import sha256_file, video_phash
from curation.ingest.normalise import normalise
from curation.ingest.probe import MediaPolicy, probe, validate
from curation.ingest.sources import SourceItem

__all__ = [
    "IngestConfig",
    "ItemResult",
    "process_item",
    "master_relpath",
    "original_relpath",
    "download_folder",
    "finish_item",
    "discard_files",
    "sweep_stale_parts",
]

ACCEPTED, REJECTED, DUPLICATE, ERROR = "accepted", "rejected", "duplicate", "error"
DOWNLOADS = ".downloads"
ORIGINALS = "originals"


@dataclass(frozen=True)
class IngestConfig:
    """Everything a worker needs besides the item (picklable)."""

    media_dir: Path
    policy: MediaPolicy = field(default_factory=MediaPolicy)
    download: DownloadOptions = field(default_factory=DownloadOptions)
    phash_frames: int = 8
    ffmpeg_path: str | None = None
    ffmpeg_timeout_s: float | None = 3600.0
    # FFmpeg threads per item; 0 lets FFmpeg decide (all cores), which oversubscribes with workers.
    ffmpeg_threads: int = 0


@dataclass
class ItemResult:
    """What happened to one item. ``status`` is accepted (ready to register), rejected, duplicate or error."""

    source: str
    source_key: str
    status: str
    reason: str = ""
    sha256: str | None = None
    phash: str | None = None
    media_path: str | None = None  # relative to the media folder
    original_path: str | None = None  # relative to the media folder
    metadata: dict[str, Any] = field(default_factory=dict)  # platform, uploader, external_id, title, language
    media: dict[str, Any] = field(default_factory=dict)  # the master: duration_s, width, height, fps, has_audio
    probe: dict[str, Any] = field(default_factory=dict)  # the source as probed
    seconds: float = 0.0
    normalised: bool = False  # False when the master already existed (same content seen before)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def master_relpath(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256}.mp4"


def original_relpath(sha256: str, source_name: str) -> str:
    ext = Path(source_name).suffix.lower()
    # Only a short alphanumeric extension survives: the source name is untrusted.
    ext = ext if re.fullmatch(r"\.[a-z0-9]{1,8}", ext) else ".bin"
    return f"{ORIGINALS}/{sha256[:2]}/{sha256}{ext}"


def download_folder(media_dir: Path, source_key: str) -> Path:
    return Path(media_dir) / DOWNLOADS / source_key


def process_item(item: SourceItem, config: IngestConfig) -> ItemResult:
    """Run one item through the pipeline; never raises for a bad or unreachable item."""
    started = time.perf_counter()
    result = ItemResult(source=item.source, source_key=item.source_key, status=ERROR,
                        metadata=item.metadata())
    try:
        _process(item, config, result)
    except MediaRejected as exc:
        result.status, result.reason = REJECTED, str(exc)
    except (MediaError, OSError) as exc:
        result.status, result.reason = ERROR, str(exc) or type(exc).__name__
    except Exception as exc:  # one broken item must never stop a batch of thousands
        result.status, result.reason = ERROR, f"{type(exc).__name__}: {exc}"
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _process(item: SourceItem, config: IngestConfig, result: ItemResult) -> None:
    media_dir = Path(config.media_dir)
    if item.kind == "url":
        fetched = download(item.source, download_folder(media_dir, item.source_key),
                           source_key=item.source_key, options=config.download)
        # The curator's list knows better than a page scrape: its fields win.
        result.metadata = {**fetched.metadata, **item.metadata()}
        if fetched.path is None:
            result.status = DUPLICATE
            result.reason = f"already downloaded (archive entry {fetched.archive_id!r})"
            return
        source = fetched.path
    else:
        source = Path(item.source)
        if not source.is_file():
            raise MediaError(f"no such file: {source}")
    result.sha256 = sha256_file(source)
    probed = probe(source)
    result.probe = probed.as_dict()
    validate(probed, config.policy)

    master = media_dir / master_relpath(result.sha256)
    if not master.is_file():
        # Same content, same name: an existing master is a finished earlier normalisation.
        normalise(source, master, probed, config.policy, ffmpeg_path=config.ffmpeg_path,
                  timeout_s=config.ffmpeg_timeout_s, threads=config.ffmpeg_threads)
        result.normalised = True
    # Our own output: its first frame and streams are checked here, and hashing decodes it all.
    made = probe(master, check_end=False, check_silence=False)
    result.media_path = master_relpath(result.sha256)
    result.media = {"duration_s": made.duration_s, "width": made.width, "height": made.height,
                    "fps": made.fps, "has_audio": made.has_audio, "silent_audio": probed.silent_audio}
    result.phash = video_phash(master, frames=config.phash_frames)
    if config.policy.keep_original:
        rel = original_relpath(result.sha256, source.name)
        _copy_atomically(source, media_dir / rel)
        result.original_path = rel
    result.status = ACCEPTED


def _copy_atomically(source: Path, final: Path) -> None:
    if final.is_file():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    part = part_name(final)
    try:
        shutil.copyfile(source, part)
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)


def finish_item(config: IngestConfig, source_key: str) -> None:
    """Drop an item's download folder once its row is committed (call after the commit)."""
    shutil.rmtree(download_folder(Path(config.media_dir), source_key), ignore_errors=True)


def discard_files(config: IngestConfig, result: ItemResult) -> None:
    """Remove the master and original of a result that was not registered (a rejected near duplicate)."""
    for rel in (result.media_path, result.original_path):
        if rel:
            (Path(config.media_dir) / rel).unlink(missing_ok=True)


def sweep_stale_parts(media_dir: str | Path) -> int:
    """Delete temporaries left by killed runs of *this host* (a shared store may hold live ones of others)."""
    media_dir = Path(media_dir)
    if not media_dir.is_dir():
        return 0
    host, removed = host_tag(), 0
    for root, dirs, files in os.walk(media_dir):
        if Path(root) == media_dir:
            dirs[:] = [d for d in dirs if d != DOWNLOADS]  # yt-dlp resumes its own .part files
        for name in files:
            writer = parse_part_name(name)
            if writer is not None and writer[0] == host and not _alive(writer[1]):
                (Path(root) / name).unlink(missing_ok=True)
                removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
