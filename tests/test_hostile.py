"""Hostile and broken input, each with its exact behaviour.

Already covered elsewhere, and extended here: long and empty questions (test_index.py), binary and
non-UTF-8 files, HTML markup, links leaving the corpus and link loops (test_documents.py), a manifest
lacking fields and a passages file shorter than the FAISS file (test_index.py), splitting arbitrary
text (test_splitting.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qa
from qa.documents import read_corpus, read_document
from qa.embedding import Encoder
from qa.errors import EmptyCorpus, IncompatibleIndex
from qa.index_files import file_record
from qa.retrieval import MAX_QUESTION_CHARS, check_question
from qa.splitting import DEFAULT_MAX_WORDS, max_passage_chars, split_document
from tests.conftest import CORPUS
from tests.conftest_ui import NPT, QUESTION, serving
from tests.test_cli import run_qa

TOO_LONG = "the question has 100,000 characters; ask in at most 2,000"


def _hits(hits: list[qa.Hit]) -> list[tuple[qa.Passage, float, tuple[tuple[int, int], ...]]]:
    return [(hit.passage, hit.score, hit.highlights) for hit in hits]


@pytest.fixture(scope="module")
def server(article_index_path: Path) -> Iterator[str]:
    from qa.ui.app import create_app

    with serving(create_app(article_index_path, article_index_path.parent / "corpus")) as url:
        yield url


def _search(url: str, question: str, k: int = 3) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = Client(url, verbose=False, analytics_enabled=False).predict(
        question, k, api_name="/search"
    )
    return hits


# ------------------------------------------------------------------------------------------ questions


def test_a_100000_character_question_is_refused_with_a_message_everywhere(server: str) -> None:
    question = "x" * 100_000
    with pytest.raises(AppError, match=re.escape(TOO_LONG[0].upper() + TOO_LONG[1:])):
        _search(server, question)
    asked = run_qa("ask", question, "-i", "/nonexistent")  # refused before any index is opened
    assert asked.returncode == 1 and asked.stderr.startswith(f"qa: error: {TOO_LONG}"), asked.stderr
    # Far longer: refused from its length alone, before its characters are looked at.
    started = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape("the question has 10,000,000 characters; ask in at most 2,000")):
        check_question("é" * 10_000_000)
    assert time.perf_counter() - started < 0.5
    assert check_question("x" * MAX_QUESTION_CHARS) == "x" * MAX_QUESTION_CHARS  # the limit itself is fine


def test_nul_bytes_and_control_characters_in_a_question_count_as_spaces(article_index: qa.Index, server: str) -> None:
    dirty = "\x00Which\x00treaty\x07has\x1b[0mPakistan\x7fnot\u0085joined?\x00"
    assert check_question(dirty) == "Which treaty has [0mPakistan not joined?"
    assert _hits(article_index.search(dirty, 3)) == _hits(article_index.search(check_question(dirty), 3))
    clean = "\x00Which\x00treaty\x07has\x1bPakistan\x7fnot\u0085joined?\x00"
    assert _hits(article_index.search(clean, 3)) == _hits(article_index.search(QUESTION, 3))
    assert NPT in _search(server, clean)[0]["text"]  # JSON carries the NUL bytes to the server intact
    with pytest.raises(AppError, match="The question is empty"):
        _search(server, "\x00\x01\x1b\u202e")


def test_right_to_left_and_combining_text_in_questions_and_documents(tmp_path: Path, server: str) -> None:
    documents = {
        "he.md": "# שלום\n\nהַמְּדִינָה חָתְמָה עַל הָאֲמָנָה בְּשָׁנָה שֶׁעָבְרָה.\n",  # pointed Hebrew: letters and marks
        "ar.md": "# معاهدة\n\nوقّعت الدولة على مُعاهدة عدم الانتشار النووي في العام الماضي.\n",
        "fr.md": unicodedata.normalize("NFD", "# Café\n\nZoë ordered crème brûlée at the café in Zürich.\n"),
    }
    for name, text in documents.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    index = qa.Index.build(tmp_path, progress=False)
    for passage in index.passages:  # stored in normal form C; offsets slice it, marks and all
        assert passage.text == unicodedata.normalize("NFC", documents[passage.doc_id])[passage.start : passage.end]
    # The same words in the question, with a right-to-left mark and an override around them, find the document.
    assert index.search("\u200fמְּדִינָה חָתְמָה\u202e", 1, mode="lexical")[0].doc_id == "he.md"
    assert index.search("مُعاهدة عدم الانتشار", 1, mode="lexical")[0].doc_id == "ar.md"
    # Letters stored decomposed are found by a question typed composed, and the reverse.
    for question in ("crème brûlée", unicodedata.normalize("NFD", "crème brûlée")):
        hit = index.search(question, 1, mode="lexical")[0]
        assert hit.doc_id == "fr.md" and hit.score > 0
    # Marks alone are a question (of nothing known): answered, not refused.
    assert len(index.search("\u0301\u05b0\u064e", 3)) == 3
    for hit in _search(server, "\u200fמה קרה?\u200f ماذا حدث؟ e\u0301", 5):
        assert all(0 <= start < end <= len(hit["text"]) for start, end in hit["highlights"])


def test_a_folder_document_is_read_in_normal_form_c_with_control_characters_as_spaces(tmp_path: Path) -> None:
    raw = unicodedata.normalize("NFD", "Zoë's café\x1b[31m sold\x07 crème\x0c brûlée.\u0085\tEnd.\r\n")
    (tmp_path / "doc.txt").write_text(raw, encoding="utf-8")
    document = read_document(tmp_path / "doc.txt", "doc.txt")
    assert document is not None
    assert document.text == "Zoë's café [31m sold  crème  brûlée. \tEnd.\n"
    (tmp_path / "clear\x1b[2J.txt").write_text("Text.", encoding="utf-8")  # a file name that clears a terminal
    named = read_document(tmp_path / "clear\x1b[2J.txt", "clear\x1b[2J.txt")
    assert named is not None and named.title == "clear [2J"


# ------------------------------------------------------------------------------------------ documents


def test_a_10_mb_document_of_one_line_without_punctuation_is_split_by_words_quickly(
    tmp_path: Path, encoder: Encoder
) -> None:
    words = [w.strip(".,;:’'“”()") for w in (CORPUS / "putin-bush-pakistan-nuclear.md").read_text().split()]
    vocabulary = [w.lower() for w in words if w.isalpha()] + ["pneumonoultramicroscopic", "xq7zzk", "thé"]
    line = " ".join(vocabulary[i * 7919 % len(vocabulary)] for i in range(1_600_000))[:10_000_000]
    (tmp_path / "big.txt").write_text(line, encoding="utf-8")
    started = time.perf_counter()
    document = read_document(tmp_path / "big.txt", "big.txt")
    assert document is not None and document.text == line
    spans = split_document(document.text)
    assert time.perf_counter() - started < 15  # about a second on an idle machine
    assert all(len(line[s.start : s.end].split()) <= DEFAULT_MAX_WORDS for s in spans)
    assert [s.start for s in spans[1:]] == [line.index(" ", s.end) + 1 for s in spans[:-1]]  # nothing skipped
    assert spans[0].start == 0 and spans[-1].end == len(line.rstrip())
    # With the model's tokenizer (as a build splits), no passage is over the model's limit; a prefix of
    # a megabyte shows it, the whole line would take a build's time.
    prefix = line[: line.index(" ", 1_000_000)]
    limit = encoder.max_tokens - 2
    pieces = split_document(prefix, max_tokens=limit, count_tokens=lambda t: encoder.count_tokens(t) - 2)
    assert all(encoder.count_tokens(prefix[s.start : s.end]) <= encoder.max_tokens for s in pieces)
    assert " ".join(prefix[s.start : s.end] for s in pieces).split() == prefix.split()


@pytest.mark.parametrize(
    ("text", "tokens_each"),
    [
        ("中华人民共和国是一个位于东亚的国家，首都是北京。" * 200, True),  # Chinese: no spaces at all
        ("A picture: data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" * 40_000 + " and more.", False),
        ("a" * 3_000_000, False),  # one "word" of 3 MB
    ],
)
def test_text_without_spaces_is_cut_between_characters(text: str, tokens_each: bool, encoder: Encoder) -> None:
    limit = encoder.max_tokens - 2
    spans = split_document(text, max_tokens=limit, count_tokens=lambda t: encoder.count_tokens(t) - 2)
    assert "".join(text[s.start : s.end] for s in spans).replace(" ", "") == text.replace(" ", "")
    assert max(s.end - s.start for s in spans) <= max_passage_chars(DEFAULT_MAX_WORDS)
    assert all(encoder.count_tokens(text[s.start : s.end]) <= encoder.max_tokens for s in spans[:50])
    if tokens_each:
        assert len(spans) > 1


def test_a_document_of_only_headings_adds_no_passage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "headings.md").write_text("# Title\n\n## One\n\n### Two\n#### Three\n", encoding="utf-8")
    with (
        caplog.at_level(logging.WARNING, logger="qa"),
        pytest.raises(EmptyCorpus, match=re.escape("the documents have no text to index; add text to them")),
    ):
        qa.Index.build(tmp_path, progress=False)
    assert "headings.md has no text to index: headings alone are not passages" in caplog.text
    (tmp_path / "text.md").write_text("# Notes\n\nSome text under a title.\n", encoding="utf-8")
    index = qa.Index.build(tmp_path, progress=False)
    assert [(d.id, d.passages) for d in index.documents] == [("headings.md", 0), ("text.md", 1)]


def test_duplicate_documents_and_passages_are_indexed_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shared = "Glaciers in Patagonia retreat faster every year as the summers warm."
    (tmp_path / "a.md").write_text(f"{shared}\n\nThe ice fields shrink.\n", encoding="utf-8")
    (tmp_path / "b-copy.md").write_text(f"{shared}\n\nThe ice fields shrink.\n", encoding="utf-8")
    (tmp_path / "c.md").write_text(f"{shared}\n\nCondors nest on the cliffs.\n", encoding="utf-8")
    (tmp_path / "d.md").write_text(f"{shared}\n\n{shared}\n", encoding="utf-8")  # repeats itself
    with caplog.at_level(logging.WARNING, logger="qa"):
        index = qa.Index.build(tmp_path, max_words=12, progress=False)
    assert "b-copy.md repeats a.md, indexed already: it adds no passage" in caplog.text
    texts = [p.text for p in index.passages]
    assert len(texts) == len(set(texts))
    assert {d.id: d.passages for d in index.documents} == {"a.md": 2, "b-copy.md": 0, "c.md": 1, "d.md": 0}
    for mode in ("hybrid", "dense", "lexical"):
        hits = index.search("Why do glaciers in Patagonia retreat?", 10, mode=mode)
        assert len(hits) == len(index) and len({h.text for h in hits}) == len(hits)
        assert hits[0].text == shared and hits[0].doc_id == "a.md"


def test_html_scripts_styles_and_hidden_parts_are_not_indexed(tmp_path: Path) -> None:
    page = (
        "<!doctype html><html><head><title>Birds</title><style>.x{content:'stylesecret'}</style>"
        "<script>var a = '</div>scriptsecret';</script>"  # no </head>: the body still counts
        '<body onload="onloadsecret()"><h1>Herons</h1><p>Herons wade in <b>shallow</b> water.</p>'
        "<SCRIPT type=module>import('modulesecret')</SCRIPT><noscript>noscriptsecret</noscript>"
        "<template><p>templatesecret</p></template><!-- commentsecret --><![CDATA[cdatasecret]]>"
        "<svg><title>svgsecret</title><text>svgtextsecret</text></svg>"
        "<p>They eat fish &amp; frogs.</p><style>p{}/*bodystylesecret*/</style><script>unclosedsecret"
    )
    (tmp_path / "birds.html").write_text(page, encoding="utf-8")
    (document,) = read_corpus(tmp_path).documents
    assert (document.title, document.text) == (
        "Birds",
        "# Herons\n\nHerons wade in shallow water.\n\nThey eat fish & frogs.\n",
    )
    index = qa.Index.build(tmp_path, progress=False)
    assert not any("secret" in p.text for p in index.passages)
    assert [w for w in index.contents.lexical.vocabulary if "secret" in w] == []


def test_a_corpus_with_link_loops_links_outside_and_pipes_builds_from_what_is_inside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("The vault code is 4417.", encoding="utf-8")
    corpus = tmp_path / "corpus"
    (corpus / "inner").mkdir(parents=True)
    (corpus / "inner" / "doc.md").write_text("Otters hold hands while they sleep.", encoding="utf-8")
    os.symlink(outside, corpus / "escape")
    os.symlink(outside / "secret.md", corpus / "secret-link.md")
    os.symlink(corpus, corpus / "inner" / "loop")
    os.symlink(corpus / "inner" / "doc.md", corpus / "again.md")  # the same file through a link: read once
    os.symlink(corpus / "inner", corpus / "alias")  # the same folder through a link: read once
    os.symlink(corpus / "gone.md", corpus / "dangling.md")
    os.mkfifo(corpus / "pipe.md")  # reading it would wait for a writer forever
    with caplog.at_level(logging.WARNING, logger="qa"):
        index = qa.Index.build(corpus, progress=False)
    assert [d.id for d in index.documents] == ["inner/doc.md"]
    assert [p.text for p in index.passages] == ["Otters hold hands while they sleep."]
    real = corpus.resolve()
    for expected in (
        f"escape: it links outside {corpus}",
        f"secret-link.md: it links outside {corpus}",
        f"loop: it links to {real}, a folder read where it is",
        f"alias: it links to {real / 'inner'}, a folder read where it is",
        f"again.md: it links to {real / 'inner' / 'doc.md'}, which is read as itself",
        "dangling.md: cannot read it (No such file or directory)",
        "pipe.md: it is not a regular file",
    ):
        assert expected in caplog.text, expected


# ------------------------------------------------------------------------------------ broken indexes


def _copy(article_index_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "index"
    shutil.copytree(article_index_path, path)
    return path


def _rewrite_manifest(path: Path, **changes: Any) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_unknown_manifest_fields_are_ignored(article_index_path: Path, tmp_path: Path) -> None:
    path = _copy(article_index_path, tmp_path)
    _rewrite_manifest(path, written_by="a later qa", future={"feature": [1, 2]})
    assert len(qa.Index.load(path)) == len(qa.Index.load(article_index_path))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"files": []}, "files is [], not an object"),
        ({"count": "nine"}, "count is 'nine', not a whole number of at least 0"),
        ({"dim": True}, "dim is True, not a whole number of at least 1"),
        ({"model": None}, "model is None, not a model name"),
        ({"chunking": {"max_words": 0, "overlap": 0}}, "chunking.max_words is 0, not a whole number of at least 1"),
        ({"dense": None}, "dense is None, not an object with a type"),
        ({"corpus": {"path": 3}}, "corpus is {'path': 3}, not an object with a path and a fingerprint"),
        ({"files": {"../../../etc/passwd": {"bytes": 1, "sha256": "0"}}}, "files names '../../../etc/passwd'"),
        ({"files": {"/dev/zero": {"bytes": 1, "sha256": "0"}}}, "files names '/dev/zero'"),
        ({"files": {"passages.jsonl": {"bytes": "many"}}}, "files['passages.jsonl'] is {'bytes': 'many'}"),
    ],
)
def test_a_manifest_with_fields_of_the_wrong_kind_is_reported(
    article_index_path: Path, tmp_path: Path, changes: dict[str, Any], problem: str
) -> None:
    path = _copy(article_index_path, tmp_path)
    _rewrite_manifest(path, **changes)
    with pytest.raises(IncompatibleIndex, match=re.escape(f"manifest.json is damaged: {problem}")) as raised:
        qa.Index.load(path)
    assert str(raised.value).endswith(f"Rebuild it: qa build CORPUS -o {path}")


def test_qa_info_reports_a_damaged_manifest_in_one_line(article_index_path: Path, tmp_path: Path) -> None:
    path = _copy(article_index_path, tmp_path)
    _rewrite_manifest(path, files=[])
    info = run_qa("info", "-i", str(path))
    assert info.returncode == 1 and info.stdout == ""
    assert (
        info.stderr
        == f"qa: error: {path}/manifest.json is damaged: files is [], not an object. Rebuild it: qa build CORPUS -o {path}\n"
    )


def _rewrite_passages(path: Path, lines: list[str]) -> None:
    (path / "passages.jsonl").write_text("".join(lines), encoding="utf-8")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["passages.jsonl"] = file_record(path / "passages.jsonl").to_json()  # as if written so
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: [*lines, lines[-1]], r"inconsistent: the manifest says \d+ passages, the FAISS file holds"),
        (lambda lines: [*lines[:-1], '{"id": "x", "text": \n'], "cannot read the index at"),
        (lambda lines: [*lines[:-1], '{"id": "x"}\n'], "cannot read the index at"),
        (
            lambda lines: [],
            r"inconsistent: the manifest says \d+ passages, the FAISS file holds \d+, the passages file 0",
        ),
    ],
    ids=["one-more", "truncated-line", "missing-fields", "empty"],
)
def test_a_passages_file_disagreeing_with_the_faiss_file_is_reported(
    article_index_path: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    """One line fewer is in test_index.py; here one more, a cut line, a record lacking fields, none at all."""
    path = _copy(article_index_path, tmp_path)
    _rewrite_passages(path, edit((path / "passages.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)))
    with pytest.raises(IncompatibleIndex, match=message):
        qa.Index.load(path)


# -------------------------------------------------------------------------------- arbitrary text


_line = st.one_of(
    st.text(max_size=60),  # any character but lone surrogates: NUL, controls, RTL, marks, emoji, CJK
    st.text(alphabet=st.characters(categories=["Lo", "Mn", "Cf", "Zs", "Po"]), max_size=60),
    st.from_regex(r"#{1,3} [A-Z][a-z]{2,8}", fullmatch=True),
    st.from_regex(r"[A-Z][a-z]{1,8}( [a-z]{1,10}){2,12}[.?!]", fullmatch=True),
    st.just(""),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(_line, max_size=12).map("\n".join), question=st.text(max_size=40), words=st.integers(3, 40))
def test_arbitrary_text_goes_through_split_build_search_save_and_load(
    text: str, question: str, words: int, encoder: Encoder, tmp_path_factory: pytest.TempPathFactory
) -> None:
    try:
        index = qa.Index.build([qa.Document("doc.txt", text)], max_words=words, progress=False)
    except EmptyCorpus as error:
        assert str(error) == "the documents have no text to index; add text to them"
        assert split_document(text, max_words=words) == []
        return
    for passage in index.passages:
        assert text[passage.start : passage.end] == passage.text and passage.text.strip()
        assert encoder.count_tokens(passage.text) <= encoder.max_tokens
    folder = tmp_path_factory.mktemp("arbitrary") / "index"
    index.save(folder)
    loaded = qa.Index.load(folder)
    for ask in (question, text[:40]):
        try:
            hits = index.search(ask, 3)
        except ValueError as error:
            assert str(error).startswith("the question is empty")
            continue
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1)) and len(hits) == min(3, len(index))
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
        assert all(0 <= s < e <= len(h.text) for h in hits for s, e in h.highlights)
        assert _hits(loaded.search(ask, 3)) == _hits(hits)
