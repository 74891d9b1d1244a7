"""A real browser (Playwright driving Debian's Chromium) against the app served by uvicorn.

An annotator logs in, passes the qualification round, a clip really plays (with sound, H.264+AAC),
the page fits one screen on a laptop and a tablet, three clips are labelled with hotkeys and the
three judgements are in the database; then an expert resolves a stage-3 clip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation_app.models import Clip, ClipStatus, Judgement, Project
from annotation_app.services import gold
from tests.annotation_app._http import PASSWORD, Env, base_url, env_fixture, tiny_video  # noqa: F401

pytestmark = pytest.mark.browser
# Set to a folder to keep screenshots of the labelling page at each screen size.
SHOTS = os.environ.get("EMOTIONS_SCREENSHOT_DIR")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    for env in env_fixture(tmp_path_factory.mktemp("browser"), sqlite_url, tiny_video, n_clips=6,
                           qualification_size=2, qualification_pass_mark=0.5):
        with env.session() as session:
            project = session.get(Project, env.project_id)
            clips = [session.get(Clip, cid) for cid in env.clip_ids]
            gold.add_gold(session, project, clips[0], "Fear", purpose="qualification")
            gold.add_gold(session, project, clips[1], "Sadness", purpose="qualification")
            # A clip already contested in stages 1-2, waiting for the expert.
            clips[5].status, clips[5].stage = ClipStatus.expert, 3
            session.commit()
        yield env


def login(page, base_url: str, username: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    page.goto(f"{base_url}/login")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_url(f"{base_url}/")


def label_with_hotkey(page, key: str) -> str:  # type: ignore[no-untyped-def]
    """Press a label's hotkey and Enter; wait for the next clip (or the empty queue)."""
    before = page.input_value("#assignment_id")
    page.keyboard.press(key)
    assert page.is_checked(f'input[name="label"][data-hotkey="{key}"]')
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(before) => document.getElementById('assignment_id').value !== before", arg=before, timeout=10_000)
    status = page.text_content("#status") or ""
    assert "rror" not in status, status
    return before


def fits_one_screen(page) -> dict:  # type: ignore[no-untyped-def]
    return page.evaluate("""() => {
        const v = document.querySelector('.video-box').getBoundingClientRect();
        const s = document.getElementById('submit').getBoundingClientRect();
        const labels = [...document.querySelectorAll('.label-btn')].map(b => b.getBoundingClientRect().bottom);
        return {scroll: document.documentElement.scrollHeight, inner: window.innerHeight,
                innerW: window.innerWidth, scrollW: document.documentElement.scrollWidth,
                videoBottom: v.bottom, videoRatio: v.width / v.height, submitBottom: s.bottom,
                labelsBottom: Math.max(...labels)};
    }""")


