from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from curation.agreement import agreement_report
from curation.plots import plot_consensus_confusion, plot_kappa_heatmap, write_agreement_plots
from tests.curation.conftest import make_crowd

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_agreement_plots(tmp_path: Path) -> None:
    df, _ = make_crowd(120, 5, n_annotators=8, seed=2)
    report = agreement_report(df, n_boot=40, min_shared=10)
    paths = write_agreement_plots(report, tmp_path / "plots")
    assert set(paths) == {"alpha_per_label", "kappa_heatmap", "consensus_confusion"}
    for path in paths.values():
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            assert image.width > 200 and image.height > 200


def test_plots_cope_with_empty_inputs(tmp_path: Path) -> None:
    heatmap = plot_kappa_heatmap(pd.DataFrame(columns=["annotator_a", "annotator_b", "kappa"]), tmp_path / "k.png")
    assert heatmap.read_bytes()[:8] == PNG_MAGIC
    confusion = plot_consensus_confusion([[0, 0], [0, 0]], tmp_path / "c.png", labels=["x", "y"])
    assert confusion.stat().st_size > 0


def test_importing_plots_does_not_pick_a_backend() -> None:
    import subprocess
    import sys

    code = "import curation.plots, sys; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
