"""The judgements table: the curation engine's input contract.

One long table, a row per judgement (``clip_id``, ``annotator_id``, ``label``; optionally ``stage``,
``submitted_at``, ``time_on_task_s``, ``is_gold``, ``gold_label`` and annotator attributes such as
``gender`` or ``age_band``). It comes from the project database or from a file collected anywhere.

>>> import pandas as pd
>>> df = load_judgements(pd.DataFrame({
...     "clip_id": ["c1", "c1", "c2"], "annotator_id": ["a", "b", "a"], "label": ["Fear", "Fear", "Neutral"]}))
>>> list(df["label"].cat.categories), df["stage"].tolist()
(['Fear', 'Neutral'], [1, 1, 1])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curation.errors import InsufficientDataError, InvalidTableError

__all__ = [
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "load_judgements",
    "validate_judgements",
    "label_names",
    "JudgementCodes",
    "encode_judgements",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("clip_id", "annotator_id", "label")
OPTIONAL_COLUMNS: tuple[str, ...] = ("stage", "submitted_at", "time_on_task_s", "is_gold", "gold_label")

# Column names of other tools, accepted when the contract's name is absent: crowd-kit's
# (task, worker, label) and the truth-inference benchmark's (question, worker, answer).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "clip_id": ("task", "question", "item"),
    "annotator_id": ("worker",),
    "label": ("answer",),
}

LabelsArg = Sequence[str] | Sequence[Mapping[str, Any]] | None

# A validated table carries this flag in ``DataFrame.attrs`` (pandas keeps attrs through copies and
# row filters), so library functions handed an already validated table skip re-validation.
_VALIDATED = "curation.judgements.validated"
_MAX_LISTED = 5
_ALIAS_NAMES = ("task", "question", "item", "worker", "answer")


def _listed(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in list(items)[:_MAX_LISTED])
    return shown + (f" … ({len(items)} in all)" if len(items) > _MAX_LISTED else "")


def label_names(labels: LabelsArg) -> list[str] | None:
    """Label names from a list of names or of label dicts (``{"name": ..., "polarity": ...}``)."""
    if labels is None:
        return None
    names: list[str] = []
    for item in labels:
        if isinstance(item, Mapping):
            if "name" not in item:
                raise InvalidTableError(f"label set entry has no 'name': {dict(item)!r}")
            names.append(str(item["name"]))
        else:
            names.append(str(item))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidTableError(f"label set names a label twice: {_listed(duplicates)}")
    if not names:
        raise InvalidTableError("label set is empty")
    return names


def _sorted_labels(found: Sequence[str]) -> list[str]:
    """Sorted label names; numerically when every name is a number (so "10" follows "9")."""
    try:
        return sorted(found, key=float)
    except ValueError:
        return sorted(found)


def _label_string(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return np.nan
        text = str(int(value)) if float(value).is_integer() else str(value)
    else:
        text = str(value).strip()
    return text if text else np.nan


def _label_strings(column: pd.Series) -> pd.Series:
    """Label column as strings with NaN for "can't judge" (empty); integer-valued floats lose ``.0``.

    Works on the distinct values only (labels repeat millions of times, the label set is small).
    """
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    names = np.asarray([_label_string(u) for u in uniques] + [np.nan], dtype=object)
    return pd.Series(names[codes], index=column.index, dtype=object)  # code -1 → the trailing NaN


_TRUTHY = {"true": True, "t": True, "yes": True, "y": True, "1": True, "1.0": True,
           "false": False, "f": False, "no": False, "n": False, "0": False, "0.0": False, "": False}


def _bool_column(column: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.astype(bool)
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    mapped = [_TRUTHY.get(str(u).strip().lower()) for u in uniques] + [False]  # missing → not gold
    bad_codes = [i for i, m in enumerate(mapped) if m is None]
    if bad_codes:
        rows = np.flatnonzero(np.isin(codes, bad_codes))
        raise InvalidTableError(f"column {name!r} must be true/false; bad value(s) in row(s) {_listed(list(rows))}")
    return pd.Series(np.asarray(mapped, dtype=bool)[codes], index=column.index)


def load_judgements(source: str | Path | pd.DataFrame, *, labels: LabelsArg = None) -> pd.DataFrame:
    """Load and validate a judgements table from a DataFrame, a CSV file or a parquet file.

    ``labels`` is the label set (names, or label dicts with ``name``); when None the label set is the
    labels found in the table, sorted. Identifiers read from files stay strings (``"007"`` is not 7).
    """
    if isinstance(source, pd.DataFrame):
        return validate_judgements(source, labels)
    path = Path(source)
    if not path.is_file():
        raise InvalidTableError(f"judgements file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        elif suffix in {".csv", ".tsv", ".txt"}:
            frame = pd.read_csv(
                path,
                sep="\t" if suffix == ".tsv" else ",",
                dtype={c: str for c in ("clip_id", "annotator_id", "label", "gold_label", *_ALIAS_NAMES)},
            )
        else:
            raise InvalidTableError(f"judgements file must be .csv, .tsv or .parquet, not {path.name}")
    except InvalidTableError:
        raise
    except Exception as exc:  # parser errors of several libraries; one message for the user
        raise InvalidTableError(f"cannot read judgements file {path}: {exc}") from exc
    return validate_judgements(frame, labels)


def validate_judgements(df: pd.DataFrame, labels: LabelsArg = None) -> pd.DataFrame:
    """Check a judgements table against the contract and return a normalised copy.

    The copy has a categorical ``label`` (categories = the label set, in order; NaN = can't judge),
    integer ``stage`` (default 1), boolean ``is_gold`` (default False), float ``time_on_task_s`` and
    UTC ``submitted_at`` where present. crowd-kit's column names (``task``, ``worker``) and the
    truth-inference benchmark's (``question``, ``worker``, ``answer``) are accepted. Raises :class:`InvalidTableError` naming the column, label or
    rows at fault: a missing column, an empty id, an unknown label, a bad stage, a duplicate judgement
    (same clip, annotator and stage).
    """
    if not isinstance(df, pd.DataFrame):
        raise InvalidTableError(f"judgements must be a DataFrame, not {type(df).__name__}")
    names = label_names(labels)
    if (
        df.attrs.get(_VALIDATED)
        and isinstance(df["label"].dtype, pd.CategoricalDtype)
        and (names is None or list(df["label"].cat.categories) == names)
    ):
        return df
    renames = {}
    for column, aliases in COLUMN_ALIASES.items():
        if column not in df.columns:
            alias = next((a for a in aliases if a in df.columns), None)
            if alias is not None:
                renames[alias] = column
    if renames:
        df = df.rename(columns=renames)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidTableError(
            f"judgements table is missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(has: {', '.join(map(str, df.columns)) or 'no columns'})"
        )
    out = df.reset_index(drop=True) if not isinstance(df.index, pd.RangeIndex) else df.copy()
    id_codes: dict[str, tuple[np.ndarray, int]] = {}
    for col in ("clip_id", "annotator_id"):
        # Checked on the distinct ids: a million clips repeat five times each.
        codes, uniques = pd.factorize(out[col], use_na_sentinel=True)
        distinct = pd.Index(uniques)
        blank = np.zeros(0, dtype=np.int64)
        if distinct.dtype == object or pd.api.types.is_string_dtype(distinct.dtype):
            blank = np.flatnonzero(np.asarray(distinct.astype(str).str.strip() == "", dtype=bool))
        empty = (codes == -1) | (np.isin(codes, blank) if len(blank) else False)
        if empty.any():
            raise InvalidTableError(f"judgements table has an empty {col} in row(s) {_listed(list(np.flatnonzero(empty)))}")
        id_codes[col] = (codes.astype(np.int64), len(uniques))

    label_strings = _label_strings(out["label"])
    found = pd.unique(label_strings.dropna())
    if names is None:
        names = _sorted_labels([str(v) for v in found])
    else:
        unknown = sorted(set(found) - set(names))
        if unknown:
            rows = np.flatnonzero(label_strings.isin(unknown).to_numpy())
            raise InvalidTableError(
                f"unknown label(s) {_listed([repr(u) for u in unknown])} in row(s) {_listed(list(rows))} "
                f"(label set: {', '.join(names)})"
            )
    out["label"] = pd.Categorical(label_strings, categories=names)

    if "gold_label" in out.columns:
        gold = _label_strings(out["gold_label"])
        unknown = sorted(set(gold.dropna()) - set(names))
        if unknown:
            raise InvalidTableError(f"unknown gold_label(s) {_listed([repr(u) for u in unknown])} (label set: {', '.join(names)})")
        out["gold_label"] = pd.Categorical(gold, categories=names)

    if "stage" in out.columns:
        stage = pd.to_numeric(out["stage"], errors="coerce")
        stage_values = stage.to_numpy(dtype=float)
        bad = ~np.isnan(stage_values) & ((stage_values != np.round(stage_values)) | (stage_values < 1))
        raw_bad = out["stage"].notna().to_numpy() & np.isnan(stage_values)
        if (bad | raw_bad).any():
            raise InvalidTableError(
                f"column 'stage' must be a whole number ≥ 1; bad value(s) in row(s) {_listed(list(np.flatnonzero(bad | raw_bad)))}"
            )
        out["stage"] = np.where(np.isnan(stage_values), 1, stage_values).astype(np.int64)
    else:
        out["stage"] = np.ones(len(out), dtype=np.int64)

    out["is_gold"] = _bool_column(out["is_gold"], "is_gold") if "is_gold" in out.columns else False
    if "time_on_task_s" in out.columns:
        tot = pd.to_numeric(out["time_on_task_s"], errors="coerce")
        bad = (out["time_on_task_s"].notna() & tot.isna()) | (tot < 0)
        if bad.any():
            raise InvalidTableError(
                f"column 'time_on_task_s' must be a number of seconds ≥ 0; bad value(s) in row(s) {_listed(list(np.flatnonzero(bad.to_numpy())))}"
            )
        out["time_on_task_s"] = tot.astype(float)
    if "submitted_at" in out.columns:
        try:
            out["submitted_at"] = pd.to_datetime(out["submitted_at"], utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise InvalidTableError(f"column 'submitted_at' must hold ISO timestamps: {exc}") from exc

    clip_codes, _ = id_codes["clip_id"]
    annotator_codes, n_annotators = id_codes["annotator_id"]
    stage_codes, stages = pd.factorize(out["stage"])
    key = (clip_codes * n_annotators + annotator_codes) * max(len(stages), 1) + stage_codes
    # A sort finds whether any key repeats far faster than hashing millions of keys; only then
    # do we pay for locating the rows.
    ordered = np.sort(key)
    duplicated = np.zeros(len(key), dtype=bool)
    if len(key) > 1 and (ordered[1:] == ordered[:-1]).any():
        duplicated = pd.Series(key).duplicated(keep=False).to_numpy()
    if duplicated.any():
        rows = np.flatnonzero(duplicated)
        first = out.iloc[rows[0]]
        raise InvalidTableError(
            f"duplicate judgement: annotator {first['annotator_id']!r} judged clip {first['clip_id']!r} "
            f"more than once at stage {first['stage']} ({int(duplicated.sum())} duplicate rows in all, "
            f"row(s) {_listed(list(rows))})"
        )
    out.attrs[_VALIDATED] = True
    return out


@dataclass(frozen=True)
class JudgementCodes:
    """Integer codes of a validated table, the form every computation here runs on.

    ``clip``, ``annotator``, ``label`` and ``stage`` have one entry per judgement; ``label`` is -1
    for "can't judge". ``clips`` and ``annotators`` map codes back to ids (sorted where sortable).
    """

    clip: np.ndarray
    clips: pd.Index
    annotator: np.ndarray
    annotators: pd.Index
    label: np.ndarray
    labels: list[str]
    stage: np.ndarray

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def counts(self, mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        """Clips × labels matrix of (weighted) judgement counts; unlabelled judgements are skipped."""
        keep = self.label >= 0 if mask is None else (mask & (self.label >= 0))
        flat = self.clip[keep] * self.n_labels + self.label[keep]
        w = None if weights is None else weights[keep]
        out = np.bincount(flat, weights=w, minlength=len(self.clips) * self.n_labels)
        return out.reshape(len(self.clips), self.n_labels).astype(float)


def _factorize_sorted(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed, unorderable ids: keep first-seen order
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64), pd.Index(uniques)


def encode_judgements(df: pd.DataFrame, *, labels: LabelsArg = None) -> JudgementCodes:
    """Validate (unless already validated) and encode a judgements table as integer codes."""
    table = validate_judgements(df, labels)
    clip, clips = _factorize_sorted(table["clip_id"])
    annotator, annotators = _factorize_sorted(table["annotator_id"])
    clips.name, annotators.name = "clip_id", "annotator_id"
    return JudgementCodes(
        clip=clip,
        clips=clips,
        annotator=annotator,
        annotators=annotators,
        label=table["label"].cat.codes.to_numpy().astype(np.int64),
        labels=[str(c) for c in table["label"].cat.categories],
        stage=table["stage"].to_numpy(dtype=np.int64),
    )


def _require_labelled(codes: JudgementCodes, what: str) -> None:
    if not (codes.label >= 0).any():
        raise InsufficientDataError(f"{what} needs at least one labelled judgement; the table has none")
