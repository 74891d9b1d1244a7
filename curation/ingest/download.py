"""Fetch a URL with yt-dlp's Python API into a per-item folder, with its metadata.

yt-dlp's API defaults ``retries`` and ``fragment_retries`` to 0 (the command line uses 10): we set
them explicitly. A download archive records every fetched video as ``<extractor> <id>``, so the
same video reached through two URLs (a share link and a canonical link) is fetched once; the
second is reported as already archived. Direct links (yt-dlp's generic extractor) name a video
after the file's base name, which repeats across sites (``video.mp4``): their archive id gets the
source key appended, so two different direct links never shadow each other.

A completed download is kept beside a ``metadata.json`` until the item is registered, so an
interrupted run resumes without fetching again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.ffmpeg import ffmpeg_binary
from curation.ingest.errors import DownloadError

__all__ = ["DownloadOptions", "Downloaded", "download", "METADATA_FILE"]

METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class DownloadOptions:
    """How to talk to the platforms. ``ratelimit`` is in bytes per second (None: unlimited)."""

    retries: int = 10
    fragment_retries: int = 10
    extractor_retries: int = 3
    ratelimit: int | None = None
    concurrent_fragments: int = 1
    socket_timeout_s: float = 30.0
    archive: Path | None = None
    ffmpeg_path: str | None = None
    # Best video + best audio merged (DASH sites), else the best single file.
    format: str = "bv*+ba/b"
    # yt-dlp's file:// handler (and a redirect to file://) reads local files: only when asked for.
    allow_file_urls: bool = False


@dataclass
class Downloaded:
    """A fetched file (``path``), or ``path=None`` when the archive already holds this video."""

    path: Path | None
    metadata: dict[str, Any]
    archive_id: str | None = None
    messages: list[str] = field(default_factory=list)


class _Collector:
    """yt-dlp logger that keeps warnings and errors for the report instead of printing them."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.messages.append(msg)

    def error(self, msg: str) -> None:
        self.messages.append(msg)


def _metadata(info: dict[str, Any]) -> dict[str, Any]:
    extractor = str(info.get("extractor_key") or info.get("extractor") or "").lower() or None
    meta = {
        "platform": extractor,
        "external_id": info.get("id"),
        "uploader": info.get("uploader") or info.get("uploader_id") or info.get("channel"),
        "title": info.get("title"),
        "duration_s": info.get("duration"),
        "webpage_url": info.get("webpage_url") or info.get("original_url"),
        "language": info.get("language"),
    }
    return {k: v for k, v in meta.items() if v not in (None, "")}


def _completed(folder: Path) -> Path | None:
    """The finished download in ``folder`` (the one with a metadata sidecar), if any."""
    meta = folder / METADATA_FILE
    if not meta.is_file():
        return None
    name = json.loads(meta.read_text(encoding="utf-8")).get("file")
    path = folder / name if name else None
    return path if path is not None and path.is_file() else None


def download(url: str, folder: str | Path, *, source_key: str, options: DownloadOptions | None = None) -> Downloaded:
    """Download ``url`` into ``folder`` (created; one folder per item).

    Raises :class:`DownloadError` when yt-dlp fails after its retries.
    """
    import yt_dlp

    options = options or DownloadOptions()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = _completed(folder)
    if done is not None:
        saved = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
        return Downloaded(path=done, metadata=saved.get("metadata", {}), archive_id=saved.get("archive_id"))

    log = _Collector()
    params: dict[str, Any] = {
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "logger": log,
        "retries": options.retries,
        "fragment_retries": options.fragment_retries,
        "extractor_retries": options.extractor_retries,
        "file_access_retries": 3,
        "concurrent_fragment_downloads": options.concurrent_fragments,
        "socket_timeout": options.socket_timeout_s,
        # One file per item, named by us: titles can hold anything.
        "outtmpl": {"default": str(folder / "source.%(ext)s")},
        "restrictfilenames": True,
        "noplaylist": True,
        "format": options.format,
        "merge_output_format": "mp4/mkv/webm",
        "ffmpeg_location": ffmpeg_binary(options.ffmpeg_path),
        "continuedl": True,
        "overwrites": False,
        "enable_file_urls": options.allow_file_urls,
        "color": "no_color",
    }
    if options.ratelimit:
        params["ratelimit"] = options.ratelimit
    if options.archive is not None:
        Path(options.archive).parent.mkdir(parents=True, exist_ok=True)
        params["download_archive"] = str(options.archive)
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=False)
            if info is None:
                raise DownloadError(f"yt-dlp found nothing at {url}")
            if info.get("_type") == "playlist":
                raise DownloadError(f"{url} is a playlist; list its videos one per line")
            if str(info.get("extractor_key", "")).lower() == "generic":
                info["id"] = f"{info.get('id') or 'video'}-{source_key[:16]}"
            archive_id = ydl._make_archive_id(info)
            metadata = _metadata(info)
            if options.archive is not None and ydl.in_download_archive(info):
                return Downloaded(path=None, metadata=metadata, archive_id=archive_id, messages=log.messages)
            result = ydl.process_ie_result(info, download=True)
    except yt_dlp.utils.YoutubeDLError as exc:
        said = _one_line(str(exc)) or (_one_line(log.messages[-1]) if log.messages else "")
        raise DownloadError(said or f"yt-dlp failed on {url}") from exc
    paths = [Path(d["filepath"]) for d in (result or {}).get("requested_downloads", []) if d.get("filepath")]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise DownloadError(f"yt-dlp produced no file for {url}" + (f": {log.messages[-1]}" if log.messages else ""))
    path = paths[0]
    sidecar = {"file": path.name, "metadata": metadata, "archive_id": archive_id, "url": url}
    tmp = folder / f".{METADATA_FILE}.tmp"
    tmp.write_text(json.dumps(sidecar, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, folder / METADATA_FILE)
    return Downloaded(path=path, metadata=metadata, archive_id=archive_id, messages=log.messages)


def _one_line(text: str) -> str:
    # yt-dlp's messages carry progress-bar carriage returns and an "ERROR:" prefix.
    lines = [" ".join(line.split()) for line in text.replace("\r", "\n").splitlines()]
    lines = [line.removeprefix("ERROR:").strip() for line in lines]
    return next((line for line in lines if line), "")
