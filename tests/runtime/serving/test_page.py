"""The page of ``ttmr serve`` in a real browser: headless Chromium (Debian's, driven by
Playwright) opens a shareable ``/?q=…`` link, sees results with players, plays one, asks for
more like a result, drops a file on the page; the screenshot in docs/img comes from here
(``TTMR_UPDATE_SCREENSHOT=1`` rewrites it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.catalog.store import track_id
from tests.serve_server import build_catalog, start_server, stop_server, write_library

CHROMIUM = Path("/usr/bin/chromium")
DOCS_SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "img" / "serve.png"
# The docs' screenshot is rewritten only when asked, so a test run leaves the checkout as it was.
UPDATE_SCREENSHOT = os.environ.get("TTMR_UPDATE_SCREENSHOT") == "1"
TRACKS, SECONDS = 6, 21.0

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (setup.sh)")


@pytest.fixture(scope="module")
def served(small_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    music = write_library(folder / "music", TRACKS, SECONDS)
    catalog = build_catalog(small_model_dir, folder / "music", folder / "catalog")
    running = start_server(small_model_dir, folder / "serve.log", "--catalog", catalog)
    yield running, music
    assert stop_server(running) == 0


@pytest.fixture(scope="module")
def page(served):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--autoplay-policy=no-user-gesture-required", "--mute-audio"],
        )
        opened = browser.new_page(viewport={"width": 960, "height": 900})
        yield opened
        browser.close()


def result_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results li", "items => items.map(i => i.dataset.trackId)")


def test_a_shared_link_searches_plays_finds_more_like_a_result_and_takes_a_dropped_file(
    served, page, tmp_path
):
    running, music = served
    page.goto(f"{running.url}/?q=a%20calm%20solo%20piano%20piece")
    page.wait_for_selector("#results li[data-track-id]")
    assert page.input_value("#q") == "a calm solo piano piece"
    ids = result_ids(page)
    assert sorted(ids) == sorted(track_id(str(path)) for path in music)
    assert page.locator("#results li audio").count() == TRACKS
    assert "ttmrpp" in page.text_content("#model")

    first = page.locator("#results li audio").first
    first.evaluate("audio => audio.play()")
    page.wait_for_function(
        "() => document.querySelector('#results li audio').currentTime > 0.2", timeout=30_000
    )
    assert first.evaluate("audio => audio.duration") == pytest.approx(SECONDS, abs=0.1)
    first.evaluate("audio => audio.pause()")

    chosen = ids[2]
    page.click(f'#results li[data-track-id="{chosen}"] button.more')
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('like')")
    page.wait_for_function(
        f"() => document.querySelector('#results li').dataset.trackId === '{chosen}'"
    )
    assert "score 1.0000" in page.text_content("#results li .meta")

    dropped = ids[4]
    page.evaluate(
        """async (id) => {
            const blob = await (await fetch(`/v1/tracks/${id}/audio`)).blob();
            const data = new DataTransfer();
            data.items.add(new File([blob], "dropped.flac", { type: "audio/flac" }));
            const drop = document.getElementById("drop");
            drop.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true }));
            drop.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
        }""",
        dropped,
    )
    page.wait_for_function(
        "() => document.querySelector('#status').textContent.includes('dropped.flac')"
    )
    page.wait_for_function(
        f"() => document.querySelector('#results li').dataset.trackId === '{dropped}'"
    )
    assert page.locator("#status.error").count() == 0

    page.goto(f"{running.url}/?q=a%20calm%20solo%20piano%20piece")
    page.wait_for_selector("#results li[data-track-id]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results audio')].every(a => a.readyState >= 1)"
    )
    shot = DOCS_SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_the_page_is_usable_with_the_keyboard_alone(served, page):
    running, _ = served
    page.goto(running.url)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("fast techno")
    page.keyboard.press("Enter")
    page.wait_for_selector("#results li[data-track-id]")
    assert "q=fast+techno" in page.url or "q=fast%20techno" in page.url
    labels = page.eval_on_selector_all(
        "input:not([type=file])", "inputs => inputs.map(i => i.labels.length)"
    )
    assert all(labels), labels