def test_annotator_qualifies_plays_and_labels_three_clips(env: Env, base_url: str, browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    login(page, base_url, "annotator1")
    page.goto(f"{base_url}/annotate")
    assert page.is_visible("#qualification")

    # The clip plays, with its sound track: Space is play/pause, → seeks, speed goes 0.5x-2x.
    page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=10_000)
    page.keyboard.press("Space")
    page.wait_for_function("document.getElementById('player').currentTime > 0.3", timeout=10_000)
    media = page.evaluate("""() => { const v = document.getElementById('player');
        return {paused: v.paused, w: v.videoWidth, h: v.videoHeight, duration: v.duration,
                audio: v.webkitAudioDecodedByteCount}; }""")
    assert not media["paused"] and (media["w"], media["h"]) == (180, 320) and 1.5 < media["duration"] < 2.5
    assert media["audio"] > 0, "the audio track was not decoded"
    page.keyboard.press("Space")
    t0 = page.evaluate("document.getElementById('player').currentTime")
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.getElementById('player').currentTime") == pytest.approx(max(0.0, t0 - 1), abs=0.05)
    page.select_option("#speed", "1.5")
    assert page.evaluate("document.getElementById('player').playbackRate") == 1.5

    # One screen, no scrolling, on a laptop (1366x768) and a tablet (portrait and landscape).
    for width, height in [(1366, 768), (768, 1024), (1024, 768)]:
        page.set_viewport_size({"width": width, "height": height})
        box = fits_one_screen(page)
        if SHOTS:
            page.screenshot(path=str(Path(SHOTS) / f"label-{width}x{height}.png"))
        assert box["scroll"] <= box["inner"] and box["scrollW"] <= box["innerW"], (width, height, box)
        assert box["submitBottom"] <= box["inner"] and box["labelsBottom"] <= box["inner"], (width, height, box)
        assert box["videoBottom"] <= box["inner"] and box["videoRatio"] == pytest.approx(9 / 16, abs=0.02)
    page.set_viewport_size({"width": 1366, "height": 768})

    # Qualification: the two gold clips, answered right.
    label_with_hotkey(page, "2")  # Fear
    label_with_hotkey(page, "5")  # Sadness
    assert not page.is_visible("#qualification")
    assert page.evaluate("document.getElementById('player').playbackRate") == 1.5  # the speed carries over

    # Real work: three clips labelled with hotkeys; each next clip loads without a page load.
    page.evaluate("window.__same_page = true")
    seen = []
    for key in ("1", "3", "6"):
        page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=10_000)
        seen.append(int(label_with_hotkey(page, key)))
    assert page.evaluate("window.__same_page") is True
    assert page.is_visible("#empty") and page.is_disabled("#submit")
    context.close()

    with env.session() as session:
        rows = session.scalars(
            select(Judgement).where(Judgement.annotator_id == env.user_ids["annotator"], Judgement.stage == 1)
            .order_by(Judgement.id)).all()
        assert [r.assignment_id for r in rows] == seen
        assert [r.label.name for r in rows] == ["Excitation", "Neutral", "Tension"]
        assert all(r.time_on_task_s is not None and r.time_on_task_s > 0 for r in rows)
        quals = session.scalars(select(Judgement).where(Judgement.stage == 0)).all()
        assert sorted(r.label.name for r in quals) == ["Fear", "Sadness"]


def test_expert_resolves_a_stage3_clip(env: Env, base_url: str, browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    login(page, base_url, "expert1")
    page.goto(f"{base_url}/expert")
    clip_id = env.clip_ids[5]
    page.click(f'a[href="/expert/clips/{clip_id}"]')
    page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=10_000)
    assert page.is_visible("#distribution")
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "expert-1366x768.png"))
    page.select_option("#final-label", "Relaxation")
    page.click("#decide")
    page.wait_for_url(f"{base_url}/expert")
    assert "expert queue is empty" in page.content()
    context.close()
    with env.session() as session:
        clip = session.get(Clip, clip_id)
        assert clip.status == ClipStatus.resolved and clip.final_label.name == "Relaxation" and clip.resolved_stage == 3


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_render_with_nothing_from_outside(base_url: str, browser, path: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Offline, as on a lab server: every request off the app is refused, and the UI still renders."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    outside: list[str] = []

    def only_the_app(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_app)
    page = context.new_page()
    page.goto(f"{base_url}{path}")
    if path == "/docs":
        page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
        # The bearer scheme gives Swagger UI its Authorize button, and it names the scheme.
        page.click("button.authorize")
        page.wait_for_selector("text=bearerAuth", timeout=5_000)
        assert page.locator(".opblock").count() > 10
    else:
        page.wait_for_selector("text=\"/api/work/next\"", timeout=20_000)
        assert page.locator("text=bearerAuth").count() > 0  # ReDoc lists the scheme under Authentication
    # Swagger UI asks for nothing outside; ReDoc only for its footer logo, which it hides on failure.
    assert all("redoc" in url for url in outside), outside
    context.close()
