"""Server-rendered pages: front page (with and without a project), labelling page, form fallbacks,
recent judgements and corrections, expert and curator pages."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.main import create_app
from annotation_app.models import ClipStatus, Judgement, User
from annotation_app.services import gold, users
from annotation_app.settings import Settings
from tests.annotation_app._http import (  # noqa: F401
    PASSWORD,
    Env,
    copy_sqlite,
    db_clip,
    db_project,
    env_fixture,
    page_csrf,
    tiny_video,
)


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=3, overlap_k=3,
                           languages={"annotator1": ["zh", "en"]})


def boot(page_html: str) -> dict:
    match = re.search(r'<script id="boot" type="application/json">(.*?)</script>', page_html, re.S)
    assert match
    return json.loads(match.group(1))


def test_front_page_without_a_project_is_friendly(tmp_path: Path, sqlite_url: str) -> None:
    db = tmp_path / "empty.sqlite3"
    copy_sqlite(sqlite_url, db)
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        users.create_user(session, "solo", role="curator", password=PASSWORD)
        session.commit()
    engine.dispose()
    app = create_app(Settings(data_dir=tmp_path, database_url=url, secret_key="e" * 40))
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/").headers["location"].startswith("/login")
        csrf = page_csrf(client.get("/login"))
        assert client.post("/login", data={"username": "solo", "password": PASSWORD, "csrf_token": csrf}).status_code == 303
        page = client.get("/")
        assert page.status_code == 200 and "No project yet" in page.text and "curate demo" in page.text
        api = client.get("/api/work/next")
        assert api.status_code == 404 and "no project yet" in api.json()["detail"]


def test_front_page_shows_progress_and_role_links(env: Env) -> None:
    page = env.login("annotator").get("/")
    assert page.status_code == 200 and "Start labelling" in page.text and "/curator" not in page.text
    assert 'href="/curator"' in env.login("curator").get("/").text


def test_front_page_shows_each_role_what_it_can_do_and_nothing_that_contradicts_it(env: Env) -> None:
    annotator = env.login("annotator").get("/").text
    assert 'id="home-labelling"' in annotator and 'id="home-expert"' not in annotator
    assert 'id="home-campaign"' not in annotator
    expert = env.login("expert").get("/").text  # experts also annotate
    assert 'id="home-labelling"' in expert and 'id="home-expert"' in expert and "wait" in expert
    curator = env.login("curator").get("/").text
    # A curator does not annotate: no labelling card, no "does not annotate", no qualification round.
    assert 'id="home-campaign"' in curator and "% of" in curator and "with the experts" in curator
    for contradiction in ("Start labelling", "does not annotate", "qualification", 'href="/annotate"'):
        assert contradiction not in curator, contradiction
    admin = env.login("admin").get("/").text
    assert 'id="home-campaign"' in admin and 'id="home-expert"' in admin and "Start labelling" not in admin


def test_labelling_page_has_player_labels_in_language_and_controls(env: Env) -> None:
    client = env.login("annotator")  # languages zh, en
    page = client.get("/annotate")
    assert page.status_code == 200
    html = page.text
    item = boot(html)["item"]
    assert item is not None and f'src="/media/clips/{item["clip_id"]}"' in html
    assert '<video id="player"' in html and 'type="video/mp4"' in html
    for hotkey, zh in zip("123456", ["兴奋", "恐惧", "中性", "放松", "悲伤", "紧张"], strict=True):
        assert re.search(rf'data-hotkey="{hotkey}">\s*<input type="radio" name="label" value="\w+" data-hotkey="{hotkey}" aria-keyshortcuts="{hotkey}">\s*<kbd>{hotkey}</kbd><span class="name">{zh}</span>', html)
    assert 'id="speed"' in html and 'value="0.5"' in html and 'value="2"' in html
    assert 'name="confidence" value="5"' in html and 'id="cant_judge"' in html and 'id="broken"' in html
    english = env.login("annotator2").get("/annotate").text
    assert '<span class="name">Fear</span>' in english and "恐惧" not in english


def test_form_fallback_submit_then_recent_and_correction(env: Env) -> None:
    client = env.login("annotator")
    csrf = client.headers["X-CSRF-Token"]
    item = boot(client.get("/annotate").text)["item"]
    response = client.post("/annotate/submit", data={
        "csrf_token": csrf, "assignment_id": item["assignment_id"], "label": "Fear", "confidence": "2",
        "time_on_task_s": "4.5", "client_request_id": uuid.uuid4().hex})
    assert response.status_code == 303 and response.headers["location"] == "/annotate"
    recent = client.get("/annotate/recent")
    assert recent.status_code == 200 and "Fear" in recent.text
    judgement_id = int(re.search(r"/annotate/judgements/(\d+)/correct", recent.text).group(1))  # type: ignore[union-attr]
    fixed = client.post(f"/annotate/judgements/{judgement_id}/correct", data={
        "csrf_token": csrf, "label": "Tension", "client_request_id": uuid.uuid4().hex})
    assert fixed.status_code == 303
    with env.session() as session:
        rows = session.scalars(select(Judgement).order_by(Judgement.id)).all()
        assert [(r.label.name, r.live, r.replaces_id) for r in rows] == [("Fear", None, None), ("Tension", True, rows[0].id)]
        assert rows[0].time_on_task_s == 4.5 and rows[0].confidence == 2


class _CorrectionForm(HTMLParser):
    """The fields a browser would send from one judgement's correction form on *My recent*."""

    def __init__(self, judgement_id: int) -> None:
        super().__init__()
        self.action = f"/annotate/judgements/{judgement_id}/correct"
        self.inside, self.select, self.fields = False, None, {}

    def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("action") == self.action
        elif self.inside and tag == "select":
            self.select = a["name"]
        elif self.inside and tag == "option" and "selected" in a:
            self.fields[self.select] = a["value"]
        elif self.inside and tag == "input":
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.fields[a["name"]] = a["value"]
            else:
                self.fields[a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def _correction_form(client: TestClient, judgement_id: int) -> dict[str, str]:
    parser = _CorrectionForm(judgement_id)
    parser.feed(client.get("/annotate/recent").text)
    return parser.fields


def test_a_correction_keeps_or_changes_confidence_and_flags(env: Env) -> None:
    client = env.login("annotator")
    csrf = client.headers["X-CSRF-Token"]

    def submit(**fields: str) -> int:
        item = boot(client.get("/annotate").text)["item"]
        assert client.post("/annotate/submit", data={"csrf_token": csrf, "assignment_id": item["assignment_id"],
                                                     "client_request_id": uuid.uuid4().hex, **fields}).status_code == 303
        with env.session() as session:
            return session.scalar(select(Judgement.id).where(Judgement.assignment_id == item["assignment_id"]))

    def correct(judgement_id: int, fields: dict[str, str]) -> SimpleNamespace:
        response = client.post(f"/annotate/judgements/{judgement_id}/correct",
                               data={**fields, "client_request_id": uuid.uuid4().hex})
        assert response.status_code == 303, response.text
        with env.session() as session:
            row = session.scalar(select(Judgement).where(Judgement.replaces_id == judgement_id))
            return SimpleNamespace(id=row.id, label=row.label.name if row.label else None, label_id=row.label_id,
                                   confidence=row.confidence, cant_judge=row.cant_judge, flag_reason=row.flag_reason,
                                   annotator_id=row.annotator_id, clip_id=row.clip_id)

    labelled = submit(label="Fear", confidence="4")
    form = _correction_form(client, labelled)
    assert form["label"] == "Fear" and form["confidence"] == "4" and "cant_judge" not in form
    # The label alone changed on the page: the confidence the annotator gave stays.
    new = correct(labelled, {**form, "label": "Tension"})
    assert (new.label, new.confidence, new.cant_judge) == ("Tension", 4, False)
    # A script that sends only the label keeps it too; the page can change it.
    assert correct(new.id, {"csrf_token": csrf, "label": "Sadness"}).confidence == 4
    with env.session() as session:
        latest = session.scalar(select(Judgement.id).where(Judgement.annotator_id == new.annotator_id,
                                                           Judgement.live.is_(True), Judgement.clip_id == new.clip_id))
    assert correct(latest, {**_correction_form(client, latest), "confidence": "2"}).confidence == 2

    flagged = submit(cant_judge="true", flag_reason="too dark to see faces", confidence="3")
    form = _correction_form(client, flagged)
    assert form["cant_judge"] == "true" and form["flag_reason"] == "too dark to see faces" and form["label"] == ""
    kept = correct(flagged, form)
    assert (kept.cant_judge, kept.flag_reason, kept.confidence, kept.label_id) == (True, "too dark to see faces", 3, None)
    # And the flag can go: a label instead, the confidence still the annotator's.
    form = _correction_form(client, kept.id)
    changed = correct(kept.id, {k: v for k, v in form.items() if k not in ("cant_judge", "flag_reason")} | {"label": "Fear"})
    assert (changed.cant_judge, changed.label, changed.confidence, changed.flag_reason) == (False, "Fear", 3, None)


def test_flag_form_needs_a_reason(env: Env) -> None:
    client = env.login("annotator")
    item = boot(client.get("/annotate").text)["item"]
    response = client.post("/annotate/submit", data={
        "csrf_token": client.headers["X-CSRF-Token"], "assignment_id": item["assignment_id"], "broken": "true",
        "client_request_id": uuid.uuid4().hex})
    assert response.status_code == 422 and "say why the clip is flagged" in response.text


def test_paused_annotator_sees_why(env: Env) -> None:
    cur = env.login("curator")
    cur.post(f"/api/curator/annotators/{env.user_ids['annotator2']}/pause", json={"paused": True, "reason": "check"})
    page = env.login("annotator2").get("/annotate")
    assert page.status_code == 200 and boot(page.text)["item"] is None
    assert "paused" in page.text.lower()


@pytest.fixture
def qualifying(tmp_path: Path, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    """A round of two qualification clips (none to spare) before two real clips."""
    for env in env_fixture(tmp_path, sqlite_url, tiny_video, n_clips=4, qualification_size=2):
        with env.session() as session:
            project = db_project(session, env.project_id)
            for clip_id in env.clip_ids[:2]:
                gold.add_gold(session, project, db_clip(session, clip_id), "Fear", purpose="qualification")
            session.commit()
        yield env


def _submit_form(client: TestClient, item: dict, label: str = "Fear") -> None:
    response = client.post("/annotate/submit", data={
        "csrf_token": client.headers["X-CSRF-Token"], "assignment_id": item["assignment_id"], "label": label,
        "client_request_id": uuid.uuid4().hex})
    assert response.status_code == 303, response.text


def test_qualification_resumes_on_the_page_after_a_pause(qualifying: Env) -> None:
    env = qualifying
    annotator, cur = env.login("annotator"), env.login("curator")
    held = boot(annotator.get("/annotate").text)["item"]
    assert held["is_qualification"] and held["clip_id"] in env.clip_ids[:2]
    pause = f"/api/curator/annotators/{env.user_ids['annotator']}/pause"
    assert cur.post(pause, json={"paused": True, "reason": "a word first"}).status_code == 200
    page = annotator.get("/annotate")
    assert boot(page.text)["item"] is None and "paused: a word first" in page.text
    assert cur.post(pause, json={"paused": False, "reason": ""}).status_code == 200
    again = boot(annotator.get("/annotate").text)["item"]
    assert (again["clip_id"], again["is_qualification"]) == (held["clip_id"], True)
    _submit_form(annotator, again)
    second = boot(annotator.get("/annotate").text)["item"]
    assert second["is_qualification"] and second["clip_id"] != held["clip_id"]
    _submit_form(annotator, second)
    real = boot(annotator.get("/annotate").text)
    assert real["item"]["clip_id"] in env.clip_ids[2:] and real["progress"]["qualification"]["passed"] is True


def test_a_stuck_qualification_round_says_why_on_the_page(qualifying: Env) -> None:
    env = qualifying
    annotator = env.login("annotator")
    first = boot(annotator.get("/annotate").text)["item"]
    _submit_form(annotator, first)
    with env.session() as session:  # the round's other clip is taken out of use
        other = next(c for c in env.clip_ids[:2] if c != first["clip_id"])
        db_clip(session, other).status = ClipStatus.broken
        session.commit()
    page = annotator.get("/annotate")
    assert boot(page.text)["item"] is None
    message = "qualification: 1 of 2 answered and no qualification clip is left to show you"
    assert message in page.text and "Nothing to label right now" not in page.text
    assert message in annotator.get("/api/work/next").json()["progress"]["blocked_reason"]


def test_expert_and_curator_pages_render(env: Env) -> None:
    expert = env.login("expert")
    assert "expert queue is empty" in expert.get("/expert").text
    cur = env.login("curator")
    for path, marker in [("/curator", "Progress"), ("/curator/settings", "overlap k"),
                         ("/curator/annotators", "New annotator"), ("/curator/clips", "Filter"),
                         ("/curator/audit", "Audit trail"),
                         (f"/curator/annotators/{env.user_ids['annotator']}", "Exclude their judgements")]:
        page = cur.get(path)
        assert page.status_code == 200 and marker in page.text, path
    csrf = cur.headers["X-CSRF-Token"]
    saved = cur.post("/curator/settings", data={"csrf_token": csrf, "daily_cap": "42", "overlap_k": "3",
                                                "consensus_threshold": "0.6", "balance_attributes": "gender"})
    assert saved.status_code == 303
    assert 'value="42"' in cur.get("/curator/settings").text
    assert cur.post("/curator/settings", data={"csrf_token": csrf, "policy": "adaptive", "k_min": "2",
                                               "k_max": "6"}).status_code == 303
    assert 'name="policy" value="adaptive"' in cur.get("/curator/settings").text
    created = cur.post("/curator/annotators", data={"csrf_token": csrf, "username": "pageuser",
                                                    "password": "long-enough-2", "role": "annotator",
                                                    "languages": "zh, en", "gender": "female"})
    assert created.status_code == 303
    with env.session() as session:
        user = session.scalar(select(User).where(User.username == "pageuser"))
        assert user is not None and user.languages == ["zh", "en"]
    refused = cur.post("/curator/annotators", data={"csrf_token": csrf, "username": "boss", "password": "long-enough-2",
                                                    "role": "admin"})
    assert refused.status_code == 403 and "only an admin" in refused.text
    assert cur.get("/curator/clips", params={"status": "active", "stage": "1", "label": "", "max_agreement": ""}).status_code == 200
    csv_export = cur.get("/curator/judgements.csv")
    assert csv_export.status_code == 200 and "attachment" in csv_export.headers["content-disposition"]


def test_create_app_without_arguments_reads_the_environment(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from annotation_app.settings import get_settings

    db = tmp_path / "env.sqlite3"
    copy_sqlite(sqlite_url, db)
    monkeypatch.setenv("EMOTIONS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EMOTIONS_DATABASE_URL", f"sqlite:///{db}")
    get_settings.cache_clear()
    try:
        app = create_app()  # what `curate serve` / `uvicorn --factory` do
        assert app.state.settings.database_url == f"sqlite:///{db}"
        with TestClient(app) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
        assert (tmp_path / "secret_key").exists()  # made at startup, kept beside the data
    finally:
        get_settings.cache_clear()


def test_an_expert_leaves_a_clip_they_labelled_to_another_and_the_curator_is_told(env: Env) -> None:
    clients = {name: env.login(name) for name in ("annotator", "annotator2", "expert")}
    for name, label in (("annotator", "Fear"), ("annotator2", "Sadness"), ("expert", "Neutral")):
        item = clients[name].get("/api/work/next").json()["item"]
        if name == "expert":  # served in stage 1: the others' votes stay hidden (#22)
            early = clients[name].get(f"/api/expert/clips/{item['clip_id']}")
            assert early.status_code == 409 and "not waiting for an expert" in early.json()["detail"]
            assert clients[name].get(f"/expert/clips/{item['clip_id']}").status_code == 409
        assert clients[name].post("/api/work/submit", json={
            "assignment_id": item["assignment_id"], "label": label,
            "client_request_id": uuid.uuid4().hex}).status_code == 200
        clip_id = item["clip_id"]
    with env.session() as session:
        assert db_clip(session, clip_id).status == ClipStatus.expert  # 1-1-1: to stage 3
    expert = clients["expert"]
    assert expert.get("/api/expert/queue").json()["clips"] == []
    queue = expert.get("/expert").text
    assert 'id="labelled-by-you"' in queue and f"({clip_id})" in queue
    page = expert.get(f"/expert/clips/{clip_id}").text
    assert "another expert decides it" in page and 'id="adjudicate-form"' not in page
    assert 'id="distribution"' not in page  # nor, having labelled it, the others' votes (#22)
    assert expert.get(f"/api/expert/clips/{clip_id}").status_code == 403
    refused = expert.post(f"/api/expert/clips/{clip_id}/adjudicate", json={"label": "Fear"})
    assert refused.status_code == 403 and "you labelled clip" in refused.json()["detail"]
    curator = env.login("curator")
    notice = curator.get("/api/curator/attention").json()["notices"]
    assert len(notice) == 1 and str(clip_id) in notice[0] and "every active expert" in notice[0]
    assert 'id="notices"' in curator.get("/curator").text
    admin = env.login("admin")
    assert admin.post(f"/api/expert/clips/{clip_id}/adjudicate", json={"label": "Fear"}).status_code == 200
    assert curator.get("/api/curator/attention").json()["notices"] == []
    assert 'id="notices"' not in curator.get("/curator").text


def test_curator_pages_warn_when_qualification_lacks_gold(env: Env) -> None:
    curator = env.login("curator")
    for page in ("/curator", "/curator/settings", "/curator/annotators"):
        assert 'id="notices"' not in curator.get(page).text  # no round asked for: nothing to say
    assert curator.patch("/api/curator/settings", json={"qualification_size": 2}).status_code == 200
    for page in ("/curator", "/curator/settings", "/curator/annotators"):
        text = curator.get(page).text
        assert 'id="notices"' in text and "no qualification gold yet" in text, page
    with env.session() as session:
        project = db_project(session, env.project_id)
        gold.add_gold(session, project, db_clip(session, env.clip_ids[0]), "Fear", purpose="qualification")
        session.commit()
    [notice] = curator.get("/api/curator/attention").json()["notices"]
    assert "asks for 2 gold clips but the project has 1" in notice


def test_expert_page_shows_flag_reasons_and_a_discard_without_reason_is_an_inline_message(env: Env) -> None:
    annotator = env.login("annotator")
    item = annotator.get("/api/work/next").json()["item"]
    assert annotator.post("/api/work/submit", json={
        "assignment_id": item["assignment_id"], "cant_judge": True, "flag_reason": "No sound at all",
        "client_request_id": uuid.uuid4().hex}).status_code == 200
    clip_id = item["clip_id"]
    with env.session() as session:
        clip = db_clip(session, clip_id)
        clip.status, clip.stage = ClipStatus.expert, 3  # contested: the expert decides
        session.commit()
    expert = env.login("expert")
    page = expert.get(f"/expert/clips/{clip_id}").text
    assert 'id="flag-reasons"' in page and "No sound at all" in page and "can&#39;t judge" in page
    assert 'id="speed"' in page and "/static/expert.js" in page
    csrf = expert.headers["X-CSRF-Token"]
    refused = expert.post(f"/expert/clips/{clip_id}", data={"csrf_token": csrf, "discard": "true", "label": "Fear"})
    # The clip's own page again, the message beside the form, what was chosen still chosen.
    assert refused.status_code == 422 and 'id="form-error"' in refused.text and "a discard needs a reason" in refused.text
    assert 'id="adjudicate-form"' in refused.text and 'value="Fear" data-hotkey="2" selected' in refused.text
    assert 'id="discard" aria-keyshortcuts="D" checked' in refused.text and "Value error" not in refused.text
    with env.session() as session:
        assert db_clip(session, clip_id).status == ClipStatus.expert  # nothing decided
    done = expert.post(f"/expert/clips/{clip_id}", data={"csrf_token": csrf, "discard": "true", "reason": "no sound"})
    assert done.status_code == 303
    with env.session() as session:
        assert db_clip(session, clip_id).status == ClipStatus.discarded


def test_a_bad_setting_is_an_inline_message_beside_its_field_and_nothing_typed_is_lost(env: Env) -> None:
    cur = env.login("curator")
    csrf = cur.headers["X-CSRF-Token"]
    refused = cur.post("/curator/settings", data={"csrf_token": csrf, "daily_cap": "42", "consensus_threshold": "7"})
    assert refused.status_code == 422 and 'id="settings-error"' in refused.text
    assert 'id="error-consensus_threshold"' in refused.text and 'aria-invalid="true"' in refused.text
    assert 'value="7"' in refused.text and 'value="42"' in refused.text  # as typed, to correct
    assert "Value error" not in refused.text and 'id="error-message"' not in refused.text  # not the error page
    assert cur.get("/api/curator/settings").json()["daily_cap"] != 42  # nothing half-saved


def test_the_annotator_table_sorts_filters_and_pages_on_the_server_with_readable_values(env: Env) -> None:
    cur = env.login("curator")
    page = cur.get("/curator/annotators").text
    names = re.findall(r'<td><a href="/curator/annotators/\d+">([^<]+)</a></td>', page)
    assert names == sorted(names) and "annotator1" in names and "curator1" not in names
    assert "True" not in page and "False" not in page and "Excitation: 0" not in page  # badges, not Python
    assert re.search(r'class="pill ok"[^>]*>working</span>', page)
    desc = cur.get("/curator/annotators", params={"sort": "username", "order": "desc"}).text
    assert re.findall(r'<td><a href="/curator/annotators/\d+">([^<]+)</a></td>', desc) == sorted(names, reverse=True)
    assert 'aria-sort="descending"' in desc
    only = cur.get("/curator/annotators", params={"q": "TOR2"}).text  # part of the name, any case
    assert re.findall(r'<td><a href="/curator/annotators/\d+">([^<]+)</a></td>', only) == ["annotator2"]
    experts = cur.get("/curator/annotators", params={"role": "expert"}).text
    assert re.findall(r'<td><a href="/curator/annotators/\d+">([^<]+)</a></td>', experts) == ["expert1"]
    assert 'id="matched">1 annotator<' in experts
    assert cur.get("/curator/annotators", params={"sort": "password"}).status_code == 422
    # One page at a time: the second page of two per page holds the third and fourth names.
    from annotation_app.routers import curator as curator_pages
    original = curator_pages.ANNOTATORS_PER_PAGE
    curator_pages.ANNOTATORS_PER_PAGE = 2
    try:
        second = cur.get("/curator/annotators", params={"page": 2}).text
    finally:
        curator_pages.ANNOTATORS_PER_PAGE = original
    assert re.findall(r'<td><a href="/curator/annotators/\d+">([^<]+)</a></td>', second) == names[2:4]
    assert "page 2 of" in second and 'rel="prev"' in second


def test_annotator_table_with_labels_shows_the_mix_as_a_bar_and_dates_as_time_elements(env: Env) -> None:
    annotator = env.login("annotator")
    item = annotator.get("/api/work/next").json()["item"]
    assert annotator.post("/api/work/submit", json={"assignment_id": item["assignment_id"], "label": "Fear",
                                                    "client_request_id": uuid.uuid4().hex}).status_code == 200
    page = env.login("curator").get("/curator/annotators").text
    assert 'class="mix"' in page and 'title="Fear: 1"' in page and "width: 100.0%" in page
    recent = annotator.get("/annotate/recent").text
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[^"]+\+00:00"', recent) and "/static/local-time.js" in recent


def test_curator_pages_link_to_the_matching_dashboard_page_when_it_is_set(env: Env) -> None:
    cur = env.login("curator")
    assert 'id="dashboard-link"' not in cur.get("/curator").text  # no dashboard set: no dead link
    env.app.state.settings.dashboard_url = "http://dash.example:8501/"
    try:
        for path, target in [("/curator", "http://dash.example:8501/"),
                             ("/curator/annotators", "http://dash.example:8501/annotators"),
                             ("/curator/clips", "http://dash.example:8501/attention")]:
            assert f'<a href="{target}" id="dashboard-link">' in cur.get(path).text, path
    finally:
        env.app.state.settings.dashboard_url = None


def test_the_progress_page_downloads_judgements_with_the_options_it_offers(env: Env) -> None:
    annotator = env.login("annotator")
    item = annotator.get("/api/work/next").json()["item"]
    first = annotator.post("/api/work/submit", json={"assignment_id": item["assignment_id"], "label": "Fear",
                                                     "client_request_id": uuid.uuid4().hex}).json()
    corrected = annotator.post(f"/api/work/judgements/{first['judgement_id']}/correct",
                               json={"label": "Sadness", "client_request_id": uuid.uuid4().hex})
    assert corrected.status_code == 200, corrected.text
    cur = env.login("curator")
    page = cur.get("/curator").text
    for option in ("include_excluded", "include_history", "include_qualification"):
        assert f'name="{option}"' in page, option
    plain = cur.get("/curator/judgements.csv").text
    history = cur.get("/curator/judgements.csv", params={"include_history": "true"}).text
    assert "Sadness" in plain and "Fear" not in plain  # the live row only
    assert "Sadness" in history and "Fear" in history  # and the row it replaced
