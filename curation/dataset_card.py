"""The dataset card of an export: README.md with counts, agreement and recipe, and its plots.

Plots are drawn with matplotlib's object API (no pyplot, so no global state) and saved as PNG
without the "Software" tag, so the same counts give the same bytes. Nothing records a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w

from curation.aggregation import pattern_sort_key
from curation.agreement import krippendorff_alpha
from curation.errors import CurationError
from curation.splits import SPLITS

__all__ = ["variant_agreement", "write_dataset_card", "count_table", "pattern_table"]

_PLOT_DPI = 100
_SPLIT_COLOURS = {"train": "#4C72B0", "validation": "#DD8452", "test": "#55A868"}


def variant_agreement(judgements: pd.DataFrame | None, clip_ids: Sequence[str] | pd.Series) -> dict[str, Any] | None:
    """Krippendorff's α (nominal) over the crowd judgements (stages 1-2) of a variant's clips,
    overall and per stage.

    Returns None when there are no judgements to measure; agreement itself comes from
    :mod:`curation.agreement`.
    """
    if judgements is None or len(judgements) == 0:
        return None
    wanted = set(map(str, clip_ids))
    rows = judgements.loc[judgements["clip_id"].astype(str).isin(wanted)]
    if "stage" in rows.columns:  # crowd coders only: an expert's stage-3 call is a decision
        rows = rows.loc[pd.to_numeric(rows["stage"], errors="coerce").fillna(1).to_numpy() < 3]
    if len(rows) == 0:
        return None
    out: dict[str, Any] = {"n_judgements": int(len(rows)), "alpha": _alpha(krippendorff_alpha, rows)}
    if "stage" in rows.columns:
        out["alpha_per_stage"] = {
            int(stage): _alpha(krippendorff_alpha, part)
            for stage, part in rows.groupby("stage", sort=True)
        }
    return out


def _alpha(function: Any, rows: pd.DataFrame) -> float | None:
    try:
        value = float(function(rows))
    except CurationError:  # α undefined for this slice (e.g. no clip with two judgements)
        return None
    return None if np.isnan(value) else round(value, 4)


def count_table(manifest: pd.DataFrame, labels: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Clips per label (rows, label-set order) and split (columns), with totals."""
    names = [d["name"] for d in labels]
    counts = (
        manifest.groupby(["label", "split"]).size().unstack(fill_value=0)
        .reindex(index=names, columns=list(SPLITS), fill_value=0).astype(int)
    )
    counts["total"] = counts.sum(axis=1)
    counts.loc["total"] = counts.sum(axis=0)
    return counts


def _numeric(column: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column.dtype) or pd.to_numeric(column, errors="coerce").notna().all())


def _markdown(frame: pd.DataFrame, first: str) -> str:
    header = f"| {first} | " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|---|" + "".join("---:|" if _numeric(frame[c]) else "---|" for c in frame.columns)
    body = [f"| {index} | " + " | ".join(str(v) for v in row) + " |" for index, row in frame.iterrows()]
    return "\n".join([header, rule, *body])


def _save(figure: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=_PLOT_DPI, metadata={"Software": None})


def _plot_counts(counts: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    data = counts.drop(index="total", columns="total")
    figure = Figure(figsize=(7, 3.5))
    axes = figure.add_subplot()
    x = np.arange(len(data.index))
    bottom = np.zeros(len(x))
    for split in SPLITS:
        values = data[split].to_numpy(dtype=float)
        axes.bar(x, values, bottom=bottom, label=split, color=_SPLIT_COLOURS[split])
        bottom += values
    axes.set_xticks(x, [str(i) for i in data.index], rotation=20)
    axes.set_ylabel("clips")
    axes.set_title("clips per label and split")
    axes.legend(frameon=False)
    figure.tight_layout()
    _save(figure, path)


def _plot_confidence(manifest: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.0))
    axes = figure.add_subplot()
    bins = np.linspace(0.0, 1.0, 21)
    for split in SPLITS:
        values = manifest.loc[manifest["split"] == split, "confidence"].dropna().to_numpy(dtype=float)
        if len(values):
            axes.hist(values, bins=bins, histtype="step", label=split, color=_SPLIT_COLOURS[split])
    axes.set_xlabel("confidence of the resolved label")
    axes.set_ylabel("clips")
    axes.legend(frameon=False)
    figure.tight_layout()
    _save(figure, path)


