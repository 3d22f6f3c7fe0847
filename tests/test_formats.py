"""PDF and Word files in a corpus, end to end: built with the other formats, answered with their pages,
unread types counted, uploaded through the web app's checks."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import qa
from qa.documents import read_corpus
from qa.passage import Hit, Passage, page_at
from qa.ui.render import hit_card
from qa.ui.uploads import MAX_BINARY_UPLOAD_BYTES, UploadRejected, store_upload
from tests.conftest import SHARED_DATA, require_data
from tests.make_files import docx_bytes, pdf_bytes, write
from tests.test_cli import run_qa

ENCRYPTED = SHARED_DATA / "pdf-samples" / "005-libreoffice-writer-password" / "libreoffice-writer-password.pdf"
RIVERS = [
    ("The Nile", ["The Nile flows north through eleven countries and empties into the Mediterranean Sea. " * 12]),
    (
        "The Mekong",
        ["The Mekong floods every year in the summer monsoon, and its fish feed sixty million people. " * 12],
    ),
    ("The Amazon", ["The Amazon carries more water than the next seven largest rivers together. " * 12]),
    ("The Danube", ["The Danube passes through four capital cities on its way to the Black Sea. " * 12]),
]


Mixed = tuple[Path, Path, "subprocess.CompletedProcess[str]"]
"""The mixed corpus, its index, and what `qa build` printed."""


def _page_holding(pdf: Path, sentence: str) -> int:
    """The page whose text holds ``sentence``, read by PDFium directly: an account independent of qa's."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    for number in range(len(document)):
        if sentence in " ".join(document[number].get_textpage().get_text_range().split()):
            return number + 1
    raise AssertionError(f"{sentence!r} is on no page of {pdf}")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Mixed:
    """A corpus of every format, a file qa refuses and files of types it does not read; built with `qa build`."""
    require_data(ENCRYPTED)
    base = tmp_path_factory.mktemp("mixed")
    corpus = base / "corpus"
    write(corpus / "rivers.pdf", pdf_bytes("Rivers of the World", RIVERS, page_size="A5"))
    write(
        corpus / "guide.docx",
        docx_bytes("Hiking Guide", [("Water", ["Carry two litres of water for every three hours of walking."])]),
    )
    write(corpus / "notes.md", "# Birds\n\nSwifts can stay in the air for ten months without landing.\n")
    write(corpus / "page.html", "<title>Bees</title><p>A honey bee visits about a thousand flowers a day.</p>")
    write(corpus / "plain.txt", "Octopuses have three hearts and blue blood.\n")
    write(corpus / "locked.pdf", ENCRYPTED.read_bytes())
    for name in ("deck.pptx", "old/deck2.pptx", "letter.odt", "photo.JPG"):
        write(corpus / name, b"not read")
    built = run_qa("build", str(corpus), "-o", str(base / "index"), "-q")
    assert built.returncode == 0, built.stderr
    return corpus, base / "index", built


def test_build_reads_every_format_skips_the_bad_file_and_counts_unread_types(mixed: Mixed) -> None:
    _, index, built = mixed
    assert built.stdout.startswith("indexed 5 documents, ")
    assert built.stdout.splitlines()[-1] == "not read: 2 .pptx, 1 .jpg, 1 .odt"
    assert re.search(r"skipped \S*locked\.pdf: it is encrypted \(password-protected\)", built.stderr)
    info = run_qa("info", "-i", str(index))
    assert info.returncode == 0 and "not read: 2 .pptx, 1 .jpg, 1 .odt" in info.stdout and "fresh" in info.stdout
    as_json = json.loads(run_qa("info", "-i", str(index), "--json").stdout)
    assert as_json["not_read"] == {".pptx": 2, ".jpg": 1, ".odt": 1} and as_json["stale"] is False
    titles = {d.id: d.title for d in qa.Index.load(index).documents}
    assert titles == {
        "guide.docx": "Hiking Guide",
        "notes.md": "Birds",
        "page.html": "Bees",
        "plain.txt": "plain",
        "rivers.pdf": "Rivers of the World",
    }


