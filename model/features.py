"""Decoding clips once into a compact feature cache: sampled frames and MFCC per clip.

Every clip is decoded with PyAV in one pass. Frames are resized so the short side is the model's
frame size (112 in the full preset; the square crop happens when a sample is drawn). Only the frames
the segment sampling can use are kept: for each of the S segments a window of T + jitter consecutive
frames around the segment centre (clips with fewer than S·T frames are looped first). Audio becomes
librosa-default MFCC (44.1 kHz mono, n_fft 2048, hop 512, 128 Slaney mel bands, power in dB with an
80 dB floor, orthonormal DCT-II, 32 coefficients) of at most the first ``mfcc_frames`` frames.

One ``<clip key>.npz`` per clip (written to a temporary name, then renamed, so an interrupted run
resumes), plus ``cache.json`` with the :class:`CacheSpec`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from model.errors import ModelError

__all__ = [
    "CacheMismatchError",
    "CacheSpec",
    "ClipFeatures",
    "DecodeError",
    "PrepareReport",
    "cache_key",
    "decode_clip",
    "load_cached_clip",
    "mel_filterbank",
    "mfcc",
    "prepare_features",
    "read_cache_spec",
    "segment_windows",
]


class DecodeError(ModelError):
    """A clip PyAV cannot decode (or one without a video stream)."""


class CacheMismatchError(ModelError):
    """A feature cache made for other sampling settings than the ones asked for."""


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds; it must match the model preset that reads it."""

    segments: int = 16
    frames_per_segment: int = 8
    jitter: int = 4  # extra cached frames per segment, the range of the random temporal offset
    frame_size: int = 112
    mfcc_frames: int = 4096
    n_mfcc: int = 32
    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128

    @property
    def window(self) -> int:
        return self.frames_per_segment + self.jitter


@dataclass
class ClipFeatures:
    frames: np.ndarray  # (S, window, H, W, 3) uint8, short side = frame_size
    mfcc: np.ndarray  # (F, n_mfcc) float32, F <= mfcc_frames (not yet tiled)
    has_audio: bool
    source_frames: int  # frames decoded from the clip


@dataclass
class PrepareReport:
    written: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # clip_id -> reason


# --- audio -----------------------------------------------------------------------------------------


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's scale: linear below 1 kHz, logarithmic above (librosa's default, htk=False).
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    above = hz >= min_log_hz
    mels[above] = min_log_mel + np.log(hz[above] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    hz = f_sp * mels
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    above = mels >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mels[above] - min_log_mel))
    return hz


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangular filters with Slaney area normalisation (librosa.filters.mel)."""
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_freqs = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sample_rate / 2]))[0], n_mels + 2))
    spacing = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / spacing[:-1, None]
    upper = ramps[2:] / spacing[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    return weights


def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II rows (n_out, n_in), as scipy.fft.dct(norm="ortho")."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis


def mfcc(
    waveform: np.ndarray,
    *,
    sample_rate: int = 44100,
    n_mfcc: int = 32,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    max_frames: int | None = None,
) -> np.ndarray:
    """MFCC (frames, n_mfcc) float32 of a mono waveform, equal to ``librosa.feature.mfcc(...).T``.

    >>> mfcc(np.zeros(44100, dtype=np.float32)).shape
    (87, 32)
    """
    y = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if max_frames is not None:
        # Frame t reads samples up to t*hop + n_fft/2 (centred frames); later samples cannot matter.
        y = y[: (max_frames - 1) * hop_length + n_fft // 2]
    padded = np.pad(y, n_fft // 2, mode="constant")
    count = 1 + (len(padded) - n_fft) // hop_length
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, n_fft), strides=(padded.strides[0] * hop_length, padded.strides[0])
    )  # (frames, n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (frames, 1 + n_fft/2)
    mel = power @ mel_filterbank(sample_rate, n_fft, n_mels).T  # (frames, n_mels)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    coefficients = (db @ _dct_matrix(n_mfcc, n_mels).T).astype(np.float32)  # (frames, n_mfcc)
    return coefficients if max_frames is None else coefficients[:max_frames]


# --- frames ----------------------------------------------------------------------------------------


def segment_windows(source_frames: int, segments: int, frames_per_segment: int, window: int) -> np.ndarray:
    """(S, window) source frame indices: a window of consecutive frames centred in each segment.

    Clips shorter than S·T frames are looped (the index wraps), as the specification asks.

    >>> segment_windows(8, 2, 2, 3).tolist()
    [[0, 1, 2], [4, 5, 6]]
    """
    if source_frames < 1:
        raise DecodeError("clip has no frames")
    length = max(source_frames, segments * frames_per_segment)
    seg_len = length / segments
    starts = np.floor(np.arange(segments) * seg_len + seg_len / 2 - window / 2).astype(np.int64)
    starts = np.clip(starts, 0, max(length - window, 0))
    return (starts[:, None] + np.arange(window)[None, :]) % source_frames


def _resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    if width <= height:
        return short_side, max(short_side, round(height * short_side / width))
    return max(short_side, round(width * short_side / height)), short_side


def decode_clip(path: str | Path, spec: CacheSpec) -> ClipFeatures:
    """Decode a clip once: the frames the sampling can use, and its MFCC (zeros if it has no audio)."""
    import av  # here, not at import: the model and training loop must import on machines without PyAV

    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"media file not found: {path}")
    frames: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError(f"{path.name} has no video stream")
            video = container.streams.video[0]
            video.thread_type = "AUTO"
            streams = [video]
            resampler = None
            if container.streams.audio:
                streams.append(container.streams.audio[0])
                resampler = av.AudioResampler(format="flt", layout="mono", rate=spec.sample_rate)
            size: tuple[int, int] | None = None
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        if size is None:
                            size = _resized_size(frame.width, frame.height, spec.frame_size)
                        frames.append(frame.to_ndarray(width=size[0], height=size[1], format="rgb24", interpolation="AREA"))
                    elif resampler is not None:
                        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            if resampler is not None:
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as exc:
        raise DecodeError(f"cannot decode {path.name}: {exc}") from exc
    if not frames:
        raise DecodeError(f"{path.name} has no decodable video frames")
    indices = segment_windows(len(frames), spec.segments, spec.frames_per_segment, spec.window)
    sampled = np.stack([frames[i] for i in indices.reshape(-1)]).reshape(
        spec.segments, spec.window, *frames[0].shape
    )  # (S, window, H, W, 3)
    waveform = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    has_audio = waveform.size > 0
    if has_audio:
        coefficients = mfcc(
            waveform,
            sample_rate=spec.sample_rate,
            n_mfcc=spec.n_mfcc,
            n_fft=spec.n_fft,
            hop_length=spec.hop_length,
            n_mels=spec.n_mels,
            max_frames=spec.mfcc_frames,
        )
    else:
        coefficients = np.zeros((1, spec.n_mfcc), dtype=np.float32)
    return ClipFeatures(frames=sampled, mfcc=coefficients, has_audio=has_audio, source_frames=len(frames))


# --- the cache -------------------------------------------------------------------------------------


def cache_key(clip_id: str) -> str:
    """A file-name-safe key for a clip id (a hash suffix keeps sanitised ids distinct)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(clip_id))
    if safe != str(clip_id) or not safe:
        safe = f"{safe}-{hashlib.sha1(str(clip_id).encode()).hexdigest()[:8]}"
    return safe


