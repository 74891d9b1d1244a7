"""Errors raised by the curation library.

Every error the library raises derives from :class:`CurationError`; shells (the ``curate`` CLI,
the web app, the dashboard) catch it and show its message. ``exit_code`` is what the CLI exits with.
"""

from __future__ import annotations

__all__ = ["CurationError", "InvalidTableError", "MediaError", "InsufficientDataError"]


class CurationError(Exception):
    """Base class of every error the curation library raises on purpose."""

    exit_code: int = 1


class InvalidTableError(CurationError):
    """A judgements or clips table breaks its contract (missing column, unknown label, duplicates)."""

    exit_code = 2


class MediaError(CurationError):
    """A media file cannot be probed, decoded or normalised."""

    exit_code = 3


class InsufficientDataError(CurationError):
    """Too little data for the requested computation (e.g. a variant or a split)."""

    exit_code = 4
