"""Datasets of clips for AV-CPNet: segment sampling, square crops, augmentation, tiled MFCC.

Each item is a dict: ``frames`` (S, 3, T, H, W) uint8, ``mfcc`` (mfcc_frames, n_mfcc) float32,
``has_audio`` bool, ``label`` and ``index`` (position in the clip list) as int64 scalars.

A training item's randomness (temporal offset, crop, augmentation) is drawn from a generator seeded
by (seed, epoch, index) alone: the same epoch gives the same items whatever the number of DataLoader
workers, and a resumed run draws exactly what the uninterrupted run drew. The training sampler
(:class:`EpochSampler`) hands the dataset ``(epoch, index)`` pairs for that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler

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

__all__ = ["CachedClipDataset", "DecodingClipDataset", "EpochSampler", "cache_spec_for", "item_generator", "sample_clip"]


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


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one training item's randomness: a function of (seed, epoch, index) only."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class EpochSampler(Sampler[tuple[int, int]]):
    """A shuffled (distributed) sampler whose indices come with their epoch: ``(epoch, index)``.

    The order is :class:`~torch.utils.data.DistributedSampler`'s (a permutation seeded by seed + epoch,
    this rank's share of it; one replica outside ``torchrun``), so :meth:`set_epoch` must be called
    before every epoch, or every epoch repeats the first one's order.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        self.order = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in self.order)


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (), generator=generator))


def _square_crop(frames: Tensor, size: int, train: bool, generator: torch.Generator | None = None) -> Tensor:
    # frames: (N, 3, H, W); a corner or the centre when training, the centre otherwise.
    height, width = frames.shape[-2:]
    side = min(height, width)
    corners = [(0, 0), (0, width - side), (height - side, 0), (height - side, width - side)]
    centre = ((height - side) // 2, (width - side) // 2)
    top, left = centre
    if train:
        choice = _randint(5, generator)
        top, left = centre if choice == 4 else corners[choice]
    crop = frames[..., top : top + side, left : left + side]
    if side != size:
        crop = TF.resize(crop, [size, size], antialias=True)
    return crop


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _augment(frames: Tensor, probability: float, generator: torch.Generator | None = None) -> Tensor:
    # frames: (N, 3, H, W) uint8; one transform for the whole clip, as the authors did.
    if float(torch.rand((), generator=generator)) >= probability:
        return frames
    kind = _randint(3, generator)
    if kind == 0:
        return TF.horizontal_flip(frames)
    if kind == 1:
        return TF.rotate(frames, _uniform(-20.0, 20.0, generator))
    return TF.adjust_brightness(frames, _uniform(0.5, 1.0, generator))


def sample_clip(
    features: ClipFeatures,
    spec: CacheSpec,
    *,
    train: bool,
    augment_probability: float = 0.3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Frames (S, 3, T, size, size) uint8 and MFCC (mfcc_frames, n_mfcc) float32 from decoded features.

    Training draws from ``generator`` (torch's global one when None); evaluation draws nothing.
    """
    window = features.frames.shape[1]
    slack = window - spec.frames_per_segment
    offset = _randint(slack + 1, generator) if train else slack // 2
    chosen = torch.from_numpy(np.ascontiguousarray(features.frames[:, offset : offset + spec.frames_per_segment]))
    segments, steps = chosen.shape[:2]
    flat = chosen.flatten(0, 1).permute(0, 3, 1, 2)  # (S*T, 3, H, W)
    flat = _square_crop(flat, spec.frame_size, train, generator)
    if train and augment_probability > 0:
        flat = _augment(flat, augment_probability, generator)
    frames = flat.reshape(segments, steps, 3, spec.frame_size, spec.frame_size).transpose(1, 2)  # (S, 3, T, H, W)

    coefficients = torch.from_numpy(np.asarray(features.mfcc, dtype=np.float32))  # (F, n_mfcc)
    repeats = -(-spec.mfcc_frames // coefficients.shape[0])
    mfcc = coefficients.repeat(repeats, 1)[: spec.mfcc_frames]  # tiled along time: (mfcc_frames, n_mfcc)
    return frames.contiguous(), mfcc


class _ClipDataset(Dataset[dict[str, Tensor]]):
    def __init__(
        self, clips: Sequence[ClipRecord], spec: CacheSpec, *, train: bool, augment_probability: float, seed: int = 0
    ) -> None:
        self.clips = list(clips)
        self.spec = spec
        self.train = train
        self.augment_probability = augment_probability
        self.seed = seed

    def __len__(self) -> int:
        return len(self.clips)

    def _features(self, clip: ClipRecord) -> ClipFeatures:
        raise NotImplementedError

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        # An (epoch, index) pair comes from EpochSampler; a bare index draws from torch's global generator.
        epoch, index = key if isinstance(key, tuple) else (None, key)
        clip = self.clips[index]
        features = self._features(clip)
        generator = item_generator(self.seed, epoch, index) if self.train and epoch is not None else None
        frames, mfcc = sample_clip(features, self.spec, train=self.train, augment_probability=self.augment_probability,
                                   generator=generator)
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
        seed: int = 0,
    ) -> None:
        spec = read_cache_spec(cache_dir)
        wanted = cache_spec_for(config, jitter=spec.jitter)
        if spec != wanted:
            raise CacheMismatchError(
                f"the feature cache {cache_dir} was made for other settings ({spec}); the model needs {wanted}"
            )
        super().__init__(clips, spec, train=train, augment_probability=augment_probability, seed=seed)
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
