"""Errors of ``curation.ingest``: every one is a :class:`~curation.errors.MediaError`.

The split matters to the run's bookkeeping: a :class:`MediaRejected` item is final (the file is
bad and retrying cannot help); anything else that goes wrong with one item is an *error*, which a
re-run retries.
"""

from __future__ import annotations

from curation.errors import MediaError

__all__ = ["MediaRejected", "DownloadError", "SourceError"]


class MediaRejected(MediaError):
    """The file breaks the project's media policy (not a video, too short, undecodable...)."""


class DownloadError(MediaError):
    """yt-dlp could not fetch a URL (network, HTTP error, unsupported site)."""


class SourceError(MediaError):
    """An ingest argument is neither a URL, a list file nor an existing file or folder."""

    exit_code = 2
