"""Normalise a clip into the dataset's master format with FFmpeg.

The master plays in every browser and decodes fast for training: H.264 (yuv420p, even dimensions,
longest side at most ``policy.max_side``), a constant frame rate, AAC at 44.1 kHz, and the index
at the front of the file (``+faststart``) so playback starts before the download ends.

The command is built with ffmpeg-python and run as an argument list (never a shell string), with
the input as ``file:<absolute path>``: a hostile file name stays a file name.

>>> target_size(3840, 2160, 1280)
(1280, 720)
>>> target_size(321, 241, 1280)
(320, 240)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import ffmpeg

from curation.errors import MediaError
from curation.ffmpeg import ffmpeg_binary
from curation.ingest.atomic import part_name
from curation.ingest.probe import MediaPolicy, ProbeResult

__all__ = ["target_size", "normalise_args", "normalise"]


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Display size scaled so the longest side is at most ``max_side``, both sides even (yuv420p)."""
    scale = min(1.0, max_side / max(width, height))
    w = max(2, int(width * scale) // 2 * 2)
    h = max(2, int(height * scale) // 2 * 2)
    return w, h


def normalise_args(
    source: str | Path, output: str | Path, probed: ProbeResult, policy: MediaPolicy, *, threads: int = 0
) -> list[str]:
    """FFmpeg's arguments (without the binary) that turn ``source`` into the master at ``output``.

    FFmpeg rotates by the display matrix before filtering (its default ``-autorotate``), so the
    scale below works on the displayed picture and the master carries no rotation.
    """
    width, height = target_size(probed.width, probed.height, policy.max_side)
    stream = ffmpeg.input(f"file:{Path(source).resolve()}")
    video = (
        stream["v:0"]
        # fps before scale: dropping 60 → 30 frames first halves the scaling work.
        .filter("fps", fps=_fps_text(policy.fps))
        # Limited ("TV") range: full-range sources would otherwise give yuvj420p, which some players mishandle.
        .filter("scale", width, height, flags="bicubic", out_range="tv")
        .filter("setsar", "1")
    )
    streams = [video]
    kwargs: dict[str, object] = {
        "vcodec": "libx264",
        "pix_fmt": "yuv420p",
        "preset": policy.preset,
        "crf": policy.crf,
        "movflags": "+faststart",
        "fps_mode": "cfr",
        "map_metadata": -1,
        "f": "mp4",
    }
    if threads > 0:
        kwargs["threads"] = threads
    if probed.has_audio:
        streams.append(stream["a:0"])  # the first audio track only
        kwargs.update({"acodec": "aac", "ar": policy.audio_rate, "ac": 2, "b:a": "128k"})
    else:
        kwargs["an"] = None
    out = ffmpeg.output(*streams, f"file:{Path(output).resolve()}", **kwargs)
    return ["-nostdin", "-hide_banner", "-loglevel", "error", "-y", *out.get_args()]


def _fps_text(fps: float) -> str:
    return str(int(fps)) if float(fps).is_integer() else f"{fps:.6g}"


def normalise(
    source: str | Path,
    output: str | Path,
    probed: ProbeResult,
    policy: MediaPolicy,
    *,
    ffmpeg_path: str | None = None,
    timeout_s: float | None = None,
    threads: int = 0,
) -> Path:
    """Write the master of ``source`` to ``output`` atomically: all of it, or nothing.

    FFmpeg writes a hidden ``.part`` file beside ``output`` that is renamed over ``output`` only
    when FFmpeg succeeded, so a kill never leaves a half-written master under its final name.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    part = part_name(output)
    args = normalise_args(source, part, probed, policy, threads=threads)
    try:
        proc = subprocess.run(
            [ffmpeg_binary(ffmpeg_path), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise MediaError(f"ffmpeg failed (exit {proc.returncode}): {' | '.join(tail) or 'no message'}")
        os.replace(part, output)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"ffmpeg took longer than {timeout_s:g} s") from exc
    finally:
        part.unlink(missing_ok=True)
    return output
