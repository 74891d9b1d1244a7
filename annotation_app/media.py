"""Serving clip media: paths confined to the media folder, HTTP range requests (206 / 416).

Range handling is Starlette's ``FileResponse`` (single and multiple byte ranges, ``If-Range``,
416 with ``Content-Range: bytes */SIZE``); this module decides *which* file may be served.
"""

from __future__ import annotations

import functools
import mimetypes
from pathlib import Path

from starlette.responses import FileResponse

from annotation_app.errors import NotFoundError

__all__ = ["RENDITIONS", "resolve_media", "media_response", "renditions_available"]

# An alternative encoding of a clip sits beside it with another suffix (e.g. ``clip.webm`` beside
# ``clip.mp4``); the player offers every rendition that exists as a ``<source>``.
RENDITIONS = {"mp4": "video/mp4", "webm": "video/webm"}


def resolve_media(media_dir: Path, relative: str, *, rendition: str | None = None) -> Path:
    """The clip file ``relative`` under ``media_dir``; refuses anything that escapes the folder.

    >>> import tempfile; root = Path(tempfile.mkdtemp()); (root / "a.mp4").write_bytes(b"x")
    1
    >>> resolve_media(root, "a.mp4").name
    'a.mp4'
    >>> resolve_media(root, "../etc/passwd")
    Traceback (most recent call last):
    ...
    annotation_app.errors.NotFoundError: clip media is outside the media folder
    """
    root = _resolved(str(media_dir))
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise NotFoundError("clip media is outside the media folder")
    if rendition is not None:
        if rendition not in RENDITIONS:
            raise NotFoundError(f"unknown rendition {rendition!r}")
        candidate = candidate.with_suffix(f".{rendition}")
    if not candidate.is_file():
        raise NotFoundError("clip media file is missing")
    return candidate


@functools.lru_cache(maxsize=8)
def _resolved(media_dir: str) -> Path:
    # The media folder is fixed for a process; resolving it walked its path on every next-clip
    # request (about 2 % of a worker's time). Each clip's own path is still resolved every time.
    return Path(media_dir).resolve()


def media_response(path: Path) -> FileResponse:
    media_type = RENDITIONS.get(path.suffix.lstrip("."), None) or mimetypes.guess_type(path.name)[0]
    # Private: the media of a leased clip must not sit in a shared cache for the next person.
    return FileResponse(path, media_type=media_type or "application/octet-stream",
                        headers={"Cache-Control": "private, max-age=600"})


def renditions_available(media_dir: Path, relative: str) -> list[str]:
    """Which renditions of a clip exist on disk (its own suffix first)."""
    try:
        own = resolve_media(media_dir, relative)
    except NotFoundError:
        return []
    found = [own.suffix.lstrip(".")]
    for ext in RENDITIONS:
        if ext not in found and own.with_suffix(f".{ext}").is_file():
            found.append(ext)
    return found
