"""Turning a local copy of the published eMotions release into an export the baseline reads.

The release is a set of parquet shards; each row holds a video's bytes in a ``video_data`` column
(binary, or a Hugging Face ``{"bytes", "path"}`` struct) and its label (a name, or a class index
with the names in the shard's Hugging Face metadata). The release spells Sadness as ``Sad``.
The split comes from a ``split`` column or from the shard's path (``train``, ``validation``/``val``/
``valid``/``dev``, ``test``); a missing validation split is held out from train (10 %, stratified,
seeded), and shards with no split at all are divided 80/10/10 the same way.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from model.errors import ModelError
from model.export_reader import SPLITS
from model.labels import EMOTIONS_SIX, LabelSet, canonical_label_name

__all__ = ["ReleaseFormatError", "import_release"]

_ID_COLUMNS = ("clip_id", "video_id", "id", "file_name", "filename", "video_name", "name", "path")
_LABEL_COLUMNS = ("label", "emotion", "category", "class", "labels")
_SPLIT_WORDS = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                "valid": "validation", "dev": "validation", "test": "test", "testing": "test"}
MANIFEST_COLUMNS = (
    "clip_id", "media_path", "label", "label_index", "polarity", "split", "confidence", "n_judgements",
    "resolving_stage", "platform", "uploader_hash", "duration_s", "has_audio",
)


class ReleaseFormatError(ModelError):
    """Parquet shards that do not look like the eMotions release."""


def _split_from_path(path: Path) -> str | None:
    for word in re.split(r"[^a-z]+", str(path).lower()):
        if word in _SPLIT_WORDS:
            return _SPLIT_WORDS[word]
    return None


def _class_names(file: pq.ParquetFile, column: str) -> list[str] | None:
    # Hugging Face stores ClassLabel names in the schema metadata under b"huggingface".
    metadata = file.schema_arrow.metadata or {}
    raw = metadata.get(b"huggingface")
    if raw is None:
        return None
    try:
        feature = json.loads(raw)["info"]["features"][column]
        return list(feature.get("names") or [])
    except (KeyError, TypeError, ValueError):
        return None


def _video_bytes(value: Any) -> bytes:
    if isinstance(value, dict):
        value = value.get("bytes")
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise ReleaseFormatError("a row's video_data holds no bytes")
    return bytes(value)


def _safe_id(raw: str) -> str:
    stem = Path(str(raw)).stem or str(raw)
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem)


def _assign_missing_splits(rows: list[dict[str, Any]], seed: int) -> None:
    rng = random.Random(seed)
    by_class: dict[int, list[dict[str, Any]]] = defaultdict(list)
    unsplit = [row for row in rows if row["split"] is None]
    for row in unsplit:
        by_class[row["label_index"]].append(row)
    for members in by_class.values():
        members.sort(key=lambda row: row["clip_id"])
        rng.shuffle(members)
        n_val = round(0.1 * len(members))
        n_test = round(0.1 * len(members))
        for i, row in enumerate(members):
            row["split"] = "validation" if i < n_val else "test" if i < n_val + n_test else "train"
    if not any(row["split"] == "validation" for row in rows):
        by_class.clear()
        for row in rows:
            if row["split"] == "train":
                by_class[row["label_index"]].append(row)
        for members in by_class.values():
            members.sort(key=lambda row: row["clip_id"])
            rng.shuffle(members)
            for row in members[: max(1, round(0.1 * len(members))) if len(members) > 1 else 0]:
                row["split"] = "validation"


def import_release(path: str | Path, out_dir: str | Path, *, seed: int = 1, on_clip: Any = None) -> dict[str, int]:
    """Write an export (media, manifest.csv, labels.json, classInd.txt, list files) from the release's shards.

    Returns the number of clips per split. ``on_clip`` (no arguments) ticks a progress bar.
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise ReleaseFormatError(f"release not found: {source}")
    shards = [source] if source.is_file() else sorted(source.rglob("*.parquet"))
    if not shards:
        raise ReleaseFormatError(f"no parquet shards under {source}")
    out = Path(out_dir)
    if (out / "manifest.csv").exists():
        raise ModelError(f"{out} already holds an export; choose an empty folder")
    labels = LabelSet.emotions()
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for shard in shards:
        file = pq.ParquetFile(shard)
        columns = file.schema_arrow.names
        if "video_data" not in columns:
            raise ReleaseFormatError(f"{shard.name} has no video_data column (columns: {columns})")
        label_column = next((c for c in _LABEL_COLUMNS if c in columns), None)
        if label_column is None:
            raise ReleaseFormatError(f"{shard.name} has no label column (columns: {columns})")
        id_column = next((c for c in _ID_COLUMNS if c in columns), None)
        names = _class_names(file, label_column)
        # only the part below the release folder (or the file name) can say the split
        shard_split = _split_from_path(shard.relative_to(source) if source.is_dir() else Path(shard.name))
        for batch in file.iter_batches(batch_size=16):
            table = batch.to_pydict()
            for i, video in enumerate(table["video_data"]):
                raw_label = table[label_column][i]
                if isinstance(raw_label, int):
                    if names is None or not 0 <= raw_label < len(names):
                        raise ReleaseFormatError(f"{shard.name}: class index {raw_label} has no name")
                    raw_label = names[raw_label]
                label_index = labels.index_of(canonical_label_name(str(raw_label)))
                data = _video_bytes(video)
                digest = hashlib.sha256(data).hexdigest()
                clip_id = _safe_id(table[id_column][i]) if id_column else digest[:16]
                base, copy = clip_id, 1
                while clip_id in seen:  # the same id (or the same bytes) twice: keep both, numbered
                    copy += 1
                    clip_id = f"{base}-{copy}"
                seen.add(clip_id)
                split = table["split"][i] if "split" in table else shard_split
                split = _SPLIT_WORDS.get(str(split).lower()) if split is not None else None
                staging = out / ".staging" / f"{clip_id}.mp4"
                staging.parent.mkdir(parents=True, exist_ok=True)
                staging.write_bytes(data)
                rows.append({"clip_id": clip_id, "label_index": label_index, "split": split, "staging": staging})
                if on_clip is not None:
                    on_clip()
    _assign_missing_splits(rows, seed)
    for row in rows:
        name = labels.names[row["label_index"]]
        relative = f"{row['split']}/{name}/{row['clip_id']}.mp4"
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        row["staging"].replace(target)
        row["media_path"] = relative
    (out / ".staging").rmdir()
    _write_export_files(out, rows, labels)
    return {split: sum(row["split"] == split for row in rows) for split in SPLITS}


