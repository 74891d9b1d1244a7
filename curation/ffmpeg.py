"""Where the FFmpeg binary comes from: settings, else ``PATH``, else the ``imageio-ffmpeg`` wheel's.

So ``pip install`` alone gives a working FFmpeg on a bare machine.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache

from curation.errors import MediaError

__all__ = ["ffmpeg_binary"]


@lru_cache(maxsize=8)
def ffmpeg_binary(configured: str | None = None) -> str:
    """Path of the FFmpeg executable to run.

    >>> os.path.basename(ffmpeg_binary()).startswith("ffmpeg")
    True
    """
    if configured:
        path = shutil.which(configured) or (configured if os.access(configured, os.X_OK) else None)
        if path is None:
            raise MediaError(f"the configured FFmpeg {configured!r} is not an executable file")
        return path
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - imageio-ffmpeg is a hard dependency
        raise MediaError("no FFmpeg found: install ffmpeg or the imageio-ffmpeg package") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()
