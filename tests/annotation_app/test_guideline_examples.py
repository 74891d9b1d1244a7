"""Example clips in the guidelines (#16 item 2): a curator attaches clips to a label's section (API,
settings page, ``curate project guidelines --example``), the guidelines play them under the label's
heading, every annotator may fetch exactly those clips' media, and an example clip is out of the
work and the dataset until a curator takes it out (its status comes back).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from annotation_app.models import ClipStatus
from tests.annotation_app._http import Env, db_clip, env_fixture, page_csrf, tiny_video  # noqa: F401

GUIDE = "# How to label\n\nWatch it all.\n\n## Fear\n\nSomething threatens.\n\n## Neutral\n\nNo emotion.\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    for env in env_fixture(tmp_path_factory.mktemp("examples"), sqlite_url, tiny_video, n_clips=6):
        with env.session() as session:
            db_clip(session, env.clip_ids[0]).status = ClipStatus.pending
            db_clip(session, env.clip_ids[1]).status = ClipStatus.resolved
            session.commit()
        yield env


def test_examples_play_under_their_label_for_annotators_and_leave_the_work(env: Env) -> None:
    pending, resolved, active = env.clip_ids[0], env.clip_ids[1], env.clip_ids[2]
    cur = env.login("curator")
    assert cur.put("/api/curator/guidelines", json={"markdown": GUIDE}).status_code == 200
    annotator = env.login("annotator")
    assert annotator.get(f"/media/clips/{pending}").status_code == 403  # not yet an example: no lease, no media
    done = cur.put("/api/curator/guidelines/examples", json={"examples": {"fear": [pending], "Sadness": [resolved]}})
    assert done.status_code == 200, done.text
    assert done.json()["examples"] == {"Fear": [pending], "Sadness": [resolved]}
    with env.session() as session:
        assert {db_clip(session, c).status for c in (pending, resolved)} == {ClipStatus.example}
    # The guidelines play them: Fear's under its own heading, Sadness's under one of its own at the end.
    page = annotator.get("/annotate/guidelines").text
    fear = page.index("<h2>Fear</h2>")
    assert fear < page.index(f'src="/media/clips/{pending}"') < page.index("<h2>Neutral</h2>")
    assert page.index("<h2>Sadness</h2>") < page.index(f'src="/media/clips/{resolved}"')
    # Every annotator may play exactly those clips, with ranges, though they hold no lease on them.
    media = annotator.get(f"/media/clips/{pending}", headers={"Range": "bytes=0-99"})
    assert media.status_code == 206 and len(media.content) == 100
    assert annotator.get(f"/media/clips/{active}").status_code == 403
    # Never served as work: the annotator labels all there is and meets neither.
    annotator.post("/api/work/guidelines/confirm", json={"version": 1})
    served = []
    while (item := annotator.get("/api/work/next").json()["item"]) is not None:
        served.append(item["clip_id"])
        assert annotator.post("/api/work/submit", json={"assignment_id": item["assignment_id"], "label": "Fear",
                                                        "client_request_id": uuid.uuid4().hex}).status_code == 200
    assert served and not {pending, resolved} & set(served)
    # Taken out: each gets its status back, and the media is closed again.
    assert cur.put("/api/curator/guidelines/examples", json={"examples": {}}).json()["examples"] == {}
    with env.session() as session:
        assert (db_clip(session, pending).status, db_clip(session, resolved).status) == (
            ClipStatus.pending, ClipStatus.resolved)
    assert annotator.get(f"/media/clips/{pending}").status_code == 403


def test_a_clip_someone_may_be_labelling_or_a_wrong_name_is_refused_and_nothing_changes(env: Env) -> None:
    with env.session() as session:
        db_clip(session, env.clip_ids[3]).status = ClipStatus.active  # open for labelling
        session.commit()
    cur = env.login("curator")
    cur.put("/api/curator/guidelines/examples", json={"examples": {"Fear": [env.clip_ids[0]]}})
    for examples, words in [({"Fear": [env.clip_ids[3]]}, f"clip {env.clip_ids[3]} is active"),
                            ({"Anger": [env.clip_ids[1]]}, "no label 'Anger'"),
                            ({"Fear": [999_999]}, "no clip 999999"),
                            ({"Fear": [env.clip_ids[1]], "Neutral": [env.clip_ids[1]]}, "listed twice")]:
        refused = cur.put("/api/curator/guidelines/examples", json={"examples": examples})
        assert refused.status_code == 422 and words in refused.json()["detail"], (examples, refused.text)
    assert cur.get("/api/curator/guidelines").json()["examples"] == {"Fear": [env.clip_ids[0]]}
    assert cur.put("/api/curator/guidelines/examples", json={"examples": {"Fear": [0]}}).status_code == 422
    cur.put("/api/curator/guidelines/examples", json={"examples": {}})


def test_the_settings_page_sets_examples_and_shows_a_refusal_inline(env: Env) -> None:
    cur = env.login("curator")
    page = cur.get("/curator/settings")
    csrf = page_csrf(page)
    assert 'name="examples.Fear"' in page.text
    saved = cur.post("/curator/settings/examples", data={"csrf_token": csrf, "examples.Neutral": f"{env.clip_ids[0]}"})
    assert saved.status_code == 303
    assert cur.get("/api/curator/guidelines").json()["examples"] == {"Neutral": [env.clip_ids[0]]}
    refused = cur.post("/curator/settings/examples", data={"csrf_token": csrf, "examples.Fear": "12x",
                                                           "examples.Neutral": f"{env.clip_ids[0]}"})
    assert refused.status_code == 422 and 'id="examples-error"' in refused.text and "&#39;12x&#39; is not a clip id" in refused.text
    assert 'value="12x"' in refused.text  # what was typed is kept
    cur.put("/api/curator/guidelines/examples", json={"examples": {}})


def test_an_example_clip_is_never_in_the_dataset() -> None:
    from curation.variants import candidate_clips

    labels = [{"name": "Fear", "index": 0, "polarity": "negative"}, {"name": "Joy", "index": 1, "polarity": "positive"}]
    clips = pd.DataFrame({"clip_id": ["1", "2"], "media_path": ["a.mp4", "b.mp4"], "status": ["resolved", "example"]})
    resolution = pd.DataFrame({"label": ["Fear", "Joy"], "is_resolved": [True, True], "confidence": [1.0, 1.0]},
                              index=pd.Index(["1", "2"], name="clip_id"))
    assert candidate_clips(clips, resolution, labels)["clip_id"].tolist() == ["1"]
