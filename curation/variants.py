"""Dataset variants: the full, the category-balanced and the test-oriented one, as recipes.

A *recipe* (a TOML table, shipped defaults in ``curation/recipes/``) says which clips a variant
takes and how they are split. A build turns one table of resolved clips (:func:`candidate_clips`)
into one export folder per recipe (:func:`build_variants`):

- **full** — every resolved, non-discarded clip;
- **balanced** — the same number of clips per label, highest confidence first, keeping each
  label's platform mix;
- **test-oriented** — a label-balanced, platform-stratified test split of only the most reliable
  clips (unanimous or expert-adjudicated, confident enough); train and validation take the rest.

Splits are stratified by label and grouped (:mod:`curation.splits`): no uploader and no
near-duplicate cluster spans two splits. Everything is seeded; ties are broken by a seeded
permutation of the clip ids, so the same inputs and seed give the same clips in the same splits.

>>> recipes = load_recipes()
>>> [r.name for r in recipes], recipes[0].splits
(['full', 'balanced', 'test-oriented'], {'train': 0.7, 'validation': 0.1, 'test': 0.2})
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curation.aggregation import pattern_sort_key
from curation.dataset_card import variant_agreement, write_dataset_card
from curation.errors import CurationError, InsufficientDataError, InvalidTableError
from curation.export import export_variant, hash_uploader
from curation.splits import SPLITS, assign_splits, find_leaks, fold_plan, leakage_groups

__all__ = [
    "InvalidRecipeError",
    "Recipe",
    "VariantSelection",
    "VariantBuild",
    "ProgressCallback",
    "SELECTORS",
    "DEFAULT_VARIANTS",
    "CANDIDATE_COLUMNS",
    "default_recipe_dicts",
    "load_recipes",
    "labels_from_names",
    "load_clips",
    "resolution_from_clips",
    "has_final_decisions",
    "candidate_clips",
    "hash_uploader",
    "select_variant",
    "build_variants",
]

#: The rules a recipe can name in its ``selector`` key.
SELECTORS: tuple[str, ...] = ("full", "balanced", "test-oriented")
#: The shipped recipes, in build order (their TOML files live in ``curation/recipes/``).
DEFAULT_VARIANTS: tuple[str, ...] = ("full", "balanced", "test-oriented")
RELIABILITY_KINDS: tuple[str, ...] = ("unanimous", "adjudicated", "consensus")
#: What a build does when a label cannot get the clips a recipe asks for: fail (the default: the
#: build stops, naming every shortfall), shrink (every label gets what the shortest has) or borrow
#: (test-oriented only: the short labels' test split takes their next most reliable clips,
#: consensus clips by confidence). "error" is the old name of "fail".
SHORTFALL_POLICIES: tuple[str, ...] = ("fail", "shrink", "borrow", "error")

#: Columns of the table the selectors work on, one row per resolved, non-discarded clip.
CANDIDATE_COLUMNS: tuple[str, ...] = (
    "clip_id", "label", "label_index", "polarity", "confidence", "n_judgements", "resolving_stage",
    "resolved_by", "unanimous", "platform", "uploader", "duplicate_cluster", "media_path",
    "duration_s", "has_audio",
)

#: progress(task, done, total): called as work advances; ``total`` is 0 while unknown.
ProgressCallback = Callable[[str, int, int], None]

_EXPERT_STAGE = 3
_MAX_LISTED = 5


class InvalidRecipeError(CurationError):
    """A recipe file or table is malformed (unknown key, wrong type, shares not summing to 1)."""

    exit_code = 2


def _listed(items: Sequence[Any]) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    return shown + (f" … ({len(items)} in all)" if len(items) > _MAX_LISTED else "")


# --------------------------------------------------------------------------------------- recipes


def default_recipe_dicts() -> dict[str, dict[str, Any]]:
    """The shipped recipes as plain dicts, keyed by variant name."""
    out: dict[str, dict[str, Any]] = {}
    folder = resources.files("curation") / "recipes"
    for name in DEFAULT_VARIANTS:
        text = (folder / f"{name}.toml").read_text(encoding="utf-8")
        out[name] = tomllib.loads(text)
    return out


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in merged and base:
            raise InvalidRecipeError(f"unknown recipe key {where}{key!r}")
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value, f"{where}{key}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True)
class Recipe:
    """One variant's rules, validated. ``as_dict()`` is what ``build_info.json`` records."""

    name: str
    selector: str
    description: str
    splits: dict[str, float]
    min_clips_per_label: int
    uploader_salt: str
    balance: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        name = data.get("name")
        where = f"recipe {name!r}"
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise InvalidRecipeError(f"{where}: 'name' must be a plain folder name")
        selector = data.get("selector", name)
        if selector not in SELECTORS:
            raise InvalidRecipeError(f"{where}: selector must be one of {', '.join(SELECTORS)}, not {selector!r}")
        splits = {k: _number(v, f"{where} splits.{k}") for k, v in dict(data.get("splits", {})).items()}
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown:
            raise InvalidRecipeError(f"{where}: unknown split(s) {_listed(unknown)}")
        splits = {k: splits.get(k, 0.0) for k in SPLITS}
        if selector == "test-oriented" and splits["test"] != 0:
            raise InvalidRecipeError(
                f"{where}: the test share is set by [test]; [splits] only shares the rest between train and validation"
            )
        try:
            fold_plan(splits)
        except CurationError as exc:
            raise InvalidRecipeError(f"{where}: {exc}") from exc
        requirements = dict(data.get("requirements", {}))
        min_clips = requirements.get("min_clips_per_label", 1)
        if not isinstance(min_clips, int) or min_clips < 1:
            raise InvalidRecipeError(f"{where}: requirements.min_clips_per_label must be a positive integer")
        salt = dict(data.get("export", {})).get("uploader_salt", "")
        if not isinstance(salt, str):
            raise InvalidRecipeError(f"{where}: export.uploader_salt must be a string")
        balance = dict(data.get("balance", {}))
        test = dict(data.get("test", {}))
        if selector == "balanced":
            _check_count(balance.get("per_label", 0), f"{where} balance.per_label")
            _check_policy(balance.get("on_shortfall", "fail"), f"{where} balance.on_shortfall")
            if balance.get("on_shortfall") == "borrow":
                raise InvalidRecipeError(f"{where}: balance.on_shortfall cannot be \"borrow\" (a label has no other clips "
                                         "to borrow); choose fail or shrink")
        if selector == "test-oriented":
            _check_count(test.get("per_label", 0), f"{where} test.per_label")
            _check_policy(test.get("on_shortfall", "fail"), f"{where} test.on_shortfall")
            fraction = _number(test.get("fraction", 0.3), f"{where} test.fraction")
            ceiling = _number(test.get("max_fraction", 0.5), f"{where} test.max_fraction")
            if not 0 < fraction <= ceiling < 1:
                raise InvalidRecipeError(f"{where}: need 0 < test.fraction <= test.max_fraction < 1")
            kinds = test.get("reliable", ["unanimous", "adjudicated"])
            if not isinstance(kinds, list) or not kinds or any(k not in RELIABILITY_KINDS for k in kinds):
                raise InvalidRecipeError(f"{where}: test.reliable must list some of {', '.join(RELIABILITY_KINDS)}")
            _number(test.get("min_confidence", 0.8), f"{where} test.min_confidence")
            _check_count(test.get("min_judgements", 3), f"{where} test.min_judgements")
        return cls(
            name=name,
            selector=selector,
            description=str(data.get("description", "")),
            splits=splits,
            min_clips_per_label=min_clips,
            uploader_salt=salt,
            balance=balance,
            test=test,
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "selector": self.selector,
            "description": self.description,
            "splits": dict(self.splits),
            "requirements": {"min_clips_per_label": self.min_clips_per_label},
            "export": {"uploader_salt": self.uploader_salt},
        }
        if self.balance:
            out["balance"] = dict(self.balance)
        if self.test:
            out["test"] = copy.deepcopy(self.test)
        return out


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecipeError(f"{where} must be a number, not {value!r}")
    return float(value)


