"""Reading a folder of documents: formats, ids, titles, and files that cannot be read."""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from pathlib import Path

import pytest

from qa.documents import Document, html_to_text, read_corpus, read_document
from qa.embedding import Encoder
from qa.errors import EmptyCorpus
from qa.index import Index
from tests.conftest import CORPUS


def test_bundled_article_keeps_its_words_title_and_headings() -> None:
    (document,) = read_corpus(CORPUS).documents
    assert document.id == "putin-bush-pakistan-nuclear.md"
    assert document.title == "Putin and Bush on Pakistan’s Nuclear Proliferation"
    for heading in ("Background", "The Global Impact", "Reactions from the World Stage", "What Comes Next?"):
        assert f"\n## {heading}\n" in document.text
    source = (CORPUS.parent.parent / "shared" / "article" / "000_83e50c3c2d17d644.txt").resolve()
    if source.exists():  # the article as given: every word is kept, in order
        words = [w for w in document.text.split() if not w.startswith("#")]
        assert words[-len(source.read_text(encoding="utf-8").split()) :] == source.read_text(encoding="utf-8").split()


def test_folder_reads_txt_md_html_recursively_with_ids_and_titles(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("Plain text here.", encoding="utf-8")
    (tmp_path / "sub" / "b.md").write_text("# Bee Title\n\nMarkdown body.", encoding="utf-8")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Sea</title><style>p{color:red}</style></head><body><h2>Part</h2>"
        "<p>Visible &amp; kept.</p><script>var hidden = 1;</script><ul><li>one</li><li>two</li></ul></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "ignored.pptx").write_bytes(b"PK\x03\x04")  # a type qa does not read
    documents = {d.id: d for d in read_corpus(tmp_path).documents}
    assert sorted(documents) == ["a.txt", "c.html", "sub/b.md"]
    assert documents["a.txt"].title == "a"
    assert documents["sub/b.md"].title == "Bee Title"
    html = documents["c.html"]
    assert html.title == "Sea"
    assert html.text == "## Part\n\nVisible & kept.\n\n- one\n- two\n"
    assert "hidden" not in html.text and "color" not in html.text


def test_html_scripts_styles_and_markup_are_dropped() -> None:
    text, title = html_to_text("<p>Hi <b>there</b><script>alert(1)</script><style>x{}</style><!-- c --></p>")
    assert (text, title) == ("Hi there\n", "")


def test_unreadable_files_are_skipped_with_a_warning_naming_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "good.md").write_text("Good text.", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "blank.md").write_text("  \n\n ", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with caplog.at_level(logging.WARNING, logger="qa"):
        documents = read_corpus(tmp_path).documents
    assert [d.id for d in documents] == ["good.md"]
    log = caplog.text
    for name, why in [
        ("empty.txt", "no text"),
        ("blank.md", "no text"),
        ("latin1.txt", "not UTF-8"),
        ("binary.txt", "binary"),
    ]:
        assert re.search(rf"skipped \S*{re.escape(name)}: .*{why}", log), (name, log)


def test_missing_folder_and_folder_without_documents_raise_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(EmptyCorpus, match="does not exist or is not a folder"):
        read_corpus(tmp_path / "nope")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    with pytest.raises(EmptyCorpus, match=re.escape("has no readable documents: add UTF-8 .txt, .md or .html files")):
        read_corpus(tmp_path)


def test_links_leaving_the_folder_and_link_loops_are_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("Secret outside.", encoding="utf-8")
    corpus = tmp_path / "corpus"
    (corpus / "inner").mkdir(parents=True)
    (corpus / "inner" / "doc.md").write_text("Inside text.", encoding="utf-8")
    os.symlink(outside, corpus / "escape")
    os.symlink(outside / "secret.md", corpus / "secret-link.md")
    os.symlink(corpus, corpus / "inner" / "loop")
    assert [d.id for d in read_corpus(corpus).documents] == ["inner/doc.md"]


def test_document_rejects_a_bad_id() -> None:
    with pytest.raises(ValueError, match="non-empty string id"):
        Document(id=" ", text="x")


def test_offsets_index_the_text_as_read_not_the_file(tmp_path: Path, encoder: Encoder) -> None:
    """A hit's start:end slice the Document qa read (NFC, LF line ends, HTML reduced to text), not the file."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "treaties.html").write_text(
        "<html><head><title>Arms treaties</title></head><body><h1>Arms treaties</h1>"
        "<h2>Space</h2><p>The <b>Outer Space Treaty</b> of 1967 bans nuclear weapons in orbit.</p>"
        "<h2>Seabed</h2><p>The <i>Seabed Arms Control Treaty</i> of 1971 bans them on the ocean floor.</p>"
        "</body></html>",
        encoding="utf-8",
    )
    # Windows line ends, and an accent typed as its own character (NFC makes "é" one character).
    (corpus / "lighthouse.txt").write_bytes(
        "# Lighthouse notes\r\n\r\nThe keepers lived on the rock.\r\nSupplies came by boat.\r\n\r\n"
        "The cafe\u0301 keepers polished the great lens every night.\r\n".encode()
    )
    index = Index.build(corpus, progress=False)
    questions = {
        "treaties.html": "Which treaty bans weapons on the ocean floor?",
        "lighthouse.txt": "Who polished the lens?",
    }
    for doc_id, question in questions.items():
        hits = [hit for hit in index.search(question, k=len(index)) if hit.doc_id == doc_id]
        assert hits
        document = read_document(corpus / doc_id, doc_id)
        assert document is not None
        # The text as read, which README describes: normal form C, LF line ends.
        assert "\r" not in document.text and unicodedata.is_normalized("NFC", document.text)
        raw = (corpus / doc_id).read_bytes()
        for hit in hits:
            assert hit.start > 0  # after a heading: what the file holds before the passage shifts it
            assert document.text[hit.start : hit.end] == hit.text
            assert raw[hit.start : hit.end].decode("utf-8", "replace") != hit.text  # not the file's bytes
            assert raw.decode("utf-8")[hit.start : hit.end] != hit.text  # nor the file's characters
    best = index.search("Who polished the lens?", k=1)[0]
    assert best.doc_id == "lighthouse.txt" and "café keepers polished" in best.text
