"""Controlled vocabularies for the balance attributes (#16): a project lists the values gender, age
band, region and background may take; the API, the pages and the CLI take a listed value in any case
(stored in the listed spelling) and refuse another naming the field and the values; the curator sets
the lists (settings page, API, ``curate project values``); migration 0011 folds case duplicates and
the annotators page flags what it could not; the annotator forms show each refusal beside its field.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from annotation_app import migrations
from annotation_app.services import allocation, vocabularies
from annotation_app.services.project_settings import InvalidSettingsError
from tests.annotation_app._http import Env, db_project, db_user, env_fixture, page_csrf, tiny_video  # noqa: F401


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path_factory.mktemp("vocab"), sqlite_url, tiny_video)


def test_the_api_stores_the_listed_spelling_and_refuses_the_rest_naming_field_and_values(env: Env) -> None:
    cur = env.login("curator")
    made = cur.post("/api/curator/annotators", json={"username": "vocab-a", "password": "long-enough-1",
                                                     "gender": "FEMALE ", "age_band": "25-34"})
    assert made.status_code == 201, made.text
    assert (made.json()["gender"], made.json()["age_band"]) == ("female", "25-34")
    refused = cur.post("/api/curator/annotators", json={"username": "vocab-b", "password": "long-enough-1",
                                                        "gender": "femme", "age_band": "45+"})
    assert refused.status_code == 422
    body = refused.json()
    assert "gender: 'femme' is not one of this project's values: female, male, non-binary, undisclosed" in body["detail"]
    assert {tuple(e["loc"]) for e in body["errors"]} == {("gender",), ("age_band",)}
    assert next(e for e in body["errors"] if e["loc"] == ["age_band"])["allowed"] == vocabularies.DEFAULT_ATTRIBUTE_VALUES["age_band"]
    assert all(u["username"] != "vocab-b" for u in cur.get("/api/curator/annotators").json()["annotators"])
    # A profile change likewise; an unlisted value stored before the list may stay as it is.
    uid = made.json()["id"]
    assert cur.patch(f"/api/curator/annotators/{uid}", json={"gender": "Male"}).json()["gender"] == "male"
    assert cur.patch(f"/api/curator/annotators/{uid}", json={"gender": "m"}).status_code == 422
    with env.session() as session:
        db_user(session, uid).region = "Atlantis"
        session.commit()
    with env.session() as session:
        vocab = vocabularies.vocabulary(db_project(session, env.project_id))
    assert cur.patch("/api/curator/settings", json={"attribute_values": {"region": ["Asia", "Europe"]}}).status_code == 200
    assert cur.patch(f"/api/curator/annotators/{uid}", json={"region": "Atlantis", "role": "annotator"}).status_code == 200
    assert cur.patch(f"/api/curator/annotators/{uid}", json={"region": "Mars"}).status_code == 422
    cur.patch("/api/curator/settings", json={"attribute_values": {"region": vocab["region"]}})


def test_curator_sets_the_lists_by_api_keeping_the_others_and_refusals_name_the_field(env: Env) -> None:
    cur = env.login("curator")
    before = cur.get("/api/curator/settings").json()["attribute_values"]
    after = cur.patch("/api/curator/settings", json={"attribute_values": {"background": ["film", "psychology"]}})
    assert after.status_code == 200
    values = after.json()["attribute_values"]
    assert values["background"] == ["film", "psychology"] and values["gender"] == before["gender"]
    for bad in ({"shoe_size": ["9"]}, {"gender": ["female", "Female"]}, {"gender": "female"},
                {"gender": ["a, b"]}, {"gender": ["x" * 33]}, {"gender": ["a\u0000b"]}, {"region": ["tab\there"]}):
        response = cur.patch("/api/curator/settings", json={"attribute_values": bad})
        assert response.status_code == 422, bad
        assert "attribute_values" in response.json()["detail"], bad
    lone_surrogate = cur.patch("/api/curator/settings", content=b'{"attribute_values": {"gender": ["\\ud800"]}}',
                               headers={"Content-Type": "application/json"})
    assert lone_surrogate.status_code == 422 and "attribute_values.gender" in lone_surrogate.json()["detail"]
    assert cur.get("/api/curator/settings").json()["attribute_values"] == values
    cur.patch("/api/curator/settings", json={"attribute_values": {"background": []}})


def test_a_new_list_folds_stored_case_duplicates_so_the_allocator_sees_one_group(env: Env) -> None:
    cur = env.login("curator")
    with env.session() as session:
        a, b = db_user(session, env.user_ids["annotator2"]), db_user(session, env.user_ids["annotator3"])
        a.background, b.background = "Film ", "film"
        session.commit()
    cur.patch("/api/curator/settings", json={"attribute_values": {"background": ["film", "psychology"]}})
    with env.session() as session:
        a, b = db_user(session, env.user_ids["annotator2"]), db_user(session, env.user_ids["annotator3"])
        assert a.background == b.background == "film"
        assert allocation.group_of(a, "background") == allocation.group_of(b, "background") == "film"
    cur.patch("/api/curator/settings", json={"attribute_values": {"background": []}})


def test_the_settings_page_sets_a_list_and_shows_a_refusal_beside_it(env: Env) -> None:
    cur = env.login("curator")
    page = cur.get("/curator/settings")
    assert 'name="attribute_values.gender" value="female, male, non-binary, undisclosed"' in page.text
    csrf = page_csrf(page)
    saved = cur.post("/curator/settings", data={"csrf_token": csrf, "attribute_values.region": "Asia, Europe"})
    assert saved.status_code == 303
    assert cur.get("/api/curator/settings").json()["attribute_values"]["region"] == ["Asia", "Europe"]
    refused = cur.post("/curator/settings", data={"csrf_token": csrf, "attribute_values.gender": "female, Female"})
    assert refused.status_code == 422
    assert 'id="error-attribute_values"' in refused.text and "lists a value twice" in refused.text
    assert 'value="female, Female"' in refused.text  # what was typed is kept
    cur.patch("/api/curator/settings", json={"attribute_values": {"region": []}})


def test_the_create_form_offers_the_lists_and_shows_each_refusal_beside_its_field(env: Env) -> None:
    cur = env.login("curator")
    page = cur.get("/curator/annotators")
    assert '<select name="gender"' in page.text and "<option>non-binary</option>" in page.text
    assert '<select name="region"' not in page.text  # no list: free text
    csrf = page_csrf(page)
    form = {"csrf_token": csrf, "username": "x", "password": "short", "role": "annotator", "gender": "femme",
            "age_band": "25-34", "region": "Atlantis", "languages": "zh, en"}
    refused = cur.post("/curator/annotators", data=form)
    assert refused.status_code == 422
    html = refused.text
    assert 'id="annotator-error"' in html and 'id="error-username"' in html and 'id="error-password"' in html
    assert 'value="x"' in html and 'value="Atlantis"' in html and 'value="zh, en"' in html  # typed values kept
    assert "short" not in html  # but never the password
    # Username and password right: the profile value is refused beside its own field.
    refused = cur.post("/curator/annotators", data={**form, "username": "formuser", "password": "long-enough-3"})
    assert refused.status_code == 422 and 'id="error-gender"' in refused.text
    assert "not one of this project&#39;s values" in refused.text
    assert '<option value="femme" selected>femme (not in the list)</option>' in refused.text
    # A name already taken: beside the user name, as a conflict.
    taken = cur.post("/curator/annotators", data={**form, "username": "annotator1", "password": "long-enough-3",
                                                  "gender": "male"})
    assert taken.status_code == 409 and 'id="error-username"' in taken.text and "already exists" in taken.text
    ok = cur.post("/curator/annotators", data={**form, "username": "formuser", "password": "long-enough-3",
                                               "gender": "male"})
    assert ok.status_code == 303


def test_the_profile_form_flags_an_unlisted_value_keeps_it_and_shows_refusals_inline(env: Env) -> None:
    cur = env.login("curator")
    uid = env.user_ids["annotator4"]
    with env.session() as session:
        db_user(session, uid).gender = "Femme"
        session.commit()
    listing = cur.get("/curator/annotators?q=annotator4")
    assert "gender not listed" in listing.text
    page = cur.get(f"/curator/annotators/{uid}")
    assert 'id="off-vocabulary"' in page.text and "(not in the list)" in page.text
    csrf = page_csrf(page)
    # Saved as shown (only the role changes): the stored value stays.
    assert cur.post(f"/curator/annotators/{uid}", data={"csrf_token": csrf, "role": "annotator", "gender": "Femme",
                                                        "age_band": "25-34"}).status_code == 303
    with env.session() as session:
        assert db_user(session, uid).gender == "Femme"
    refused = cur.post(f"/curator/annotators/{uid}", data={"csrf_token": csrf, "role": "annotator",
                                                           "gender": "female", "age_band": "99+",
                                                           "languages": "a-very-long-language-code"})
    assert refused.status_code == 422
    assert 'id="profile-error"' in refused.text and 'id="error-languages"' in refused.text
    assert 'value="a-very-long-language-code"' in refused.text
    refused = cur.post(f"/curator/annotators/{uid}", data={"csrf_token": csrf, "role": "annotator",
                                                           "gender": "female", "age_band": "99+"})
    assert refused.status_code == 422 and 'id="error-age_band"' in refused.text
    with env.session() as session:
        assert db_user(session, uid).gender == "Femme"  # nothing of a refused form is written
    assert cur.post(f"/curator/annotators/{uid}", data={"csrf_token": csrf, "role": "annotator",
                                                        "gender": "female"}).status_code == 303
    assert "gender not listed" not in cur.get("/curator/annotators?q=annotator4").text


def test_the_cli_sets_lists_and_refuses_an_unlisted_value_in_one_line(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from curate_cli.main import run

    monkeypatch.setenv("EMOTIONS_DATABASE_URL", env.url)
    monkeypatch.setenv("EMOTIONS_DATA_DIR", str(env.settings.data_dir))
    with env.session() as session:
        name = db_project(session, env.project_id).name
    assert run(["project", "values", name, "region", "Asia", "Europe"]) == 0
    capsys.readouterr()
    assert run(["user", "add", "cli-user", "--password", "long-enough-9", "--region", "Mars"]) == 2
    assert capsys.readouterr().err.strip() == "error: region: 'Mars' is not one of this project's values: Asia, Europe"
    assert run(["user", "add", "cli-user", "--password", "long-enough-9", "--region", "asia"]) == 0
    assert run(["project", "values", name, "shoe_size", "9"]) == 2
    assert "attribute_values" in capsys.readouterr().err
    assert run(["project", "values", name, "region"]) == 0
    with env.session() as session:
        from annotation_app.services.users import get_user

        assert get_user(session, "cli-user").region == "Asia"
        assert vocabularies.vocabulary(db_project(session, env.project_id))["region"] == []


def test_migration_0011_lists_the_defaults_and_folds_case_duplicates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    migrations.upgrade(url, "0010")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (name, description, overlap_k, consensus_threshold, weighted_consensus,"
                          " stage2_extra, gold_rate, lease_minutes, daily_cap, qualification_size,"
                          " qualification_pass_mark, quality_floor, balance_attributes, created_at) VALUES"
                          " ('old', '', 5, 0.6, 0, 3, 0.05, 15, 300, 10, 0.7, 0.5, '[\"gender\"]', '2026-01-01')"))
        for i, (gender, age) in enumerate([("Female", "25-34"), (" MALE", "45+"), ("femme", None), (None, "55+")]):
            conn.execute(text("INSERT INTO users (username, password_hash, role, is_active, paused, pause_reason,"
                              " gender, age_band, languages, is_simulated, created_at, session_version)"
                              " VALUES (:u, 'x', 'annotator', 1, 0, '', :g, :a, '[]', 0, '2026-01-01', 1)"),
                         {"u": f"u{i}", "g": gender, "a": age})
    migrations.upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT gender, age_band FROM users ORDER BY id")).all()
        values = conn.execute(text("SELECT attribute_values FROM projects")).scalar_one()
    engine.dispose()
    assert rows == [("female", "25-34"), ("male", "45+"), ("femme", None), (None, "55+")]
    assert '"non-binary"' in values and '"region": []' in values


def test_check_profile_refuses_only_listed_attributes() -> None:
    lists = {"gender": ["female", "male"], "age_band": []}
    assert vocabularies.check_profile(lists, {"gender": None, "age_band": "any text"}) == {"gender": None, "age_band": "any text"}
    with pytest.raises(vocabularies.ProfileValueError) as caught:
        vocabularies.check_profile(lists, {"gender": "f"})
    assert caught.value.errors[0]["loc"] == ["gender"]
    with pytest.raises(InvalidSettingsError):
        from annotation_app.services.project_settings import check_settings

        check_settings({"attribute_values": {"gender": ["a", "A"]}})
