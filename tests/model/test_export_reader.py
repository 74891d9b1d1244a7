from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.export_reader import ExportLayoutError, ExportNotFoundError, UnknownSplitError, read_export


def test_reads_the_toolkit_export(tiny_export: Path) -> None:
    table = read_export(tiny_export)
    assert table.layout == "export"
    assert table.labels.names == ("Excitation", "Neutral", "Sadness")
    assert [len(table.split(s)) for s in ("train", "validation", "test")] == [6, 3, 3]
    assert all(c.media_path.is_file() for c in table.clips)
    with pytest.raises(UnknownSplitError):
        table.split("dev")


def test_reads_the_vaanet_layout_and_holds_out_validation(tiny_export: Path, tmp_path: Path) -> None:
    root = tmp_path / "ve"
    root.mkdir()
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        shutil.copy(tiny_export / name, root / name)
    for name in ("train", "test"):
        shutil.copytree(tiny_export / name, root / name)
    # one list without class numbers: the class comes from the folder, and the suffix is optional
    lines = (root / "testlist01.txt").read_text().splitlines()
    (root / "testlist01.txt").write_text("\n".join(line.split()[0].removesuffix(".mp4") for line in lines) + "\n")
    table = read_export(root)
    assert table.layout == "vaanet"
    assert [len(table.split(s)) for s in ("train", "validation", "test")] == [3, 3, 3]
    assert {c.label_index for c in table.split("validation")} == {0, 1, 2}
    assert all(c.media_path.is_file() for c in table.split("test"))


def test_missing_or_wrong_folders_raise(tmp_path: Path) -> None:
    with pytest.raises(ExportNotFoundError):
        read_export(tmp_path / "nope")
    with pytest.raises(ExportLayoutError):
        read_export(tmp_path)
