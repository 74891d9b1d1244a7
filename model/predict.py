"""Labelling videos with a trained AV-CPNet checkpoint: per-clip probabilities, top label, polarity, heads.

Each raw video takes the path its training clips took: probed and checked against the media policy
and normalised with FFmpeg exactly as ``curate ingest`` does (H.264 30 fps CFR, AAC 44.1 kHz, into a
temporary file), then decoded with :func:`model.features.decode_clip` and sampled as evaluation
samples (centre offsets and crops). Clips of an export were normalised at ingest: they are read from
the export's feature cache when its settings are the checkpoint's, and decoded otherwise.

A video that cannot be used (missing, not a video, outside the policy, undecodable) becomes a row with
``status = "error"`` and the reason; the other videos are still labelled. A clip without an audio
track gets zero MFCC, as in training, and ``has_audio = False``.

``visual_head`` and ``audio_head`` are the labels of the two auxiliary heads. They read the *fused*
segment features (after cross-modal attention), so they are not unimodal models; training with
``modalities = "visual"`` or ``"audio"`` gives those.

>>> prediction = ClipPrediction(path="clip.mp4", error="not a media file")
>>> prediction.status
'error'
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from curation.errors import MediaError
from curation.spreadsheet import neutralise_cell
from model.avcpnet import AVCPNet, ModelConfig
from model.data import cache_spec_for, sample_clip
from model.errors import ModelError
from model.export_reader import SPLITS, ExportTable, UnknownSplitError, read_export
from model.features import (
    CacheSpec,
    ClipFeatures,
    DecodeError,
    decode_clip,
    load_cached_clip,
    read_cache_spec,
)
from model.labels import LabelSet
from model.train import Progress, TrainConfig, load_trained_model, resolve_device
from model.visual import CheckpointMismatchError

__all__ = ["ClipPrediction", "Predictions", "predict_export", "predict_videos", "write_predictions"]


@dataclass(frozen=True)
class ClipPrediction:
    """One video's row: the fused head's probabilities and label, or the reason it has none."""

    path: str  # as given (a video) or the export's media path
    error: str | None = None
    probabilities: tuple[float, ...] | None = None  # fused head softmax, in the label set's order
    predicted: str | None = None
    polarity: str | None = None  # of the predicted label
    visual_head: str | None = None  # auxiliary head over the fused visual vector
    audio_head: str | None = None  # auxiliary head over the fused audio vector
    has_audio: bool | None = None
    clip_id: str | None = None  # export clips only
    label: str | None = None  # the export's label, export clips only

    @property
    def status(self) -> str:
        return "error" if self.error is not None else "ok"


@dataclass(frozen=True)
class Predictions:
    """Every row, in the order the videos were given (or the export lists them)."""

    checkpoint: str
    epoch: int
    labels: LabelSet
    device: str
    rows: tuple[ClipPrediction, ...]
    export: str | None = None
    split: str | None = None
    feature_source: dict[str, int] = field(default_factory=dict)  # "cache" / "decoded" -> clips

    @property
    def failures(self) -> tuple[ClipPrediction, ...]:
        return tuple(row for row in self.rows if row.error is not None)


# --- one batch at a time -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    position: int  # in the rows
    template: ClipPrediction
    frames: torch.Tensor  # (S, 3, T, H, W) uint8, centre offsets and crops
    mfcc: torch.Tensor  # (mfcc_frames, n_mfcc), tiled; zeros without audio
    has_audio: bool


@dataclass
class _Runner:
    """A loaded checkpoint on its device, turning decoded clips into rows a batch at a time."""

    model: AVCPNet
    labels: LabelSet
    spec: CacheSpec
    device: torch.device
    amp: bool
    batch_size: int

    def predict(
        self,
        items: Sequence[tuple[ClipPrediction, Callable[[], ClipFeatures]]],
        progress: Progress | None,
    ) -> list[ClipPrediction]:
        """``items`` pairs a row template with the function that decodes its clip; rows keep that order."""
        rows: list[ClipPrediction | None] = []
        if progress is not None:
            progress.start("predict", len(items))
        pending: list[_Sample] = []

        def flush() -> None:
            for sample, row in zip(pending, self._forward(pending), strict=True):
                rows[sample.position] = row
            if progress is not None:
                progress.advance(len(pending))
            pending.clear()

        for template, features_of in items:
            position = len(rows)
            rows.append(None)
            try:
                features = features_of()
                frames, mfcc = sample_clip(features, self.spec, train=False)
            except Exception as exc:  # noqa: BLE001 - one broken video must not cost the others their rows
                row = replace(template, error=_reason(exc))
                rows[position] = row
                if progress is not None:
                    progress.advance()
                continue
            pending.append(_Sample(position, template, frames, mfcc, features.has_audio))
            if len(pending) == self.batch_size:
                flush()
        if pending:
            flush()
        if progress is not None:
            progress.finish()
        return [row for row in rows if row is not None]

    @torch.no_grad()
    def _forward(self, batch: Sequence[_Sample]) -> list[ClipPrediction]:
        frames = torch.stack([sample.frames for sample in batch]).to(self.device)  # (B, S, 3, T, H, W) uint8
        mfcc = torch.stack([sample.mfcc for sample in batch]).to(self.device)  # (B, mfcc_frames, n_mfcc)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                            enabled=self.amp and self.device.type == "cuda"):
            output = self.model(frames, mfcc)
        probabilities = torch.softmax(output.logits.float(), dim=-1).cpu()  # (B, K)
        visual = output.visual_logits.argmax(dim=-1).cpu() if output.visual_logits is not None else None  # (B,)
        audio = output.audio_logits.argmax(dim=-1).cpu() if output.audio_logits is not None else None  # (B,)
        names, polarities = self.labels.names, self.labels.polarities
        rows = []
        for b, sample in enumerate(batch):
            top = int(probabilities[b].argmax())
            rows.append(replace(
                sample.template,
                probabilities=tuple(round(float(p), 6) for p in probabilities[b]),
                predicted=names[top],
                polarity=polarities[top],
                visual_head=names[int(visual[b])] if visual is not None else None,
                audio_head=names[int(audio[b])] if audio is not None else None,
                has_audio=sample.has_audio,
            ))
        return rows


def _reason(exc: Exception) -> str:
    # Errors raised on purpose carry a sentence; anything else is named by its type (as ingest does).
    if isinstance(exc, ModelError | MediaError | OSError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _runner(checkpoint: str | Path, device: str, batch_size: int | None) -> tuple[_Runner, dict[str, Any]]:
    model, labels, state = load_trained_model(checkpoint)
    train_cfg = TrainConfig.from_dict(state["config"])
    model_config = ModelConfig.from_dict(state["model_config"])
    if batch_size is not None and batch_size < 1:
        raise ModelError(f"batch size must be at least 1, not {batch_size}")
    torch_device = resolve_device(device)
    model.to(torch_device).eval()  # eval: dropout off and BatchNorm on its running statistics
    # The sampling the model was trained on: the run records its cache's jitter (None in old runs:
    # the default, half a segment), and the centre offset depends on it.
    spec = cache_spec_for(model_config, train_cfg.jitter)
    runner = _Runner(model, labels, spec, torch_device, train_cfg.amp, batch_size or train_cfg.batch_size)
    return runner, state


# --- raw videos --------------------------------------------------------------------------------------


def _normalised_features(
    path: Path, spec: CacheSpec, policy: Any, ffmpeg_path: str | None, workdir: Path, position: int
) -> ClipFeatures:
    """Probe, check the policy and normalise as ``curate ingest`` does, then decode the master."""
    from curation.ingest.normalise import normalise
    from curation.ingest.probe import probe, validate

    if not path.exists():
        raise DecodeError("file not found")  # the row names the path
    if not path.is_file():
        raise DecodeError("not a file")
    probed = probe(path, check_silence=False)  # silence is reported by ingest, never used by the model
    validate(probed, policy)
    # A folder per video, so a decoding error names the video, not a temporary name.
    master = workdir / str(position) / path.with_suffix(".mp4").name
    normalise(path, master, probed, policy, ffmpeg_path=ffmpeg_path)
    try:
        return decode_clip(master, spec)
    finally:
        master.unlink(missing_ok=True)


def predict_videos(
    checkpoint: str | Path,
    videos: Sequence[str | Path],
    *,
    device: str = "auto",
    batch_size: int | None = None,
    policy: Any = None,
    ffmpeg_path: str | None = None,
    progress: Progress | None = None,
) -> Predictions:
    """Label raw video files; ``policy`` is ingest's :class:`~curation.ingest.probe.MediaPolicy` (default its defaults).

    ``batch_size`` defaults to the checkpoint's training batch; ``progress`` advances once per video.
    """
    from curation.ingest.probe import MediaPolicy

    if not videos:
        raise ModelError("no videos to predict")
    runner, state = _runner(checkpoint, device, batch_size)
    policy = policy if policy is not None else MediaPolicy()
    with tempfile.TemporaryDirectory(prefix="curate-predict-") as workdir:
        items = [
            (ClipPrediction(path=str(video)),
             lambda video=video, n=n: _normalised_features(Path(video), runner.spec, policy, ffmpeg_path,
                                                          Path(workdir), n))
            for n, video in enumerate(videos)
        ]
        rows = runner.predict(items, progress)
    return Predictions(str(checkpoint), int(state["epoch"]), runner.labels, str(runner.device), tuple(rows),
                       feature_source={"decoded": sum(row.error is None for row in rows)})


# --- export clips -----------------------------------------------------------------------------------


def predict_export(
    checkpoint: str | Path,
    export: str | Path | ExportTable,
    split: str = "test",
    *,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> Predictions:
    """Label one split of an export (``"all"``: every clip); rows carry the export's label.

    The feature cache (``cache_dir``, default ``EXPORT/features-PRESET``) is read when its settings
    are the checkpoint's; clips it lacks, or every clip when it does not match, are decoded.
    """
    if split != "all" and split not in SPLITS:
        raise UnknownSplitError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} or all")
    runner, state = _runner(checkpoint, device, batch_size)
    train_cfg = TrainConfig.from_dict(state["config"])
    table = export if isinstance(export, ExportTable) else read_export(export, fold=train_cfg.fold, seed=train_cfg.seed)
    if table.labels.names != runner.labels.names:
        raise CheckpointMismatchError(
            f"the checkpoint was trained on labels {list(runner.labels.names)}, the export has {list(table.labels.names)}"
        )
    clips = list(table.clips) if split == "all" else table.split(split)
    cache = Path(cache_dir) if cache_dir is not None else table.root / f"features-{train_cfg.preset}"
    use_cache = (cache / "cache.json").is_file() and read_cache_spec(cache) == runner.spec
    source = {"cache": 0, "decoded": 0}

    def features_of(media_path: Path, clip_id: str) -> Callable[[], ClipFeatures]:
        def read() -> ClipFeatures:
            if use_cache:
                try:
                    features = load_cached_clip(cache, clip_id)
                except ModelError:
                    pass  # not cached (or left out as undecodable): decode it, which names the reason
                else:
                    source["cache"] += 1
                    return features
            features = decode_clip(media_path, runner.spec)
            source["decoded"] += 1
            return features

        return read

    names = runner.labels.names
    items = [
        (ClipPrediction(path=str(clip.media_path), clip_id=clip.clip_id, label=names[clip.label_index]),
         features_of(clip.media_path, clip.clip_id))
        for clip in clips
    ]
    rows = runner.predict(items, progress)
    return Predictions(str(checkpoint), int(state["epoch"]), runner.labels, str(runner.device), tuple(rows),
                       export=str(table.root), split=split, feature_source=source)


# --- writing -----------------------------------------------------------------------------------------


def _csv_columns(predictions: Predictions) -> list[str]:
    export = ["clip_id", "path", "label"] if predictions.export is not None else ["path"]
    return [*export, "status", "error", "predicted", "polarity", "visual_head", "audio_head", "has_audio",
            *(f"p_{name}" for name in predictions.labels.names)]


def _csv_row(row: ClipPrediction, predictions: Predictions) -> dict[str, Any]:
    values: dict[str, Any] = {
        "clip_id": row.clip_id, "path": row.path, "label": row.label, "status": row.status, "error": row.error,
        "predicted": row.predicted, "polarity": row.polarity, "visual_head": row.visual_head,
        "audio_head": row.audio_head, "has_audio": row.has_audio,
    }
    for k, name in enumerate(predictions.labels.names):
        values[f"p_{name}"] = row.probabilities[k] if row.probabilities is not None else None
    return {column: ("" if values[column] is None else values[column]) for column in _csv_columns(predictions)}


def _json_document(predictions: Predictions) -> dict[str, Any]:
    export = predictions.export is not None
    rows = []
    for row in predictions.rows:
        item: dict[str, Any] = {"clip_id": row.clip_id, "path": row.path, "label": row.label} if export else \
            {"path": row.path}
        item.update({
            "status": row.status, "error": row.error, "predicted": row.predicted, "polarity": row.polarity,
            "visual_head": row.visual_head, "audio_head": row.audio_head, "has_audio": row.has_audio,
            "probabilities": dict(zip(predictions.labels.names, row.probabilities, strict=True))
            if row.probabilities is not None else None,
        })
        rows.append(item)
    return {
        "checkpoint": predictions.checkpoint, "epoch": predictions.epoch, "device": predictions.device,
        "export": predictions.export, "split": predictions.split, "labels": predictions.labels.to_json(),
        "predictions": rows,
    }


def write_predictions(predictions: Predictions, path: str | Path) -> Path:
    """Write the rows as ``.csv`` (one ``p_<label>`` column per class) or ``.json`` (see the README)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ModelError(f"cannot write predictions to {path.name}: use a .csv or .json file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        path.write_text(json.dumps(_json_document(predictions), indent=2) + "\n", encoding="utf-8")
        return path
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=_csv_columns(predictions))
        writer.writeheader()
        # Paths and error messages are the caller's text: neutralised for a spreadsheet.
        writer.writerows({k: neutralise_cell(v) for k, v in _csv_row(row, predictions).items()}
                         for row in predictions.rows)
    return path