def _write_export_files(out: Path, rows: list[dict[str, Any]], labels: LabelSet) -> None:
    import pandas as pd

    table = pd.DataFrame(
        {
            "clip_id": [row["clip_id"] for row in rows],
            "media_path": [row["media_path"] for row in rows],
            "label": [labels.names[row["label_index"]] for row in rows],
            "label_index": [row["label_index"] for row in rows],
            "polarity": [labels.polarities[row["label_index"]] for row in rows],
            "split": [row["split"] for row in rows],
            "confidence": None,
            "n_judgements": None,
            "resolving_stage": None,
            "platform": None,
            "uploader_hash": None,
            "duration_s": None,
            "has_audio": None,
        },
        columns=list(MANIFEST_COLUMNS),
    )
    table.to_csv(out / "manifest.csv", index=False)
    (out / "labels.json").write_text(json.dumps(labels.to_json(), indent=2), encoding="utf-8")
    (out / "classInd.txt").write_text("".join(f"{i + 1} {name}\n" for i, name in enumerate(labels.names)))
    for split, stem in (("train", "trainlist01"), ("validation", "vallist01"), ("test", "testlist01")):
        chosen = table[table["split"] == split]
        (out / f"{stem}.txt").write_text(
            "".join(f"{p} {i + 1}\n" for p, i in zip(chosen["media_path"], chosen["label_index"], strict=True))
        )
    (out / "build_info.json").write_text(
        json.dumps({"source": "eMotions release (parquet)", "labels": list(EMOTIONS_SIX), "clips": len(rows)}, indent=2)
    )
