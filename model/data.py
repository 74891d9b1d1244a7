"""Datasets of clips for AV-CPNet: segment sampling, square crops, augmentation, tiled MFCC.

Each item is a dict: ``frames`` (S, 3, T, H, W) uint8, ``mfcc`` (mfcc_frames, n_mfcc) float32,
``has_audio`` bool, ``label`` and ``index`` (position in the clip list) as int64 scalars.
Randomness comes from torch's generator, so DataLoader workers are seeded the torch way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torch.utils.data import Dataset

from model.avcpnet import ModelConfig
from model.export_reader import ClipRecord
from model.features import (
    CacheMismatchError,
    CacheSpec,
    ClipFeatures,
    decode_clip,
    load_cached_clip,
    read_cache_spec,
)

__all__ = ["CachedClipDataset", "DecodingClipDataset", "cache_spec_for", "sample_clip"]


def cache_spec_for(config: ModelConfig, jitter: int | None = None) -> CacheSpec:
    """The cache a model configuration reads; ``jitter`` defaults to half a segment's frames."""
    return CacheSpec(
        segments=config.segments,
        frames_per_segment=config.frames_per_segment,
        jitter=config.frames_per_segment // 2 if jitter is None else jitter,
        frame_size=config.frame_size,
        mfcc_frames=config.mfcc_frames,
        n_mfcc=config.n_mfcc,
    )


def _square_crop(frames: Tensor, size: int, train: bool) -> Tensor:
    # frames: (N, 3, H, W); a corner or the centre when training, the centre otherwise.
    height, width = frames.shape[-2:]
    side = min(height, width)
    corners = [(0, 0), (0, width - side), (height - side, 0), (height - side, width - side)]
    centre = ((height - side) // 2, (width - side) // 2)
    top, left = centre
    if train:
        choice = int(torch.randint(5, ()))
        top, left = centre if choice == 4 else corners[choice]
    crop = frames[..., top : top + side, left : left + side]
    if side != size:
        crop = TF.resize(crop, [size, size], antialias=True)
    return crop


def _augment(frames: Tensor, probability: float) -> Tensor:
    # frames: (N, 3, H, W) uint8; one transform for the whole clip, as the authors did.
    if float(torch.rand(())) >= probability:
        return frames
    kind = int(torch.randint(3, ()))
    if kind == 0:
        return TF.horizontal_flip(frames)
    if kind == 1:
        return TF.rotate(frames, float(torch.empty(()).uniform_(-20.0, 20.0)))
    return TF.adjust_brightness(frames, float(torch.empty(()).uniform_(0.5, 1.0)))


def sample_clip(
    features: ClipFeatures, spec: CacheSpec, *, train: bool, augment_probability: float = 0.3
) -> tuple[Tensor, Tensor]:
    """Frames (S, 3, T, size, size) uint8 and MFCC (mfcc_frames, n_mfcc) float32 from decoded features."""
    window = features.frames.shape[1]
    slack = window - spec.frames_per_segment
    offset = int(torch.randint(slack + 1, ())) if train else slack // 2
    chosen = torch.from_numpy(np.ascontiguousarray(features.frames[:, offset : offset + spec.frames_per_segment]))
    segments, steps = chosen.shape[:2]
    flat = chosen.flatten(0, 1).permute(0, 3, 1, 2)  # (S*T, 3, H, W)
    flat = _square_crop(flat, spec.frame_size, train)
    if train and augment_probability > 0:
        flat = _augment(flat, augment_probability)
    frames = flat.reshape(segments, steps, 3, spec.frame_size, spec.frame_size).transpose(1, 2)  # (S, 3, T, H, W)

    coefficients = torch.from_numpy(np.asarray(features.mfcc, dtype=np.float32))  # (F, n_mfcc)
    repeats = -(-spec.mfcc_frames // coefficients.shape[0])
    mfcc = coefficients.repeat(repeats, 1)[: spec.mfcc_frames]  # tiled along time: (mfcc_frames, n_mfcc)
    return frames.contiguous(), mfcc


class _ClipDataset(Dataset[dict[str, Tensor]]):
    def __init__(self, clips: Sequence[ClipRecord], spec: CacheSpec, *, train: bool, augment_probability: float) -> None:
        self.clips = list(clips)
        self.spec = spec
        self.train = train
        self.augment_probability = augment_probability

    def __len__(self) -> int:
        return len(self.clips)

    def _features(self, clip: ClipRecord) -> ClipFeatures:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        clip = self.clips[index]
        features = self._features(clip)
        frames, mfcc = sample_clip(features, self.spec, train=self.train, augment_probability=self.augment_probability)
        return {
            "frames": frames,
            "mfcc": mfcc,
            "has_audio": torch.tensor(features.has_audio),
            "label": torch.tensor(clip.label_index, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
        }


class CachedClipDataset(_ClipDataset):
    """Clips read from a feature cache made by :func:`model.features.prepare_features`."""

    def __init__(
        self,
        clips: Sequence[ClipRecord],
        cache_dir: str | Path,
        config: ModelConfig,
        *,
        train: bool,
        augment_probability: float = 0.3,
    ) -> None:
        spec = read_cache_spec(cache_dir)
        wanted = cache_spec_for(config, jitter=spec.jitter)
        if spec != wanted:
            raise CacheMismatchError(
                f"the feature cache {cache_dir} was made for other settings ({spec}); the model needs {wanted}"
            )
        super().__init__(clips, spec, train=train, augment_probability=augment_probability)
        self.cache_dir = Path(cache_dir)

    def _features(self, clip: ClipRecord) -> ClipFeatures:
        return load_cached_clip(self.cache_dir, clip.clip_id)


class DecodingClipDataset(_ClipDataset):
    """The same items, decoded from the media file every time (the loader benchmark's baseline)."""

    def __init__(
        self, clips: Sequence[ClipRecord], config: ModelConfig, *, train: bool, augment_probability: float = 0.3
    ) -> None:
        super().__init__(clips, cache_spec_for(config), train=train, augment_probability=augment_probability)

    def _features(self, clip: ClipRecord) -> ClipFeatures:
        return decode_clip(clip.media_path, self.spec)
