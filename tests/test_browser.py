"""The web app in a real browser: Debian's Chromium driven by Playwright (never `playwright install`).

Without chromium these tests are skipped, unless QA_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.index import Index
from qa.ui.app import create_app
from qa.ui.render import OFFSETS_TITLE
from tests.conftest import require
from tests.conftest_ui import NPT, NPT_SECTION, QUESTION, qa_serve, serving

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOT_LOCAL = re.compile(r"^https?://(?!(127\.0\.0\.1|localhost)[:/])")
SCREENSHOT_VARIABLE = "QA_SCREENSHOT"
"""Where the answer page's screenshot goes: ``make screenshot`` sets it to README's docs/screenshot.png."""

XSS_DOCUMENT = """# Unsafe <b>markup</b> notes

## Payloads

This note about zebra stripes carries a script <script>window.__xss=1</script> inside it.

It also holds an image <img src=x onerror="window.__xss=2"> and a link [click](javascript:window.__xss=3) about zebras.

Template text about zebras: ${window.__xss=4} and {{constructor.constructor('window.__xss=5')()}}.
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        require("browser", False, "chromium is not installed: install it with `sudo apt-get install chromium`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("browser", False, "the playwright package is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    # Only the local server: a page that waited on the internet would be slow here and leak elsewhere.
    context.route(NOT_LOCAL, lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def article_url(article_index_path: Path) -> Iterator[str]:
    with serving(create_app(article_index_path, article_index_path.parent / "corpus")) as url:
        yield url


@pytest.fixture(scope="module")
def xss_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("xss")
    (root / "corpus").mkdir()
    (root / "corpus" / "unsafe.md").write_text(XSS_DOCUMENT, encoding="utf-8")
    Index.build(root / "corpus", progress=False).save(root / "index")
    with serving(create_app(root / "index", root / "corpus")) as url:
        yield url


def ask(page: Any, url: str, question: str, *, mode: str | None = None) -> Any:
    """Open the app, type the question, press Enter; return the results area once it has changed."""
    page.goto(url)
    results = page.locator("#results")
    results.locator(".qa-message").wait_for()  # the placeholder: the page is ready
    if mode:
        page.locator("#mode").get_by_text(mode, exact=True).click()
    box = page.locator("#question textarea, #question input").first
    box.fill(question)
    box.press("Enter")
    return results


def test_ask_shows_cards_with_the_answer_marked(
    page: Any, article_url: str, article_index: Index, tmp_path: Path
) -> None:
    results = ask(page, article_url, QUESTION)  # the default mode, hybrid
    first = results.locator(".qa-card").first
    first.wait_for()
    assert results.locator(".qa-card").count() == 5  # the default number of passages
    assert first.get_attribute("data-rank") == "1"
    assert NPT in first.locator(".qa-text").inner_text()
    expected = article_index.search(QUESTION, 5)[0]  # the page marks what the library highlights, asked as it asks
    assert first.locator("mark").all_inner_texts() == [expected.text[s:e] for s, e in expected.highlights]
    assert NPT_SECTION in first.locator(".qa-where").inner_text()
    footer = first.locator("footer").inner_text()
    assert footer == f"putin-bush-pakistan-nuclear.md · characters {expected.start}–{expected.end} of its text as read"
    assert first.locator("footer .qa-offsets").get_attribute("title") == OFFSETS_TITLE
    # Hybrid hits show how sure qa is (a probability), not the fusion score, and the bar is that share.
    assert expected.confidence is not None
    assert first.locator(".qa-score").inner_text().strip() == f"{expected.confidence:.0%} sure"
    assert first.locator(".qa-bar > span").get_attribute("style") == f"width: {expected.confidence * 100:.0f}%"
    # A temporary file unless asked for: a test run must not rewrite the tracked docs image.
    screenshot = Path(os.environ.get(SCREENSHOT_VARIABLE) or tmp_path / "screenshot.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_question_is_a_message_not_an_error(page: Any, article_url: str) -> None:
    results = ask(page, article_url, "   ")
    results.get_by_text("The question is empty").wait_for()
    page.wait_for_timeout(300)  # an error toast would have appeared by now
    assert page.locator(".toast-body, [data-testid='toast-body']").count() == 0
    assert results.locator(".qa-card").count() == 0


def test_clicking_an_example_answers_it(page: Any, article_url: str) -> None:
    page.goto(article_url)
    page.locator("#results .qa-message").wait_for()
    page.get_by_text("How did the world react to the talks?").click()
    page.locator("#results .qa-card").first.wait_for()
    assert page.locator("#question textarea, #question input").first.input_value() == (
        "How did the world react to the talks?"
    )
    assert page.locator("#results .qa-card mark").count() >= 1


def test_index_tab_describes_the_index(page: Any, article_url: str, article_index_path: Path) -> None:
    page.goto(article_url)
    page.get_by_role("tab", name="Index").click()
    info = page.locator("#index-info")
    # The state's own element, not the text "fresh", which "restart qa serve to refresh it" also holds.
    info.locator(".qa-fresh").wait_for()
    assert info.locator(".qa-fresh").inner_text() == "fresh" and info.locator(".qa-stale").count() == 0
    text = info.inner_text()
    assert "Putin and Bush on Pakistan’s Nuclear Proliferation" in text and "all-MiniLM-L6-v2" in text
    assert str(article_index_path.parent / "corpus") in text  # on loopback the page shows the full paths
    assert page.locator("#rebuild").is_disabled() and page.locator("#upload").is_disabled()
    assert "--allow-uploads" in page.get_by_text("Uploading and rebuilding are").inner_text()


def test_index_tab_on_a_public_address_shows_no_path_of_the_machine(
    page: Any, writable_article: tuple[Path, Path], tmp_path: Path
) -> None:
    """The real ``qa serve --host 0.0.0.0``: the Index tab names the folders, never the server's paths."""
    corpus, index = writable_article
    with qa_serve(index, corpus, tmp_path / "serve.log", "--host", "0.0.0.0") as url:
        page.goto(url)
        page.get_by_role("tab", name="Index").click()
        info = page.locator("#index-info")
        info.locator(".qa-fresh").wait_for()
        summary = info.locator("table").first.locator("tr").all()
        rows = {row.locator("th").inner_text(): row.locator("td").inner_text() for row in summary}
        assert (rows["Index folder"], rows["Corpus folder"]) == ("index", "corpus")
        assert str(tmp_path) not in page.content()


def test_a_document_added_from_the_page_passes_the_upload_route_guard(
    page: Any, writable_article: tuple[Path, Path], tmp_path: Path
) -> None:
    """The browser's own upload (what the guard of Gradio's upload route must let through when uploads are on)."""
    corpus, index = writable_article
    document = tmp_path / "giraffes.md"
    document.write_text("# Giraffes\n\nGiraffes sleep less than two hours a day, standing up.\n", encoding="utf-8")
    demo = create_app(index, corpus, allow_uploads=True)
    with serving(demo) as url:
        page.goto(url)
        page.get_by_role("tab", name="Index").click()
        page.locator("#upload-files input[type=file]").set_input_files(str(document))
        page.locator("#upload-files").get_by_text("giraffes.md").wait_for()  # uploaded to the server
        page.locator("#upload").click()
        page.locator("#index-status").get_by_text("Added giraffes.md").wait_for(timeout=120_000)
        assert (corpus / "giraffes.md").read_bytes() == document.read_bytes()
        assert demo.upload_file_set and not any(Path(path).exists() for path in demo.upload_file_set)


def test_document_markup_is_shown_as_text(page: Any, xss_url: str) -> None:
    results = ask(page, xss_url, "What about zebra stripes, the script, the image and the link?", mode="lexical")
    results.locator(".qa-card").first.wait_for()
    page.wait_for_timeout(500)  # time for an injected image's onerror to fire, were there one
    assert page.evaluate("typeof window.__xss") == "undefined"
    for tag in ("script", "img", "a", "b", "iframe"):
        assert results.locator(tag).count() == 0, f"a <{tag}> element was injected into the results"
    shown = results.inner_text()
    for literal in (
        "<script>window.__xss=1</script>",
        '<img src=x onerror="window.__xss=2">',
        "[click](javascript:window.__xss=3)",
        "${window.__xss=4}",
        "{{constructor.constructor('window.__xss=5')()}}",
        "Unsafe <b>markup</b> notes",
    ):
        assert literal in shown, f"{literal!r} is not shown literally"
    # The Index tab lists the document's title: inert there too.
    page.get_by_role("tab", name="Index").click()
    info = page.locator("#index-info")
    info.get_by_text("Unsafe <b>markup</b> notes").wait_for()
    assert info.locator("b").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
