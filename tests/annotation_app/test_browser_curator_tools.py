"""The curator's tools and the guidelines' example clips in a real browser (#16), at 1440x900,
820x1180 and 390x844: the clips table sorted and filtered by clicking, an annotator form refused
inline with what was typed kept, the profile form choosing from the project's lists, the settings
page's value lists and example clips, and an annotator playing an example clip in the guidelines.
No page scrolls sideways or logs a console error; screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from annotation_app.models import ClipStatus, Project
from annotation_app.services import guidelines
from tests.annotation_app._http import Env, base_url, db_clip, env_fixture, tiny_video  # noqa: F401
from tests.annotation_app.test_browser import login
from tests.annotation_app.test_browser_screens import SCREENS, SHOTS, Console, overflow

pytestmark = pytest.mark.browser

GUIDE = "# Labelling\n\nJudge the felt emotion.\n\n## Fear\n\nEyes wide, a step back.\n\n## Neutral\n\nNothing felt.\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    for env in env_fixture(tmp_path_factory.mktemp("curator-tools"), sqlite_url, tiny_video, n_clips=6):
        with env.session() as session:
            project = session.get(Project, env.project_id)
            for clip_id, status, stage in zip(env.clip_ids, ["resolved", "expert", "active", "expert", "active", "pending"],
                                              [1, 3, 1, 3, 2, 1], strict=True):
                clip = db_clip(session, clip_id)
                clip.status, clip.stage = ClipStatus(status), stage
            guidelines.set_guidelines(session, project, GUIDE)
            guidelines.set_examples(session, project, {"Fear": [env.clip_ids[5]]})
            session.commit()
        yield env


def _open_on_a_laptop(browser, base_url: str, username: str, path: str):  # type: ignore[no-untyped-def]  # noqa: F811
    """A new 1440x900 browser context logged in as ``username``, its page opened at ``path``, and that
    page's console errors, collected from the login on."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    console = Console(page)
    login(page, base_url, username)
    page.goto(f"{base_url}{path}")
    return context, page, console


def _check_sizes(page, name: str, problems: list[str]) -> None:  # type: ignore[no-untyped-def]
    for size, (w, h) in SCREENS.items():
        page.set_viewport_size({"width": w, "height": h})
        page.screenshot(path=str(SHOTS / f"{name}-{size}.png"), full_page=True)
        box = overflow(page)
        if box["scrollW"] > box["innerW"]:
            problems.append(f"{name} at {size}: {box}")
    page.set_viewport_size({"width": 1440, "height": 900})


