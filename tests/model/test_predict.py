"""``model.predict`` on freshly generated FFmpeg clips, with a checkpoint trained on the tiny export."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import imageio_ffmpeg
import pytest
import torch

from curation.ingest.normalise import normalise
from curation.ingest.probe import MediaPolicy, probe
from model.avcpnet import PRESETS, ModelConfig, build_avcpnet
from model.data import cache_spec_for, sample_clip
from model.errors import ModelError
from model.export_reader import UnknownSplitError
from model.features import decode_clip
from model.labels import LabelSet
from model.predict import predict_export, predict_videos, write_predictions
from model.train import TrainConfig, load_trained_model, main
from model.visual import CheckpointMismatchError
from tests.model.media import EXPORT_LABELS, make_clip

NAMES = tuple(name for name, *_ in EXPORT_LABELS)
POLARITY = {name: polarity for name, polarity, *_ in EXPORT_LABELS}


@pytest.fixture(scope="module")
def export(tiny_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny export: training writes its feature cache into it."""
    copy = tmp_path_factory.mktemp("predict") / "export"
    shutil.copytree(tiny_export, copy, ignore=shutil.ignore_patterns("features-*"))
    return copy


@pytest.fixture(scope="module")
def trained(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of a two-epoch tiny run (a few seconds): it tells the three colours apart."""
    run = tmp_path_factory.mktemp("run")
    main(TrainConfig.tiny(export=str(export), out=str(run), epochs=2))
    return run / "best.pt"


def _save(path: Path, config: ModelConfig, labels: LabelSet, state: dict | None = None) -> Path:
    torch.manual_seed(0)
    torch.save({"model": state if state is not None else build_avcpnet(config).state_dict(), "epoch": 0,
                "config": TrainConfig.tiny().__dict__, "model_config": config.to_dict(), "labels": labels.to_json()},
               path)
    return path


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights: its two auxiliary heads disagree, so swapping them shows."""
    labels = LabelSet.from_names(NAMES, [POLARITY[name] for name in NAMES])
    return _save(tmp_path_factory.mktemp("untrained") / "untrained.pt", replace(PRESETS["tiny"], num_classes=3), labels)


def _pattern_clip(path: Path, *, seconds: float, size: str, fps: int, tone: int | None) -> Path:
    """FFmpeg's moving test pattern: unlike one-colour clips, every crop and frame offset looks different."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
               "-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={seconds}"]
    if tone is not None:
        command += ["-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=22050:duration={seconds}"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    command += ["-c:a", "aac", "-shortest"] if tone is not None else ["-an"]
    subprocess.run([*command, str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """New clips unlike the export's (other size, rate, length, orientation), and broken inputs."""
    root = tmp_path_factory.mktemp("fresh")
    clips: dict[str, Path] = {}
    for name, _, colour, tone in EXPORT_LABELS:
        clips[name] = make_clip(root / f"{name}.mp4", colour, tone, seconds=3.0, size="96x160", fps=25)
        clips[f"{name}-no-audio"] = make_clip(root / f"{name}-no-audio.mkv", colour, None, seconds=1.5,
                                              size="160x96", fps=15)
    clips["garbage"] = root / "garbage.mp4"
    clips["garbage"].write_bytes(b"not a video at all" * 100)
    # Matroska keeps its index at the front: half a file opens, and decoding stops halfway.
    whole = make_clip(root / "whole.mkv", "0x808080", 440, seconds=4.0, fps=30).read_bytes()
    clips["truncated"] = root / "truncated.mkv"
    clips["truncated"].write_bytes(whole[: len(whole) // 2])
    clips["short"] = make_clip(root / "short.mp4", "0x808080", 440, seconds=0.4)
    clips["missing"] = root / "never-made.mp4"
    clips["pattern"] = _pattern_clip(root / "pattern.mp4", seconds=3.0, size="96x160", fps=25, tone=660)
    clips["pattern-no-audio"] = _pattern_clip(root / "pattern-no-audio.mov", seconds=2.0, size="200x120", fps=12,
                                              tone=None)
    return clips


def test_a_trained_model_labels_fresh_clips_with_and_without_audio(trained: Path, fresh: dict[str, Path]) -> None:
    keys = [key for name in NAMES for key in (name, f"{name}-no-audio")]
    predictions = predict_videos(trained, [fresh[key] for key in keys], device="cpu")
    assert [row.path for row in predictions.rows] == [str(fresh[key]) for key in keys]
    assert predictions.failures == () and predictions.labels.names == NAMES
    for key, row in zip(keys, predictions.rows, strict=True):
        name = key.removesuffix("-no-audio")
        assert row.status == "ok" and row.predicted == name and row.polarity == POLARITY[name], (key, row)
        assert row.has_audio is (key == name)
        assert sum(row.probabilities) == pytest.approx(1.0, abs=1e-4)
        assert max(row.probabilities) == row.probabilities[NAMES.index(name)]
        assert row.visual_head in NAMES and row.audio_head in NAMES


def test_unusable_videos_get_a_reason_and_the_others_still_their_rows(trained: Path, fresh: dict[str, Path]) -> None:
    order = ["Neutral", "garbage", "missing", "truncated", "short", "folder", "Sadness-no-audio"]
    paths = [fresh[key] if key != "folder" else fresh["Neutral"].parent for key in order]
    predictions = predict_videos(trained, paths, device="cpu", batch_size=2)
    rows = dict(zip(order, predictions.rows, strict=True))
    assert [row.status for row in predictions.rows] == ["ok", "error", "error", "error", "error", "error", "ok"]
    assert rows["garbage"].error.startswith("not a media file")
    assert rows["missing"].error == "file not found"
    assert "truncated" in rows["truncated"].error
    assert "below the minimum 1 s" in rows["short"].error
    assert rows["folder"].error == "not a file"
    assert all("\n" not in row.error for row in predictions.failures)
    assert all(row.probabilities is None and row.predicted is None for row in predictions.failures)
    # the usable ones come out as they do on their own
    alone = predict_videos(trained, [fresh["Neutral"], fresh["Sadness-no-audio"]], device="cpu").rows
    assert rows["Neutral"].probabilities == pytest.approx(alone[0].probabilities, abs=1e-5)
    assert rows["Sadness-no-audio"] == replace(alone[1], probabilities=rows["Sadness-no-audio"].probabilities)


def _reference(checkpoint: Path, video: Path, workdir: Path, *, normalised: bool = True) -> tuple[list[float], str, str]:
    """Ingest's normalisation, the cache's decoding and the evaluation sampling, spelled out by hand."""
    model, labels, state = load_trained_model(checkpoint)
    model.eval()
    spec = cache_spec_for(ModelConfig.from_dict(state["model_config"]), state["config"]["jitter"])
    master = video
    if normalised:
        master = normalise(video, workdir / "master.mp4", probe(video), MediaPolicy())
    frames, mfcc = sample_clip(decode_clip(master, spec), spec, train=False)
    with torch.no_grad():
        output = model(frames[None], mfcc[None])
    probabilities = torch.softmax(output.logits, dim=-1)[0].tolist()
    return probabilities, labels.names[int(output.visual_logits.argmax())], labels.names[int(output.audio_logits.argmax())]


def test_videos_take_the_path_of_training_clips(untrained: Path, fresh: dict[str, Path], tmp_path: Path) -> None:
    keys = ["pattern", "pattern-no-audio", "Excitation", "Sadness"]
    rows = predict_videos(untrained, [fresh[key] for key in keys], device="cpu").rows
    heads = set()
    for key, row in zip(keys, rows, strict=True):
        probabilities, visual, audio = _reference(untrained, fresh[key], tmp_path)
        assert row.probabilities == pytest.approx(probabilities, abs=1e-5), key
        assert (row.visual_head, row.audio_head) == (visual, audio), key
        heads.add((visual, audio))
        # the check can tell: the raw file (12 or 25 fps, AAC at 22.05 kHz) gives other probabilities
        raw, _, _ = _reference(untrained, fresh[key], tmp_path, normalised=False)
        assert raw != pytest.approx(probabilities, abs=1e-5), key
    assert any(visual != audio for visual, audio in heads), "the heads agree everywhere: a swap would not show"


def test_a_batch_gives_the_rows_of_its_clips_one_by_one(untrained: Path, fresh: dict[str, Path]) -> None:
    paths = [fresh[name] for name in NAMES] + [fresh["pattern-no-audio"], fresh["pattern"]]
    batched = predict_videos(untrained, paths, device="cpu", batch_size=4).rows
    single = predict_videos(untrained, paths, device="cpu", batch_size=1).rows
    for one, other in zip(batched, single, strict=True):
        assert one.probabilities == pytest.approx(other.probabilities, abs=1e-5)
        assert (one.predicted, one.visual_head, one.audio_head) == (other.predicted, other.visual_head, other.audio_head)


def test_an_export_split_reads_the_matching_cache_else_decodes(trained: Path, export: Path, tmp_path: Path) -> None:
    cached = predict_export(trained, export, "test", device="cpu")
    assert cached.feature_source == {"cache": 3, "decoded": 0}  # training made EXPORT/features-tiny
    assert [(row.clip_id, row.label) for row in cached.rows] == [
        ("excitation-test-0", "Excitation"), ("neutral-test-0", "Neutral"), ("sadness-test-0", "Sadness")]
    assert [row.has_audio for row in cached.rows] == [False, True, True]  # make_export's silent clip
    assert [row.predicted for row in cached.rows] == [row.label for row in cached.rows]

    decoded = predict_export(trained, export, "test", cache_dir=tmp_path / "no-cache", device="cpu")
    assert decoded.feature_source == {"cache": 0, "decoded": 3}
    for one, other in zip(cached.rows, decoded.rows, strict=True):
        assert one.probabilities == pytest.approx(other.probabilities, abs=1e-5)

    # a cache of other settings is not read; one that matches is (swapped clips swap the labels)
    other = tmp_path / "other"
    shutil.copytree(export / "features-tiny", other)
    spec = json.loads((other / "cache.json").read_text())
    (other / "cache.json").write_text(json.dumps({**spec, "jitter": spec["jitter"] + 2}))
    assert predict_export(trained, export, "test", cache_dir=other, device="cpu").feature_source["cache"] == 0
    swapped = tmp_path / "swapped"
    shutil.copytree(export / "features-tiny", swapped)
    first, last = swapped / "excitation-test-0.npz", swapped / "sadness-test-0.npz"
    first.rename(swapped / "tmp.npz")
    last.rename(first)
    (swapped / "tmp.npz").rename(last)
    rows = predict_export(trained, export, "test", cache_dir=swapped, device="cpu").rows
    assert [row.predicted for row in rows] == ["Sadness", "Neutral", "Excitation"]

    everything = predict_export(trained, export, "all", device="cpu")
    assert len(everything.rows) == 12 and everything.split == "all"
    with pytest.raises(UnknownSplitError):
        predict_export(trained, export, "dev")


def test_an_export_clip_that_cannot_be_decoded_gets_its_row(trained: Path, export: Path, tmp_path: Path) -> None:
    broken = tmp_path / "export"
    shutil.copytree(export, broken, ignore=shutil.ignore_patterns("features-*"))
    (broken / "test/Neutral/neutral-test-0.mp4").write_bytes(b"not a video")
    rows = predict_export(trained, broken, "test", device="cpu").rows
    assert [row.status for row in rows] == ["ok", "error", "ok"]
    assert rows[1].clip_id == "neutral-test-0" and rows[1].error.startswith("cannot decode neutral-test-0.mp4")


def test_checkpoints_that_do_not_fit_are_refused_in_one_line(export: Path, fresh: dict[str, Path], tmp_path: Path) -> None:
    six = replace(PRESETS["tiny"], num_classes=6)
    other_labels = _save(tmp_path / "six.pt", six, LabelSet.emotions())
    with pytest.raises(CheckpointMismatchError, match="trained on labels"):
        predict_export(other_labels, export, "test", device="cpu")
    labels = LabelSet.from_names(NAMES, [POLARITY[name] for name in NAMES])
    miscounted = _save(tmp_path / "miscounted.pt", six, labels)
    narrow = replace(PRESETS["tiny"], num_classes=3, dim=32)
    resized = _save(tmp_path / "resized.pt", replace(PRESETS["tiny"], num_classes=3), labels,
                    state=build_avcpnet(narrow).state_dict())
    not_a_checkpoint = tmp_path / "labels.pt"
    not_a_checkpoint.write_text("[]")
    for path, message in ((miscounted, "lists 3 labels but its model has 6 classes"),
                          (resized, "the weights do not fit the stored model configuration"),
                          (not_a_checkpoint, "cannot read checkpoint"), (tmp_path / "absent.pt", "not found")):
        with pytest.raises(ModelError, match=message) as caught:
            predict_videos(path, [fresh["Neutral"]], device="cpu")
        assert "\n" not in str(caught.value), path


def test_rows_are_written_as_csv_or_json(trained: Path, fresh: dict[str, Path], tmp_path: Path) -> None:
    predictions = predict_videos(trained, [fresh["Sadness-no-audio"], fresh["garbage"]], device="cpu")
    with write_predictions(predictions, tmp_path / "rows.csv").open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["path", "status", "error", "predicted", "polarity", "visual_head", "audio_head",
                                 "has_audio", "p_Excitation", "p_Neutral", "p_Sadness"]
    assert rows[0]["status"] == "ok" and rows[0]["predicted"] == "Sadness" and rows[0]["polarity"] == "negative"
    assert rows[0]["has_audio"] == "False" and rows[0]["error"] == ""
    assert float(rows[0]["p_Sadness"]) == pytest.approx(predictions.rows[0].probabilities[2])
    assert rows[1]["status"] == "error" and rows[1]["error"].startswith("not a media file")
    assert rows[1]["predicted"] == rows[1]["p_Sadness"] == ""

    document = json.loads(write_predictions(predictions, tmp_path / "rows.json").read_text())
    assert document["labels"] == predictions.labels.to_json() and document["export"] is None
    first, second = document["predictions"]
    assert first["probabilities"]["Sadness"] == predictions.rows[0].probabilities[2]
    assert first["has_audio"] is False and first["visual_head"] in NAMES
    assert second["status"] == "error" and second["probabilities"] is None and second["predicted"] is None
    with pytest.raises(ModelError, match="csv or .json"):
        write_predictions(predictions, tmp_path / "rows.parquet")


def test_export_rows_carry_the_clip_and_its_label(trained: Path, export: Path, tmp_path: Path) -> None:
    predictions = predict_export(trained, export, "validation", device="cpu")
    with write_predictions(predictions, tmp_path / "rows.csv").open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames[:4] == ["clip_id", "path", "label", "status"]
    assert [row["label"] for row in rows] == list(NAMES)
    document = json.loads(write_predictions(predictions, tmp_path / "rows.json").read_text())
    assert document["split"] == "validation" and document["predictions"][0]["clip_id"] == "excitation-validation-0"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gives")
def test_cuda_without_a_gpu_is_refused(untrained: Path, fresh: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="CUDA is not available"):
        predict_videos(untrained, [fresh["Neutral"]], device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_gpu_gives_the_rows_of_the_cpu(trained: Path, fresh: dict[str, Path]) -> None:
    paths = [fresh[name] for name in NAMES] + [fresh["Neutral-no-audio"]]
    on_gpu = predict_videos(trained, paths, device="cuda")
    on_cpu = predict_videos(trained, paths, device="cpu")
    assert on_gpu.device.startswith("cuda")
    # bf16 autocast on CUDA: close, not equal
    for gpu, cpu in zip(on_gpu.rows, on_cpu.rows, strict=True):
        assert gpu.predicted == cpu.predicted
        assert gpu.probabilities == pytest.approx(cpu.probabilities, abs=0.05)
