"""Per-project labelling guidelines (#16 item 2): versioned Markdown, rendered safely, a gate every
annotator passes by confirming the current version, enforced by the API (409) as well as the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, InvalidInputError
from annotation_app.models import AuditEntry, GuidelinesConfirmation
from annotation_app.services import guidelines, work
from tests.annotation_app._http import Env, env_fixture, page_csrf, tiny_video  # noqa: F401
from tests.annotation_app.factories import make_annotator, make_clips, make_project

GUIDE = "# How to label\n\nWatch the face **and** listen.\n\n## Fear\n\nEyes wide, a step back.\n\n## Joy\n\nA real smile.\n"


def _serve(session: Session, project, annotator):  # type: ignore[no-untyped-def]
    return work.serve_next(session, project, annotator)


def test_a_project_without_guidelines_has_no_gate(session: Session) -> None:
    project = make_project(session)
    make_clips(session, project, 1)
    annotator = make_annotator(session)
    assert project.guidelines_version == 0
    assert not guidelines.needs_confirmation(session, project, annotator.id)
    assert _serve(session, project, annotator).item is not None


def test_versions_go_up_only_when_the_text_changes(session: Session) -> None:
    project = make_project(session)
    assert guidelines.set_guidelines(session, project, GUIDE) == 1
    assert guidelines.set_guidelines(session, project, GUIDE) == 1  # the same text: nobody re-confirms
    assert guidelines.set_guidelines(session, project, GUIDE + "\nMore.") == 2
    session.refresh(project)
    assert project.guidelines_version == 2
    # Cleared: no gate; written again: a version never used, so no old confirmation counts for it.
    assert guidelines.set_guidelines(session, project, "") == 0
    session.refresh(project)
    assert project.guidelines_version == 0 and guidelines.current(session, project) is None
    assert guidelines.set_guidelines(session, project, GUIDE) == 4
    actions = session.scalars(select(AuditEntry.action).where(AuditEntry.project_id == project.id)).all()
    assert actions.count("project.guidelines") == 4


def test_the_gate_refuses_next_and_submit_until_the_current_version_is_confirmed(session: Session) -> None:
    project = make_project(session)
    make_clips(session, project, 2)
    annotator = make_annotator(session)
    item = _serve(session, project, annotator).item  # leased before the guidelines existed
    assert item is not None
    guidelines.set_guidelines(session, project, GUIDE)
    session.refresh(project)
    with pytest.raises(guidelines.GuidelinesUnreadError, match=r"version 1.*confirm"):
        _serve(session, project, annotator)
    with pytest.raises(guidelines.GuidelinesUnreadError):
        work.submit(session, project, annotator, assignment_id=item.assignment_id, label="Fear",
                    client_request_id="guide-0001")
    guidelines.confirm(session, project, annotator.id, 1)
    guidelines.confirm(session, project, annotator.id, 1)  # twice is harmless
    stored = session.scalars(select(GuidelinesConfirmation).where(
        GuidelinesConfirmation.annotator_id == annotator.id)).all()
    assert [(c.project_id, c.version) for c in stored] == [(project.id, 1)]
    work.submit(session, project, annotator, assignment_id=item.assignment_id, label="Fear",
                client_request_id="guide-0001")
    # A new version: asked again; a confirmation of a version that is not current is refused.
    guidelines.set_guidelines(session, project, GUIDE + "\n## Anger\n\nFrown.\n")
    session.refresh(project)
    assert guidelines.needs_confirmation(session, project, annotator.id)
    with pytest.raises(ConflictError, match="version 2 is current"):
        guidelines.confirm(session, project, annotator.id, 1)
    guidelines.confirm(session, project, annotator.id, 2)
    assert _serve(session, project, annotator).item is not None


def test_bad_text_is_refused_and_nothing_changes(session: Session) -> None:
    project = make_project(session)
    guidelines.set_guidelines(session, project, GUIDE)
    for bad, message in [("a\x00b", "NUL"), ("x" * (guidelines.GUIDELINES_MAX_CHARS + 1), "at most")]:
        with pytest.raises(InvalidInputError, match=message):
            guidelines.set_guidelines(session, project, bad)
    current = guidelines.current(session, project)
    assert current is not None and current.version == 1 and current.markdown == GUIDE.strip("\n")


def test_script_and_javascript_links_do_not_survive_rendering() -> None:
    html = str(guidelines.render(
        "Hi <script>alert(1)</script> <img src=x onerror=alert(2)>\n\n"
        "[click](javascript:alert(3)) [also](JaVaScRiPt:alert(4)) [ok](https://example.org/guide)\n"))
    assert "<script" not in html and "<img" not in html
    assert "javascript:" not in html.lower().replace("[click](javascript:", "").replace("[also](javascript:", "")
    assert 'href="javascript' not in html.lower()
    assert '<a href="https://example.org/guide">ok</a>' in html
    assert "&lt;script&gt;" in html  # shown as text, so a curator sees what they wrote


def test_each_labels_description_is_its_section() -> None:
    sections = guidelines.label_sections(GUIDE + "\n```\n## Anger\n```\n", ["Fear", "Joy", "Anger"])
    assert sections == {"Fear": "Eyes wide, a step back.", "Joy": "A real smile.\n\n```\n## Anger\n```"}


# -- Over HTTP: the API's 409, the page's redirect, the curator's form ------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path_factory.mktemp("guidelines"), sqlite_url, tiny_video)


def test_over_http_the_curator_writes_and_the_annotator_is_gated(env: Env) -> None:
    curator = env.login("curator")
    page = curator.get("/curator/settings")
    saved = curator.post("/curator/settings/guidelines",
                         data={"markdown": GUIDE + "\n<script>alert(1)</script>", "csrf_token": page_csrf(page)})
    assert saved.status_code == 303
    view = curator.get("/api/curator/guidelines").json()
    assert view["version"] == 1 and "Tension" in view["labels_without_section"] and "Fear" not in view["labels_without_section"]
    assert "<script>alert" not in curator.get("/curator/settings").text

    annotator = env.login("annotator2")
    refused = annotator.get("/api/work/next")
    assert refused.status_code == 409
    assert "guidelines" in refused.json()["detail"] and refused.json()["see"] == "/annotate/guidelines"
    assert annotator.get("/annotate").headers["location"] == "/annotate/guidelines"
    gate = annotator.get("/annotate/guidelines")
    assert "Eyes wide" in gate.text and 'id="guidelines-confirm"' in gate.text and "<script>alert" not in gate.text
    assert annotator.post("/api/work/guidelines/confirm", json={"version": 7}).status_code == 409
    confirmed = annotator.post("/annotate/guidelines/confirm", data={"version": "1", "csrf_token": page_csrf(gate)})
    assert confirmed.status_code == 303
    assert annotator.get("/api/work/next").status_code == 200
    labelling = annotator.get("/annotate")
    assert labelling.status_code == 200 and 'id="guidelines"' in labelling.text and "<kbd>G</kbd>" in labelling.text

    # A curator's refused text comes back in the form, not lost, and the old version stays.
    page = curator.get("/curator/settings")
    refused_form = curator.post("/curator/settings/guidelines",
                                data={"markdown": "kept \x00 text", "csrf_token": page_csrf(page)})
    assert refused_form.status_code == 422 and "NUL" in refused_form.text and "kept" in refused_form.text
    assert curator.get("/api/curator/guidelines").json()["version"] == 1
    # Removing them lifts the gate for everyone.
    removed = curator.put("/api/curator/guidelines", json={"markdown": ""})
    assert removed.status_code == 200, removed.text
    assert removed.json()["version"] == 0
    assert env.login("annotator3").get("/api/work/next").status_code == 200