def _plot_platforms(manifest: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    platform = manifest["platform"].fillna("(unknown)").astype(str)
    table = pd.crosstab(manifest["split"], platform).reindex(index=list(SPLITS), fill_value=0)
    shares = table.div(table.sum(axis=1).replace(0, 1), axis=0)
    figure = Figure(figsize=(7, 2.8))
    axes = figure.add_subplot()
    left = np.zeros(len(shares.index))
    colours = ["#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]
    for i, name in enumerate(sorted(shares.columns)):
        values = shares[name].to_numpy(dtype=float)
        axes.barh(list(shares.index), values, left=left, label=name, color=colours[i % len(colours)])
        left += values
    axes.set_xlim(0, 1)
    axes.set_xlabel("share of the split's clips")
    axes.set_title("platform mix per split")
    axes.legend(frameon=False, fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout(rect=(0.0, 0.0, 0.82, 1.0))  # room on the right for the legend
    _save(figure, path)


def write_dataset_card(
    folder: str | Path,
    manifest: pd.DataFrame,
    labels: Sequence[Mapping[str, Any]],
    *,
    recipe: Any,
    seed: int,
    agreement: Mapping[str, Any] | None = None,
    shortfalls: Mapping[str, int] | None = None,
    dropped: Mapping[str, int] | None = None,
    notes: Sequence[str] = (),
    shortfall_details: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write ``README.md`` and ``plots/*.png`` for an export folder; returns the README's path.

    ``recipe`` is a :class:`curation.variants.Recipe` (anything with ``name``, ``description`` and
    ``as_dict()``).
    """
    folder = Path(folder)
    plots = folder / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    counts = count_table(manifest, labels)
    _plot_counts(counts, plots / "label_split_counts.png")
    _plot_confidence(manifest, plots / "confidence.png")
    _plot_platforms(manifest, plots / "platforms.png")

    n = int(len(manifest))
    size = "n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "100K<n<1M" if n < 1_000_000 else "n>1M"
    lines = [
        "---",
        f"pretty_name: emotions {recipe.name} variant",
        "task_categories:",
        "- video-classification",
        "size_categories:",
        f"- {size}",
        "---",
        "",
        f"# Dataset card: `{recipe.name}` variant",
        "",
        recipe.description,
        "",
        f"{n} clips, {len(labels)} labels, seed {seed}. Built by the eMotions toolkit "
        "(`curate build-variants`); `build_info.json` holds the recipe, input checksums and tool versions.",
        "",
        "## Labels",
        "",
        _markdown(pd.DataFrame(
            {"name": [d["name"] for d in labels], "polarity": [d["polarity"] for d in labels]},
            index=[d["index"] for d in labels]), "index"),
        "",
        "## Clips per label and split",
        "",
        _markdown(counts, "label"),
        "",
        "![clips per label and split](plots/label_split_counts.png)",
        "",
        "No uploader and no near-duplicate cluster spans two splits.",
        "",
        "![platform mix per split](plots/platforms.png)",
        "",
        "## Label confidence",
        "",
        _markdown(_confidence_summary(manifest), "split"),
        "",
        "![confidence of the resolved label](plots/confidence.png)",
        "",
        "Clips by the stage whose judgements resolved them (3 = expert adjudication):",
        "",
        _markdown(_stage_table(manifest), "stage"),
        "",
        "Clips by agreement pattern (k/n: resolved at stage 1 by k of n crowd labels; stage 2; "
        "expert decision): where label noise sits.",
        "",
        _markdown(pattern_table(manifest), "pattern"),
        "",
        "## Agreement",
        "",
    ]
    if agreement and agreement.get("alpha") is not None:
        lines.append(f"Krippendorff's α (nominal) over the {agreement['n_judgements']} judgements of "
                     f"these clips: **{agreement['alpha']:.4f}**.")
        per_stage = agreement.get("alpha_per_stage") or {}
        if per_stage:
            lines += ["", "| stage | α |", "|---|---:|"]
            lines += [f"| {stage} | {'n/a' if a is None else f'{a:.4f}'} |" for stage, a in sorted(per_stage.items())]
    else:
        lines.append("Not computed (no judgements were given to the build).")
    if shortfall_details:
        lines += ["", "## Shortfalls", "", "Labels that did not get the clips the recipe asks for:", "",
                  "| label | split | requested | available | missing | rule |", "|---|---|---:|---:|---:|---|"]
        lines += [f"| {d['label']} | {d['split']} | {d['requested']} | {d['available']} | {d['missing']} | {d['rule']} |"
                  for d in shortfall_details]
    if shortfalls or notes or dropped:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in notes]
        lines += [f"- {count} clip(s) left out: {reason}" for reason, count in sorted((dropped or {}).items()) if count]
    lines += [
        "",
        "## Recipe",
        "",
        "```toml",
        tomli_w.dumps(recipe.as_dict()).rstrip(),
        "```",
        "",
        "## Files",
        "",
        "- `manifest.csv`, `manifest.parquet`: one row per clip (paths relative to this folder).",
        "- `labels.json`: the label set; `label_index` in the manifest is 0-based into it.",
        "- `classInd.txt`, `trainlist01.txt`, `vallist01.txt`, `testlist01.txt`: the eMotions/VAANet layout.",
        "- `train/`, `validation/`, `test/` with `metadata.csv`: a Hugging Face video folder "
        "(`datasets.load_dataset(\"videofolder\", data_dir=...)`).",
        "",
    ]
    path = folder / "README.md"
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\n".join(lines))
    return path


def pattern_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Clips per agreement pattern (rows, report order) and split (columns)."""
    pattern = (manifest["agreement_pattern"].astype(str) if "agreement_pattern" in manifest.columns
               else pd.Series("unknown", index=manifest.index))
    table = pd.crosstab(pattern, manifest["split"]).reindex(columns=list(SPLITS), fill_value=0)
    table = table.loc[sorted(table.index, key=pattern_sort_key)]
    return table.astype(int)


def _stage_table(manifest: pd.DataFrame) -> pd.DataFrame:
    stage = manifest["resolving_stage"].astype("Int64").astype(object).where(manifest["resolving_stage"].notna(), "unknown")
    table = pd.crosstab(stage.astype(str), manifest["split"]).reindex(columns=list(SPLITS), fill_value=0)
    return table.astype(int)


def _confidence_summary(manifest: pd.DataFrame) -> pd.DataFrame:
    rows = {}
    for split in SPLITS:
        values = manifest.loc[manifest["split"] == split, "confidence"].dropna().to_numpy(dtype=float)
        if len(values):
            rows[split] = {"clips": len(values), "mean": f"{values.mean():.3f}",
                           "min": f"{values.min():.3f}", "median": f"{np.median(values):.3f}"}
    return pd.DataFrame.from_dict(rows, orient="index") if rows else pd.DataFrame({"clips": []})

