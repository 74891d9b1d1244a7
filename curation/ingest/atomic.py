"""Temporary names for files that appear under their final name all at once (``os.replace``)."""

from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path

__all__ = ["part_name", "parse_part_name", "host_tag"]

_PART_RE = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{8}\.part$")


def host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def part_name(final: Path) -> Path:
    """A hidden temporary beside ``final`` (same folder, so the rename is atomic) naming its writer.

    >>> part_name(Path("/m/ab/x.mp4")).name.startswith(".x.mp4.")
    True
    """
    return final.with_name(f".{final.name}.{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.part")


def parse_part_name(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a temporary made by :func:`part_name`, else None."""
    match = _PART_RE.match(name)
    return (match["host"], int(match["pid"])) if match else None
