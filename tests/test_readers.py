"""PDF and Word readers: what they keep of each file, the files they refuse and why, the sandbox and the cache.

The sample files are real PDFs and Word files (``../shared/data/pdf-samples``, ``docx-samples``); the
others are written here by real writers (reportlab, python-docx) or cut from the samples.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from qa.documents import read_corpus, read_document
from qa.readers import ReadError, cache, read_binary
from qa.readers.docx import extract_docx
from qa.readers.pdf import assemble, extract_pdf, split_lines
from qa.readers.worker import Worker
from tests.conftest import SHARED_DATA, require_data
from tests.make_files import docx_bomb, docx_bytes, many_pages_pdf, pdf_bytes, write

PDFS = SHARED_DATA / "pdf-samples"
DOCXS = SHARED_DATA / "docx-samples"
FOUR_PAGES = PDFS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
OUTLINE = PDFS / "006-pdflatex-outline" / "pdflatex-outline.pdf"
TWO_COLUMNS = PDFS / "026-latex-multicolumn" / "multicolumn.pdf"
ENCRYPTED = PDFS / "005-libreoffice-writer-password" / "libreoffice-writer-password.pdf"
IMAGES = PDFS / "007-imagemagick-images" / "imagemagick-images.pdf"
LONG = PDFS / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"


@pytest.fixture
def samples() -> None:
    require_data(PDFS, DOCXS)


def _paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


# ------------------------------------------------------------------------------------------- PDF


@pytest.mark.usefixtures("samples")
def test_pdf_pages_index_the_text_and_a_sentence_runs_on_across_a_page() -> None:
    extracted = extract_pdf(FOUR_PAGES.read_bytes())
    assert len(extracted.pages) == 4 and extracted.pages[0] == 0
    text = extracted.text
    # blindtext's paragraph, 23 times over 4 pages; page 2 starts mid-sentence ("...you will get no
    # | information."): the sentence is whole in the text, and the page starts at its second part.
    assert text.count("Hello, here is some text without a meaning.") == 23
    assert text[extracted.pages[1] :].startswith("information. Really?")
    assert text[: extracted.pages[1]].endswith("you will get no ")
    assert not re.search(r"(?m)^\d+$", text)  # the page numbers in the footer are gone


@pytest.mark.usefixtures("samples")
def test_pdf_outline_gives_sections_and_the_two_columns_read_in_order() -> None:
    outline = extract_pdf(OUTLINE.read_bytes()).text
    headings = re.findall(r"(?m)^## (.+)$", outline)
    assert headings == ["1 Foo", "2 Bar", "3 Baz", "4 Foo", "5 Bar", "6 Baz", "7 Foo", "8 Bar", "9 Baz"]
    columns = extract_pdf(TWO_COLUMNS.read_bytes())
    # lipsum's paragraphs 1 to 10 in order, each one paragraph, hyphenated words joined ("adip-|iscing")
    starts = ["Lorem ipsum dolor", "Nam dui ligula", "Nulla malesuada", "Quisque ullamcorper", "Fusce mauris."]
    positions = [columns.text.index(start) for start in starts]
    assert positions == sorted(positions)
    paragraphs = _paragraphs(columns.text)
    assert any(p.startswith("Lorem ipsum") and p.endswith("dignissim rutrum.") for p in paragraphs)
    assert "adipiscing elit" in columns.text and "consectetuer id" in columns.text
    assert "\ufffe" not in columns.text and not re.search(r"[\ufb00-\ufb06]", columns.text)
    assert "filled with Lorem Ipsum text" in columns.text  # "ﬁlled" in the file's font: a ligature


def test_running_headers_footers_and_page_numbers_are_dropped(tmp_path: Path) -> None:
    sections = [(f"Chapter {n}", [f"Chapter {n} tells of the {word} river. " * 120]) for n, word in enumerate("abcd")]
    data = pdf_bytes("Annual Report of the Rivers", sections, header="ACME Corp — Annual Report 2024")
    extracted = extract_pdf(data)
    assert len(extracted.pages) >= 3
    assert "ACME Corp" not in extracted.text and "Page " not in extracted.text
    assert extracted.title == "Annual Report of the Rivers"
    assert extracted.text.startswith("# Annual Report of the Rivers\n\n## Chapter 0\n\nChapter 0 tells of the a river.")
    assert re.findall(r"(?m)^## (.+)$", extracted.text) == ["Chapter 0", "Chapter 1", "Chapter 2", "Chapter 3"]


def test_lines_become_paragraphs_with_hyphens_and_ligatures_joined() -> None:
    long = "a line of the usual length for this page, with words"
    page = split_lines(
        f"Intro\r\n{long} exam-\r\nple of a hyphen and a ﬁne ligature, then\r\n{long} adip\ufffeiscing {long}\r\n"
        f"{long} and then it ends.\r\nShort last line.\r\n{long}\r\n{long} dig\ufffe"
    )
    # PDFium joined "adip-" and the next line itself: they are two printed lines again
    assert "fine ligature" in page[2] and page[3].endswith("adip\ufffe") and page[4].startswith("iscing")
    next_page = split_lines(f"nissim rutrum, the end of it.\r\n{long}\r\n{long}\r\n7")
    extracted = assemble([page, next_page], {})
    paragraphs = _paragraphs(extracted.text)
    assert paragraphs[0] == "Intro"
    assert "example of a hyphen and a fine ligature" in paragraphs[1]
    assert "adipiscing" in paragraphs[1] and paragraphs[1].endswith("Short last line.")
    # the word hyphenated across the page break is joined, and page 2 starts inside it... at its second part
    assert "dignissim rutrum" in paragraphs[2]
    assert extracted.text[extracted.pages[1] :].startswith("nissim rutrum")
    assert not extracted.text.rstrip().endswith("7")  # a bare page number at a page's foot


@pytest.mark.usefixtures("samples")
def test_pdf_title_is_its_metadata_title_else_the_file_name(tmp_path: Path) -> None:
    write(tmp_path / "a" / "google.pdf", (PDFS / "011-google-doc-document" / "google-doc-document.pdf").read_bytes())
    write(tmp_path / "a" / "crazy.pdf", (PDFS / "021-pdfa" / "crazyones-pdfa.pdf").read_bytes())
    documents = {d.id: d for d in read_corpus(tmp_path / "a").documents}
    assert documents["google.pdf"].title == "PDF Example Document"
    assert documents["crazy.pdf"].title == "crazy"
    assert documents["crazy.pdf"].pages == (0,)


# ------------------------------------------------------------------------------------------ Word


@pytest.mark.usefixtures("samples")
def test_word_samples_headings_lists_titles_and_no_headers_or_footers() -> None:
    header_footer = extract_docx((DOCXS / "hdr-header-footer.docx").read_bytes())
    assert "section with header" in header_footer.text
    assert "Header for section" not in header_footer.text and "Footer for section" not in header_footer.text
    numbered = extract_docx((DOCXS / "num-having-numbering-part.docx").read_bytes())
    assert numbered.text == "- Paragraph having List Number style.\n"
    styles = extract_docx((DOCXS / "par-known-styles.docx").read_bytes())
    assert "## Heading 1\n\nBody Text" in styles.text and styles.title == "Heading 1"
    with pytest.raises(ReadError, match="no text in its body"):
        extract_docx((DOCXS / "tbl-having-tables.docx").read_bytes())  # its tables are empty


def test_word_structure_lists_stay_with_their_lead_in_and_tables_are_rows(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Field Guide", level=0)
    document.add_heading("Tools", level=1)
    document.add_paragraph("Pack the following before you leave:")
    for item in ("a compass", "a map of the valley", "two litres of water"):
        document.add_paragraph(item, style="List Bullet")
    document.add_heading("Distances", level=2)
    table = document.add_table(rows=3, cols=3)
    for row, cells in zip(
        table.rows, [("From", "To", "km"), ("Hut", "Lake", "4.5"), ("Lake", "Pass", "7")], strict=True
    ):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.sections[0].header.paragraphs[0].text = "Draft for the club"
    document.sections[0].footer.paragraphs[0].text = "Printed on recycled paper"
    path = tmp_path / "guide.docx"
    document.save(path)
    extracted = extract_docx(path.read_bytes())
    assert extracted.title == "Field Guide"  # no title property: the Title paragraph
    assert extracted.text == (
        "# Field Guide\n\n## Tools\n\nPack the following before you leave:\n\n"
        "- a compass\n- a map of the valley\n- two litres of water\n\n### Distances\n\n"
        "| From | To | km |\n| Hut | Lake | 4.5 |\n| Lake | Pass | 7 |\n"
    )
    import qa

    (passage, table_passage) = qa.split_document(extracted.text)
    assert passage.section == "Tools" and extracted.text[passage.start : passage.end].endswith("two litres of water")
    assert table_passage.section == "Distances"


def test_word_title_property_wins() -> None:
    data = docx_bytes("The Property Title", [("Part", ["Some text."])])
    assert extract_docx(data).title == "The Property Title"


# ----------------------------------------------------------------------------------- bad files


def _warnings(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    found = {}
    for record in caplog.records:
        match = re.match(r"skipped (\S+): (.*)", record.getMessage())
        if match:
            found[Path(match.group(1)).name] = match.group(2)
    return found


@pytest.mark.usefixtures("samples")
def test_bad_files_cost_one_file_each_with_the_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "corpus"
    write(corpus / "good.md", "# Good\n\nThis one is fine.")
    write(corpus / "good.pdf", FOUR_PAGES.read_bytes())
    write(corpus / "encrypted.pdf", ENCRYPTED.read_bytes())
    write(corpus / "scanned.pdf", IMAGES.read_bytes())
    write(corpus / "truncated.pdf", OUTLINE.read_bytes()[:20_000])
    write(corpus / "word-renamed.pdf", (DOCXS / "test.docx").read_bytes())
    write(corpus / "text-renamed.docx", "Just text, named as a Word file.\n")
    write(corpus / "truncated.docx", (DOCXS / "test.docx").read_bytes()[:9_000])
    write(corpus / "bomb.pdf", many_pages_pdf(12_000))
    write(corpus / "empty.pdf", b"")
    with caplog.at_level(logging.WARNING, logger="qa"):
        documents = read_corpus(corpus).documents
    assert sorted(d.id for d in documents) == ["good.md", "good.pdf"]
    why = _warnings(caplog)
    assert "encrypted (password-protected)" in why["encrypted.pdf"] and "without a password" in why["encrypted.pdf"]
    assert "no text layer" in why["scanned.pdf"] and "run OCR" in why["scanned.pdf"]
    for name in ("truncated.pdf", "word-renamed.pdf", "empty.pdf"):
        assert "not a readable PDF" in why[name], why
    for name in ("text-renamed.docx", "truncated.docx"):
        assert "not a readable Word .docx file" in why[name], why
    assert "12,000 pages" in why["bomb.pdf"] and "split it" in why["bomb.pdf"]


@pytest.mark.usefixtures("samples")
def test_a_file_over_the_time_limit_is_skipped_and_the_next_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = Worker(timeout=0.05)
    with pytest.raises(ReadError, match=r"took longer than 0.05 s to parse.*QA_READ_TIMEOUT") as error:
        worker.extract(".pdf", LONG.read_bytes())  # 117 pages: far more than 50 ms
    assert error.value.kind == "timeout"
    worker.timeout = 30
    assert "Hello, here is some text" in worker.extract(".pdf", FOUR_PAGES.read_bytes()).text
    worker.close()


def test_a_file_over_the_memory_limit_is_skipped_and_the_worker_replaced() -> None:
    worker = Worker(timeout=60, memory_mb=300)
    with pytest.raises(ReadError, match=r"needs more than the 300 MiB.*QA_READ_MEMORY_MB") as error:
        worker.extract(".docx", docx_bomb())  # half a megabyte that unpacks to 200 MB of XML
    assert error.value.kind == "memory"
    assert "Some text." in worker.extract(".docx", docx_bytes("T", [("Part", ["Some text."])])).text
    worker.close()


@pytest.mark.usefixtures("samples")
def test_a_parser_that_dies_costs_its_file_only() -> None:
    worker = Worker(timeout=60)
    worker.extract(".pdf", FOUR_PAGES.read_bytes())
    process = worker._process
    assert process is not None
    killer = threading.Timer(0.05, lambda: os.kill(process.pid, signal.SIGSEGV))  # as a crash in PDFium would
    killer.start()
    try:
        with pytest.raises(ReadError, match=r"parser crashed on it \(signal SIGSEGV\)") as error:
            for _ in range(50):  # a few parses of the long file: the signal lands during one
                worker.extract(".pdf", LONG.read_bytes())
    finally:
        killer.cancel()
    assert error.value.kind == "crash"
    assert worker.extract(".pdf", FOUR_PAGES.read_bytes()).pages[0] == 0  # a new worker took over
    worker.close()


# --------------------------------------------------------------------------------------- cache


@pytest.mark.usefixtures("samples")
def test_an_unchanged_file_is_read_from_the_cache_not_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    path = write(tmp_path / "corpus" / "paper.pdf", TWO_COLUMNS.read_bytes())
    first = read_document(path, "paper.pdf")
    assert first is not None and len(list((tmp_path / "cache").rglob("*.json"))) == 1
    # A limit no parse can meet: the document still comes, so it was not parsed again.
    monkeypatch.setenv("QA_READ_TIMEOUT", "0.000001")
    assert read_document(path, "paper.pdf") == first
    moved = write(tmp_path / "corpus" / "moved.pdf", path.read_bytes())  # same bytes, another name
    assert read_document(moved, "moved.pdf").text == first.text  # type: ignore[union-attr]
    # A changed file is parsed: here it cannot be, under that limit, and says so.
    changed = write(tmp_path / "corpus" / "paper.pdf", FOUR_PAGES.read_bytes())
    with caplog.at_level(logging.WARNING, logger="qa"):
        assert read_document(changed, "paper.pdf") is None
    assert "took longer than" in caplog.text
    # Under a larger limit, a file that ran over a smaller one is tried again.
    monkeypatch.setenv("QA_READ_TIMEOUT", "60")
    assert read_document(changed, "paper.pdf") is not None


@pytest.mark.usefixtures("samples")
def test_refusals_are_cached_and_the_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    data = ENCRYPTED.read_bytes()
    with pytest.raises(ReadError, match="encrypted"):
        read_binary(data, ".pdf")
    monkeypatch.setenv("QA_READ_TIMEOUT", "0.000001")
    with pytest.raises(ReadError, match="encrypted"):  # remembered, not parsed again
        read_binary(data, ".pdf")
    monkeypatch.setenv("QA_READ_TIMEOUT", "60")
    for sample in (FOUR_PAGES, OUTLINE, TWO_COLUMNS):
        read_binary(sample.read_bytes(), ".pdf")
    entries = sorted((tmp_path / "cache").rglob("*.json"), key=lambda p: p.stat().st_mtime)
    assert len(entries) == 4
    os.utime(entries[0], (1, 1))  # the least recently used
    assert cache.prune(max_bytes=sum(p.stat().st_size for p in entries) - 1) == 1
    assert not entries[0].exists() and all(p.exists() for p in entries[1:])


@pytest.mark.usefixtures("samples")
def test_concurrent_readers_and_writers_see_whole_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    data = FOUR_PAGES.read_bytes()
    expected = extract_pdf(data)
    key = cache.digest(data)
    limits = {"timeout": 60.0, "memory_mb": 1024.0}
    seen: list[object] = []
    stop = time.monotonic() + 1.0

    def write_often() -> None:
        while time.monotonic() < stop:
            cache.store(key, ".pdf", expected, limits)

    def read_often() -> None:
        while time.monotonic() < stop:
            seen.append(cache.lookup(key, ".pdf", limits))

    threads = [threading.Thread(target=f) for f in (write_often, write_often, read_often)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen and all(found is None or found == expected for found in seen)
    assert any(found == expected for found in seen)
    assert not list((tmp_path / "cache").rglob(".tmp-*"))  # no temporary file left behind
    entry = next((tmp_path / "cache").rglob("*.json"))
    entry.write_text('{"sha256": "', encoding="utf-8")  # a damaged entry is ignored, not an error
    assert cache.lookup(key, ".pdf", limits) is None
