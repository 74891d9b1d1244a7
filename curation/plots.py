"""PNG plots of agreement for reports and dataset cards (matplotlib, headless; never shown).

Each function takes what :func:`curation.agreement.agreement_report` (or the matching function)
computes, writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_alpha_per_label", "plot_kappa_heatmap", "plot_consensus_confusion", "write_agreement_plots"]


def _pyplot() -> Any:
    # Agg is chosen here, not at import, so importing curation never touches a user's backend.
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_alpha_per_label(
    alpha_by_label: Mapping[str, Mapping[str, Any]], path: str | Path, *, overall: Mapping[str, Any] | None = None
) -> Path:
    """Bar chart of one-vs-rest α per label with bootstrap intervals, plus the 0.667 / 0.800 lines.

    ``alpha_by_label`` maps label → ``{"alpha", "low", "high"}`` (the report's ``alpha_by_label``).
    Labels with undefined α are drawn as empty slots.
    """
    plt = _pyplot()
    names = list(alpha_by_label)
    values = np.array([np.nan if alpha_by_label[n].get("alpha") is None else alpha_by_label[n]["alpha"] for n in names], dtype=float)
    low = np.array([np.nan if alpha_by_label[n].get("low") is None else alpha_by_label[n]["low"] for n in names], dtype=float)
    high = np.array([np.nan if alpha_by_label[n].get("high") is None else alpha_by_label[n]["high"] for n in names], dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2), 3.6))
    x = np.arange(len(names))
    ax.bar(x, np.nan_to_num(values), color="#4c72b0")
    has_ci = ~np.isnan(low) & ~np.isnan(values)
    if has_ci.any():
        err = np.vstack([values - low, high - values])[:, has_ci]
        ax.errorbar(x[has_ci], values[has_ci], yerr=np.clip(err, 0, None), fmt="none", ecolor="black", capsize=4)
    for threshold, style in ((0.800, "--"), (0.667, ":")):
        ax.axhline(threshold, color="grey", linestyle=style, linewidth=1)
    if overall is not None and overall.get("alpha") is not None:
        ax.axhline(overall["alpha"], color="#c44e52", linewidth=1.5, label=f"overall α = {overall['alpha']:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("Krippendorff's α (label vs rest)")
    ax.set_ylim(min(0.0, float(np.nanmin(low)) if has_ci.any() else 0.0) - 0.05, 1.05)
    ax.set_title("Agreement per label (95% bootstrap interval)")
    return _save(fig, Path(path))


def plot_kappa_heatmap(pairs: pd.DataFrame | Sequence[Mapping[str, Any]], path: str | Path, *, max_annotators: int = 40) -> Path:
    """Annotator × annotator Cohen's κ heatmap from the pairwise table (``annotator_a``,
    ``annotator_b``, ``kappa``); pairs with too few shared clips stay blank. When there are more than
    ``max_annotators`` annotators, the most connected ones are shown."""
    plt = _pyplot()
    table = pd.DataFrame(list(pairs)) if not isinstance(pairs, pd.DataFrame) else pairs
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if table.empty:
        ax.text(0.5, 0.5, "no annotator pair shares enough clips", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, Path(path))
    degree = pd.concat([table["annotator_a"], table["annotator_b"]]).value_counts()
    shown = sorted(degree.index[:max_annotators], key=str)
    position = {a: i for i, a in enumerate(shown)}
    matrix = np.full((len(shown), len(shown)), np.nan)
    for a, b, k in zip(table["annotator_a"], table["annotator_b"], table["kappa"], strict=True):
        if a in position and b in position:
            matrix[position[a], position[b]] = matrix[position[b], position[a]] = k
    np.fill_diagonal(matrix, 1.0)
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", vmin=-0.2, vmax=1.0)
    fig.colorbar(image, ax=ax, label="Cohen's κ")
    ticks = np.arange(len(shown))
    ax.set_xticks(ticks, [str(a) for a in shown], rotation=90, fontsize=7)
    ax.set_yticks(ticks, [str(a) for a in shown], fontsize=7)
    ax.set_title("Pairwise Cohen's κ between annotators")
    return _save(fig, Path(path))


def plot_consensus_confusion(
    matrix: pd.DataFrame | Sequence[Sequence[float]], path: str | Path, *, labels: Sequence[str] | None = None
) -> Path:
    """Annotators' labels (columns) against the others' consensus (rows), row-normalised, with counts."""
    plt = _pyplot()
    frame = matrix if isinstance(matrix, pd.DataFrame) else pd.DataFrame(matrix, index=labels, columns=labels)
    counts = frame.to_numpy(dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = max(4.0, 0.7 * len(frame) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the consensus row")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black")
    ticks = np.arange(len(frame))
    ax.set_xticks(ticks, [str(c) for c in frame.columns], rotation=30, ha="right")
    ax.set_yticks(ticks, [str(i) for i in frame.index])
    ax.set_xlabel("annotator's label")
    ax.set_ylabel("consensus of the others")
    ax.set_title("Annotators against consensus")
    return _save(fig, Path(path))


def write_agreement_plots(report: Mapping[str, Any], folder: str | Path) -> dict[str, Path]:
    """All three plots of an :func:`~curation.agreement.agreement_report` into ``folder``."""
    folder = Path(folder)
    confusion = report["consensus_confusion"]
    return {
        "alpha_per_label": plot_alpha_per_label(report["alpha_by_label"], folder / "alpha_per_label.png", overall=report["alpha"]),
        "kappa_heatmap": plot_kappa_heatmap(report["pairwise_kappa"], folder / "kappa_heatmap.png"),
        "consensus_confusion": plot_consensus_confusion(
            confusion["matrix"], folder / "consensus_confusion.png", labels=confusion["labels"]
        ),
    }
