"""Export folders: manifests, media, the eMotions/VAANet and Hugging Face layouts, build info.

One folder per variant (see ``docs/ARCHITECTURE.md``)::

    EXPORT/
      manifest.csv, manifest.parquet     a row per clip, columns MANIFEST_COLUMNS
      labels.json                        [{"index": 0, "name": ..., "polarity": ...}, ...]
      classInd.txt                       "1 Excitation" ... (1-based)
      trainlist01.txt, vallist01.txt, testlist01.txt   "train/Excitation/<clip>.mp4 1"
      train/<Label>/<clip>.mp4 ...       media: hard links, copies where linking fails
      train/metadata.csv ...             Hugging Face video folder: file_name relative to the split
      README.md, plots/*.png             dataset card
      build_info.json                    recipe, seed, input checksums, tool version

The folder is written beside its destination under a hidden name and swapped in whole: a reader
sees the old export or the new one, never a mix, and a failed build leaves the old one untouched.
A killed build leaves its hidden ``.NAME.XXXXXXXX.partial`` folder behind; the next build into the
same parent folder removes such leftovers, but only when no other build is live there (every
build holds a shared lock on the parent folder; the sweep needs it exclusively).
Outputs are byte-identical for identical inputs: rows are sorted, floats have fixed formats, JSON
keys are sorted, the parquet file carries no pandas metadata, and nothing records a time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curation.errors import CurationError, InvalidTableError, MediaError
from curation.ingest.hashing import sha256_file
from curation.splits import SPLITS
from curation.spreadsheet import neutralise_frame

__all__ = [
    "ExportError",
    "MANIFEST_COLUMNS",
    "MEDIA_MODES",
    "manifest_table",
    "export_variant",
    "hash_uploader",
    "sha256_file",
    "table_sha256",
    "tool_versions",
]

MANIFEST_COLUMNS: tuple[str, ...] = (
    "clip_id", "media_path", "label", "label_index", "polarity", "split", "confidence",
    "n_judgements", "n_crowd_judgements", "resolving_stage", "resolved_by", "agreement_pattern",
    "platform", "uploader_hash", "duration_s", "has_audio",
)
#: "link": hard links (copies where linking fails); "copy": copies; "none": manifests only.
MEDIA_MODES: tuple[str, ...] = ("link", "copy", "none")

_HF_COLUMNS = ("file_name", "clip_id", "label", "label_index", "polarity", "confidence", "platform",
               "duration_s", "has_audio")
_PARQUET_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("media_path", pa.string()), ("label", pa.string()),
    ("label_index", pa.int32()), ("polarity", pa.string()), ("split", pa.string()),
    ("confidence", pa.float64()), ("n_judgements", pa.int32()), ("n_crowd_judgements", pa.int32()),
    ("resolving_stage", pa.int32()), ("resolved_by", pa.string()), ("agreement_pattern", pa.string()),
    ("platform", pa.string()), ("uploader_hash", pa.string()), ("duration_s", pa.float64()),
    ("has_audio", pa.bool_()),
])
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MARKER = "build_info.json"
_MAX_LISTED = 5


class ExportError(CurationError):
    """An export folder cannot be written or swapped in (e.g. the destination is not an export)."""

    exit_code = 5


def _safe_name(text: str) -> str:
    """A file-name-safe form: runs of other characters become ``_`` (spaces would break VAANet lists)."""
    safe = _UNSAFE.sub("_", str(text)).strip("._") or "_"
    return safe


def _safe_names(values: pd.Series) -> pd.Series:
    """:func:`_safe_name` over a column, vectorised."""
    safe = values.str.replace(_UNSAFE.pattern, "_", regex=True).str.strip("._")
    return safe.where(safe != "", "_")




def table_sha256(table: pd.DataFrame) -> str:
    """Checksum of a table's content, independent of row and column order."""
    frame = table.reset_index(drop=True)
    frame = frame[sorted(map(str, frame.columns))] if len(frame.columns) else frame
    frame = frame.astype(str).sort_values(list(frame.columns), kind="stable") if len(frame.columns) else frame
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return hashlib.sha256(buffer.getvalue().encode("utf-8")).hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions that byte-identity depends on: the toolkit's and its writers'."""
    out = {}
    for package in ("emotions-toolkit", "numpy", "pandas", "pyarrow", "scikit-learn", "matplotlib"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


def hash_uploader(uploader: object, salt: str) -> str | None:
    """Salted SHA-256 prefix (16 hex digits) of an uploader; None when there is none.

    >>> hash_uploader("alice", "s")
    '5e0f217ada7a7a57'
    """
    if uploader is None or (isinstance(uploader, float) and np.isnan(uploader)) or str(uploader).strip() == "":
        return None
    return hashlib.sha256((salt + str(uploader)).encode("utf-8")).hexdigest()[:16]


def _uploader_hash(values: pd.Series, salt: str) -> np.ndarray:
    # Hash each uploader once (a million clips have a few hundred thousand uploaders).
    codes, uniques = pd.factorize(values.astype(object).where(values.notna(), None).map(
        lambda v: None if v is None else str(v), na_action="ignore"))
    hashed = np.array([hash_uploader(u, salt) for u in uniques] + [None], dtype=object)
    return hashed[codes]  # code -1 (missing) picks the trailing None


def manifest_table(
    clips: pd.DataFrame, labels: Sequence[Mapping[str, Any]], *, uploader_salt: str
) -> pd.DataFrame:
    """The manifest of a variant: MANIFEST_COLUMNS, sorted by split, label index and clip id.

    ``media_path`` is ``<split>/<Label>/<clip_id><ext>`` relative to the export folder (the source
    file's extension, ``.mp4`` when it has none); ``clips`` is a selection's table (candidate
    columns plus ``split``).
    """
    return _manifest_and_sources(clips, labels, uploader_salt)[0]


def _manifest_and_sources(
    clips: pd.DataFrame, labels: Sequence[Mapping[str, Any]], uploader_salt: str
) -> tuple[pd.DataFrame, np.ndarray]:
    label_dirs = {d["name"]: _safe_name(d["name"]) for d in labels}
    file_stems = _safe_names(clips["clip_id"].astype(str))
    if file_stems.duplicated().any():
        raise InvalidTableError(
            f"clip ids collide once made file-name safe: {', '.join(file_stems[file_stems.duplicated()].head(_MAX_LISTED))}"
        )
    file_names = clips["media_path"].astype(str).str.rsplit("/", n=1).str[-1]
    suffixes = file_names.str.extract(r"^.+?(\.[^.]+)$", expand=False).fillna(".mp4").str.lower()
    media_path = (clips["split"].astype(str) + "/" + clips["label"].map(label_dirs) + "/" + file_stems + suffixes)
    manifest = pd.DataFrame({
        "clip_id": clips["clip_id"].astype(str).to_numpy(dtype=object),
        "media_path": media_path.to_numpy(dtype=object),
        "label": clips["label"].astype(str).to_numpy(dtype=object),
        "label_index": clips["label_index"].astype(np.int64).to_numpy(),
        "polarity": clips["polarity"].astype(str).to_numpy(dtype=object),
        "split": clips["split"].astype(str).to_numpy(dtype=object),
        "confidence": np.round(pd.to_numeric(clips["confidence"], errors="coerce").to_numpy(dtype=float), 6),
        "n_judgements": pd.array(clips["n_judgements"], dtype="Int64"),
        # Crowd (stage 1-2) labels only: an expert's decision is not one more judgement.
        "n_crowd_judgements": pd.array(clips.get("n_crowd_judgements", clips["n_judgements"]), dtype="Int64"),
        "resolving_stage": pd.array(clips["resolving_stage"], dtype="Int64"),
        "resolved_by": clips["resolved_by"].astype(str).to_numpy(dtype=object),
        "agreement_pattern": _text_column(clips, "agreement_pattern", "unknown"),
        "platform": clips["platform"].to_numpy(dtype=object),
        "uploader_hash": _uploader_hash(clips["uploader"], uploader_salt),
        "duration_s": np.round(pd.to_numeric(clips["duration_s"], errors="coerce").to_numpy(dtype=float), 3),
        "has_audio": pd.array(clips["has_audio"], dtype="boolean"),
    })
    split_order = manifest["split"].map({name: i for i, name in enumerate(SPLITS)})
    order = np.lexsort((manifest["clip_id"].to_numpy(dtype=str), manifest["label_index"].to_numpy(), split_order.to_numpy()))
    manifest = manifest.iloc[order].reset_index(drop=True)
    return manifest, clips["media_path"].astype(str).to_numpy(dtype=object)[order]


def _text_column(clips: pd.DataFrame, column: str, default: str) -> np.ndarray:
    if column not in clips.columns:
        return np.full(len(clips), default, dtype=object)
    values = clips[column]
    return values.where(values.notna(), default).astype(str).to_numpy(dtype=object)


def _csv_text(frame: pd.DataFrame) -> str:
    """CSV with fixed float formats (confidence 6, duration 3 decimals) and lower-case booleans;
    text that a spreadsheet would run as a formula (a platform from ingested metadata, a label)
    is neutralised (``curation.spreadsheet``). The parquet manifest keeps the raw text."""
    out = neutralise_frame(frame)
    for column, digits in (("confidence", 6), ("duration_s", 3)):
        if column in out.columns:
            values = out[column].to_numpy(dtype=float)
            text = np.char.mod(f"%.{digits}f", np.nan_to_num(values)).astype(object)
            text[np.isnan(values)] = ""
            out[column] = text
    if "has_audio" in out.columns:
        flags = pd.array(out["has_audio"], dtype="boolean")
        text = np.where(flags.fillna(False).to_numpy(dtype=bool), "true", "false").astype(object)
        text[np.asarray(flags.isna(), dtype=bool)] = ""
        out["has_audio"] = text
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _write_parquet(path: Path, manifest: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(manifest[list(MANIFEST_COLUMNS)], schema=_PARQUET_SCHEMA, preserve_index=False)
    # No pandas metadata (it names the pandas version and the index layout): same rows, same bytes.
    table = table.replace_schema_metadata(None)
    pq.write_table(table, path, compression="zstd", write_statistics=True, use_dictionary=True)


def _place_media(
    manifest: pd.DataFrame, source_media: np.ndarray, folder: Path, media_root: Path | None, mode: str,
    progress: Callable[[int, int], None],
) -> None:
    sources = []
    for raw in source_media:
        path = Path(raw)
        sources.append(path if path.is_absolute() or media_root is None else media_root / path)
    missing = [cid for cid, src in zip(manifest["clip_id"], sources, strict=True) if not src.is_file()]
    if missing:
        raise MediaError(f"media file missing for {len(missing)} clip(s): {', '.join(missing[:_MAX_LISTED])}"
                         + (" …" if len(missing) > _MAX_LISTED else "")
                         + (f" (media paths are relative to {media_root})" if media_root else ""))
    for directory in sorted({str(Path(p).parent) for p in manifest["media_path"]}):
        (folder / directory).mkdir(parents=True, exist_ok=True)
    total = len(sources)
    step = max(1, total // 100)
    for done, (src, rel) in enumerate(zip(sources, manifest["media_path"], strict=True), start=1):
        dst = folder / rel
        if mode == "link":
            try:
                os.link(src, dst)
            except OSError:
                # Other file system, too many links on one inode, or links not allowed: copy.
                shutil.copyfile(src, dst)
        else:
            shutil.copyfile(src, dst)
        if done % step == 0 or done == total:
            progress(done, total)


def _write_layouts(manifest: pd.DataFrame, labels: Sequence[Mapping[str, Any]], folder: Path) -> None:
    _write_text(folder / "labels.json", json.dumps(
        [{"index": int(d["index"]), "name": d["name"], "polarity": d["polarity"]} for d in labels],
        indent=2, ensure_ascii=False) + "\n")
    _write_text(folder / "classInd.txt", "".join(f"{d['index'] + 1} {_safe_name(d['name'])}\n" for d in labels))
    for split, listing in (("train", "trainlist01.txt"), ("validation", "vallist01.txt"), ("test", "testlist01.txt")):
        rows = manifest.loc[manifest["split"] == split]
        _write_text(folder / listing, "".join(
            f"{path} {index + 1}\n" for path, index in zip(rows["media_path"], rows["label_index"], strict=True)))
        if len(rows):
            (folder / split).mkdir(exist_ok=True)
            hf = rows.assign(file_name=rows["media_path"].str.slice(len(split) + 1))
            _write_text(folder / split / "metadata.csv", _csv_text(hf[list(_HF_COLUMNS)]))


# ----------------------------------------------------------------------------- staging and swap


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise ExportError(f"cannot swap {b} into place: {os.strerror(code)}")


def _swap_in(staging: Path, dest: Path) -> None:
    if not dest.exists():
        os.rename(staging, dest)
        return
    if _exchange(staging, dest):
        shutil.rmtree(staging)  # now holds the old export
        return
    # Fallback: two renames; the old export is restored if the second one fails.
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    old.rmdir()
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except OSError:
        os.rename(old, dest)
        raise
    shutil.rmtree(old)


def _check_destination(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / _MARKER).is_file():
        raise ExportError(f"refusing to replace {dest}: it is not an export (no {_MARKER}) and not empty")


def export_variant(
    clips: pd.DataFrame,
    labels: Sequence[Mapping[str, Any]],
    dest: str | Path,
    *,
    build_info: Mapping[str, Any],
    uploader_salt: str,
    media_root: str | Path | None = None,
    media_mode: str = "link",
    card: Callable[[Path, pd.DataFrame], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write one variant's export folder at ``dest``, replacing an earlier export there whole.

    ``clips`` is a selection (candidate columns plus ``split``); ``build_info`` is recorded in
    ``build_info.json`` with the tool versions and the manifest checksums added; ``card(folder,
    manifest)`` writes the dataset card into the folder being built. Relative media paths are read
    under ``media_root``.
    """
    if media_mode not in MEDIA_MODES:
        raise ExportError(f"media mode must be one of {', '.join(MEDIA_MODES)}, not {media_mode!r}")
    dest = Path(dest).absolute()
    _check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    root = Path(media_root) if media_root is not None else None
    report = progress or (lambda done, total: None)
    manifest, source_media = _manifest_and_sources(clips, labels, uploader_salt)
    with _building_in(dest.parent):
        _build_and_swap_in(manifest, source_media, labels, dest, build_info, root, media_mode, card, report)
    report(len(manifest), len(manifest))
    return dest


# The staging folders ``tempfile.mkdtemp(prefix=".NAME.", suffix=".partial")`` makes.
_STAGING_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial$")


@contextmanager
def _building_in(parent: Path) -> Iterator[None]:
    """Hold a shared lock on ``parent`` while building into it; sweep dead builds' staging first.

    The kernel drops a killed process's lock, so an exclusive lock that succeeds proves that no
    build is live in ``parent`` and every staging folder there is debris. When another build holds
    its lock, nothing is swept (its staging folder is indistinguishable from a dead one's).
    """
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            for entry in parent.iterdir():
                if _STAGING_RE.match(entry.name) and entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
        # Not atomic (flock releases, then takes): harmless, this build has no staging folder yet.
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _build_and_swap_in(manifest: pd.DataFrame, source_media: np.ndarray, labels: Sequence[Mapping[str, Any]], dest: Path,
                       build_info: Mapping[str, Any], root: Path | None, media_mode: str,
                       card: Callable[[Path, pd.DataFrame], None] | None,
                       report: Callable[[int, int], None]) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        if media_mode != "none":
            _place_media(manifest, source_media, staging, root, media_mode, report)
        _write_layouts(manifest, labels, staging)
        _write_text(staging / "manifest.csv", _csv_text(manifest[list(MANIFEST_COLUMNS)]))
        _write_parquet(staging / "manifest.parquet", manifest)
        if card is not None:
            card(staging, manifest)
        info = dict(build_info)
        info["tool"] = tool_versions()
        info["media"] = media_mode
        info["n_clips"] = int(len(manifest))
        info["counts"] = {
            label: {split: int(n) for split, n in row.items()}
            for label, row in manifest.groupby(["label", "split"]).size().unstack(fill_value=0)
            .reindex(columns=list(SPLITS), fill_value=0).iterrows()
        }
        info["files"] = {name: sha256_file(staging / name) for name in ("manifest.csv", "manifest.parquet")}
        _write_text(staging / _MARKER, json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        _swap_in(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
