"""Training and evaluating AV-CPNet on an export: ``train_one_epoch``, ``evaluate``, one ``main(cfg)``.

The full preset is the authors' recipe (AdamW 1.5e-4, weight decay 0.02, warm-up for 1.5 epochs from
0.1x then cosine to 0.01x stepped once per epoch, 30 epochs, batch 8 with 4 accumulation steps,
seed 1), with the best epoch chosen on validation and the test split evaluated once at the end.
Runs under ``torchrun`` use DDP with a distributed sampler; rank 0 validates, logs and saves.

>>> cfg = TrainConfig.tiny(export="EXPORT", out="RUN")
>>> cfg.preset, cfg.device
('tiny', 'cpu')
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import random
import time
import tomllib
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from curation.spreadsheet import neutralise_frame
from model.avcpnet import PRESETS, AVCPNet, ModelConfig, build_avcpnet, load_pretrained_branches
from model.checkpoints import load_checkpoint, save_checkpoint
from model.data import CachedClipDataset, EpochSampler, cache_spec_for
from model.errors import ModelError
from model.export_reader import SPLITS, ClipRecord, ExportTable, UnknownSplitError, read_export
from model.features import CacheMismatchError, PrepareReport, cache_key, prepare_features, read_cache_spec
from model.labels import LabelSet
from model.loss import EPCELoss
from model.metrics import classification_metrics, plot_confusion
from model.visual import CheckpointMismatchError

__all__ = [
    "FeatureCacheError",
    "PretrainedWeightsWarning",
    "Progress",
    "ResumeMismatchError",
    "TrainConfig",
    "evaluate",
    "evaluate_checkpoint",
    "load_trained_model",
    "lr_factor",
    "main",
    "check_model_overrides",
    "pretrained_warning",
    "prepare_export_features",
    "read_config_file",
    "resolve_device",
    "resolve_jitter",
    "train_one_epoch",
]


class FeatureCacheError(ModelError):
    """Clips whose features could not be prepared."""


class ResumeMismatchError(ModelError):
    """``--resume`` asked with settings that would make the run another one than the one stored."""


class PretrainedWeightsWarning(UserWarning):
    """The full preset is about to train from random weights (the authors start from pretrained ones)."""


class Progress(Protocol):
    """What a shell passes to show progress; the library itself never prints."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, steps: int = 1) -> None: ...

    def finish(self) -> None: ...


