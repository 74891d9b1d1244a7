"""Reading the clips of an export: the toolkit's format or the VAANet/eMotions list layout.

The toolkit's export has ``manifest.csv`` and ``labels.json`` (docs/ARCHITECTURE.md). A VAANet-layout
folder (VideoEmotion-8, Ekman-6 as distributed, or the list files of an export) has ``classInd.txt``
(``"1 Anger"``), ``trainlistNN.txt`` / ``testlistNN.txt`` (``"Anger/clip.mp4 1"``, the class number
optional) and optionally ``vallistNN.txt``; without a validation list a stratified share of the
training list is held out for validation (seeded), since the best epoch is chosen on validation.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from model.errors import ModelError
from model.labels import LabelSet

__all__ = [
    "SPLITS",
    "ClipRecord",
    "ExportLayoutError",
    "ExportNotFoundError",
    "ExportTable",
    "UnknownSplitError",
    "read_export",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".m4v", ".3gp", ".mpg", ".wmv")


class ExportNotFoundError(ModelError):
    """The export folder does not exist."""


class ExportLayoutError(ModelError):
    """A folder that is neither a toolkit export nor a VAANet-layout folder, or a malformed one."""


class UnknownSplitError(ModelError):
    """A split name other than train, validation and test, or a split with no clips."""


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    media_path: Path  # absolute
    label_index: int
    split: str


@dataclass(frozen=True)
class ExportTable:
    root: Path
    labels: LabelSet
    clips: tuple[ClipRecord, ...]
    layout: str  # "export" or "vaanet"

    def split(self, name: str) -> list[ClipRecord]:
        if name not in SPLITS:
            raise UnknownSplitError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        chosen = [clip for clip in self.clips if clip.split == name]
        if not chosen:
            raise UnknownSplitError(f"the {name} split of {self.root} has no clips")
        return chosen


def read_export(
    path: str | Path, *, fold: int = 1, validation_fraction: float = 0.1, seed: int = 1
) -> ExportTable:
    """Read an export folder or a VAANet-layout folder.

    ``fold`` picks ``trainlistNN.txt`` / ``testlistNN.txt`` in the VAANet layout.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise ExportNotFoundError(f"export folder not found: {root}")
    if (root / "manifest.csv").is_file() and (root / "labels.json").is_file():
        return _read_manifest(root)
    if (root / "classInd.txt").is_file():
        return _read_vaanet(root, fold, validation_fraction, seed)
    raise ExportLayoutError(
        f"{root} is neither an export (manifest.csv + labels.json) nor a VAANet-layout folder (classInd.txt)"
    )


def _read_manifest(root: Path) -> ExportTable:
    labels = LabelSet.from_json(root / "labels.json")
    # The parquet manifest when there is one: it keeps the raw text, where the CSV (for people)
    # puts an apostrophe before text a spreadsheet would run as a formula (curation.spreadsheet).
    source = root / "manifest.parquet" if (root / "manifest.parquet").is_file() else root / "manifest.csv"
    try:
        if source.suffix == ".parquet":
            manifest = pd.read_parquet(source).astype({"clip_id": str, "media_path": str, "split": str})
        else:
            manifest = pd.read_csv(source, dtype={"clip_id": str, "media_path": str, "split": str})
    except (OSError, ValueError, ImportError) as exc:
        raise ExportLayoutError(f"cannot read {source}: {exc}") from exc
    needed = {"clip_id", "media_path", "label", "split"}
    if not needed <= set(manifest.columns):
        raise ExportLayoutError(f"{source.name} lacks columns {sorted(needed - set(manifest.columns))}")
    clips = []
    for row in manifest.itertuples(index=False):
        label_index = labels.index_of(str(row.label))
        if "label_index" in manifest.columns and int(row.label_index) != label_index:
            raise ExportLayoutError(f"clip {row.clip_id}: label_index {row.label_index} does not match {row.label!r}")
        if row.split not in SPLITS:
            raise ExportLayoutError(f"clip {row.clip_id}: unknown split {row.split!r}")
        clips.append(ClipRecord(str(row.clip_id), (root / str(row.media_path)).resolve(), label_index, str(row.split)))
    return ExportTable(root, labels, tuple(clips), "export")


def _resolve_media(root: Path, relative: str) -> Path:
    candidate = root / relative
    if candidate.suffix.lower() in _VIDEO_SUFFIXES or candidate.exists():
        return candidate
    for suffix in _VIDEO_SUFFIXES:
        if candidate.with_name(candidate.name + suffix).exists():
            return candidate.with_name(candidate.name + suffix)
    return candidate


def _read_list(root: Path, path: Path, labels: LabelSet, split: str) -> list[ClipRecord]:
    clips = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        relative = parts[0]
        if len(parts) > 1 and parts[-1].isdigit():
            label_index = int(parts[-1]) - 1
            if not 0 <= label_index < len(labels):
                raise ExportLayoutError(f"{path.name}:{number}: class {parts[-1]} is not in classInd.txt")
        else:
            folder = Path(relative).parent.name
            try:
                label_index = labels.index_of(folder)
            except ModelError as exc:
                raise ExportLayoutError(f"{path.name}:{number}: no class number and no class folder") from exc
        clip_id = str(Path(relative).with_suffix("")).replace("\\", "/")
        clips.append(ClipRecord(clip_id, _resolve_media(root, relative).resolve(), label_index, split))
    return clips


def _read_vaanet(root: Path, fold: int, validation_fraction: float, seed: int) -> ExportTable:
    entries = []
    for number, line in enumerate((root / "classInd.txt").read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise ExportLayoutError(f"classInd.txt:{number}: expected '<number> <name>', got {line!r}")
        entries.append((int(parts[0]), parts[1]))
    entries.sort()
    if [n for n, _ in entries] != list(range(1, len(entries) + 1)):
        raise ExportLayoutError("classInd.txt must number its classes 1..K")
    labels = LabelSet.from_names([name for _, name in entries])
    lists = {split: root / f"{stem}{fold:02d}.txt" for split, stem in
             (("train", "trainlist"), ("validation", "vallist"), ("test", "testlist"))}
    for split in ("train", "test"):
        if not lists[split].is_file():
            raise ExportLayoutError(f"{root} has classInd.txt but no {lists[split].name}")
    train = _read_list(root, lists["train"], labels, "train")
    test = _read_list(root, lists["test"], labels, "test")
    if lists["validation"].is_file():
        validation = _read_list(root, lists["validation"], labels, "validation")
    else:
        train, validation = _hold_out(train, validation_fraction, seed)
    return ExportTable(root, labels, tuple(train + validation + test), "vaanet")


def _hold_out(train: list[ClipRecord], fraction: float, seed: int) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Stratified hold-out: about ``fraction`` of each class (at least one clip when it has two or more)."""
    by_class: dict[int, list[ClipRecord]] = defaultdict(list)
    for clip in train:
        by_class[clip.label_index].append(clip)
    rng = random.Random(seed)
    held: set[str] = set()
    for members in by_class.values():
        members = sorted(members, key=lambda clip: clip.clip_id)
        rng.shuffle(members)
        count = round(len(members) * fraction) if len(members) > 1 else 0
        held.update(clip.clip_id for clip in members[: max(count, 1 if len(members) > 1 else 0)])
    kept = [clip for clip in train if clip.clip_id not in held]
    validation = [
        ClipRecord(clip.clip_id, clip.media_path, clip.label_index, "validation") for clip in train if clip.clip_id in held
    ]
    return kept, validation
