"""The guidelines gate in a real browser (#16): a new annotator reads and confirms the project's
guidelines before the first clip, opens them again with G while labelling, and is sent back to the
gate when a curator changes them. A ``<script>`` in the Markdown never runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from annotation_app.models import Project
from annotation_app.services import guidelines
from tests.annotation_app._http import Env, base_url, env_fixture, tiny_video  # noqa: F401
from tests.annotation_app.test_browser import label_with_hotkey, login
from tests.annotation_app.test_browser_screens import SHOTS, Console

pytestmark = pytest.mark.browser

GUIDE = ("# Labelling eMotions\n\nJudge the person's **felt** emotion.\n\n<script>window.pwned = 1</script>\n\n"
         "[trap](javascript:window.pwned=2)\n\n## Fear\n\nEyes wide, a step back.\n")


def _set(env: Env, markdown: str) -> None:
    with env.session() as session:
        guidelines.set_guidelines(session, session.get(Project, env.project_id), markdown)
        session.commit()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    for env in env_fixture(tmp_path_factory.mktemp("guidelines-browser"), sqlite_url, tiny_video, n_clips=4):
        _set(env, GUIDE)
        yield env


def test_annotator_confirms_the_guidelines_reads_them_with_g_and_is_asked_again_when_they_change(
    env: Env, base_url: str, browser  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    console = Console(page)
    login(page, base_url, "annotator1")
    page.goto(f"{base_url}/annotate")
    page.wait_for_url(f"{base_url}/annotate/guidelines")  # before the first clip
    assert "Eyes wide" in page.inner_text(".guidelines")
    page.screenshot(path=str(SHOTS / "guidelines-gate-phone.png"))
    assert page.locator(".guidelines a").count() == 0, "the javascript: link became a link"
    assert page.evaluate("window.pwned === undefined"), "script in the guidelines ran"
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.click("#guidelines-confirm")
    page.wait_for_url(f"{base_url}/annotate")
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=10_000)

    page.keyboard.press("g")
    assert page.evaluate("document.getElementById('guidelines').open")
    assert "Eyes wide" in page.inner_text("#guidelines")
    page.keyboard.press("Escape")
    assert not page.evaluate("document.getElementById('guidelines').open")
    page.keyboard.press("?")
    assert "labelling guidelines" in page.inner_text("#shortcuts")
    page.keyboard.press("Escape")
    assert console.errors == [], console.errors
    label_with_hotkey(page, "1")

    # The curator changes them mid-session: the next submit is refused and the page goes to the gate.
    _set(env, GUIDE + "\n## Sadness\n\nTears, a low voice.\n")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/annotate/guidelines")
    assert "changed" in page.inner_text("#guidelines-gate") and "Tears" in page.inner_text(".guidelines")
    page.click("#guidelines-confirm")
    page.wait_for_url(f"{base_url}/annotate")
    context.close()
