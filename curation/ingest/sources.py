"""Expand ``curate ingest`` arguments into items: URLs, URL lists, CSV/JSONL lists and folders.

Every item has a stable ``source_key`` (SHA-256 of its normalised source), so a second run over the
same arguments finds the same bookkeeping rows, and ``--shard i/N`` splits items the same way on
every machine.

>>> [i.source for i in expand_sources(["https://example.com/v/1 "])]
['https://example.com/v/1']
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from curation.ingest.errors import SourceError

__all__ = ["SourceItem", "expand_sources", "source_key", "in_shard", "parse_shard", "LIST_SUFFIXES"]

URL_SCHEMES = ("http", "https", "file", "ftp", "ftps")
LIST_SUFFIXES = (".txt", ".csv", ".jsonl", ".ndjson")
# Columns a CSV/JSONL list may carry besides ``url`` / ``path`` (aliases → field).
_COLUMNS = {
    "platform": "platform",
    "uploader": "uploader",
    "external_id": "external_id",
    "external id": "external_id",
    "id": "external_id",
    "title": "title",
    "language": "language",
    "lang": "language",
}


@dataclass(frozen=True)
class SourceItem:
    """One thing to ingest: a URL (downloaded with yt-dlp) or a local file, with known metadata."""

    source: str
    kind: str  # "url" | "file"
    source_key: str
    platform: str | None = None
    uploader: str | None = None
    external_id: str | None = None
    title: str | None = None
    language: str | None = None

    def metadata(self) -> dict[str, Any]:
        """The caller-given metadata (None fields left out)."""
        return {k: v for k, v in asdict(self).items()
                if k not in {"source", "kind", "source_key"} and v not in (None, "")}


def source_key(source: str) -> str:
    """SHA-256 of the normalised source: an absolute path, or a URL with its scheme and host lower-cased."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` → ``(1, 4)``.

    >>> parse_shard("0/2")
    (0, 2)
    """
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError as exc:
        raise SourceError(f"a shard is written i/N (e.g. 0/4), not {text!r}") from exc
    if n < 1 or not 0 <= i < n:
        raise SourceError(f"shard {text!r}: need 0 <= i < N")
    return i, n


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether the item with this ``source_key`` belongs to shard ``(i, N)`` (all items when None)."""
    if shard is None:
        return True
    i, n = shard
    return int(key, 16) % n == i


# Schemes that reach another machine. ``file://`` reads this one: a URL list handed in by someone else
# could name any file the curator may read (the app's secret key was fetched so, then refused as
# non-media), outside the folders the curator gave; it takes ``allow_local_urls``.
NETWORK_SCHEMES = ("http", "https", "ftp", "ftps")


def expand_sources(arguments: Iterable[str], *, allow_local_urls: bool = False) -> list[SourceItem]:
    """Items from every argument, in order, each source once (the first occurrence wins).

    A URL whose scheme is not a network one (``file://``) is a ``SourceError`` unless
    ``allow_local_urls`` (``curate ingest --allow-local-urls``); local files are named by path.
    """
    seen: set[str] = set()
    out: list[SourceItem] = []
    for argument in arguments:
        for item in _expand(argument.strip()):
            if item.kind == "url" and not allow_local_urls:
                scheme = item.source.split(":", 1)[0]
                if scheme not in NETWORK_SCHEMES:
                    raise SourceError(f"{item.source!r}: {scheme}:// URLs read this machine's files; name the file "
                                      "or folder by its path, or pass --allow-local-urls")
            if item.source_key not in seen:
                seen.add(item.source_key)
                out.append(item)
    return out


def _is_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme.lower() in URL_SCHEMES and bool(parts.netloc or parts.scheme.lower() == "file")


def _normalise_url(text: str) -> str:
    parts = urlsplit(text.strip())
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()


def _url_item(url: str, **meta: Any) -> SourceItem:
    url = _normalise_url(url)
    return SourceItem(source=url, kind="url", source_key=source_key(url), **meta)


def _file_item(path: Path, **meta: Any) -> SourceItem:
    # abspath, not resolve(): a symlinked folder keeps the name the curator gave it.
    text = os.path.abspath(path)
    return SourceItem(source=text, kind="file", source_key=source_key(text), **meta)


def _expand(argument: str) -> Iterator[SourceItem]:
    if not argument:
        return
    if _is_url(argument):
        yield _url_item(argument)
        return
    path = Path(argument).expanduser()
    if path.is_dir():
        yield from _folder(path)
    elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        yield from _list_file(path)
    elif path.is_file():
        yield _file_item(path)
    else:
        raise SourceError(f"{argument!r} is neither a URL nor an existing file or folder")


def _folder(folder: Path) -> Iterator[SourceItem]:
    for root, dirs, files in os.walk(folder):
        # Hidden folders (.git, our own .staging) and hidden files are never media to ingest.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield _file_item(Path(root) / name)


def _list_file(path: Path) -> Iterator[SourceItem]:
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read list {path}: {exc}") from exc
    if suffix == ".txt":
        lines = [line.strip() for line in text.splitlines()]
        urls = [line for line in lines if line and not line.startswith("#")]
        if not urls:
            raise SourceError(f"list {path} names no sources: it is empty or all comments")
        for url in urls:
            yield _row_item(path, {"url": url}, where=f"{path}")
        return
    if suffix == ".csv":
        rows: Iterable[dict[str, Any]] = csv.DictReader(text.splitlines())
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{path}:{n}: not JSON: {exc}") from exc
                if not isinstance(row, dict):
                    raise SourceError(f"{path}:{n}: each line must be a JSON object")
                rows.append(row)
    rows = list(rows)
    if not rows:
        # A header-only CSV is a list someone forgot to fill, not a collection with nothing new.
        raise SourceError(f"list {path} names no sources: it has no rows")
    for n, row in enumerate(rows, 1):
        yield _row_item(path, row, where=f"{path} row {n}")


def _row_item(list_path: Path, row: dict[str, Any], *, where: str) -> SourceItem:
    row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    meta = {field: str(row[col]).strip() for col, field in _COLUMNS.items()
            if row.get(col) not in (None, "")}
    target = str(row.get("url") or row.get("path") or "").strip()
    if not target:
        raise SourceError(f"{where}: needs a url or path")
    if _is_url(target):
        return _url_item(target, **meta)
    path = Path(target).expanduser()
    if not path.is_absolute():
        # Relative paths in a list are relative to the list, so a list travels with its folder.
        path = list_path.parent / path
    return _file_item(path, **meta)