def test_a_pdf_hit_carries_the_page_its_answer_is_on(mixed: Mixed) -> None:
    corpus, index, _ = mixed
    documents = {d.id: d for d in read_corpus(corpus).documents}
    rivers = documents["rivers.pdf"]
    assert len(rivers.pages) >= 3
    for question, river in [
        ("Which river floods in the summer monsoon?", "Mekong"),
        ("Which river passes through four capital cities?", "Danube"),
    ]:
        asked = run_qa("ask", question, "-i", str(index), "-k", "3", "--json")
        assert asked.returncode == 0, asked.stderr
        hit = json.loads(asked.stdout.splitlines()[0])
        assert hit["doc_id"] == "rivers.pdf" and hit["section"] == f"The {river}"
        assert rivers.text[hit["start"] : hit["end"]] == hit["text"]  # offsets index the document's text
        start, end = hit["highlights"][0]
        sentence = hit["text"][start:end]
        assert river in sentence
        assert hit["page"] == _page_holding(corpus / "rivers.pdf", sentence)
        printed = run_qa("ask", question, "-i", str(index), "-k", "1").stdout
        assert f"rivers.pdf, page {hit['page']}, characters {hit['start']}–{hit['end']}" in printed
    other = json.loads(run_qa("ask", "How many hearts has an octopus?", "-i", str(index), "-k", "1", "--json").stdout)
    assert other["doc_id"] == "plain.txt" and other["page"] is None


def test_an_index_without_pages_loads_and_its_hits_have_none(article_index: qa.Index, article_index_path: Path) -> None:
    # An index saved before pages existed has no "pages" in documents.jsonl, as one of text files has today.
    assert '"pages"' not in (article_index_path / "documents.jsonl").read_text(encoding="utf-8")
    (hit,) = article_index.search("Which treaty has Pakistan not joined?", 1)
    assert hit.page is None and hit.to_dict()["page"] is None


def test_page_at_and_the_result_card() -> None:
    assert page_at((0, 100, 250), 0) == 1 and page_at((0, 100, 250), 100) == 2 and page_at((0, 100, 250), 999) == 3
    assert page_at((), 5) is None
    hit = Hit(Passage("r.pdf#3", "r.pdf", "Rivers", "The Nile", 10, 20, "The Nile."), 1.0, 1, ((0, 9),), page=3)
    card = hit_card(hit, 1.0)
    assert 'r.pdf · <span class="qa-page">page 3</span> · ' in card and "characters 10–20" in card
    assert "page" not in hit_card(Hit(hit.passage, 1.0, 1), 1.0).split("<footer>")[1]


def test_uploads_take_pdf_and_word_files_that_can_be_read(tmp_path: Path) -> None:
    require_data(ENCRYPTED)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pdf = pdf_bytes("Rivers", RIVERS[:1])
    assert store_upload(corpus, "rivers.pdf", pdf) == corpus.resolve() / "rivers.pdf"
    word = docx_bytes("Guide", [("Water", ["Carry water."])])
    assert store_upload(corpus, "My Guide.DOCX", word) == corpus.resolve() / "My_Guide.docx"
    for name, data, why in [
        ("locked.pdf", ENCRYPTED.read_bytes(), "locked.pdf cannot be read: it is encrypted"),
        ("broken.pdf", pdf[: len(pdf) // 2], "broken.pdf cannot be read: it is not a readable PDF"),
        ("fake.docx", b"plain text pretending", "fake.docx cannot be read: it is not a readable Word .docx file"),
        ("huge.pdf", b"%PDF" + b"0" * MAX_BINARY_UPLOAD_BYTES, "the limit is 25 MB per file"),
        ("slides.pptx", b"x", "not a document type qa reads (.pptx)"),
    ]:
        with pytest.raises(UploadRejected, match=re.escape(why)):
            store_upload(corpus, name, data)
    assert sorted(p.name for p in corpus.iterdir()) == ["My_Guide.docx", "rivers.pdf"]
