"""One strict settings model for the page, the API and the CLI's services (#22): every value the
issue found coerced silently is a 422 (or ``InvalidSettingsError``) naming the field, and nothing
is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from annotation_app.routers.schemas import SettingsIn
from annotation_app.services import projects
from annotation_app.services.project_settings import PROJECT_SETTINGS, InvalidSettingsError, ProjectSettings
from tests.annotation_app._http import Env, env_fixture, tiny_video  # noqa: F401

# (change, the field the answer must name): each was taken, and stored as something else, before.
COERCED = [
    ({"weighted_consensus": "no"}, "weighted_consensus"),       # became True
    ({"weighted_consensus": 1}, "weighted_consensus"),
    ({"balance_attributes": "gender"}, "balance_attributes"),   # became six one-letter attributes
    ({"balance_attributes": ["gender", "gender"]}, "balance_attributes"),
    ({"balance_attributes": ["shoe_size"]}, "balance_attributes"),
    ({"lease_minutes": 1.9}, "lease_minutes"),                  # became 1
    ({"lease_minutes": "15"}, "lease_minutes"),
    ({"qualification_pass_mark": -3}, "qualification_pass_mark"),  # let everyone pass
    ({"overlap_k": 2**40}, "overlap_k"),
    ({"overlap_k": True}, "overlap_k"),
    ({"quality_floor": "nan"}, "quality_floor"),
    ({"quality_floor": float("nan")}, "quality_floor"),
    ({"stage2_extra": -1}, "stage2_extra"),
    ({"sessions": 1}, "sessions"),  # the issue sent {"session": 1}: an unknown key
    ({"lease_minutes": None}, "lease_minutes"),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path_factory.mktemp("settings"), sqlite_url, tiny_video)


def test_the_api_page_and_services_share_one_model() -> None:
    assert SettingsIn is ProjectSettings
    assert set(PROJECT_SETTINGS) == set(ProjectSettings.model_fields) == set(projects.PROJECT_SETTINGS)


@pytest.mark.parametrize(("change", "field"), COERCED, ids=[str(c) for c, _ in COERCED])
def test_the_api_refuses_what_it_used_to_coerce(env: Env, change: dict[str, Any], field: str) -> None:
    curator = env.login("curator")
    before = curator.get("/api/curator/settings").json()
    response = curator.patch("/api/curator/settings", content=_json(change),
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert field in response.json()["errors"][0]["loc"]
    assert curator.get("/api/curator/settings").json() == before


@pytest.mark.parametrize(("change", "field"), COERCED, ids=[str(c) for c, _ in COERCED])
def test_the_services_refuse_it_too(session: Session, change: dict[str, Any], field: str) -> None:
    # What `curate project create` and the demo go through.
    with pytest.raises(InvalidSettingsError, match=field) as refused:
        projects.create_project(session, "strict", **change)
    assert refused.value.errors[0]["loc"][0] == field
    project = projects.create_project(session, "strict")
    cap = project.daily_cap
    with pytest.raises(InvalidSettingsError, match=field):
        projects.update_settings(session, project, **{"daily_cap": cap + 1, **change})
    assert project.daily_cap == cap  # the valid part of a refused change is not applied either


@pytest.mark.parametrize(("form", "field"), [({"lease_minutes": "1.9"}, "lease_minutes"),
                                             ({"quality_floor": "nan"}, "quality_floor"),
                                             ({"overlap_k": str(2**40)}, "overlap_k"),
                                             ({"balance_attributes": "gender, shoe_size"}, "balance_attributes")])
def test_the_settings_page_refuses_it_naming_the_field(env: Env, form: dict[str, str], field: str) -> None:
    curator = env.login("curator")
    before = curator.get("/api/curator/settings").json()
    response = curator.post("/curator/settings", data={"csrf_token": curator.headers["X-CSRF-Token"], **form})
    assert response.status_code == 422 and field in response.text
    assert curator.get("/api/curator/settings").json() == before


def test_the_page_still_reads_its_form_as_numbers_lists_and_checkboxes(env: Env) -> None:
    curator = env.login("curator")
    before = curator.get("/api/curator/settings").json()
    saved = curator.post("/curator/settings", data={"csrf_token": curator.headers["X-CSRF-Token"], "lease_minutes": "20",
                                                    "quality_floor": "0.4", "balance_attributes": "gender, region"})
    assert saved.status_code == 303
    after = curator.get("/api/curator/settings").json()
    assert (after["lease_minutes"], after["quality_floor"], after["balance_attributes"]) == (20, 0.4, ["gender", "region"])
    assert after["weighted_consensus"] is False  # an unticked checkbox
    curator.patch("/api/curator/settings", json={k: v for k, v in before.items() if k != "name"})


def _json(change: dict[str, Any]) -> str:
    import json

    return json.dumps(change)  # NaN as the bare token a hand-made client may send
