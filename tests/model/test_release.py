from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.export_reader import read_export
from model.release import ReleaseFormatError, import_release


def test_import_release_writes_an_export_the_baseline_reads(tiny_export: Path, tmp_path: Path) -> None:
    release = tmp_path / "release" / "data"
    release.mkdir(parents=True)
    videos = sorted(tiny_export.glob("train/*/*.mp4")) + sorted(tiny_export.glob("test/*/*.mp4"))
    names = {"Excitation": "Excitation", "Neutral": "Neutral", "Sadness": "Sad"}  # the release's spelling
    for split, chosen in (("train", videos[:6]), ("test", videos[6:])):
        table = pa.table({
            "video_id": [p.stem for p in chosen],
            "video_data": [p.read_bytes() for p in chosen],
            "label": [names[p.parent.name] for p in chosen],
        })
        pq.write_table(table, release / f"{split}-00000-of-00001.parquet")
    out = tmp_path / "export"
    counts = import_release(release.parent, out)
    assert counts == {"train": 3, "validation": 3, "test": 3}  # validation held out of train: one clip per class
    table = read_export(out)
    assert table.labels.names == ("Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension")
    sad = [c for c in table.clips if c.clip_id.startswith("sadness")]
    assert sad and all(c.label_index == 4 and c.media_path.is_file() for c in sad)
    assert (out / "train" / "Sadness").is_dir() and (out / "classInd.txt").read_text().startswith("1 Excitation")


def test_import_release_rejects_other_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "train.parquet")
    with pytest.raises(ReleaseFormatError):
        import_release(tmp_path, tmp_path / "out")


def test_import_release_reads_class_indices_structs_and_splits_unsplit_shards(tiny_export: Path, tmp_path: Path) -> None:
    videos = sorted(tiny_export.glob("train/*/*.mp4")) * 5  # 30 rows, 10 per class
    names = ["Excitation", "Fear", "Neutral", "Relaxation", "Sad", "Tension"]  # the release's ClassLabel names
    index = {"Excitation": 0, "Neutral": 2, "Sadness": 4}
    table = pa.table({
        "video_data": [{"bytes": p.read_bytes(), "path": p.name} for p in videos],
        "label": [index[p.parent.name] for p in videos],
    })
    metadata = {b"huggingface": json.dumps({"info": {"features": {"label": {"names": names, "_type": "ClassLabel"}}}})}
    pq.write_table(table.replace_schema_metadata(metadata), tmp_path / "shard-0.parquet")
    counts = import_release(tmp_path / "shard-0.parquet", tmp_path / "export")
    assert counts == {"train": 24, "validation": 3, "test": 3}  # 80/10/10 within each class
    exported = read_export(tmp_path / "export")
    assert {c.label_index for c in exported.split("test")} == {0, 2, 4}