def _write_clip(media_path: str, target: str, spec: CacheSpec) -> None:
    features = decode_clip(media_path, spec)
    temporary = f"{target}.{os.getpid()}.tmp"
    with open(temporary, "wb") as handle:
        np.savez(
            handle,
            frames=features.frames,
            mfcc=features.mfcc,
            has_audio=np.array(features.has_audio),
            source_frames=np.array(features.source_frames),
        )
    os.replace(temporary, target)


def _prepare_one(clip_id: str, media_path: str, target: str, spec: CacheSpec) -> tuple[str, str | None]:
    try:
        _write_clip(media_path, target, spec)
    except ModelError as exc:
        return clip_id, str(exc)
    return clip_id, None


def _check_spec(cache_dir: Path, spec: CacheSpec) -> None:
    spec_file = cache_dir / "cache.json"
    if spec_file.exists():
        stored = json.loads(spec_file.read_text(encoding="utf-8"))
        if stored != asdict(spec):
            raise CacheMismatchError(
                f"{cache_dir} holds features for other settings ({stored}); use another --out folder"
            )
    else:
        spec_file.write_text(json.dumps(asdict(spec), indent=2), encoding="utf-8")


def prepare_features(
    clips: Iterable[tuple[str, str | Path]],
    cache_dir: str | Path,
    spec: CacheSpec,
    *,
    workers: int = 1,
    on_clip: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> PrepareReport:
    """Cache every ``(clip_id, media_path)``, skipping clips already cached; ``on_clip`` ticks a progress bar.

    ``executor`` (e.g. ``curation.cluster.dask_executor``'s) decodes instead of local processes; its
    workers write the cache files (atomically) into ``cache_dir``, which they must see at the same
    path. A clip whose task was lost with its worker is reported as failed and retried next run.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _check_spec(cache_dir, spec)
    report = PrepareReport()
    todo: list[tuple[str, str, str]] = []
    for clip_id, media_path in clips:
        target = cache_dir / f"{cache_key(clip_id)}.npz"
        if target.exists():
            report.skipped += 1
            if on_clip is not None:
                on_clip(clip_id)
        else:
            todo.append((str(clip_id), str(media_path), str(target)))

    def record(clip_id: str, error: str | None) -> None:
        if error is None:
            report.written += 1
        else:
            report.failed[clip_id] = error
        if on_clip is not None:
            on_clip(clip_id)

    if executor is not None:
        from curation.cluster import is_lost_worker

        futures = {executor.submit(_prepare_one, clip_id, media_path, target, spec): clip_id
                   for clip_id, media_path, target in todo}
        for future in as_completed(futures):
            try:
                record(*future.result())
            except Exception as exc:
                if not is_lost_worker(exc):
                    raise
                record(futures[future], f"its worker was lost ({exc}); run again to retry")
        return report
    if workers <= 1:
        for clip_id, media_path, target in todo:
            record(*_prepare_one(clip_id, media_path, target, spec))
        return report
    # spawn: the parent may hold torch threads, which do not survive fork well.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_prepare_one, clip_id, media_path, target, spec) for clip_id, media_path, target in todo]
        for future in as_completed(futures):
            record(*future.result())
    return report


def load_cached_clip(cache_dir: str | Path, clip_id: str) -> ClipFeatures:
    """Read one clip's cached features."""
    path = Path(cache_dir) / f"{cache_key(clip_id)}.npz"
    if not path.exists():
        raise CacheMismatchError(f"clip {clip_id!r} is not in the feature cache {cache_dir}; run prepare-features")
    with np.load(path) as data:
        return ClipFeatures(
            frames=data["frames"],
            mfcc=data["mfcc"],
            has_audio=bool(data["has_audio"]),
            source_frames=int(data["source_frames"]),
        )


def read_cache_spec(cache_dir: str | Path) -> CacheSpec:
    spec_file = Path(cache_dir) / "cache.json"
    if not spec_file.exists():
        raise CacheMismatchError(f"{cache_dir} is not a feature cache (no cache.json); run prepare-features")
    return CacheSpec(**json.loads(spec_file.read_text(encoding="utf-8")))
