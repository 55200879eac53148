"""The real page in headless Chromium: a folder of videos outside the checkout, on a desktop and a phone.

Needs /usr/bin/chromium (`make chromium` installs it; CI does) and the playwright Python package;
never downloads a browser. The videos live outside the checkout and outside the temp folder (the two
places Gradio serves from by default), as a user's ~/Videos would. Screenshots go to the test's tmp
folder; with PROMPTSWITCH_SCREENSHOT set, the app starts with its default settings (the bundled model
and library offline) and the desktop search screenshot is copied to docs/screenshot.png.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required"]
REPO = Path(__file__).resolve().parent.parent
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
WIDE = {"width": 1920, "height": 1080}
SCORED = re.compile(r"^(\d+)\. (.+) · (-?\d+\.\d+)$")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _outside_folder() -> Path:
    """A fresh folder neither in the checkout nor in the temp folder (like ~/Videos)."""
    for base in (Path("/var/tmp"), Path.home() / ".cache"):
        if base.is_dir() and os.access(base, os.W_OK) and not base.resolve().is_relative_to(REPO):
            folder = Path(tempfile.mkdtemp(prefix="promptswitch-browser-", dir=base)).resolve()
            if not folder.is_relative_to(Path(tempfile.gettempdir()).resolve()):
                return folder
    pytest.skip("no writable folder outside the checkout and the temp folder")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} is missing (install it with `make chromium` or apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + ": CI must run the browser test")  # `make test` installs it as root
        pytest.skip(msg)
    pytest.importorskip("playwright.sync_api")
    from bench.app_server import AppServer
    from training.shapes import write_dataset

    root = tmp_path_factory.mktemp("appbrowser")
    outside = _outside_folder()
    try:
        data = write_dataset(outside / "shapes", seed=0, num_train=0, num_test=14, size=(96, 72), seconds=2.0,
                             fps=12)
        videos = outside / "My Videos"
        (data / "videos").rename(videos)
        if os.environ.get("PROMPTSWITCH_SCREENSHOT"):
            args = ["--cache-dir", str(root / "cache")]  # the defaults, as `make demo` starts
        else:
            args = ["--model", "random:tiny", "--videos", str(videos), "--cache-dir", str(root / "cache")]
        with AppServer(args, env={"GRADIO_TEMP_DIR": str(root / "gradio")}, log_path=root / "app.log") as srv:
            srv.videos = videos
            yield srv
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _page(browser, app_url, viewport):
    from playwright.sync_api import expect

    pg = browser.new_page(viewport=viewport)
    pg.set_default_timeout(30_000)
    pg.goto(app_url.url)
    expect(pg.locator("#banner")).to_contain_text("Model:")
    return pg


@pytest.fixture()
def desktop(browser, app_url):
    pg = _page(browser, app_url, DESKTOP)
    yield pg
    pg.close()


@pytest.fixture()
def phone(browser, app_url):
    pg = _page(browser, app_url, PHONE)
    yield pg
    pg.close()


def _search(page, query: str, k: int | None = None) -> list[re.Match]:
    from playwright.sync_api import expect

    if k is not None:
        page.locator("#k input[type=number]").fill(str(k))
        page.locator("#k input[type=number]").press("Enter")
    page.locator("#query textarea").fill(query)
    page.locator("#search-btn").click()
    expect(page.locator("#search-status")).to_contain_text("results for")
    expect(page.locator("#results .caption-label").first).to_contain_text("1. ")
    texts = page.locator("#results .caption-label").all_inner_texts()
    parsed = [SCORED.match(t.strip()) for t in texts]
    assert all(parsed), texts
    return parsed


def _no_error_shown(page) -> None:
    text = page.locator("body").inner_text()
    assert "Cannot move" not in text and not re.search(r"^\s*Error\s*$", text, re.M), text[:2000]


def test_first_screen_shows_the_library(desktop, app_url):
    from playwright.sync_api import expect

    expect(desktop.locator("#search-status")).to_contain_text("The library holds")
    expect(desktop.locator("#results img").first).to_be_visible()
    assert desktop.locator("#results img").count() == 12
    assert desktop.locator("#result-video").is_hidden() and desktop.locator("#similarity-plot").is_hidden()
    expect(desktop.locator("#header a", has_text="Paper")).to_have_attribute("href", re.compile("arxiv.org"))
    expect(desktop.locator("#header a", has_text="code")).to_have_attribute("href", re.compile("github.com"))


def test_search_and_play_from_a_folder_outside_the_checkout(desktop, app_url, tmp_path):
    from playwright.sync_api import expect

    assert not app_url.videos.is_relative_to(REPO)
    parsed = _search(desktop, "a red circle moves left")
    assert [int(m.group(1)) for m in parsed] == list(range(1, len(parsed) + 1))
    scores = [float(m.group(3)) for m in parsed]
    assert scores == sorted(scores, reverse=True)
    if not os.environ.get("PROMPTSWITCH_SCREENSHOT"):  # no captions in a plain folder: file names, not generated
        assert parsed[0].group(2).endswith(".mp4")
    desktop.locator("#results img").nth(1).click()
    video = desktop.locator("#result-video video")
    expect(video).to_be_visible()
    expect(desktop.locator("#best-moment")).to_contain_text("Best-matching moment")
    desktop.wait_for_function("() => { const v = document.querySelector('#result-video video');"
                              " if (!v) return false; const r = v.getBoundingClientRect();"
                              " return !v.paused && v.currentTime > 0 && r.top >= 0"
                              " && r.bottom <= window.innerHeight; }")
    src = video.get_attribute("src") or ""
    assert "/media/" in src and src.endswith(".mp4"), src  # app.media's route: the exact file, by key
    if not os.environ.get("PROMPTSWITCH_SCREENSHOT"):
        assert "My%20Videos" not in src and "My Videos" not in src, src  # the URL does not reveal the folder
    plot = desktop.locator("#similarity-plot img")
    expect(plot).to_be_visible()
    assert "Cosine similarity of" in (plot.get_attribute("alt") or "")
    _no_error_shown(desktop)
    desktop.screenshot(path=str(tmp_path / "desktop.png"), full_page=True)
    if os.environ.get("PROMPTSWITCH_SCREENSHOT"):
        (REPO / "docs").mkdir(exist_ok=True)
        desktop.screenshot(path=str(REPO / "docs" / "screenshot.png"), full_page=True)


def test_wide_screen_brings_the_selected_result_into_view(browser, app_url):
    pg = _page(browser, app_url, WIDE)
    _search(pg, "a blue square grows", k=12)
    pg.locator("#results img").nth(11).click()
    pg.wait_for_function("() => { const v = document.querySelector('#result-video video');"
                         " if (!v) return false; const r = v.getBoundingClientRect();"
                         " return r.top >= 0 && r.bottom <= window.innerHeight && !v.paused; }")
    pg.close()


def test_phone_layout(phone, tmp_path):
    """390 px: one or two columns, nothing beyond the right edge, captions under the pictures, all 14 results."""
    parsed = _search(phone, "a green triangle", k=14)
    assert len(parsed) == 14
    boxes = phone.evaluate("""() => [...document.querySelectorAll('#results .thumbnail-item')].map(el => {
        const img = el.querySelector('img').getBoundingClientRect();
        const cap = el.querySelector('.caption-label').getBoundingClientRect();
        return {left: img.left, right: img.right, bottom: img.bottom, capTop: cap.top, capRight: cap.right};
    })""")
    assert len(boxes) == 14
    assert len({round(b["left"]) for b in boxes}) <= 2
    assert all(b["left"] >= 0 and b["right"] <= 390 and b["capRight"] <= 390 for b in boxes), boxes
    assert all(b["capTop"] >= b["bottom"] - 1 for b in boxes), boxes  # under, not over, the thumbnail
    assert phone.evaluate("() => document.scrollingElement.scrollWidth") <= 390
    last = phone.locator("#results .thumbnail-item").nth(13)
    last.scroll_into_view_if_needed()
    assert last.is_visible()
    banner_height = phone.locator("#banner").bounding_box()["height"]
    assert banner_height < 844 / 4
    phone.screenshot(path=str(tmp_path / "phone.png"), full_page=True)


def test_keyboard_focus_is_visible(desktop):
    for _ in range(40):
        desktop.keyboard.press("Tab")
        if desktop.evaluate("() => document.activeElement && document.activeElement.closest('#query') !== null"):
            break
    else:
        pytest.fail("the query box cannot be reached with Tab")
    style = desktop.evaluate("() => { const s = getComputedStyle(document.activeElement);"
                             " return {style: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }")
    assert style["style"] != "none" and style["width"] >= 2, style


def _contrast_script() -> str:
    return """(sel) => {
      const lum = (c) => { const v = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(x => x / 255)
        .map(x => x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4));
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
      const bg = (el) => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
        const a = c.match(/[\\d.]+/g); if (a && (a.length < 4 || Number(a[3]) > 0.5)) return c; }
        return 'rgb(255, 255, 255)'; };
      return [...document.querySelectorAll(sel)].filter(el => el.innerText.trim()).slice(0, 20).map(el => {
        const a = lum(getComputedStyle(el).color), b = lum(bg(el));
        return {text: el.innerText.trim().slice(0, 30), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)};
      });
    }"""


@pytest.mark.parametrize("selector", [
    "#search-status p", "#banner p", "label span", "span[data-testid='block-info']", "#results .caption-label",
    "footer a", "#header p",
])
def test_text_contrast_is_wcag_aa(desktop, selector):
    _search(desktop, "a white square")
    found = desktop.evaluate(_contrast_script(), selector)
    assert found, f"nothing matched {selector}"
    low = [f for f in found if f["ratio"] < 4.5]
    assert not low, low


def test_describe_and_library_tabs(desktop, app_url, tmp_path):
    from playwright.sync_api import expect

    desktop.get_by_role("tab", name="Describe a video").click()
    clip = sorted(app_url.videos.glob("*.mp4"))[0]
    desktop.locator("#upload input[type=file]").set_input_files(str(clip))
    expect(desktop.locator("#describe-status")).to_contain_text("Described", timeout=60_000)
    expect(desktop.locator("#generated-caption")).not_to_be_empty()
    expect(desktop.locator("#similar img").first).to_be_visible()
    desktop.locator("#similar img").first.click()
    expect(desktop.locator("#similar-video video")).to_be_visible()
    _no_error_shown(desktop)
    desktop.screenshot(path=str(tmp_path / "describe.png"), full_page=True)

    desktop.get_by_role("tab", name="Library").click()
    expect(desktop.locator("#library-summary")).to_contain_text("14 videos")
    expect(desktop.locator("#library-grid img").first).to_be_visible()
    assert desktop.locator("#library-grid img").count() == 14
    assert not desktop.locator("#library-info").is_visible()  # technical details folded away
    desktop.locator("#library-grid img").nth(2).click()
    expect(desktop.locator("#browse-video video")).to_be_visible()
    desktop.locator("#library-details button").first.click()
    expect(desktop.locator("#library-info")).to_contain_text("fingerprint")
    assert str(app_url.videos) not in desktop.locator("#library-info").inner_text()
