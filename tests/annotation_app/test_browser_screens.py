"""Every page in a real browser (Playwright driving Debian's Chromium) on a laptop, a tablet and a phone.

At 1440x900, 820x1180 and 390x844 no page scrolls sideways (``scrollWidth <= innerWidth``) and no
page logs a console error; the labelling page keeps every label button whole and Submit on the
screen, a phone user can skip a clip with a reason and still reach Submit, "?" lists every
shortcut, the controls have accessible names and keyboard focus is visible. Screenshots of each
page at each size are kept as test artefacts (``test-artifacts/browser/`` or
``$EMOTIONS_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation_app.models import Clip, ClipStatus, Judgement
from tests.annotation_app._http import Env, base_url, env_fixture, tiny_video  # noqa: F401
from tests.annotation_app.test_browser import login

pytestmark = pytest.mark.browser

SCREENS = {"laptop": (1440, 900), "tablet": (820, 1180), "phone": (390, 844)}
SHOTS = Path(os.environ.get("EMOTIONS_SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "test-artifacts" / "browser")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    for env in env_fixture(tmp_path_factory.mktemp("screens"), sqlite_url, tiny_video, n_clips=6):
        with env.session() as session:
            # Three clips wait for the expert: the pages have something to show, one to decide, one to discard.
            for clip_id in env.clip_ids[3:]:
                clip = session.get(Clip, clip_id)
                clip.status, clip.stage = ClipStatus.expert, 3
            session.commit()
        yield env


@pytest.fixture(scope="module")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


class Console:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self, page) -> None:  # type: ignore[no-untyped-def]
        self.errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"{page.url}: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))


def overflow(page) -> dict:  # type: ignore[no-untyped-def]
    return page.evaluate("""() => ({scrollW: document.documentElement.scrollWidth, innerW: window.innerWidth,
        wide: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
               && !e.closest('.table-wrap, .topbar nav')).slice(0, 5).map(e => e.tagName + '.' + e.className)})""")


def pages_of(env: Env) -> dict[str, list[str]]:
    return {
        "annotator1": ["/", "/annotate", "/annotate/recent", "/annotate/guidelines"],
        "expert1": ["/", "/expert", f"/expert/clips/{env.clip_ids[5]}"],
        "curator1": ["/", "/curator", "/curator/annotators", f"/curator/annotators/{env.user_ids['annotator']}",
                     "/curator/clips", "/curator/settings", "/curator/audit"],
    }


def test_every_page_fits_every_screen_without_console_errors(env: Env, base_url: str, browser, shots: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    console = Console(page)
    for size, (w, h) in SCREENS.items():
        page.set_viewport_size({"width": w, "height": h})
        page.goto(f"{base_url}/login")
        page.screenshot(path=str(shots / f"login-{size}.png"))
        box = overflow(page)
        if box["scrollW"] > box["innerW"]:
            problems.append(f"/login at {size}: {box}")
    for username, paths in pages_of(env).items():
        context.clear_cookies()
        page.set_viewport_size({"width": 1440, "height": 900})
        login(page, base_url, username)
        for path in paths:
            page.goto(f"{base_url}{path}")
            for size, (w, h) in SCREENS.items():
                page.set_viewport_size({"width": w, "height": h})
                name = f"{username}{path.replace('/', '-').rstrip('-') or '-home'}-{size}.png"
                page.screenshot(path=str(shots / name))
                box = overflow(page)
                if box["scrollW"] > box["innerW"]:
                    problems.append(f"{path} as {username} at {size}: {box}")
                # The user name in the bar is whole on every screen.
                who = page.evaluate("""() => { const e = document.querySelector('.topbar .who');
                    const r = e.getBoundingClientRect(); return r.right <= innerWidth && e.scrollWidth <= e.clientWidth + 1; }""")
                if not who:
                    problems.append(f"user name cut off on {path} at {size}")
                # Every page link in the bar is whole and on the screen, none scrolled out of sight.
                cut = page.evaluate("""() => [...document.querySelectorAll('.topbar nav a')].filter(a => {
                    const r = a.getBoundingClientRect(), n = a.parentElement.getBoundingClientRect();
                    return r.left < n.left - 1 || r.right > n.right + 1 || r.right > innerWidth; }).map(a => a.textContent)""")
                if cut:
                    problems.append(f"links cut off in the bar on {path} at {size}: {cut}")
            page.set_viewport_size({"width": 1440, "height": 900})
    # The error page, as a person meets it: a page of another role (403) and a clip that is not there (404).
    expected = []
    for username, path, status in [("annotator1", "/curator", 403), ("curator1", "/curator/annotators/999999", 404)]:
        context.clear_cookies()
        login(page, base_url, username)
        for size, (w, h) in SCREENS.items():
            page.set_viewport_size({"width": w, "height": h})
            response = page.goto(f"{base_url}{path}")
            assert response is not None and response.status == status, (path, response and response.status)
            expected.append(f"{base_url}{path}: Failed to load resource: the server responded with a status of {status}")
            page.screenshot(path=str(shots / f"error-{status}-{size}.png"))
            box = overflow(page)
            if box["scrollW"] > box["innerW"]:
                problems.append(f"error page {path} at {size}: {box}")
            if not page.locator("a[href='/']").first.is_visible():
                problems.append(f"error page {path} at {size}: no way back home")
        page.set_viewport_size({"width": 1440, "height": 900})
    context.close()
    assert not problems, problems
    # The browser reports the error status itself; nothing else may be logged.
    assert [e for e in console.errors if not any(e.startswith(x.rsplit(": ", 1)[0]) and "status of" in e
                                                  for x in expected)] == [], console.errors


def label_page_box(page) -> dict:  # type: ignore[no-untyped-def]
    return page.evaluate("""() => {
        const v = document.querySelector('.video-box').getBoundingClientRect();
        const s = document.getElementById('submit').getBoundingClientRect();
        const btns = [...document.querySelectorAll('.label-btn')];
        return {scroll: document.documentElement.scrollHeight, inner: innerHeight, innerW: innerWidth,
                scrollW: document.documentElement.scrollWidth, videoRatio: v.width / v.height, submitBottom: s.bottom,
                labelsRight: Math.max(...btns.map(b => b.getBoundingClientRect().right)),
                labelsBottom: Math.max(...btns.map(b => b.getBoundingClientRect().bottom)),
                cut: btns.filter(b => { const n = b.querySelector('.name'); return n.scrollWidth > n.clientWidth + 1
                                        || b.getBoundingClientRect().right > b.parentElement.getBoundingClientRect().right + 1; })
                         .map(b => b.textContent.trim())};
    }""")


def test_labelling_page_on_three_screens_shortcuts_names_focus_and_a_phone_skip(
    env: Env, base_url: str, browser, shots: Path  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    console = Console(page)
    login(page, base_url, "annotator2")
    page.goto(f"{base_url}/annotate")
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=10_000)

    # Every label whole, Submit and the labels on the screen, no scrolling, the clip 9:16: on all three.
    for size, (w, h) in SCREENS.items():
        page.set_viewport_size({"width": w, "height": h})
        box = label_page_box(page)
        assert box["scrollW"] <= box["innerW"] and box["scroll"] <= box["inner"], (size, box)
        assert not box["cut"] and box["labelsRight"] <= box["innerW"], (size, box)
        assert box["submitBottom"] <= box["inner"] and box["labelsBottom"] <= box["inner"], (size, box)
        assert box["videoRatio"] == pytest.approx(9 / 16, abs=0.02), (size, box)

    # Every control has an accessible name (what a screen reader says).
    page.set_viewport_size({"width": 1440, "height": 900})
    for role, name in [("button", "Replay"), ("button", "Keyboard shortcuts"), ("combobox", "Speed"),
                       ("button", "Submit"), ("button", "Skip"), ("radio", "Excitation"), ("radio", "Tension"),
                       ("group", "Emotion"), ("group", "Confidence")]:
        assert page.get_by_role(role, name=name).count() >= 1, (role, name)  # type: ignore[arg-type]
    assert page.get_by_role("video", name="Clip to label").count() == 1 or page.locator('video[aria-label]').count() == 1

    # "?" lists every shortcut, and Esc closes the list; while it is open a hotkey does nothing.
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    assert dialog.is_visible()
    text = dialog.inner_text()
    for expected in ["Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension", "Enter", "Space", "Skip", "Replay"]:
        assert expected in text, expected
    page.screenshot(path=str(shots / "label-shortcuts-laptop.png"))
    page.keyboard.press("1")
    assert not page.is_checked('input[name="label"][data-hotkey="1"]')
    page.keyboard.press("Escape")
    assert not dialog.is_visible()

    # Keyboard focus shows, also on a label button whose radio is hidden: Tab onto it draws an outline.
    page.focus('input[name="label"][data-hotkey="1"]')
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    focused = page.evaluate("""() => { const e = document.activeElement;
        return {name: e.name, outline: getComputedStyle(e.closest('.label-btn') || e).outlineStyle}; }""")
    assert focused == {"name": "label", "outline": "solid"}, focused

    # A phone: S opens the skip with its reason focused; Submit is still reachable, the skip is recorded.
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("body", position={"x": 5, "y": 60})  # the keyboard back to the page, not the speed menu
    before = page.input_value("#assignment_id")
    page.keyboard.press("s")
    assert page.evaluate("document.getElementById('flags').open") and page.is_checked("#cant_judge")
    assert page.evaluate("document.activeElement.id") == "flag_reason"
    page.keyboard.type("No sound")
    page.screenshot(path=str(shots / "label-skip-phone.png"))
    # On a smaller phone the open flags do not fit: then the panel scrolls under the finger (the
    # page itself never does), so the checkboxes and Submit can both be reached.
    page.set_viewport_size({"width": 375, "height": 600})
    panel = page.evaluate("""() => { const p = document.querySelector('.panel');
        return {overflowing: p.scrollHeight > p.clientHeight + 1, overflowY: getComputedStyle(p).overflowY}; }""")
    assert panel["overflowing"] and panel["overflowY"] in ("auto", "scroll"), panel
    page.screenshot(path=str(shots / "label-skip-small-phone.png"))
    page.get_by_role("button", name="Submit").click(timeout=5_000)  # fails if it cannot be scrolled to
    page.wait_for_function(
        "(before) => document.getElementById('assignment_id').value !== before", arg=before, timeout=10_000)
    assert "rror" not in (page.text_content("#status") or "")
    context.close()
    assert not console.errors, console.errors
    with env.session() as session:
        skipped = session.scalars(select(Judgement).where(
            Judgement.assignment_id == int(before))).one()
        assert skipped.cant_judge and skipped.label_id is None and skipped.flag_reason == "No sound"


def test_expert_on_a_phone_decides_one_clip_and_discards_one_with_a_reason(
    env: Env, base_url: str, browser, shots: Path  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    console = Console(page)
    login(page, base_url, "expert1")
    decided, discarded = env.clip_ids[3], env.clip_ids[4]

    page.goto(f"{base_url}/expert/clips/{decided}")
    page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=10_000)
    page.select_option("#speed", "0.5")
    assert page.evaluate("document.getElementById('player').playbackRate") == 0.5
    page.keyboard.press("4")  # the label's hotkey picks the final label
    assert page.input_value("#final-label") == "Relaxation"
    page.get_by_role("button", name="Decide").click()
    page.wait_for_url(f"{base_url}/expert")

    page.goto(f"{base_url}/expert/clips/{discarded}")
    page.keyboard.press("d")
    assert page.is_checked("#discard") and page.evaluate("document.activeElement.id") == "reason"
    page.get_by_role("button", name="Decide").click()  # no reason yet: told on the page, nothing lost
    page.wait_for_selector("#form-error")
    assert "a discard needs a reason" in page.inner_text("#form-error") and page.is_checked("#discard")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.screenshot(path=str(shots / "expert-discard-error-phone.png"))
    page.fill("#reason", "two emotions at once")
    page.get_by_role("button", name="Decide").click()
    page.wait_for_url(f"{base_url}/expert")
    context.close()
    # The form's 422 answer is the page itself, which Chromium logs as a failed load; nothing else.
    assert [e for e in console.errors if "status of 422" not in e] == [], console.errors
    with env.session() as session:
        one, two = session.get(Clip, decided), session.get(Clip, discarded)
        assert one.status == ClipStatus.resolved and one.final_label.name == "Relaxation"
        assert two.status == ClipStatus.discarded


def test_curator_sorts_and_filters_annotators_and_reads_dates_in_their_time_zone(
    env: Env, base_url: str, browser, shots: Path  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, timezone_id="Asia/Shanghai", locale="en-GB")
    page = context.new_page()
    console = Console(page)
    login(page, base_url, "curator1")
    page.goto(f"{base_url}/curator/annotators")

    def names() -> list[str]:
        return page.locator("#annotators tbody td:first-child a").all_inner_texts()

    assert names() == sorted(names())
    page.click("#annotators thead th:first-child a")  # sorted by name already: now descending
    page.wait_for_url("**order=desc**")
    assert names() == sorted(names(), reverse=True)
    assert page.locator('th[aria-sort="descending"]').count() == 1
    page.get_by_role("link", name="judgements").click()
    page.wait_for_url("**sort=n_judgements**")
    page.fill('input[name="q"]', "annot")
    page.select_option('select[name="role"]', "annotator")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**role=annotator**")
    assert names() and all(n.startswith("annotator") for n in names()) and "sort=n_judgements" in page.url
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.screenshot(path=str(shots / "curator-annotators-filtered-phone.png"))

    # A pause from the annotator's page lands in the audit trail, shown in the viewer's own time zone.
    page.goto(f"{base_url}/curator/annotators/{env.user_ids['annotator4']}")
    page.fill('form[action$="/pause"] input[name="reason"]', "on holiday")
    page.get_by_role("button", name="Pause annotator4").click()
    page.goto(f"{base_url}/curator/audit")
    first = page.locator("#audit time").first
    iso, shown = first.get_attribute("datetime"), first.inner_text()
    expected = page.evaluate("""(iso) => new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short',
        timeZone: 'Asia/Shanghai'}).format(new Date(iso))""", iso)
    assert shown == expected and "UTC" not in shown, (iso, shown)
    context.close()
    assert not console.errors, console.errors
