from __future__ import annotations

import pytest

from model.metrics import classification_metrics, plot_confusion


def test_metrics_match_hand_computed_values(tmp_path) -> None:
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["top1"] == pytest.approx(4 / 6)
    recalls = [2 / 3, 1 / 2, 1.0]
    assert m["uar"] == pytest.approx(sum(recalls) / 3)
    precisions = [1.0, 1 / 2, 1 / 2]
    f1 = [2 * p * r / (p + r) for p, r in zip(precisions, recalls, strict=True)]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * f1[0] + 2 * f1[1] + f1[2]) / 6)
    assert m["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 1.0})
    assert m["confusion"][0] == pytest.approx([2 / 3, 1 / 3, 0.0])
    plot_confusion(m["confusion"], ["a", "b", "c"], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