def test_curator_sorts_and_filters_clips_and_sees_form_errors_inline_on_three_screens(
    env: Env, base_url: str, browser  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    problems: list[str] = []
    # The clips table: sorted by clicking a header, again to reverse it, then filtered.
    context, page, console = _open_on_a_laptop(browser, base_url, "curator1", "/curator/clips")
    page.click('#clips thead a:text-is("status")')
    page.wait_for_url("**sort=status**")
    statuses = page.locator("#clips tbody td:nth-child(2)").all_inner_texts()
    assert statuses == sorted(statuses) and len(statuses) == 6, statuses
    assert page.get_attribute('#clips th[aria-sort]', "aria-sort") == "ascending"
    page.click('#clips thead a:text-is("status")')
    page.wait_for_url("**order=desc**")
    assert page.locator("#clips tbody td:nth-child(2)").all_inner_texts() == sorted(statuses, reverse=True)
    page.select_option('#clip-filters select[name="status"]', "expert")
    page.click('#clip-filters button[type="submit"]')
    page.wait_for_url("**status=expert**")
    assert page.locator("#clips tbody td:nth-child(2)").all_inner_texts() == ["expert", "expert"]
    assert "sort=status" in page.url and "order=desc" in page.url  # the sort survives the filter
    assert page.inner_text("#matched").startswith("2 clips")
    _check_sizes(page, "curator-clips-filtered", problems)

    # The new-annotator form: refused beside its fields, what was typed kept (not the password).
    page.goto(f"{base_url}/curator/annotators")
    assert page.locator('#new-annotator select[name="gender"] option').all_inner_texts()[1:] == [
        "female", "male", "non-binary", "undisclosed"]
    page.fill('#new-annotator input[name="username"]', "x")
    page.fill('#new-annotator input[name="password"]', "short")
    page.select_option('#new-annotator select[name="gender"]', "female")
    page.fill('#new-annotator input[name="languages"]', "zh, en")
    page.click('#new-annotator button[type="submit"]')
    page.wait_for_selector("#annotator-error")
    assert page.is_visible("#error-username") and page.is_visible("#error-password")
    assert page.get_attribute('#new-annotator input[name="username"]', "aria-invalid") == "true"
    assert page.input_value('#new-annotator input[name="username"]') == "x"
    assert page.input_value('#new-annotator select[name="gender"]') == "female"
    assert page.input_value('#new-annotator input[name="languages"]') == "zh, en"
    assert page.input_value('#new-annotator input[name="password"]') == ""
    page.locator("#new-annotator").scroll_into_view_if_needed()
    _check_sizes(page, "curator-annotator-form-error", problems)
    # Corrected, it is created and listed.
    page.fill('#new-annotator input[name="username"]', "browser-made")
    page.fill('#new-annotator input[name="password"]', "long-enough-7")
    page.select_option('#new-annotator select[name="age_band"]', "25-34")
    with page.expect_navigation():
        page.click('#new-annotator button[type="submit"]')
    assert page.locator("#annotator-error").count() == 0
    page.goto(f"{base_url}/curator/annotators?q=browser-made")
    assert page.locator("#annotators tbody tr").count() == 1

    # The profile form: a language code too long is refused beside its field.
    page.click('#annotators a:text-is("browser-made")')
    page.fill('#profile-form input[name="languages"]', "a-language-code-far-too-long")
    page.click('#profile-form button[type="submit"]')
    page.wait_for_selector("#error-languages")
    assert page.input_value('#profile-form input[name="languages"]') == "a-language-code-far-too-long"
    _check_sizes(page, "curator-profile-error", problems)

    # The settings page with its value lists and example clips.
    page.goto(f"{base_url}/curator/settings")
    assert page.input_value('input[name="attribute_values.gender"]') == "female, male, non-binary, undisclosed"
    assert page.input_value('input[name="examples.Fear"]') == str(env.clip_ids[5])
    _check_sizes(page, "curator-settings-lists", problems)
    context.close()
    assert not problems, problems
    # A refused form's 422 answer is the page itself, which Chromium logs as a failed load; nothing else.
    assert [e for e in console.errors if "status of 422" not in e] == [], console.errors


def test_an_annotator_plays_an_example_clip_in_the_guidelines_on_three_screens(
    env: Env, base_url: str, browser  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    problems: list[str] = []
    context, page, console = _open_on_a_laptop(browser, base_url, "annotator2", "/annotate/guidelines")
    video = page.get_by_role("group", name="Examples of Fear").locator("video")
    assert video.count() == 1
    # Under Fear's own heading, before the next section.
    order = page.evaluate("""() => { const v = document.querySelector('.examples video');
        const hs = [...document.querySelectorAll('.guidelines h2')].map(h => h.textContent);
        const after = v.closest('.examples').previousElementSibling;
        return {headings: hs, before: after && after.textContent}; }""")
    assert order["headings"] == ["Fear", "Neutral"], order
    page.evaluate("document.querySelector('.examples video').play()")
    page.wait_for_function("document.querySelector('.examples video').currentTime > 0.2", timeout=10_000)
    _check_sizes(page, "guidelines-example-clip", problems)
    context.close()
    assert not problems, problems
    assert not console.errors, console.errors
