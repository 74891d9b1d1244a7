"""Probe a media file with PyAV and check it against the project's media policy.

``probe`` says what a file is (streams, duration, display size after rotation, audio); ``validate``
raises :class:`~curation.ingest.errors.MediaRejected` with a one-line reason when the file breaks
the policy. Both decode real frames: a header can claim anything.

Silent audio (an audio track whose samples are all zero) is *accepted*: the clip keeps
``has_audio=True`` and the probe reports ``silent_audio=True``, so a curator can filter on it; an
absent audio track gives ``has_audio=False``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curation.ingest.errors import MediaRejected

__all__ = ["MediaPolicy", "ProbeResult", "probe", "validate"]

# How far before its claimed end a stream may stop decoding and still count as complete: muxers
# round, and the last GOP may be shorter than the container says.
_END_SLACK_S = 0.5
_END_SLACK_FRACTION = 0.1
# How far before the claimed end the end check seeks (it then decodes to the end).
_SEEK_BEFORE_END_S = 0.5
# Audio seconds to read when deciding whether a track is silent.
_SILENCE_PROBE_S = 30.0


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class MediaPolicy:
    """What a project accepts, and the master it makes. Defaults are DESIGN's.

    >>> MediaPolicy().max_duration_s
    180.0
    """

    min_duration_s: float = 1.0
    max_duration_s: float = 180.0
    max_side: int = 1280
    fps: float = 30.0
    audio_rate: int = 44_100
    crf: int = 23
    preset: str = "medium"
    keep_original: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_duration_s < self.max_duration_s:
            raise ValueError("need 0 <= min_duration_s < max_duration_s")
        if self.max_side < 2 or self.fps <= 0:
            raise ValueError("max_side must be at least 2 and fps positive")
        if self.preset not in X264_PRESETS:
            raise ValueError(f"x264 preset must be one of {', '.join(X264_PRESETS)}, not {self.preset!r}")


@dataclass(frozen=True)
class ProbeResult:
    """What a file holds. ``width``/``height`` are the *display* size (rotation applied)."""

    format_name: str
    video_codec: str
    width: int
    height: int
    rotation: int  # degrees, as the display matrix says (0, 90, 180, 270)
    fps: float | None
    duration_s: float
    has_audio: bool
    audio_codec: str | None
    silent_audio: bool | None  # None when there is no audio track
    size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(path: str | Path, *, check_end: bool = True, check_silence: bool = True) -> ProbeResult:
    """Open, read the streams and decode the first and the last video frame.

    ``check_end=False`` skips decoding the end (and trusts the claimed duration), and
    ``check_silence=False`` the audio scan: for files we just made ourselves.

    Raises :class:`MediaRejected` for an empty or non-media file, no video stream, or a video that
    cannot be decoded at its start or its end (a truncated download).
    """
    import av

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise MediaRejected("empty file (0 bytes)")
    try:
        # "file:" keeps a hostile name (e.g. "concat:..." or "http:...") a plain file name.
        container = av.open(f"file:{path.resolve()}")
    except av.error.FFmpegError as exc:
        raise MediaRejected(f"not a media file ({_short(exc)})") from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            raise MediaRejected(f"no video stream (only {', '.join(kinds) or 'nothing'})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first = _first_frame(container, stream)
        rotation = int(getattr(first, "rotation", 0) or 0) % 360
        claimed = _claimed_duration(container, stream)
        fps = float(stream.average_rate or stream.guessed_rate or 0) or None
        if check_end or claimed is None:
            last_time = _last_frame_time(container, stream, claimed)
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            decoded_end = last_time - start + (1.0 / fps if fps else 0.0)
        else:
            decoded_end = claimed
        if claimed is None:
            duration = decoded_end
        else:
            slack = max(_END_SLACK_S, _END_SLACK_FRACTION * claimed)
            if decoded_end < claimed - slack:
                raise MediaRejected(
                    f"cannot decode the last frame: video stops at {decoded_end:.1f} s of {claimed:.1f} s"
                    " (truncated?)"
                )
            duration = claimed
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_codec = audio.codec_context.name if audio is not None else None
        format_name = container.format.name
        video_codec = stream.codec_context.name
    silent = _is_silent(path) if audio is not None and check_silence else None
    return ProbeResult(
        format_name=format_name,
        video_codec=video_codec,
        width=width,
        height=height,
        rotation=rotation,
        fps=fps,
        duration_s=round(duration, 3),
        has_audio=audio is not None,
        audio_codec=audio_codec,
        silent_audio=silent,
        size_bytes=size,
    )


def validate(result: ProbeResult, policy: MediaPolicy) -> None:
    """Raise :class:`MediaRejected` when the probed file breaks ``policy``."""
    if result.duration_s < policy.min_duration_s:
        raise MediaRejected(
            f"duration {result.duration_s:g} s is below the minimum {policy.min_duration_s:g} s"
        )
    if result.duration_s > policy.max_duration_s:
        raise MediaRejected(
            f"duration {result.duration_s:g} s is above the maximum {policy.max_duration_s:g} s"
        )
    if result.width < 2 or result.height < 2:
        raise MediaRejected(f"frame size {result.width}x{result.height} is too small")


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(":", 1)[0].strip() or type(exc).__name__


def _first_frame(container, stream):  # type: ignore[no-untyped-def]
    import av

    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as exc:
        raise MediaRejected(f"cannot decode the first frame ({_short(exc)})") from exc
    raise MediaRejected("cannot decode the first frame (the video stream is empty)")


def _claimed_duration(container, stream) -> float | None:  # type: ignore[no-untyped-def]
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def _last_frame_time(container, stream, claimed: float | None) -> float:  # type: ignore[no-untyped-def]
    """Time of the last decodable frame: seek near the claimed end, then decode to the end."""
    import av

    last: float | None = None
    if claimed is not None and claimed > _SEEK_BEFORE_END_S:
        # Seeking lands on the keyframe before the target: only the last GOP is decoded.
        start = stream.start_time or 0
        target = start + int((claimed - _SEEK_BEFORE_END_S) / stream.time_base)
        try:
            container.seek(target, backward=True, any_frame=False, stream=stream)
        except av.error.FFmpegError:
            container.seek(0, stream=stream)
    else:
        container.seek(0, stream=stream)
    # Non-reference frames are never needed to decode the ones after them: skipping them halves
    # the work, and the last reference frame is at most a few frames from the end (within slack).
    stream.codec_context.skip_frame = "NONREF"
    try:
        for frame in container.decode(stream):
            if frame.time is not None:
                last = frame.time
    except av.error.FFmpegError as exc:
        if last is None:
            raise MediaRejected(f"cannot decode the last frame ({_short(exc)})") from exc
        # Corrupt data after some good frames: the end check below reports how far it got.
    if last is None:
        raise MediaRejected("cannot decode the last frame")
    return last


def _is_silent(path: Path) -> bool | None:
    """True when the first ``_SILENCE_PROBE_S`` seconds of audio are digital silence."""
    import av
    import numpy as np

    try:
        with av.open(f"file:{path.resolve()}") as container:
            stream = container.streams.audio[0]
            peak = 0.0
            for frame in container.decode(stream):
                samples = frame.to_ndarray().astype(np.float64)
                if frame.format.name.startswith("u8"):
                    samples -= 128.0  # unsigned 8-bit audio is silent at its midpoint
                if samples.size:
                    peak = max(peak, float(np.abs(samples).max()))
                if peak > 0 or (frame.time or 0.0) > _SILENCE_PROBE_S:
                    break
            return peak == 0.0
    except av.error.FFmpegError:
        return None