@dataclass
class TrainConfig:
    export: str = ""
    out: str = "runs/avcpnet"
    cache: str | None = None  # default: <export>/features-<preset>
    preset: str = "full"
    # ablations
    modalities: str = "audio-visual"  # or "visual", "audio"
    local_stage: bool = True
    global_stage: bool = True
    loss: str = "ep-ce"  # or "ce"
    lambdas: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # positive, neutral, negative
    # optimisation (the authors' recipe)
    epochs: int = 30
    batch_size: int = 8
    accumulation_steps: int = 4
    lr: float = 1.5e-4
    weight_decay: float = 0.02
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_epochs: float = 1.5
    warmup_start_factor: float = 0.1
    min_lr_factor: float = 0.01
    augment_probability: float = 0.3
    seed: int = 1
    # data
    fold: int = 1
    jitter: int | None = None  # None: the cache's when one exists, else half a segment's frames
    workers: int = 4
    # model choices the specification leaves open (ModelConfig fields over the preset's: dilations,
    # fusion_ff_dim, fusion_heads, global_heads, fusion_dropout, ...)
    model: dict[str, Any] = field(default_factory=dict)
    # pretrained branches (local files)
    swin2d_checkpoint: str | None = None
    swin3d_checkpoint: str | None = None
    resnet_checkpoint: str | None = None
    # machinery
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    resume: bool = False
    force: bool = False  # resume although the stored run's schedule or settings differ
    max_steps_per_epoch: int | None = None

    @classmethod
    def full(cls, **overrides: Any) -> TrainConfig:
        return cls(preset="full", **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> TrainConfig:
        values: dict[str, Any] = dict(
            preset="tiny", epochs=2, batch_size=4, accumulation_steps=1, lr=1e-3, warmup_epochs=0.0,
            workers=0, device="cpu",
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def for_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """The preset's recipe (``tiny`` or ``full``) with ``overrides`` on top."""
        if preset == "tiny":
            return cls.tiny(**overrides)
        if preset == "full":
            return cls.full(**overrides)
        raise ModelError(f"unknown preset {preset!r}; choose tiny or full")

    def cache_dir(self) -> Path:
        return Path(self.cache) if self.cache else Path(self.export) / f"features-{self.preset}"


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier for a 0-based epoch: linear warm-up from ``warmup_start_factor``, then cosine.

    >>> round(lr_factor(0, TrainConfig()), 3), round(lr_factor(1, TrainConfig()), 3), round(lr_factor(29, TrainConfig()), 4)
    (0.1, 0.7, 0.013)
    """
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * epoch / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
    progress = min((epoch - cfg.warmup_epochs) / span, 1.0)
    return cfg.min_lr_factor + (1.0 - cfg.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# --- the run's settings from a file -----------------------------------------------------------------

# TrainConfig fields a config file may not set: where the run is, and how this invocation behaves.
_INVOCATION_ONLY = ("resume", "force")
# ModelConfig fields the training settings own (the label set, and the ablation switches).
_MODEL_FIELDS_OWNED = {"num_classes": "the export's label set", "modalities": "modalities",
                       "local_stage": "local_stage", "global_stage": "global_stage"}


def _check_value(source: str, name: str, value: Any, default: Any) -> Any:
    """``value`` for a field whose default is ``default``, or a one-line error naming the setting."""
    def wrong(kind: str) -> ModelError:
        return ModelError(f"{source}: {name} must be {kind}, not {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong("true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise wrong("a string")
    elif isinstance(default, list):
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
            raise wrong("a list of numbers")
        if default and all(isinstance(v, int) for v in default) and any(isinstance(v, float) for v in value):
            raise wrong("a list of integers")
    elif default is None and isinstance(value, bool | dict | list):
        raise wrong("a number or a string")
    return value


def _unknown(source: str, name: str, known: Sequence[str]) -> ModelError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ModelError(f"{source}: unknown setting {name!r}{hint}")


def check_model_overrides(values: dict[str, Any], source: str = "model settings") -> dict[str, Any]:
    """Validated ModelConfig overrides: known names, types of the defaults, not the fields training owns."""
    defaults = ModelConfig().to_dict()
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name in _MODEL_FIELDS_OWNED:
            raise ModelError(f"{source}: {name} is set by {_MODEL_FIELDS_OWNED[name]}, not in the model table")
        if name not in defaults:
            raise _unknown(source, name, list(defaults))
        checked[name] = _check_value(source, name, value, defaults[name])
    return checked


def read_config_file(path: str | Path) -> dict[str, Any]:
    """TrainConfig overrides from a TOML file: top-level training settings and a ``[model]`` table.

    Unknown names and values of the wrong type are refused with the setting named, so a typo never
    silently trains with a default. ``resume`` and ``force`` belong to the command line.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid TOML: {exc}") from exc
    defaults = asdict(TrainConfig())
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "model":
            if not isinstance(value, dict):
                raise ModelError(f"{path}: model must be a table ([model])")
            values["model"] = check_model_overrides(value, str(path))
            continue
        if name in _INVOCATION_ONLY:
            raise ModelError(f"{path}: {name} is given on the command line (--{name}), not in a config file")
        if name not in defaults:
            raise _unknown(str(path), name, list(defaults))
        values[name] = _check_value(str(path), name, value, defaults[name])
    return values


def _config_toml(cfg: TrainConfig) -> dict[str, Any]:
    """The run's settings as a config file that ``--config`` accepts (TOML has no null: unset ones are left out)."""
    values = {k: v for k, v in asdict(cfg).items() if v is not None and k not in _INVOCATION_ONLY and k != "model"}
    if cfg.model:
        values["model"] = dict(cfg.model)
    return values


# --- distributed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_name: str) -> _Dist:
    # torchrun sets these; a plain run has none of them.
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Dist()
    info = _Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        # Rank 0 may first decode missing features while the others wait: allow for it (or run
        # `curate prepare-features` before torchrun, as the README says).
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(hours=2))
    return info


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a device; under torchrun ``cuda`` is this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda asked for, but CUDA is not available")
    if name == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {name!r}; use auto, cpu or cuda") from exc


def _barrier(info: _Dist) -> None:
    if info.enabled:
        dist.barrier()


# --- steps ---------------------------------------------------------------------------------------


def _autocast(device: torch.device, enabled: bool):  # type: ignore[no-untyped-def]
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def _objective(model_output: Any, batch: dict[str, torch.Tensor], criterion: EPCELoss) -> torch.Tensor:
    """EP-CE(z) + EP-CE(z_v) + EP-CE(z_a); the audio head learns only from clips that have audio."""
    logits, visual_logits, audio_logits = model_output
    label = batch["label"]
    loss = criterion(logits, label)
    if visual_logits is not None and audio_logits is not None:
        loss = loss + criterion(visual_logits, label) + criterion(audio_logits, label, sample_mask=batch["has_audio"])
    return loss


def train_one_epoch(
    model: nn.Module,
    criterion: EPCELoss,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    device: torch.device,
    *,
    accumulation_steps: int = 1,
    amp: bool = True,
    max_steps: int | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` with gradient accumulation.

    Returns the mean loss, top-1 on the fly, and ``train_order``: a digest of the clip order this
    process saw (equal digests, equal order), which shows reshuffling and exact resumes in the log.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = min(len(loader), max_steps) if max_steps else len(loader)
    loss_sum, correct, seen = 0.0, 0, 0
    order = hashlib.sha1()
    if progress is not None:
        progress.start("train", total)
    for step, batch in enumerate(loader):
        if step >= total:
            break
        batch = _to_device(batch, device)
        updates = (step + 1) % accumulation_steps == 0 or step + 1 == total
        # DDP: skip the gradient all-reduce on micro-batches that do not update.
        sync = nullcontext() if updates or not isinstance(model, DistributedDataParallel) else model.no_sync()
        with sync:
            with _autocast(device, amp):
                output = model(batch["frames"], batch["mfcc"])
                loss = _objective(output, batch, criterion)
            (loss / accumulation_steps).backward()
        if updates:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += float(loss.detach()) * len(batch["label"])
        correct += int((output.logits.argmax(dim=-1) == batch["label"]).sum())
        seen += len(batch["label"])
        order.update(batch["index"].cpu().numpy().astype("<i8").tobytes())
        if progress is not None:
            progress.advance()
    if progress is not None:
        progress.finish()
    if dist.is_available() and dist.is_initialized():
        # every rank saw its own shard: report the epoch over all of them
        totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        loss_sum, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
    if seen == 0:
        raise ModelError("the training split produced no batches")
    return {"train_loss": loss_sum / seen, "train_top1": correct / seen, "train_order": order.hexdigest()[:16]}


AUXILIARY_FUSED = ("fused: visual_top1 and audio_top1 are auxiliary heads over the fused vectors (each has seen "
                   "both modalities); train with --modalities visual|audio for unimodal models")
AUXILIARY_UNIMODAL = "unimodal: the model has one branch, and its head is that modality's alone"


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    probabilities: np.ndarray  # (N, K) fused-head softmax
    labels: np.ndarray  # (N,)
    indices: np.ndarray  # (N,) positions in the dataset's clip list


@torch.no_grad()
def evaluate(
    model: nn.Module,
    criterion: EPCELoss,
    loader: DataLoader,
    device: torch.device,
    class_names: Sequence[str],
    *,
    amp: bool = True,
    progress: Progress | None = None,
) -> EvalResult:
    """Metrics of the fused head and the accuracies of the two auxiliary heads over ``loader``.

    In the audio-visual model the auxiliary heads read the *fused* vectors (as in the authors' code),
    so ``visual_top1`` / ``audio_top1`` are not unimodal accuracies; ``metrics["auxiliary_heads"]``
    says which a run's figures are. A ``--modalities visual|audio`` model is the unimodal baseline.
    """
    model.eval()
    probabilities, labels, indices, visual_pred, audio_pred, has_audio = [], [], [], [], [], []
    loss_sum = 0.0
    if progress is not None:
        progress.start("evaluate", len(loader))
    for batch in loader:
        batch = _to_device(batch, device)
        with _autocast(device, amp):
            output = model(batch["frames"], batch["mfcc"])
            loss_sum += float(_objective(output, batch, criterion)) * len(batch["label"])
        probabilities.append(torch.softmax(output.logits.float(), dim=-1).cpu())
        labels.append(batch["label"].cpu())
        indices.append(batch["index"].cpu())
        has_audio.append(batch["has_audio"].cpu())
        if output.visual_logits is not None:
            visual_pred.append(output.visual_logits.argmax(dim=-1).cpu())
        if output.audio_logits is not None:
            audio_pred.append(output.audio_logits.argmax(dim=-1).cpu())
        if progress is not None:
            progress.advance()
    if progress is not None:
        progress.finish()
    if not labels:
        raise ModelError("nothing to evaluate: the split produced no batches")
    probs = torch.cat(probabilities).numpy()
    y = torch.cat(labels).numpy()
    metrics = classification_metrics(y, probs.argmax(axis=1), class_names)
    metrics["loss"] = loss_sum / len(y)
    metrics["visual_top1"] = float((torch.cat(visual_pred).numpy() == y).mean()) if visual_pred else None
    if audio_pred:
        audio_hits = torch.cat(audio_pred).numpy() == y
        with_audio = torch.cat(has_audio).numpy()
        metrics["audio_top1"] = float(audio_hits.mean())
        # Clips without audio see only zeros; the audio head's accuracy on the rest is the informative one.
        metrics["audio_top1_with_audio"] = float(audio_hits[with_audio].mean()) if with_audio.any() else None
    else:
        metrics["audio_top1"] = metrics["audio_top1_with_audio"] = None
    metrics["auxiliary_heads"] = AUXILIARY_FUSED if visual_pred and audio_pred else AUXILIARY_UNIMODAL
    return EvalResult(metrics, probs, y, torch.cat(indices).numpy())


# --- pieces of main --------------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """This process's random-number states, as tensors and primitives (checkpoints load weights_only)."""
    numpy_state = np.random.get_state(legacy=False)
    version, python_state, gauss = random.getstate()
    return {
        "python": [version, torch.tensor(python_state, dtype=torch.int64), gauss],
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]),
                  "has_gauss": int(numpy_state["has_gauss"]), "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore_rng(state: dict[str, Any]) -> None:
    version, python_state, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in python_state.tolist()), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _all_rng_states(info: _Dist) -> list[dict[str, Any]]:
    """Every rank's states, in rank order (each rank draws its own dropout masks)."""
    own = _rng_state()
    if not info.enabled:
        return [own]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, own)
    return gathered


# Settings that make a run what it is: resuming with any of them changed continues another run.
_RUN_DEFINING = (
    "preset", "modalities", "local_stage", "global_stage", "loss", "lambdas", "epochs", "batch_size",
    "accumulation_steps", "lr", "weight_decay", "betas", "warmup_epochs", "warmup_start_factor", "min_lr_factor",
    "augment_probability", "seed", "fold", "jitter", "max_steps_per_epoch", "model",
)


def _check_resume(stored: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    current = asdict(cfg)
    stored = {**asdict(TrainConfig()), **stored}  # settings an older checkpoint lacks had their defaults
    changed = [name for name in _RUN_DEFINING if stored.get(name) != current[name]]
    if changed and not cfg.force:
        described = ", ".join(f"{name} {stored.get(name)!r} -> {current[name]!r}" for name in changed)
        raise ResumeMismatchError(
            f"{path} belongs to a run with other settings ({described}); resume with the stored ones, "
            f"start a new --out, or pass --force to continue with the new ones"
        )


def pretrained_warning(cfg: TrainConfig) -> str | None:
    """A warning when the full preset would train a branch from random weights, else None."""
    if cfg.preset != "full":
        return None
    missing = []
    if cfg.modalities in ("audio-visual", "visual") and not (cfg.swin2d_checkpoint or cfg.swin3d_checkpoint):
        missing.append("the visual branch (--swin3d-checkpoint or --swin2d-checkpoint)")
    if cfg.modalities in ("audio-visual", "audio") and not cfg.resnet_checkpoint:
        missing.append("the audio branch (--resnet-checkpoint)")
    if not missing:
        return None
    return ("the full preset starts " + " and ".join(missing) + " from random weights; the authors start from "
            "ImageNet/Kinetics checkpoints, and results from scratch are not comparable to theirs")


def resolve_jitter(cfg: TrainConfig, model_config: ModelConfig) -> int:
    """The cache's temporal jitter: the one asked for, else an existing cache's, else half a segment.

    A cache made for other sampling settings is refused here, with the differing settings named.
    """
    cache_dir = cfg.cache_dir()
    existing = read_cache_spec(cache_dir) if (cache_dir / "cache.json").is_file() else None
    jitter = cfg.jitter
    if jitter is None:
        jitter = existing.jitter if existing is not None else model_config.frames_per_segment // 2
    if jitter < 0:
        raise ModelError(f"jitter must be 0 or more frames, not {jitter}")
    if existing is not None:
        wanted = asdict(cache_spec_for(model_config, jitter))
        differing = {k: (v, wanted[k]) for k, v in asdict(existing).items() if wanted.get(k) != v}
        if differing:
            described = ", ".join(f"{k} {have} (this run needs {want})" for k, (have, want) in differing.items())
            hint = f"pass --jitter {existing.jitter} or " if set(differing) == {"jitter"} else ""
            raise CacheMismatchError(f"the feature cache {cache_dir} was made with {described}; {hint}"
                                     f"use another --cache")
    return jitter


def prepare_export_features(
    clips: Sequence[ClipRecord],
    cache_dir: Path,
    model_config: ModelConfig,
    *,
    jitter: int | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    strict: bool = True,
    executor: Executor | None = None,
) -> PrepareReport:
    """Cache the clips that are not cached yet; with ``strict`` a clip that fails to decode is an error.

    ``executor`` runs the decoding elsewhere (see :func:`model.features.prepare_features`)."""
    spec = cache_spec_for(model_config, jitter)
    missing = [clip for clip in clips if not (cache_dir / f"{cache_key(clip.clip_id)}.npz").exists()]
    if progress is not None and missing:
        progress.start("features", len(missing))
    report = prepare_features(
        [(clip.clip_id, clip.media_path) for clip in missing],
        cache_dir,
        spec,
        workers=workers,
        on_clip=(lambda _clip: progress.advance()) if progress is not None and missing else None,
        executor=executor,
    )
    if progress is not None and missing:
        progress.finish()
    if report.failed and strict:
        first = next(iter(report.failed.items()))
        raise FeatureCacheError(f"{len(report.failed)} clips could not be decoded (first: {first[0]}: {first[1]})")
    return report


def _cached(clips: Sequence[ClipRecord], cache_dir: Path) -> list[ClipRecord]:
    kept = [clip for clip in clips if (cache_dir / f"{cache_key(clip.clip_id)}.npz").exists()]
    if not kept:
        raise FeatureCacheError(f"no clip of the {clips[0].split} split could be decoded into {cache_dir}")
    return kept


def _loader(dataset: CachedClipDataset, cfg: TrainConfig, *, sampler: Any = None, seed: int = 0) -> DataLoader:
    # The generator only seeds the workers' global RNGs; training items draw from their own (model.data).
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        generator=generator,
        persistent_workers=cfg.workers > 0,
    )


def _model_config(cfg: TrainConfig, labels: LabelSet) -> ModelConfig:
    if cfg.preset not in PRESETS:
        raise ModelError(f"unknown preset {cfg.preset!r}; choose one of {sorted(PRESETS)}")
    return replace(
        PRESETS[cfg.preset],
        **check_model_overrides(cfg.model),
        num_classes=len(labels),
        modalities=cfg.modalities,
        local_stage=cfg.local_stage,
        global_stage=cfg.global_stage,
    )


def _criterion(cfg: TrainConfig, labels: LabelSet) -> EPCELoss:
    if cfg.loss not in ("ep-ce", "ce"):
        raise ModelError(f"loss must be 'ep-ce' or 'ce', not {cfg.loss!r}")
    lambdas = cfg.lambdas if cfg.loss == "ep-ce" else [0.0, 0.0, 0.0]
    return EPCELoss(labels.polarity_indices, lambdas)


def _unwrap(model: nn.Module) -> AVCPNet:
    return model.module if isinstance(model, DistributedDataParallel) else model  # type: ignore[return-value]


def main(
    cfg: TrainConfig,
    *,
    progress: Progress | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train on the export's train split, pick the best epoch on validation, evaluate test once.

    Writes ``RUN/last.pt``, ``RUN/best.pt``, ``RUN/metrics.jsonl`` (one line per epoch),
    ``RUN/config.json`` and ``RUN/test/`` (as :func:`evaluate_checkpoint`). Returns the summary.
    """
    info = _setup_distributed(cfg.device)
    device = resolve_device(cfg.device, info.local_rank if info.enabled else None)
    _seed_everything(cfg.seed + info.rank)
    out = Path(cfg.out)
    show = progress if info.main else None

    # Data: the export's clips, and their features (rank 0 prepares what is missing).
    export = read_export(cfg.export, fold=cfg.fold, seed=cfg.seed)
    labels = export.labels
    model_config = _model_config(cfg, labels)
    cfg = replace(cfg, jitter=resolve_jitter(cfg, model_config))  # the run records the jitter it used
    last_path, best_path = out / "last.pt", out / "best.pt"
    resumed = load_checkpoint(last_path) if cfg.resume and last_path.exists() else None
    if resumed is not None:
        if resumed["labels"] != labels.to_json() or resumed["model_config"] != model_config.to_dict():
            raise CheckpointMismatchError(f"{last_path} was trained on other labels or another model; cannot resume")
        _check_resume(resumed["config"], cfg, last_path)
    warning = pretrained_warning(cfg)
    if warning is not None and info.main:
        warnings.warn(warning, PretrainedWeightsWarning, stacklevel=2)
    cache_dir = cfg.cache_dir()
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        report = prepare_export_features(export.clips, cache_dir, model_config, jitter=cfg.jitter,
                                         workers=max(cfg.workers, 1), progress=show, strict=False)
        if report.failed:  # undecodable media are left out of every split, and listed
            (out / "skipped_clips.json").write_text(json.dumps(report.failed, indent=2))
    _barrier(info)
    train_clips, val_clips = _cached(export.split("train"), cache_dir), _cached(export.split("validation"), cache_dir)
    train_set = CachedClipDataset(train_clips, cache_dir, model_config, train=True,
                                  augment_probability=cfg.augment_probability, seed=cfg.seed)
    val_set = CachedClipDataset(val_clips, cache_dir, model_config, train=False)
    # One replica outside torchrun: the order of epoch e is a function of (seed, e) either way.
    sampler = EpochSampler(train_set, num_replicas=info.world_size, rank=info.rank, seed=cfg.seed)
    train_loader = _loader(train_set, cfg, sampler=sampler, seed=cfg.seed + info.rank)
    val_loader = _loader(val_set, cfg)

    # Model, loss, optimiser, and the per-epoch schedule.
    model: nn.Module = build_avcpnet(model_config)
    load_pretrained_branches(model, swin2d_checkpoint=cfg.swin2d_checkpoint,  # type: ignore[arg-type]
                             swin3d_checkpoint=cfg.swin3d_checkpoint, resnet_checkpoint=cfg.resnet_checkpoint)
    model = model.to(device)
    criterion = _criterion(cfg, labels).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, cfg))

    start_epoch, best_metric, best_epoch = 0, -1.0, -1
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        if cfg.force:  # a changed schedule takes effect from the next epoch on
            scheduler.base_lrs = [cfg.lr for _ in optimizer.param_groups]
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(int(resumed["epoch"]) + 1, cfg)
        start_epoch = int(resumed["epoch"]) + 1
        best_metric, best_epoch = float(resumed["best_metric"]), int(resumed.get("best_epoch", -1))
        states = resumed.get("rng") or []
        # The same states the uninterrupted run had here: dropout and the rest draw as it would have.
        if len(states) == info.world_size:
            _restore_rng(states[info.rank])
    if info.enabled:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def checkpoint(epoch: int, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            # CPU tensors: the weights load anywhere with a plain torch.load
            "model": {key: value.detach().cpu() for key, value in _unwrap(model).state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scheduler_epoch": scheduler.last_epoch,
            "epoch": epoch,
            "config": asdict(cfg),
            "model_config": model_config.to_dict(),
            "labels": labels.to_json(),
            "best_metric": best_metric,
            "best_epoch": best_epoch,
            "rng": rng,  # every rank's, after this epoch
        }

    if info.main:
        if start_epoch == 0:  # a fresh run in an old folder starts a fresh log
            (out / "metrics.jsonl").unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps({"train": asdict(cfg), "model": model_config.to_dict()}, indent=2))
        import tomli_w

        (out / "config.toml").write_text(tomli_w.dumps(_config_toml(cfg)), encoding="utf-8")
    for epoch in range(start_epoch, cfg.epochs):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        record: dict[str, Any] = {"epoch": epoch, "lr": lr}
        record.update(train_one_epoch(model, criterion, optimizer, train_loader, device,
                                      accumulation_steps=cfg.accumulation_steps, amp=cfg.amp,
                                      max_steps=cfg.max_steps_per_epoch, progress=show))
        scheduler.step()  # once per epoch, as the recipe intends
        rng = _all_rng_states(info)  # before validation, which draws nothing, on every rank
        if info.main:
            val = evaluate(_unwrap(model), criterion, val_loader, device, labels.names, amp=cfg.amp, progress=show).metrics
            record.update({f"val_{key}": val[key] for key in
                           ("loss", "top1", "uar", "macro_f1", "weighted_f1", "visual_top1", "audio_top1")})
            record["seconds"] = time.perf_counter() - started
            if val["top1"] > best_metric:
                best_metric, best_epoch = val["top1"], epoch
                save_checkpoint(best_path, checkpoint(epoch, rng))
            record["best_epoch"] = best_epoch
            save_checkpoint(last_path, checkpoint(epoch, rng))
            with (out / "metrics.jsonl").open("a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
            if on_epoch is not None:
                on_epoch(record)
        _barrier(info)

    skipped = len(export.clips) - sum((cache_dir / f"{cache_key(c.clip_id)}.npz").exists() for c in export.clips)
    summary: dict[str, Any] = {"best_epoch": best_epoch, "best_val_top1": best_metric, "out": str(out),
                               "skipped_clips": skipped}
    if info.main:
        if not best_path.exists():
            raise ModelError(f"no best checkpoint in {out}: did training run any epoch?")
        test = evaluate_checkpoint(best_path, cfg.export, "test", out / "test", cache_dir=cache_dir,
                                   device=str(device), workers=cfg.workers, progress=show)
        summary["test"] = test
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _barrier(info)
    if info.enabled:
        dist.destroy_process_group()
    return summary


def load_trained_model(path: str | Path) -> tuple[AVCPNet, LabelSet, dict[str, Any]]:
    """The model of a training checkpoint, its label set and the checkpoint dict; each misfit in one line."""
    state = load_checkpoint(path)
    model_config = ModelConfig.from_dict(state["model_config"])
    labels = LabelSet.from_json_rows(state["labels"], source=f"{path} labels")
    if len(labels) != model_config.num_classes:
        raise CheckpointMismatchError(f"{path} lists {len(labels)} labels but its model has "
                                      f"{model_config.num_classes} classes")
    model = build_avcpnet(model_config)
    own, stored = model.state_dict(), state["model"]
    misfits = sorted(set(own) ^ set(stored)) or [key for key in own if own[key].shape != stored[key].shape]
    if misfits:
        # load_state_dict would say this in one line per tensor; the first is enough to act on.
        first = misfits[0]
        detail = (f"{first} is {tuple(stored[first].shape)}, the model needs {tuple(own[first].shape)}"
                  if first in own and first in stored else f"{first} is {'missing' if first in own else 'unexpected'}")
        raise CheckpointMismatchError(f"{path}: the weights do not fit the stored model configuration "
                                      f"({detail}; {len(misfits)} tensors differ)")
    model.load_state_dict(stored)
    return model, labels, state


def evaluate_checkpoint(
    checkpoint: str | Path,
    export: str | Path | ExportTable,
    split: str,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    workers: int = 0,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on one split; write ``predictions.csv``, ``metrics.json`` and ``confusion.png``."""
    if split not in SPLITS:
        raise UnknownSplitError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    model, labels, state = load_trained_model(checkpoint)
    train_cfg = TrainConfig.from_dict(state["config"])
    table = export if isinstance(export, ExportTable) else read_export(export, fold=train_cfg.fold, seed=train_cfg.seed)
    if table.labels.names != labels.names:
        raise CheckpointMismatchError(
            f"the checkpoint was trained on labels {list(labels.names)}, the export has {list(table.labels.names)}"
        )
    clips = table.split(split)
    model_config = ModelConfig.from_dict(state["model_config"])
    cache = Path(cache_dir) if cache_dir is not None else table.root / f"features-{train_cfg.preset}"
    prepare_export_features(clips, cache, model_config, jitter=train_cfg.jitter, workers=max(workers, 1),
                            progress=progress, strict=False)
    evaluated = _cached(clips, cache)
    skipped = [clip.clip_id for clip in clips if clip not in evaluated]
    clips = evaluated
    run_cfg = replace(train_cfg, workers=workers, batch_size=batch_size or train_cfg.batch_size)
    loader = _loader(CachedClipDataset(clips, cache, model_config, train=False), run_cfg)
    torch_device = resolve_device(device)
    model.to(torch_device)
    result = evaluate(model, _criterion(train_cfg, labels).to(torch_device), loader, torch_device, labels.names,
                      amp=train_cfg.amp, progress=progress)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    rows = pd.DataFrame(
        {
            "clip_id": [clips[i].clip_id for i in result.indices],
            "label": [labels.names[y] for y in result.labels],
            "predicted": [labels.names[p] for p in result.probabilities.argmax(axis=1)],
        }
    )
    for k, name in enumerate(labels.names):
        rows[f"p_{name}"] = result.probabilities[:, k].round(6)
    neutralise_frame(rows).to_csv(out / "predictions.csv", index=False)  # clip ids and labels, for a spreadsheet
    metrics = {"split": split, "checkpoint": str(checkpoint), "epoch": int(state["epoch"]), **result.metrics,
               "skipped_clips": skipped}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(result.metrics["confusion"], labels.names, out / "confusion.png", title=f"{split} (row-normalised)")
    return metrics
