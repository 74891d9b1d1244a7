"""A fresh demo (``curate demo --simulate``, as ``./dev up`` builds it): the people's logins finish
every clip the simulation left open, through stage 3, over HTTP.

Reported on a fresh clone: six clips waited in stage 2 while every login got "nothing to label",
because the balance rules counted the simulated accounts (which never log in) as people who would
come. Here the demo's annotators and its expert log in, qualify, and label round-robin until nobody
is offered anything; then the expert decides the stage-3 queue, and the admin what the expert may not
decide (clips the expert labelled: the curator is told). Every clip must end decided.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.main import create_app
from annotation_app.models import Clip, ClipStatus, GoldItem, Judgement, Label, Project
from annotation_app.settings import Settings, get_settings
from curate_cli.demo import DEMO_PASSWORD
from curate_cli.main import run

pytestmark = pytest.mark.slow

_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
DECIDED = {ClipStatus.resolved, ClipStatus.discarded, ClipStatus.broken, ClipStatus.gold}


def _login(app, username: str) -> TestClient:  # noqa: ANN001
    client = TestClient(app, follow_redirects=False)
    client.__enter__()
    csrf = _CSRF.search(client.get("/login").text).group(1)
    answer = client.post("/login", data={"username": username, "password": DEMO_PASSWORD, "csrf_token": csrf})
    assert answer.status_code == 303, answer.text
    client.headers["X-CSRF-Token"] = _CSRF.search(client.get("/login").text).group(1)
    return client


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("EMOTIONS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EMOTIONS_DATABASE_URL", raising=False)
    monkeypatch.delenv("EMOTIONS_MEDIA_DIR", raising=False)
    get_settings.cache_clear()
    # The demo's defaults but for the number of clips (rendering them is most of the time).
    assert run(["demo", "--clips", "16", "--simulate"]) == 0
    settings = get_settings()
    get_settings.cache_clear()
    return settings


# How the people take turns: all at once (round-robin), or one login after another, each labelling
# until nothing is left for them (women first: then the men's groups are the ones the balance rules
# wait for, and nobody of them is at work yet; the curator has set the balance wait to 0).
ORDERS = {
    "together": [f"annotator{i}" for i in range(1, 7)] + ["expert"],
    "one_after_another": ["annotator1", "annotator3", "annotator5", "annotator2", "annotator4", "annotator6", "expert"],
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_the_demos_people_finish_every_open_clip(demo: Settings, order: str) -> None:
    engine = make_engine(demo.database_url)
    with make_sessionmaker(engine)() as session:
        project = session.scalars(select(Project)).one()
        labels = [lab.name for lab in project.labels]
        truth = {c.id: c.true_label.name for c in session.scalars(select(Clip).where(Clip.project_id == project.id))}
        gold_clips = set(session.scalars(select(GoldItem.clip_id)))
        open_clips = sorted(session.scalars(select(Clip.id).where(Clip.status == ClipStatus.active, Clip.stage == 1)))
        in_stage2 = session.scalars(select(Clip.id).where(Clip.status == ClipStatus.active, Clip.stage == 2)).all()
        with_expert = session.scalars(select(Clip.id).where(Clip.status == ClipStatus.expert)).all()
    # --keep-open's default in stage 1, and a few in stage 2 and with the expert: every queue has work.
    assert len(open_clips) == 6 and len(in_stage2) == 2 and len(with_expert) >= 1
    app = create_app(demo)
    people = ORDERS[order]
    clients = {name: _login(app, name) for name in people}
    curator = _login(app, "curator")
    if order == "one_after_another":
        assert curator.patch("/api/curator/settings", json={"balance_wait_minutes": 0}).status_code == 200
    contested = open_clips[0]  # everyone disagrees on it: stage 1, stage 2, then the expert

    def choose(clip_id: int, who: int) -> str:
        if clip_id in gold_clips:
            return truth[clip_id]  # they know their emotions: everybody qualifies
        if clip_id == contested:  # a label nobody gave it yet (the test may read what the people may not)
            with make_sessionmaker(engine)() as session:
                given = set(session.scalars(select(Label.name).join(Judgement, Judgement.label_id == Label.id)
                                            .where(Judgement.clip_id == clip_id)))
            return next((name for name in labels if name not in given), labels[0])
        return truth[clip_id] if (clip_id + who) % 3 else labels[(clip_id * 7 + who) % len(labels)]

    served: dict[str, int] = dict.fromkeys(people, 0)
    # Together: one clip each per turn; one after another: each until nothing is left for them.
    turn = 1 if order == "together" else 100
    for _ in range(200):
        round_served = 0
        for who, name in enumerate(people):
            for _ in range(turn):
                answer = clients[name].get("/api/work/next")
                assert answer.status_code == 200, answer.text
                item = answer.json()["item"]
                if item is None:
                    break
                stored = clients[name].post("/api/work/submit", json={
                    "assignment_id": item["assignment_id"], "label": choose(item["clip_id"], who),
                    "confidence": 3, "time_on_task_s": 4.0, "client_request_id": uuid.uuid4().hex})
                assert stored.status_code == 200, stored.text
                round_served += 1
                served[name] += 1
        if round_served == 0:
            break
    assert all(n > 0 for n in served.values()), served

    # Stage 3: the expert decides what they may; what they labelled is left to the admin, and the
    # curator is told about exactly those clips.
    expert = clients["expert"]
    for row in expert.get("/api/expert/queue").json()["clips"]:
        decided = expert.post(f"/api/expert/clips/{row['clip_id']}/adjudicate", json={"label": truth[row["clip_id"]]})
        assert decided.status_code == 200, decided.text
    with make_sessionmaker(engine)() as session:
        waiting = sorted(session.scalars(select(Clip.id).where(Clip.status == ClipStatus.expert)))
    notices = curator.get("/api/curator/attention").json()["notices"]
    if waiting:
        assert any(all(str(c) in n for c in waiting) and "every active expert" in n for n in notices), notices
        admin = _login(app, "admin")
        for clip_id in waiting:
            assert admin.post(f"/api/expert/clips/{clip_id}/adjudicate",
                              json={"label": truth[clip_id]}).status_code == 200
    with make_sessionmaker(engine)() as session:
        rows = session.execute(select(Clip.id, Clip.status, Clip.resolved_stage).where(
            Clip.project_id == project.id)).all()
    undecided = [(cid, status.value) for cid, status, _ in rows if status not in DECIDED]
    assert undecided == [], f"clips the people could not finish: {undecided}; served {served}"
    stage_of = {cid: stage for cid, _, stage in rows}
    assert stage_of[contested] == 3  # through stage 3
    for client in [*clients.values(), curator]:
        client.__exit__(None, None, None)
    engine.dispose()
