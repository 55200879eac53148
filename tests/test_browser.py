"""The real page in headless Chromium: search, select a result, describe an upload.

Needs /usr/bin/chromium (`make chromium` installs it; CI does) and the playwright Python package;
never downloads a browser. Screenshots go to the test's tmp folder; with PROMPTSWITCH_SCREENSHOT set,
the app starts with its default settings (bundled model and library where present) and the search
screenshot is copied to docs/screenshot.png for the README.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} is missing (install it with `make chromium` or apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + ": CI must run the browser test")  # `make test` installs it as root
        pytest.skip(msg)
    pytest.importorskip("playwright.sync_api")
    from shapes_library import make_shapes_library

    from bench.app_server import AppServer

    root = tmp_path_factory.mktemp("appbrowser")
    lib, videos = make_shapes_library(root, "random:tiny", num=6)
    if os.environ.get("PROMPTSWITCH_SCREENSHOT"):
        args = ["--cache-dir", str(root / "cache")]  # the defaults, as `make demo` starts
    else:
        args = ["--model", "random:tiny", "--library", str(lib), "--cache-dir", str(root / "cache")]
    with AppServer(args, env={"GRADIO_TEMP_DIR": str(root / "gradio")}, log_path=root / "app.log") as srv:
        srv.videos = videos
        yield srv


@pytest.fixture()
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


def test_search_select_and_describe(page, app_url, tmp_path):
    from playwright.sync_api import expect

    page.goto(app_url.url)
    expect(page.locator("#banner")).to_contain_text("Model:")
    expect(page.locator("#banner")).to_contain_text("Library:")

    # Search: thumbnails with captions, best first
    page.locator("#query textarea").fill("a red circle moves left")
    page.locator("#search-btn").click()
    expect(page.locator("#search-status")).to_contain_text("results for")
    expect(page.locator("#results img").first).to_be_visible()
    labels = page.locator("#results .caption-label")
    expect(labels.first).to_be_visible()
    texts = labels.all_inner_texts()
    assert len(texts) >= 3
    parsed = [re.match(r"^(\d+)\. (.+) · (-?\d+\.\d+)$", t.strip()) for t in texts]
    assert all(parsed), texts
    assert [int(m.group(1)) for m in parsed] == list(range(1, len(texts) + 1))
    scores = [float(m.group(3)) for m in parsed]
    assert scores == sorted(scores, reverse=True)
    alts = [page.locator("#results img").nth(i).get_attribute("alt") or "" for i in range(len(texts))]
    assert any(a for a in alts)
    expect(page.locator("#search-status")).to_contain_text("results for")

    # Select the top result: the similarity plot and the best moment appear
    page.locator("#results img").first.click()
    expect(page.locator("#similarity-plot img")).to_be_visible()
    expect(page.locator("#best-moment")).to_contain_text("Best-matching moment")
    expect(page.locator("#result-info")).to_contain_text(parsed[0].group(2).split(" · ")[0][:10])
    expect(page.locator("#result-video video, #result-strip img").first).to_be_visible()
    page.wait_for_timeout(500)
    shot = tmp_path / "search.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("PROMPTSWITCH_SCREENSHOT"):
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "docs" / "screenshot.png")

    # Bad query: a message, and the page keeps working
    page.locator("#query textarea").fill("   ")
    page.locator("#search-btn").click()
    expect(page.locator("#search-status")).to_contain_text("empty")

    # An example query fills the box and runs the search
    example = page.locator("#search-examples button").first
    text = example.inner_text().strip()
    example.click()
    expect(page.locator("#search-status")).to_contain_text("results for")
    assert page.locator("#query textarea").input_value() == text

    # Describe: upload a clip, see ranked captions and similar videos
    page.get_by_role("tab", name="Describe a video").click()
    clip = sorted(app_url.videos.glob("*.mp4"))[0]
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    expect(page.locator("#describe-status")).to_contain_text("Described", timeout=60_000)
    expect(page.locator("#library-captions")).to_contain_text(re.compile(r"\w+ \w+"))
    expect(page.locator("#generated-caption")).not_to_be_empty()
    expect(page.locator("#similar img").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "describe.png"), full_page=True)

    # Library tab
    page.get_by_role("tab", name="Library").click()
    expect(page.locator("#library-grid img").first).to_be_visible()
    page.locator("#library-details button").first.click()
    expect(page.locator("#library-info")).to_contain_text("fingerprint")
