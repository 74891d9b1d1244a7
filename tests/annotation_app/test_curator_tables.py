"""The curator's clips table is sorted, filtered and paginated on the server with the annotators'
code (``services.tables.table_page``), its values readable (#16); the judgements download carries
the annotators' attributes as named columns when asked, and only then.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from annotation_app.models import ClipStatus
from annotation_app.routers import curator as curator_pages
from annotation_app.services import curator, tables
from tests.annotation_app._http import Env, db_clip, db_user, env_fixture, tiny_video  # noqa: F401


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    for env in env_fixture(tmp_path_factory.mktemp("tables"), sqlite_url, tiny_video, n_clips=6):
        with env.session() as session:
            states = [(ClipStatus.resolved, 1), (ClipStatus.expert, 3), (ClipStatus.active, 2),
                      (ClipStatus.discarded, 3), (ClipStatus.active, 1), (ClipStatus.active, 1)]
            for clip_id, (status, stage) in zip(env.clip_ids, states, strict=True):
                clip = db_clip(session, clip_id)
                clip.status, clip.stage = status, stage
            session.commit()
        yield env


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-clip="(\d+)">', html)]


def test_the_clips_table_sorts_filters_and_pages_on_the_server(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    cur = env.login("curator")
    ids = env.clip_ids
    page = cur.get("/curator/clips")
    assert _ids(page.text) == ids
    assert '<span class="pill ok">resolved</span>' in page.text and '<span class="pill bad">discarded</span>' in page.text
    assert "<time datetime=" in page.text  # "added" in the viewer's time zone (static/local-time.js)
    # Sorted by status, then reversed: the column header's link says which way.
    by_status = cur.get("/curator/clips", params={"sort": "status"}).text
    assert _ids(by_status) == [ids[2], ids[4], ids[5], ids[3], ids[1], ids[0]]  # active, discarded, expert, resolved
    assert 'aria-sort="ascending"' in by_status and "sort=status&amp;order=desc" in by_status
    assert _ids(cur.get("/curator/clips", params={"sort": "clip_id", "order": "desc"}).text) == ids[::-1]
    # Filtered on the server, the filter kept in the sort links.
    active = cur.get("/curator/clips", params={"status": "active", "sort": "stage", "order": "desc"}).text
    assert _ids(active) == [ids[2], ids[4], ids[5]] and ">3 clips<" in active
    assert "status=active" in active.split('id="clips"')[1].split("</thead>")[0]
    # Paged: two a page, the pager carries the sort and filters.
    monkeypatch.setattr(curator_pages, "CLIPS_PER_PAGE", 2)
    first = cur.get("/curator/clips", params={"sort": "clip_id", "order": "desc"}).text
    assert _ids(first) == [ids[5], ids[4]] and "page 1 of 3" in first
    assert 'href="/curator/clips?sort=clip_id&amp;order=desc&amp;page=2" rel="next"' in first
    assert _ids(cur.get("/curator/clips", params={"sort": "clip_id", "order": "desc", "page": 3}).text) == [ids[1], ids[0]]
    # A sort that is not a column is refused, as the annotators table does.
    assert cur.get("/curator/clips", params={"sort": "media_path"}).status_code == 422


def test_table_page_is_the_one_rule_of_both_tables() -> None:
    rows = [{"clip_id": i, "agreement": a} for i, a in ((1, 0.5), (2, None), (3, 0.9), (4, 0.2))]
    assert [r["clip_id"] for r in tables.table_page(rows, sort="agreement", sorts=curator.CLIP_SORTS)[0]] == [4, 1, 3, 2]
    assert [r["clip_id"] for r in tables.table_page(rows, sort="agreement", sorts=curator.CLIP_SORTS,
                                                    descending=True)[0]] == [3, 1, 4, 2]  # unknown last either way
    kept, matched = tables.table_page(rows, sort="clip_id", sorts=curator.CLIP_SORTS, page=2, per_page=2,
                                      keep=lambda r: r["clip_id"] != 2)
    assert ([r["clip_id"] for r in kept], matched) == ([4], 3)


def test_the_download_carries_annotator_attributes_only_when_asked(env: Env) -> None:
    with env.session() as session:
        user = db_user(session, env.user_ids["annotator"])
        user.gender, user.age_band, user.region, user.languages, user.background = (
            "female", "25-34", "Hong Kong", ["zh", "en"], "film")
        session.commit()
    annotator = env.login("annotator")
    item = annotator.get("/api/work/next").json()["item"]
    assert annotator.post("/api/work/submit", json={"assignment_id": item["assignment_id"], "label": "Fear",
                                                    "client_request_id": uuid.uuid4().hex}).status_code == 200
    cur = env.login("curator")
    assert 'name="include_attributes"' in cur.get("/curator").text
    plain = pd.read_csv(io.StringIO(cur.get("/curator/judgements.csv").text))
    assert not {"gender", "age_band", "region", "languages", "background"} & set(plain.columns)
    for response in (cur.get("/curator/judgements.csv", params={"include_attributes": "true"}),
                     cur.get("/api/curator/judgements.csv", params={"include_attributes": "true"})):
        assert response.status_code == 200
        df = pd.read_csv(io.StringIO(response.text))
        assert list(df.columns) == curator.EXPORT_COLUMNS + curator.ATTRIBUTE_COLUMNS
        mine = df[df["annotator_id"] == env.user_ids["annotator"]].iloc[0]
        assert (mine["gender"], mine["age_band"], mine["region"], mine["languages"], mine["background"]) == (
            "female", "25-34", "Hong Kong", "zh,en", "film")
        assert len(df) == len(plain)  # the same rows, more columns
    parquet = pd.read_parquet(io.BytesIO(cur.get("/api/curator/judgements.parquet",
                                                 params={"include_attributes": "true"}).content))
    assert parquet["languages"].tolist()[0] == "zh,en"
