"""Classification metrics of the baseline: top-1 (= WAR), UAR, macro-F1, weighted-F1, per-class recall.

Plain numpy, so the numbers do not depend on a metrics library's defaults (torchmetrics'
``MulticlassAccuracy`` averages per class by default, i.e. gives UAR, not top-1).

>>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
>>> m["top1"], m["uar"], m["per_class_recall"]
(0.75, 0.75, {'a': 0.5, 'b': 1.0})
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.errors import ModelError

__all__ = ["classification_metrics", "confusion_matrix", "plot_confusion"]


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """(K, K) counts; rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of one split. UAR averages the recall of the classes present in ``y_true``;
    macro-F1 averages F1 over classes present in ``y_true`` or ``y_pred`` (sklearn's convention)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ModelError("metrics need equally long, non-empty label and prediction lists")
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    hits = np.diag(counts)
    recall = np.divide(hits, support, out=np.zeros(len(class_names)), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros(len(class_names)), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(class_names)), where=(precision + recall) > 0)
    present = support > 0
    seen = present | (predicted > 0)
    row_normalised = np.divide(counts, support[:, None], out=np.zeros(counts.shape), where=support[:, None] > 0)
    return {
        "n": int(y_true.size),
        "top1": float(hits.sum() / y_true.size),
        "uar": float(recall[present].mean()),
        "macro_f1": float(f1[seen].mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "per_class_recall": {name: float(recall[i]) for i, name in enumerate(class_names)},
        "support": {name: int(support[i]) for i, name in enumerate(class_names)},
        "confusion": row_normalised.round(6).tolist(),
    }


def plot_confusion(confusion: Sequence[Sequence[float]], class_names: Sequence[str], path: str | Path, title: str = "") -> None:
    """Write a row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion, dtype=float)
    size = 1.2 + 0.6 * len(class_names)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center",
                      color="white" if matrix[i, j] > 0.5 else "black", fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