def _check_count(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRecipeError(f"{where} must be a non-negative integer, not {value!r}")


def _check_policy(value: Any, where: str) -> None:
    if value not in SHORTFALL_POLICIES:
        raise InvalidRecipeError(f"{where} must be one of {', '.join(SHORTFALL_POLICIES)}, not {value!r}")


def load_recipes(
    source: str | Path | Mapping[str, Any] | None = None, *, variants: Iterable[str] | None = None
) -> list[Recipe]:
    """The shipped recipes with the overrides of ``source`` applied; optionally only ``variants``.

    ``source`` (a TOML file or its parsed dict) holds either one recipe (a top-level ``name``) or
    tables named after variants (``[balanced]``, ``["test-oriented".test]`` …) holding only the keys
    to change. A table with a new name and a ``selector`` adds a variant.

    >>> [r.balance["per_label"] for r in load_recipes({"balanced": {"balance": {"per_label": 50}}}, variants=["balanced"])]
    [50]
    """
    dicts = default_recipe_dicts()
    if source is not None:
        if isinstance(source, Mapping):
            override = dict(source)
        else:
            path = Path(source)
            try:
                override = tomllib.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError as exc:
                raise InvalidRecipeError(f"recipe file not found: {path}") from exc
            except tomllib.TOMLDecodeError as exc:
                raise InvalidRecipeError(f"recipe file {path} is not valid TOML: {exc}") from exc
        if "name" in override and not isinstance(override["name"], Mapping):
            override = {str(override["name"]): override}
        for name, table in override.items():
            if not isinstance(table, Mapping):
                raise InvalidRecipeError(f"recipe file: {name!r} must be a table of recipe keys")
            if name in dicts:
                dicts[name] = _merge(dicts[name], table, f"[{name}] ")
            else:
                selector = table.get("selector")
                if selector not in SELECTORS:
                    raise InvalidRecipeError(
                        f"recipe {name!r} is not a shipped variant ({', '.join(DEFAULT_VARIANTS)}); "
                        f"a new one needs selector = one of {', '.join(SELECTORS)}"
                    )
                base = dicts.get(selector, {})
                dicts[name] = _merge(base, {**table, "name": name}, f"[{name}] ")
    recipes = [Recipe.from_dict(d) for d in dicts.values()]
    if variants is not None:
        wanted = list(variants)
        unknown = [v for v in wanted if v not in dicts]
        if unknown:
            raise InvalidRecipeError(f"no recipe for variant(s) {_listed(unknown)} (known: {', '.join(dicts)})")
        recipes = [r for r in recipes if r.name in wanted]
    return recipes


# --------------------------------------------------------------------------------- clip tables


def load_clips(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a clips table (CSV or parquet; see ``docs/ARCHITECTURE.md``), ids kept as strings."""
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidTableError(f"clips file not found: {path}")
        suffix = path.suffix.lower()
        try:
            if suffix in {".parquet", ".pq"}:
                frame = pd.read_parquet(path)
            elif suffix in {".csv", ".tsv"}:
                frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",",
                                    dtype={"clip_id": str, "uploader": str, "duplicate_cluster": str,
                                           "final_label": str, "media_path": str})
            else:
                raise InvalidTableError(f"clips file must be .csv, .tsv or .parquet, not {path.name}")
        except InvalidTableError:
            raise
        except Exception as exc:  # parser errors of several libraries; one message for the user
            raise InvalidTableError(f"cannot read clips file {path}: {exc}") from exc
    for column in ("clip_id", "media_path"):
        if column not in frame.columns:
            raise InvalidTableError(f"clips table has no {column!r} column")
    frame["clip_id"] = frame["clip_id"].astype(str)
    return frame


def has_final_decisions(clips: pd.DataFrame) -> bool:
    """Whether a clips table carries the database's decisions (some clip resolved with a final label)."""
    return (
        "final_label" in clips.columns and "status" in clips.columns
        and bool(((clips["status"].astype(str) == "resolved") & clips["final_label"].notna()).any())
    )


def labels_from_names(names: Iterable[str]) -> list[dict[str, Any]]:
    """A label set from bare names: sorted, polarity ``neutral`` (no polarity is known)."""
    unique = sorted({str(n) for n in names})
    return [{"index": i, "name": n, "polarity": "neutral"} for i, n in enumerate(unique)]


def _check_labels(labels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for position, item in enumerate(labels):
        if "name" not in item:
            raise InvalidTableError(f"label set entry has no 'name': {dict(item)!r}")
        out.append({
            "index": int(item.get("index", position)),
            "name": str(item["name"]),
            "polarity": str(item.get("polarity", "neutral")),
        })
    out.sort(key=lambda d: d["index"])
    if [d["index"] for d in out] != list(range(len(out))):
        raise InvalidTableError("label set indices must be 0, 1, 2, … without gaps")
    names = [d["name"] for d in out]
    if len(set(names)) != len(names):
        raise InvalidTableError("label set names a label twice")
    if not out:
        raise InvalidTableError("label set is empty")
    return out


def resolution_from_clips(clips: pd.DataFrame, resolution: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-clip decisions taken by the database's stage machine (``status == "resolved"``).

    ``final_label``, ``resolution_confidence`` and ``resolved_stage`` come from the clips table;
    ``n_judgements`` and unanimity come from ``resolution`` (``curation.aggregation.resolve`` over
    the same clips' judgements) when given. Returns the shape ``resolve`` returns.
    """
    for column in ("clip_id", "final_label", "status"):
        if column not in clips.columns:
            raise InvalidTableError(f"clips table has no {column!r} column: cannot read database decisions")
    ids = clips["clip_id"].astype(str)
    decided = (clips["status"].astype(str) == "resolved") & clips["final_label"].notna()
    stage = pd.to_numeric(clips.get("resolved_stage"), errors="coerce") if "resolved_stage" in clips else None
    confidence = (
        pd.to_numeric(clips.get("resolution_confidence"), errors="coerce")
        if "resolution_confidence" in clips else pd.Series(np.nan, index=clips.index)
    )
    out = pd.DataFrame(index=pd.Index(ids, name="clip_id"))
    out["label"] = clips["final_label"].where(decided, None).astype(object).to_numpy()
    out["confidence"] = confidence.to_numpy(dtype=float)
    out["n_judgements"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["resolving_stage"] = pd.array(stage.to_numpy() if stage is not None else [pd.NA] * len(out), dtype="Int64")
    out["is_resolved"] = decided.to_numpy()
    out["unanimous"] = False
    out["n_crowd_judgements"] = pd.array([pd.NA] * len(out), dtype="Int64")
    crowd_pattern = pd.Series("stage 1", index=out.index, dtype=object)
    if resolution is not None and len(resolution):
        known = resolution.set_axis(resolution.index.astype(str)).reindex(out.index)
        out["n_judgements"] = pd.array(known["n_judgements"].to_numpy(), dtype="Int64")
        if "n_crowd_judgements" in known.columns:
            out["n_crowd_judgements"] = pd.array(known["n_crowd_judgements"].to_numpy(), dtype="Int64")
        if "agreement_pattern" in known.columns:
            recomputed = known["agreement_pattern"].astype(object)
            crowd_pattern = crowd_pattern.where(~recomputed.astype(str).str.contains("/", regex=False), recomputed)
        out["unanimous"] = known["unanimous"].fillna(False).astype(bool).to_numpy()
        out["confidence"] = out["confidence"].fillna(known["confidence"])
    by = np.where(out["unanimous"], "unanimous", "consensus").astype(object)
    by[(out["resolving_stage"] == _EXPERT_STAGE).fillna(False).to_numpy()] = "adjudicated"
    by[~out["is_resolved"].to_numpy()] = "below-threshold"
    out["resolved_by"] = by
    # The database's resolving stage decides the kind; a stage-1 clip takes its k/n from the
    # recomputed resolution of the same judgements.
    stage_values = out["resolving_stage"].fillna(0).to_numpy(dtype=np.int64)
    pattern = crowd_pattern.to_numpy(dtype=object).copy()
    pattern[stage_values == 2] = "stage 2"
    pattern[stage_values >= _EXPERT_STAGE] = "expert"
    pattern[~out["is_resolved"].to_numpy()] = "unresolved"
    out["agreement_pattern"] = pattern
    return out


def _optional(clips: pd.DataFrame, column: str, default: Any) -> pd.Series:
    if column in clips.columns:
        return clips[column]
    return pd.Series([default] * len(clips), index=clips.index, dtype=object)


def _bools(values: pd.Series) -> pd.Series:
    """A true/false column (booleans, 0/1, or words such as "yes"); unknown or missing → <NA>."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    truthy = {"true": True, "1": True, "1.0": True, "yes": True, "t": True,
              "false": False, "0": False, "0.0": False, "no": False, "f": False}
    words = values.astype(object).where(values.notna(), None).astype(str).str.strip().str.lower()
    return words.map(truthy).astype("boolean")


def candidate_clips(
    clips: pd.DataFrame, resolution: pd.DataFrame, labels: Sequence[Mapping[str, Any]]
) -> pd.DataFrame:
    """One row per resolved, non-discarded clip: the clips table joined with its resolution.

    ``resolution`` is indexed by clip id, shaped as ``curation.aggregation.resolve`` returns it (or
    :func:`resolution_from_clips`). Every resolved clip must be in the clips table; a clip whose
    ``status`` is ``discarded`` leaves, whatever its judgements say. Rows are sorted by clip id.
    """
    label_set = _check_labels(labels)
    for column in ("clip_id", "media_path"):
        if column not in clips.columns:
            raise InvalidTableError(f"clips table has no {column!r} column")
    ids = clips["clip_id"].astype(str)
    if ids.duplicated().any():
        raise InvalidTableError(f"clips table lists clip(s) twice: {_listed(sorted(ids[ids.duplicated()].unique()))}")
    table = clips.copy()
    table["clip_id"] = ids
    table = table.set_index("clip_id", drop=False)
    resolved = resolution.loc[resolution["is_resolved"].astype(bool) & resolution["label"].notna()].copy()
    resolved.index = resolved.index.astype(str)
    missing = resolved.index.difference(table.index)
    if len(missing):
        raise InvalidTableError(
            f"{len(missing)} resolved clip(s) are not in the clips table: {_listed(sorted(missing))}"
        )
    if "status" in table.columns:
        # Gold clips are quality checks and example clips part of the guidelines, never dataset clips,
        # whatever a resolution says of them.
        discarded = table.index[table["status"].astype(str).isin(["discarded", "gold", "example"])]
        resolved = resolved.drop(index=resolved.index.intersection(discarded))
    by_name = {d["name"]: d for d in label_set}
    unknown = sorted(set(resolved["label"].astype(str)) - set(by_name))
    if unknown:
        raise InvalidTableError(f"resolved label(s) not in the label set: {_listed(unknown)}")
    rows = table.loc[resolved.index]
    label = resolved["label"].astype(str)
    out = pd.DataFrame({
        "clip_id": resolved.index.to_numpy(dtype=object),
        "label": label.to_numpy(dtype=object),
        "label_index": label.map({n: d["index"] for n, d in by_name.items()}).to_numpy(dtype=np.int64),
        "polarity": label.map({n: d["polarity"] for n, d in by_name.items()}).to_numpy(dtype=object),
        "confidence": pd.to_numeric(resolved["confidence"], errors="coerce").to_numpy(dtype=float),
        "n_judgements": pd.array(resolved.get("n_judgements", pd.Series(pd.NA, index=resolved.index)), dtype="Int64"),
        "resolving_stage": pd.array(resolved.get("resolving_stage", pd.Series(pd.NA, index=resolved.index)), dtype="Int64"),
        "n_crowd_judgements": pd.array(resolved.get("n_crowd_judgements", resolved.get("n_judgements", pd.Series(pd.NA, index=resolved.index))), dtype="Int64"),
        "resolved_by": resolved.get("resolved_by", pd.Series("consensus", index=resolved.index)).to_numpy(dtype=object),
        "agreement_pattern": resolved.get("agreement_pattern", pd.Series("unknown", index=resolved.index)).fillna("unknown").to_numpy(dtype=object),
        "unanimous": resolved.get("unanimous", pd.Series(False, index=resolved.index)).fillna(False).astype(bool).to_numpy(),
        "platform": _optional(rows, "platform", None).to_numpy(dtype=object),
        "uploader": _optional(rows, "uploader", None).to_numpy(dtype=object),
        "duplicate_cluster": _optional(rows, "duplicate_cluster", None).to_numpy(dtype=object),
        "media_path": rows["media_path"].astype(str).to_numpy(dtype=object),
        "duration_s": pd.to_numeric(_optional(rows, "duration_s", np.nan), errors="coerce").to_numpy(dtype=float),
        "has_audio": _bools(_optional(rows, "has_audio", None)).to_numpy(),
    })
    out["has_audio"] = out["has_audio"].astype("boolean")
    platform = out["platform"].where(out["platform"].notna(), None).astype(object)
    platform_text = platform.astype(str).str.strip()
    out["platform"] = platform_text.where(platform.notna() & (platform_text != ""), None).astype(object)
    out = out.sort_values("clip_id", kind="stable").reset_index(drop=True)
    out.attrs["labels"] = label_set
    return out


# ------------------------------------------------------------------------------------ selectors


@dataclass
class VariantSelection:
    """A variant's clips with their split, and what the rules had to say about the data."""

    recipe: Recipe
    clips: pd.DataFrame  # candidate columns + "split"
    requested_per_label: int | None = None
    shortfalls: dict[str, int] = field(default_factory=dict)  # label -> clips missing
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> clips left out
    notes: list[str] = field(default_factory=list)
    # Each shortfall named: label, split, requested, available, missing, rule (build_info, card).
    shortfall_details: list[dict[str, Any]] = field(default_factory=list)


def _seeded_rank(clip_ids: pd.Series, seed: int) -> np.ndarray:
    """A seeded random rank per clip, fixed by the sorted clip ids (tie-break for equal confidence)."""
    order = np.argsort(clip_ids.to_numpy(dtype=str), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.random.RandomState(seed).permutation(len(order))
    return rank


def _apportion(total: int, weights: pd.Series) -> pd.Series:
    """Largest-remainder shares of ``total`` in proportion to ``weights`` (ties: index order)."""
    if total <= 0 or weights.sum() <= 0:
        return pd.Series(0, index=weights.index, dtype=np.int64)
    exact = weights.astype(float) * total / float(weights.sum())
    base = np.floor(exact).astype(np.int64)
    left = int(total - base.sum())
    remainders = (exact - base).to_numpy()
    order = np.lexsort((np.arange(len(remainders)), -remainders))
    base.iloc[order[:left]] += 1
    return base


def _platform_key(clips: pd.DataFrame) -> pd.Series:
    return clips["platform"].fillna("(unknown)").astype(str)


def _require_labels(clips: pd.DataFrame, labels: Sequence[Mapping[str, Any]], minimum: int, what: str) -> None:
    counts = clips["label"].value_counts()
    short = [(d["name"], int(counts.get(d["name"], 0))) for d in labels if counts.get(d["name"], 0) < minimum]
    if short:
        detail = ", ".join(f"{name} has {n}" for name, n in short)
        raise InsufficientDataError(f"{what}: too few clips (at least {minimum} per label needed): {detail}")


def _split(clips: pd.DataFrame, fractions: Mapping[str, float], seed: int, what: str) -> np.ndarray:
    groups = leakage_groups(clips["uploader"], clips["duplicate_cluster"])
    n_folds, per_split = fold_plan(fractions)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups < n_folds:
        raise InsufficientDataError(
            f"{what}: splitting {', '.join(f'{k} {v:g}' for k, v in fractions.items() if v)} needs at least "
            f"{n_folds} independent groups of clips (uploaders / near-duplicate clusters), found {n_groups}"
        )
    splits = assign_splits(clips["label_index"].to_numpy(), groups, fractions, seed)
    for name in SPLITS:
        if per_split.get(name, 0) and not (splits == name).any():
            raise InsufficientDataError(f"{what}: the {name} split came out empty; more clips or uploaders are needed")
    return splits


def _select_full(candidates: pd.DataFrame, recipe: Recipe, labels: Sequence[Mapping[str, Any]], seed: int) -> VariantSelection:
    what = f"variant {recipe.name!r}"
    _require_labels(candidates, labels, recipe.min_clips_per_label, what)
    clips = candidates.copy()
    clips["split"] = _split(clips, recipe.splits, seed, what)
    return VariantSelection(recipe, clips)


def _shortfall(
    available: pd.Series, requested: int, policy: str, what: str, pool: str
) -> tuple[int, dict[str, int]]:
    """Per-label count to take, and the labels short of ``requested`` with how many they lack."""
    short = {str(k): int(requested - v) for k, v in available.items() if v < requested}
    if short and policy in ("fail", "error"):
        detail = ", ".join(f"{k} short by {v}" for k, v in short.items())
        raise InsufficientDataError(
            f"{what}: {requested} {pool} per label requested; {detail} (on_shortfall = \"fail\"; "
            "set it to \"shrink\" or \"borrow\" in the recipe to build anyway)")
    return (min(requested, int(available.min())) if len(available) else 0), short


def _details(short: Mapping[str, int], requested: int, split: str, rule: str) -> list[dict[str, Any]]:
    # "available": what the label could get under the rule (after grouping, for test splits).
    return [{"label": label, "split": split, "requested": int(requested),
             "available": int(requested - missing), "missing": int(missing), "rule": rule}
            for label, missing in short.items()]


def _select_balanced(
    candidates: pd.DataFrame, recipe: Recipe, labels: Sequence[Mapping[str, Any]], seed: int
) -> VariantSelection:
    what = f"variant {recipe.name!r}"
    _require_labels(candidates, labels, recipe.min_clips_per_label, what)
    names = [d["name"] for d in labels]
    available = candidates["label"].value_counts().reindex(names, fill_value=0)
    cap = int(recipe.balance.get("per_label", 0))
    requested = cap if cap > 0 else int(available.min())
    per_label, short = _shortfall(available, requested, recipe.balance.get("on_shortfall", "fail"), what, "clips")
    if per_label < recipe.min_clips_per_label:
        raise InsufficientDataError(f"{what}: only {per_label} clips per label can be balanced, "
                                    f"at least {recipe.min_clips_per_label} needed")
    ranked = candidates.assign(
        _platform=_platform_key(candidates),
        _confidence=candidates["confidence"].fillna(-1.0),
        _tie=_seeded_rank(candidates["clip_id"], seed),
    ).sort_values(["_confidence", "_tie"], ascending=[False, True], kind="stable")
    chosen: list[pd.DataFrame] = []
    for name in names:
        pool = ranked.loc[ranked["label"] == name]
        if recipe.balance.get("keep_platform_mix", True):
            quotas = _apportion(per_label, pool["_platform"].value_counts().sort_index())
            # The confident end of each platform's queue, as many as its quota.
            position = pool.groupby("_platform", sort=False).cumcount()
            chosen.append(pool.loc[position.to_numpy() < pool["_platform"].map(quotas).to_numpy()])
        else:
            chosen.append(pool.head(per_label))
    clips = pd.concat(chosen).drop(columns=["_platform", "_confidence", "_tie"])
    clips = clips.sort_values("clip_id", kind="stable").reset_index(drop=True)
    clips["split"] = _split(clips, recipe.splits, seed, what)
    notes = []
    if short:
        notes.append(
            f"{requested} clips per label requested; "
            + ", ".join(f"{k} short by {v}" for k, v in short.items())
            + f"; every label has {per_label}"
        )
    dropped = {"over the per-label count": int(len(candidates) - len(clips))}
    details = _details(short, requested, "all",
                       f"balance.per_label = {requested}, on_shortfall = \"{recipe.balance.get('on_shortfall', 'fail')}\"")
    return VariantSelection(recipe, clips, requested, short, dropped, notes, details)


def _reliable(candidates: pd.DataFrame, rule: Mapping[str, Any]) -> np.ndarray:
    kinds = set(rule.get("reliable", ["unanimous", "adjudicated"]))
    confident = candidates["confidence"].fillna(0.0).to_numpy() >= float(rule.get("min_confidence", 0.8)) - 1e-9
    # The crowd's labels: an expert's decision is not one more judgement of a unanimous clip.
    crowd = candidates["n_crowd_judgements"] if "n_crowd_judgements" in candidates.columns else candidates["n_judgements"]
    enough = crowd.fillna(0).to_numpy(dtype=np.int64) >= int(rule.get("min_judgements", 3))
    adjudicated = (candidates["resolved_by"].to_numpy(dtype=object) == "adjudicated") | (
        candidates["resolving_stage"].fillna(0).to_numpy(dtype=np.int64) >= _EXPERT_STAGE
    )
    unanimous = candidates["unanimous"].to_numpy(dtype=bool) & ~adjudicated
    mask = np.zeros(len(candidates), dtype=bool)
    if "unanimous" in kinds:
        mask |= unanimous & confident & enough
    if "adjudicated" in kinds:
        mask |= adjudicated
    if "consensus" in kinds:
        mask |= ~adjudicated & confident & enough
    return mask


def _select_test_oriented(
    candidates: pd.DataFrame, recipe: Recipe, labels: Sequence[Mapping[str, Any]], seed: int
) -> VariantSelection:
    what = f"variant {recipe.name!r}"
    rule = recipe.test
    _require_labels(candidates, labels, recipe.min_clips_per_label, what)
    names = [d["name"] for d in labels]
    n_labels = len(names)
    clips = candidates.copy()
    reliable = _reliable(clips, rule)
    if not reliable.any():
        raise InsufficientDataError(f"{what}: no clip meets the test reliability rule ({_rule_text(rule)})")
    asked = int(rule.get("per_label", 0))
    requested = asked if asked > 0 else int(float(rule.get("fraction", 0.3)) * len(clips) // n_labels)
    policy = rule.get("on_shortfall", "fail")
    # Train and validation keep at least (1 - max_fraction) of the clips, whatever was asked.
    ceiling = int(float(rule.get("max_fraction", 0.5)) * len(clips) // n_labels)
    reliable_counts = clips.loc[reliable, "label"].value_counts().reindex(names, fill_value=0)
    borrowed: dict[str, int] = {}
    if policy == "borrow":
        # The short labels' next most reliable clips: resolved by consensus (not adjudicated, not
        # unanimous enough), most confident first, as many as each label lacks.
        order = clips.assign(_tie=_seeded_rank(clips["clip_id"], seed), _conf=clips["confidence"].fillna(-1.0))
        order = order.loc[~reliable].sort_values(["_conf", "_tie"], ascending=[False, True], kind="stable")
        for name in names:
            lack = min(requested, ceiling) - int(reliable_counts[name])
            if lack > 0:
                extra = order.index[(order["label"] == name).to_numpy()][:lack]
                reliable[extra.to_numpy()] = True
                if len(extra):
                    borrowed[name] = int(len(extra))
        reliable_counts = clips.loc[reliable, "label"].value_counts().reindex(names, fill_value=0)
    quota, short = _shortfall(reliable_counts.clip(upper=ceiling), requested,
                              "shrink" if policy == "borrow" else policy, what, "reliable test clips")
    rule_name = (f"test.per_label = {asked}" if asked else
                 f"test.fraction = {float(rule.get('fraction', 0.3)):g} of {len(clips)} clips over {n_labels} labels = {requested} per label")
    rule_name += f", max_fraction = {float(rule.get('max_fraction', 0.5)):g}; reliable: {_rule_text(rule)}; on_shortfall = \"{policy}\""
    if quota < 1:
        missing = [k for k, v in reliable_counts.items() if v == 0]
        raise InsufficientDataError(
            f"{what}: no reliable clip ({_rule_text(rule)}) for label(s) {_listed(missing)}: the test split cannot be balanced"
        )

    groups = leakage_groups(clips["uploader"], clips["duplicate_cluster"])
    label_codes = clips["label_index"].to_numpy(dtype=np.int64)
    platform = _platform_key(clips)
    platform_codes, platform_names = pd.factorize(platform, sort=True)
    n_platforms = len(platform_names)
    # (label, platform) quotas follow each label's platform mix over the whole variant.
    cell_quota = np.zeros((n_labels, n_platforms), dtype=np.int64)
    if rule.get("platform_stratified", True):
        mix = pd.crosstab(label_codes, platform_codes).reindex(index=range(n_labels), columns=range(n_platforms), fill_value=0)
        for li in range(n_labels):
            cell_quota[li] = _apportion(quota, mix.loc[li]).to_numpy()
    else:
        cell_quota[:] = quota

    # Candidate groups: those with reliable clips, visited in a seeded order, then those with the
    # fewest unreliable clips first (those leave the variant with their group), then small first
    # (they fill quotas exactly).
    n_groups = int(groups.max()) + 1
    group_size = np.bincount(groups, minlength=n_groups)
    n_reliable = np.bincount(groups[reliable], minlength=n_groups)
    shuffled = np.random.RandomState(seed).permutation(np.flatnonzero(n_reliable > 0))
    visit = shuffled[np.lexsort((group_size[shuffled], (group_size - n_reliable)[shuffled]))]

    # Each group's reliable clips as sparse (label × platform cell, count) entries, in plain Python
    # lists: the loop below visits up to four times every group, and scalar Python beats numpy on
    # arrays of six by far.
    n_cells = n_labels * n_platforms
    reliable_index = np.flatnonzero(reliable)
    entry_key, entry_count = np.unique(
        groups[reliable_index] * n_cells + label_codes[reliable_index] * n_platforms + platform_codes[reliable_index],
        return_counts=True,
    )
    bounds = np.searchsorted(entry_key // n_cells, np.arange(n_groups + 1)).tolist()
    cells = (entry_key % n_cells).tolist()
    cell_labels = [cell // n_platforms for cell in range(n_cells)]
    counts = entry_count.tolist()
    cell_limit = cell_quota.ravel().tolist()
    sizes = group_size.tolist()

    taken_label = [0] * n_labels
    taken_cell = [0] * n_cells
    in_test_group = np.zeros(n_groups, dtype=bool)
    # Test groups take their unreliable clips out of the variant too; all of it counts against
    # max_fraction, so train and validation keep the rest.
    budget = int(float(rule.get("max_fraction", 0.5)) * len(clips))
    consumed = 0
    # Pass 1 keeps every (label, platform) cell within its quota, pass 2 only every label; passes 3
    # and 4 take groups that still help an unfilled label though they overfill another (the surplus
    # is cut below): first those that help at least as much as they overfill, then any. Each pass
    # stops once every label is full.
    for rule_pass in ("platform", "label", "mostly useful", "overflow"):
        if min(taken_label) >= quota:
            break
        for g in visit.tolist():
            if in_test_group[g] or consumed + sizes[g] > budget:
                continue
            entries = range(bounds[g], bounds[g + 1])
            add: dict[int, int] = {}
            for e in entries:
                label = cell_labels[cells[e]]
                add[label] = add.get(label, 0) + counts[e]
            if rule_pass in ("mostly useful", "overflow"):
                useful = sum(min(c, max(quota - taken_label[label], 0)) for label, c in add.items())
                if useful == 0 or (rule_pass == "mostly useful" and 2 * useful < sum(add.values())):
                    continue
            elif any(taken_label[label] + c > quota for label, c in add.items()):
                continue
            if rule_pass == "platform" and any(taken_cell[cells[e]] + counts[e] > cell_limit[cells[e]] for e in entries):
                continue
            for e in entries:
                taken_cell[cells[e]] += counts[e]
            for label, c in add.items():
                taken_label[label] += c
            consumed += sizes[g]
            in_test_group[g] = True
            if min(taken_label) >= quota:
                break
    taken_label_array = np.asarray(taken_label, dtype=np.int64)

    in_test_group_clip = in_test_group[groups]
    test_mask = in_test_group_clip & reliable
    final_quota = int(min(quota, taken_label_array.min()))
    dropped = {"unreliable, grouped with test clips": int((in_test_group_clip & ~reliable).sum())}
    for li, name in enumerate(names):
        if taken_label_array[li] < quota:
            short[name] = max(short.get(name, 0), int(requested - taken_label_array[li]))
    if short and policy in ("fail", "error"):  # short after grouping (uploaders, clusters, max_fraction)
        raise InsufficientDataError(
            f"{what}: {requested} reliable test clips per label requested; "
            + ", ".join(f"{k} short by {v}" for k, v in short.items())
            + " once uploaders and near-duplicate clusters stay whole (on_shortfall = \"fail\"; set it to "
            "\"shrink\" or \"borrow\" in the recipe to build anyway)")
    if final_quota < 1:
        raise InsufficientDataError(f"{what}: the grouping leaves no reliable test clip for some label")
    if np.any(taken_label_array > final_quota):
        # Cut every label to the same count, least confident first; cut clips share a group with
        # test clips, so they leave the variant rather than go to train.
        ranked = clips.assign(_tie=_seeded_rank(clips["clip_id"], seed), _conf=clips["confidence"].fillna(-1.0))
        ranked = ranked.loc[test_mask].sort_values(["_conf", "_tie"], ascending=[False, True], kind="stable")
        keep_rank = ranked.groupby("label_index", sort=False).cumcount()
        cut_index = ranked.index[keep_rank.to_numpy() >= final_quota]
        test_mask[cut_index.to_numpy()] = False
        dropped["cut to balance the test split"] = int(len(cut_index))

    keep = test_mask | ~in_test_group_clip
    split = np.full(len(clips), "test", dtype=object)
    rest = ~in_test_group_clip
    rest_clips = clips.loc[rest]
    if len(rest_clips) == 0:
        raise InsufficientDataError(f"{what}: every clip went to test; nothing is left for train and validation")
    split[rest] = _split(rest_clips, recipe.splits, seed, what + " (train/validation)")
    clips["split"] = split
    clips = clips.loc[keep].reset_index(drop=True)
    notes = []
    if short:
        notes.append(
            f"{requested} test clips per label {'requested' if asked else 'aimed for (test.fraction)'}; "
            + ", ".join(f"{k} short by {v}" for k, v in short.items())
            + f"; every label has {final_quota} in test"
        )
    if borrowed:
        notes.append("borrowed for test (consensus clips, most confident first): "
                     + ", ".join(f"{k} {v}" for k, v in borrowed.items()))
    details = _details(short, requested, "test", rule_name)
    return VariantSelection(recipe, clips, requested, short, dropped, notes, details)


def _rule_text(rule: Mapping[str, Any]) -> str:
    kinds = " or ".join(rule.get("reliable", ["unanimous", "adjudicated"]))
    return (f"{kinds}; confidence ≥ {float(rule.get('min_confidence', 0.8)):g} "
            f"and ≥ {int(rule.get('min_judgements', 3))} judgements unless adjudicated")


_SELECT: dict[str, Callable[..., VariantSelection]] = {
    "full": _select_full,
    "balanced": _select_balanced,
    "test-oriented": _select_test_oriented,
}


def select_variant(
    candidates: pd.DataFrame, recipe: Recipe, labels: Sequence[Mapping[str, Any]], *, seed: int = 0
) -> VariantSelection:
    """Apply one recipe to the candidate clips: which clips, in which split.

    Raises :class:`~curation.errors.InsufficientDataError` naming what is missing when the data
    cannot satisfy the recipe; checks that no uploader or near-duplicate cluster spans two splits.
    """
    label_set = _check_labels(labels)
    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing:
        raise InvalidTableError(f"candidate clips table lacks column(s) {_listed(missing)}")
    if len(candidates) == 0:
        raise InsufficientDataError(f"variant {recipe.name!r}: no resolved clips to build from")
    selection = _SELECT[recipe.selector](candidates, recipe, label_set, seed)
    leaks = find_leaks(selection.clips)
    if any(leaks.values()):  # pragma: no cover - the grouping makes this impossible; keep it loud
        raise CurationError(f"variant {recipe.name!r}: split leak {leaks}")
    return selection


# ----------------------------------------------------------------------------------- the build


@dataclass
class VariantBuild:
    """What one variant's build produced."""

    name: str
    path: Path
    counts: pd.DataFrame  # label × split clip counts (labels in index order, splits as columns)
    n_clips: int
    shortfalls: dict[str, int]
    dropped: dict[str, int]
    notes: list[str]
    shortfall_details: list[dict[str, Any]] = field(default_factory=list)


def _pattern_counts(clips: pd.DataFrame) -> dict[str, int]:
    if "agreement_pattern" not in clips.columns:
        return {}
    counts = clips["agreement_pattern"].fillna("unknown").astype(str).value_counts()
    return {k: int(counts[k]) for k in sorted(counts.index, key=pattern_sort_key)}


def build_variants(
    candidates: pd.DataFrame,
    labels: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    recipes: Sequence[Recipe] | None = None,
    seed: int = 0,
    media_root: str | Path | None = None,
    media_mode: str = "link",
    inputs: Mapping[str, Any] | None = None,
    build_settings: Mapping[str, Any] | None = None,
    judgements: pd.DataFrame | None = None,
    progress: ProgressCallback | None = None,
) -> list[VariantBuild]:
    """Select, split and export every recipe's variant into ``out_dir/<name>``.

    ``candidates`` comes from :func:`candidate_clips`; ``inputs`` (checksums of the input tables)
    and ``build_settings`` (e.g. aggregation threshold) are recorded in each ``build_info.json``;
    ``judgements`` (optional) gives the dataset card its agreement figures. Each folder is built
    beside its destination and swapped in whole, so an existing export is never half-overwritten.
    """
    label_set = _check_labels(labels)
    recipes = list(recipes) if recipes is not None else load_recipes()
    out = Path(out_dir)
    report = progress or (lambda task, done, total: None)
    results: list[VariantBuild] = []
    for position, recipe in enumerate(recipes):
        report("select clips", position, len(recipes))
        selection = select_variant(candidates, recipe, label_set, seed=seed)
        agreement = variant_agreement(judgements, selection.clips["clip_id"]) if judgements is not None else None

        def card(folder: Path, manifest: pd.DataFrame, selection: VariantSelection = selection,
                 agreement: Mapping[str, Any] | None = agreement) -> None:
            write_dataset_card(folder, manifest, label_set, recipe=selection.recipe, seed=seed,
                               agreement=agreement, shortfalls=selection.shortfalls,
                               shortfall_details=selection.shortfall_details,
                               dropped=selection.dropped, notes=selection.notes)

        info = {
            "variant": recipe.name,
            "recipe": recipe.as_dict(),
            "seed": seed,
            "inputs": dict(inputs or {}),
            "settings": dict(build_settings or {}),
            "shortfalls": [dict(d) for d in selection.shortfall_details],
            # Where label noise sits: clips per agreement pattern (k/n at stage 1, stage 2, expert).
            "agreement_patterns": _pattern_counts(selection.clips),
            "dropped": dict(selection.dropped),
            "notes": list(selection.notes),
        }
        exported = export_variant(
            selection.clips, label_set, out / recipe.name,
            build_info=info, uploader_salt=recipe.uploader_salt, media_root=media_root,
            media_mode=media_mode, card=card,
            progress=lambda done, total, name=recipe.name: report(f"export {name}", done, total),
        )
        counts = (
            selection.clips.groupby(["label", "split"]).size().unstack(fill_value=0)
            .reindex(index=[d["name"] for d in label_set], columns=list(SPLITS), fill_value=0)
        )
        results.append(VariantBuild(recipe.name, exported, counts, len(selection.clips),
                                    dict(selection.shortfalls), dict(selection.dropped), list(selection.notes),
                                    [dict(d) for d in selection.shortfall_details]))
    report("select clips", len(recipes), len(recipes))
    return results
