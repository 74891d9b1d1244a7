"""Content hashes: SHA-256 of a file (exact duplicates) and a perceptual video hash (near duplicates).

The perceptual hash is the classic DCT pHash of ``frames`` frames sampled evenly over the clip,
concatenated: 64 bits (16 hex digits) per frame. Two encodes of the same video (another bitrate,
size, frame rate or container) differ by a few bits per frame; unrelated clips by about 32.

>>> hamming("ff00", "0f00")
4
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from scipy.fft import dctn

from curation.ingest.errors import MediaRejected

__all__ = ["sha256_file", "video_phash", "frame_phash", "hamming", "mean_frame_distance", "PHASH_BITS"]

PHASH_BITS = 64
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (clips can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def frame_phash(gray: np.ndarray) -> int:
    """64-bit pHash of a 32×32 grey image: the signs of its 8×8 lowest DCT frequencies vs their median."""
    coeffs = dctn(gray.astype(np.float64), norm="ortho")[:8, :8]  # (8, 8)
    low = coeffs.flatten()
    # The DC term only says how bright the frame is; leaving it out of the median keeps the
    # hash about structure.
    median = np.median(low[1:])
    bits = low > median
    return int("".join("1" if b else "0" for b in bits), 2)


def video_phash(path: str | Path, *, frames: int = 8) -> str:
    """Hex pHash of ``frames`` frames taken at the centres of ``frames`` equal slices of the clip.

    Sampling by *time* (not by frame number) makes the hash survive a frame-rate change.
    """
    import av

    if frames < 1:
        raise ValueError("frames must be at least 1")
    try:
        container = av.open(f"file:{Path(path).resolve()}")
    except av.error.FFmpegError as exc:
        raise MediaRejected(f"cannot open for hashing: {exc}") from exc
    with container:
        if not container.streams.video:
            raise MediaRejected("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = _duration(container, stream)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        targets = [start + (i + 0.5) / frames * duration for i in range(frames)]
        picked: list[np.ndarray | None] = [None] * frames
        last_frame = None
        t_index = 0
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            last_frame = frame
            # Decode straight through: a keyframe seek per sample would land on different frames
            # in different encodes of the same video.
            while t_index < frames and frame.time >= targets[t_index]:
                picked[t_index] = _gray32(frame)
                t_index += 1
            if t_index >= frames:
                break
        if last_frame is None:
            raise MediaRejected("no decodable frame to hash")
        # A stream that ends before its claimed duration: the last frame stands in for the tail.
        tail = _gray32(last_frame) if t_index < frames else None
    hashes = [frame_phash(img if img is not None else tail) for img in picked]  # type: ignore[arg-type]
    return "".join(f"{h:016x}" for h in hashes)


def _gray32(frame) -> np.ndarray:  # type: ignore[no-untyped-def]
    return frame.reformat(width=32, height=32, format="gray").to_ndarray()  # (32, 32) uint8


def _duration(container, stream) -> float:  # type: ignore[no-untyped-def]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    raise MediaRejected("unknown duration")


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two equal-length hex strings."""
    if len(a) != len(b):
        raise ValueError(f"hashes of different lengths: {len(a)} and {len(b)} hex digits")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def mean_frame_distance(a: str, b: str) -> float:
    """Hamming distance per 64-bit frame hash: comparable whatever the number of sampled frames."""
    return hamming(a, b) / (len(a) / 16)
