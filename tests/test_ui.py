"""The web app without a browser: the /search API through gradio_client, uploads, rebuilds and start-up checks.

Real model, real index of the bundled article, built in a temporary folder; one server per group of tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from qa import cli
from qa.errors import QAError
from qa.index import Index
from qa.ui import render
from qa.ui.app import create_app, is_loopback, parse_auth, serve_paths
from qa.ui.service import Service, UploadsDisabled
from qa.ui.uploads import MAX_UPLOAD_BYTES, UploadRejected, safe_name, store_upload
from tests.conftest_ui import NPT, NPT_SECTION, QUESTION, REPO, qa_serve, serving

FRESH = '<span class="qa-fresh">fresh</span>'
STALE = '<span class="qa-stale">stale</span>'
HIT_FIELDS = {
    *("rank", "score", "confidence", "id", "doc_id", "title", "section", "start", "end", "text", "highlights", "page"),
    "answered",  # the answer's flag, on each hit: false when no hit seems to answer
}


def client(url: str, **kwargs: object) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ read-only server


@pytest.fixture(scope="module")
def read_only(article_index_path: Path) -> Iterator[tuple[str, Path]]:
    """A server started without --allow-uploads: ``(url, corpus)``."""
    corpus = article_index_path.parent / "corpus"
    with serving(create_app(article_index_path, corpus)) as url:
        yield url, corpus


def test_search_endpoint_puts_the_npt_passage_first(read_only: tuple[str, Path]) -> None:
    url, _ = read_only
    hits = client(url).predict(QUESTION, 3, api_name="/search")  # the README's call; mode defaults to hybrid
    assert [hit["rank"] for hit in hits] == [1, 2, 3]
    first = hits[0]
    assert set(first) == HIT_FIELDS
    assert NPT in first["text"]
    assert first["section"] == NPT_SECTION
    assert first["doc_id"] == "putin-bush-pakistan-nuclear.md"
    document = (REPO / "corpus" / first["doc_id"]).read_text(encoding="utf-8")
    assert document[first["start"] : first["end"]] == first["text"]
    (start, end), *_ = first["highlights"]
    assert 0 <= start < end <= len(first["text"])
    assert first["page"] is None  # a Markdown document has no pages


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_search_endpoint_returns_what_the_library_returns(
    read_only: tuple[str, Path], article_index: Index, mode: str
) -> None:
    url, _ = read_only
    hits = client(url).predict(QUESTION, 4, mode, api_name="/search")
    answer = article_index.ask(QUESTION, 4, mode=mode)
    expected = [{**hit.to_dict(), "answered": answer.answered} for hit in answer.hits]
    assert len(hits) == len(expected) == 4
    for got, want in zip(hits, expected, strict=True):
        assert got["score"] == pytest.approx(want.pop("score"), abs=1e-5)
        assert {key: value for key, value in got.items() if key != "score"} == want


def test_search_endpoint_explains_a_bad_question(read_only: tuple[str, Path]) -> None:
    url, _ = read_only
    with pytest.raises(AppError, match="question is empty"):
        client(url).predict("   ", 3, api_name="/search")
    with pytest.raises(AppError, match="Mode must be one of"):
        client(url).predict(QUESTION, 3, "fuzzy", api_name="/search")


def test_uploads_and_rebuilds_refused_without_allow_uploads(read_only: tuple[str, Path], tmp_path: Path) -> None:
    url, corpus = read_only
    before = sorted(p.name for p in corpus.iterdir())
    upload = tmp_path / "new.md"
    upload.write_text("# New\n\nA document that must not reach the corpus.\n", encoding="utf-8")
    api = client(url)
    # The client sends the file to Gradio's upload route first, which refuses it before reading it...
    with pytest.raises(httpx.HTTPStatusError) as refused:
        api.predict([handle_file(str(upload))], api_name="/upload")
    assert refused.value.response.status_code == 403 and "--allow-uploads" in refused.value.response.text
    # ...and the event refuses too, with no file given.
    with pytest.raises(AppError, match="--allow-uploads"):
        api.predict(None, api_name="/upload")
    with pytest.raises(AppError, match="--allow-uploads"):
        api.predict(api_name="/rebuild")
    assert sorted(p.name for p in corpus.iterdir()) == before


def test_service_refuses_uploads_without_allow_uploads(writable_article: tuple[Path, Path]) -> None:
    corpus, index = writable_article
    service = Service(index, corpus, Index.load(index), allow_uploads=False)
    with pytest.raises(UploadsDisabled, match="--allow-uploads"):
        service.add_documents([("new.md", b"# New\n\nText.\n")])
    with pytest.raises(UploadsDisabled):
        service.rebuild()
    assert [p.name for p in corpus.iterdir()] == ["putin-bush-pakistan-nuclear.md"]


def test_index_page_lists_what_is_indexed(read_only: tuple[str, Path]) -> None:
    url, _ = read_only
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200
    assert "Which treaty has Pakistan not joined?" in page.text  # the examples
    config = httpx.get(f"{url}config", timeout=30).json()
    named = {dep.get("api_name") for dep in config["dependencies"] if dep.get("api_visibility") == "public"}
    assert named == {"search"}  # the page's own HTML-returning events stay off the API page


# ------------------------------------------------------------------------------------- uploads


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/x.md", "x.md"),
        ("..\\..\\windows\\x.txt", "x.txt"),
        ("/abs/path/notes.MD", "notes.md"),
        (".hidden.md", "hidden.md"),
        ("my notes (v2).md", "my_notes_v2.md"),
        ("Évian café.html", "Evian_cafe.html"),
        ("<script>alert(1)</script>.md", "script.md"),  # "/" in "</script>" makes "script>.md" the basename
        ("日本.md", "document.md"),
        ("..md", "document.md"),
        ("a" * 300 + ".txt", "a" * 80 + ".txt"),
    ],
)
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["x.exe", "x.md.exe", "x", "..", "../", "x.pptx", "x.doc", ""])
def test_safe_name_refuses_other_types(name: str) -> None:
    with pytest.raises(UploadRejected, match="upload"):
        safe_name(name)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xfe\x00t\x00e", "binary"),
        (b"caf\xe9 au lait", "not UTF-8"),
        (b"  \n\t ", "no text"),
        (b"x" * (MAX_UPLOAD_BYTES + 1), "limit is 5 MB"),
    ],
)
def test_store_upload_checks_content(tmp_path: Path, data: bytes, why: str) -> None:
    with pytest.raises(UploadRejected, match=why):
        store_upload(tmp_path, "doc.md", data)
    assert list(tmp_path.iterdir()) == []


def test_store_upload_never_overwrites_or_follows_links(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    outside = tmp_path / "outside.md"
    outside.write_text("# Outside\n\nkeep me\n", encoding="utf-8")
    (corpus / "link.md").symlink_to(outside)
    (corpus / "doc.md").write_text("# Doc\n\nold\n", encoding="utf-8")

    assert store_upload(corpus, "link.md", b"# Link\n\nnew\n") == corpus.resolve() / "link-2.md"
    assert outside.read_text(encoding="utf-8") == "# Outside\n\nkeep me\n"
    assert store_upload(corpus, "doc.md", b"# Doc\n\nnew\n") == corpus.resolve() / "doc-2.md"
    assert (corpus / "doc.md").read_text(encoding="utf-8") == "# Doc\n\nold\n"
    assert store_upload(corpus, "doc.md", b"# Doc\n\nold\n") is None  # already there: nothing added


def test_traversal_name_lands_inside_the_corpus(writable_article: tuple[Path, Path]) -> None:
    corpus, index = writable_article
    service = Service(index, corpus, Index.load(index), allow_uploads=True)
    text = b"# Zebras\n\nZebras have black and white stripes that confuse biting flies.\n"
    report = service.add_documents([("../../etc/x.md", text), ("../escape.pdf", b"%PDF")])

    assert report.added == [corpus.resolve() / "x.md"]
    assert report.rebuild_error is None
    assert len(report.rejected) == 1 and "escape.pdf" in report.rejected[0]
    assert not (corpus.parent / "etc").exists() and not (corpus.parent.parent / "etc" / "x.md").exists()
    assert sorted(p.name for p in corpus.iterdir()) == ["putin-bush-pakistan-nuclear.md", "x.md"]
    # Rebuilt and swapped in: the new document answers at once, and the index on disk has it too.
    assert service.search("Why do zebras have stripes?", 1)[0].doc_id == "x.md"
    assert Index.read_manifest(index).corpus.documents == 2
    assert service.status().stale_reason is None


# ------------------------------------------------------------------------------------- rebuilds


def test_index_status_says_when_the_corpus_changed(writable_article: tuple[Path, Path]) -> None:
    corpus, index = writable_article
    service = Service(index, corpus, Index.load(index))
    shown = render.index_html(service.status())
    # The state's own element: the word "fresh" is also in "restart qa serve to refresh it".
    assert FRESH in shown and STALE not in shown
    assert "Putin and Bush on Pakistan" in shown and "all-MiniLM-L6-v2" in shown
    (corpus / "more.md").write_text("# More\n\nAnother document.\n", encoding="utf-8")
    shown = render.index_html(service.status())
    assert STALE in shown and FRESH not in shown
    assert "restart qa serve" in shown  # uploads are off: no Rebuild button to press


def test_a_public_index_tab_names_folders_without_the_machines_paths(writable_article: tuple[Path, Path]) -> None:
    corpus, index = writable_article  # <tmp>/corpus and <tmp>/index
    machine = str(corpus.resolve().parent)
    local = render.index_html(Service(index, corpus, Index.load(index)).status())
    assert str(corpus) in local and str(index) in local  # on loopback the full paths help, and are shown

    service = Service(index, corpus, Index.load(index), allow_uploads=True, public=True)
    status = service.status()
    assert (status.index_path, status.corpus) == ("index", "corpus")
    (corpus / "more.md").write_text("# More\n\nAnother document.\n", encoding="utf-8")
    stale = service.status().stale_reason
    assert stale == "the documents in corpus have changed since it was built"
    # A failed rebuild's error names the corpus folder too: relative to the folder that holds it.
    for document in corpus.iterdir():
        document.unlink()
    with pytest.raises(QAError):
        service.rebuild()
    assert service.last_error is not None and machine in service.last_error  # the server's own record
    shown = render.index_html(service.status())
    assert "The last rebuild failed: &#x27;corpus&#x27; has no readable documents" in shown
    assert machine not in shown and str(corpus.parent.parent) not in shown


def test_a_public_server_names_folders_in_a_rebuild_error(writable_article: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, index = writable_article
    article = corpus / "putin-bush-pakistan-nuclear.md"
    with serving(create_app(index, corpus, allow_uploads=True, public=True)) as url:
        article.rename(tmp_path / article.name)  # an empty corpus: the build fails, naming the folder
        status, info = client(url).predict(api_name="/rebuild")
    assert "Rebuild failed: &#x27;corpus&#x27; has no readable documents" in status
    assert str(tmp_path) not in status + info


def test_failed_rebuild_keeps_the_old_index_serving(writable_article: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, index = writable_article
    manifest = (index / "manifest.json").read_bytes()
    demo = create_app(index, corpus, allow_uploads=True)
    with serving(demo) as url:
        api = client(url)
        before = api.predict(QUESTION, 5, api_name="/search")
        article = corpus / "putin-bush-pakistan-nuclear.md"
        article.rename(tmp_path / article.name)  # an empty corpus: the build must fail

        status, info = api.predict(api_name="/rebuild")
        assert "Rebuild failed" in status and "no readable documents" in status
        assert "previous index is still serving" in status
        assert "The last rebuild failed" in info
        assert (index / "manifest.json").read_bytes() == manifest  # nothing written over the old index
        assert api.predict(QUESTION, 5, api_name="/search") == before  # the old index still answers

        # Put the article back, add a document, rebuild: the new index serves without a restart.
        (tmp_path / article.name).rename(article)
        (corpus / "zebras.md").write_text(
            "# Zebras\n\nZebras have black and white stripes that confuse biting flies.\n", encoding="utf-8"
        )
        status, info = api.predict(api_name="/rebuild")
        assert "Rebuilt: 2 documents" in status
        assert FRESH in info and STALE not in info and "The last rebuild failed" not in info
        assert api.predict("Why do zebras have stripes?", 1, api_name="/search")[0]["doc_id"] == "zebras.md"


def test_upload_through_the_server(writable_article: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, index = writable_article
    good = tmp_path / "giraffe notes.md"
    good.write_text("# Giraffes\n\nGiraffes sleep less than two hours a day, standing up.\n", encoding="utf-8")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Caf\xe9".encode("latin-1"))
    demo = create_app(index, corpus, allow_uploads=True)
    with serving(demo) as url:
        api = client(url)
        status, info, _ = api.predict([handle_file(str(good)), handle_file(str(bad))], api_name="/upload")
        assert "Added giraffe_notes.md" in status
        assert "latin1.txt is not UTF-8" in status
        assert "giraffe_notes.md" in info
        assert api.predict("How long do giraffes sleep?", 1, api_name="/search")[0]["doc_id"] == "giraffe_notes.md"
        # The client sent both files through Gradio's upload route; once read, the app deleted its copies.
        assert len(demo.upload_file_set) == 2
        assert [path for path in demo.upload_file_set if os.path.exists(path)] == []
    assert sorted(p.name for p in corpus.iterdir()) == ["giraffe_notes.md", "putin-bush-pakistan-nuclear.md"]


def test_searches_during_a_rebuild_answer_from_the_old_index(writable_article: tuple[Path, Path]) -> None:
    corpus, index = writable_article
    old = Index.load(index)
    service = Service(index, corpus, old, allow_uploads=True)
    # Enough new text that the rebuild takes a while to embed.
    paragraphs = "\n\n".join(
        f"Zebra herd {i} crossed the river at dawn while the lions slept in the tall grass." for i in range(300)
    )
    (corpus / "zebras.md").write_text(f"# Zebras\n\n{paragraphs}\n", encoding="utf-8")
    errors: list[BaseException] = []

    def rebuild() -> None:
        try:
            service.rebuild()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    worker = threading.Thread(target=rebuild)
    worker.start()
    during = 0
    while worker.is_alive():
        hits = service.search("Which river did the zebras cross?", 3)
        if worker.is_alive() and service.index is old:
            assert {hit.doc_id for hit in hits} == {"putin-bush-pakistan-nuclear.md"}
            during += 1
    worker.join()
    assert errors == []
    assert during > 0, "the rebuild finished before any search ran; make the added document longer"
    assert service.index is not old
    assert service.search("Which river did the zebras cross?", 1)[0].doc_id == "zebras.md"


def test_second_rebuild_at_once_is_refused(writable_article: tuple[Path, Path]) -> None:
    from qa.errors import IndexBusy

    corpus, index = writable_article
    service = Service(index, corpus, Index.load(index), allow_uploads=True)
    with service._exclusive(), pytest.raises(IndexBusy, match="already running"):
        service.rebuild()


# ------------------------------------------------------------------------------ start-up checks


def test_refuses_public_uploads_without_auth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("QA_AUTH", raising=False)
    assert cli.main(["serve", "--host", "0.0.0.0", "--allow-uploads"]) == 1
    error = capsys.readouterr().err
    assert "refusing to start" in error and "--auth user:password" in error


def test_refuses_a_malformed_auth(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QA_AUTH", "no-colon")
    assert cli.main(["serve", "--host", "0.0.0.0", "--allow-uploads"]) == 1
    assert "must be user:password" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
     ("192.168.1.5", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_parse_auth_keeps_colons_in_the_password() -> None:
    assert parse_auth("ann:pa:ss") == ("ann", "pa:ss")
    with pytest.raises(ValueError, match="user:password"):
        parse_auth(":secret")


def test_serve_says_when_the_port_is_taken(
    writable_article: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, index = writable_article
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        codes: list[int] = []
        # In a thread, so that a server that did start (the bug) fails this test instead of blocking it.
        runner = threading.Thread(
            target=lambda: codes.append(cli.main(["serve", "-i", str(index), "--corpus", str(corpus), "--port", port])),
            daemon=True,
        )
        runner.start()
        runner.join(timeout=120)
    assert codes == [1]
    assert "choose another with --port" in capsys.readouterr().err


def test_an_index_given_alone_keeps_its_own_corpus(article_index_path: Path) -> None:
    corpus, index = article_index_path.parent / "corpus", article_index_path
    args = cli.build_parser().parse_args(["serve", "-i", str(index)])
    assert serve_paths(args) == (index, corpus.resolve())


def test_qa_serve_starts_with_auth(writable_article: tuple[Path, Path], tmp_path: Path) -> None:
    """The real command: loads the index and the model, warms up, binds 127.0.0.1 and asks for a login."""
    corpus, index = writable_article
    with qa_serve(index, corpus, tmp_path / "serve.log", env={"QA_AUTH": "ann:secret"}) as url:
        assert httpx.get(f"{url}config", timeout=10).status_code == 401  # no login, no app
        hits = client(url, auth=("ann", "secret")).predict(QUESTION, 3, api_name="/search")
        assert any(NPT in hit["text"] for hit in hits)


# -------------------------------------------------------------------------------------- render


def test_render_escapes_document_text() -> None:
    text = 'A <script>x=1</script> and <img src=x onerror="y()"> and ${z} {{w}} `v` & [l](javascript:u)'
    shown = render.passage_html(text, [(2, 22)])
    assert "<script" not in shown and "<img" not in shown and "{" not in shown and "$" not in shown
    assert shown.startswith("A <mark>&lt;script&gt;x=1&lt;/script&gt;</mark>")
    assert "&amp;" in shown


def test_result_card_says_what_its_offsets_index(article_index: Index) -> None:
    hit = article_index.search(QUESTION, 1)[0]
    card = render.hit_card(hit, 1.0)
    footer = card[card.index("<footer>") :]
    assert f"characters {hit.start}–{hit.end} of its text as read" in footer
    assert f'title="{render.text_html(render.OFFSETS_TITLE)}"' in footer
    assert "not into the file&#x27;s bytes" in footer  # the attribute is escaped like any text


def test_render_marks_overlapping_highlights_once() -> None:
    assert render.passage_html("abcdef", [(1, 3), (2, 5)]) == "a<mark>bc</mark><mark>de</mark>f"
    assert render.passage_html("abc", [(5, 9)]) == "abc"


def test_score_bars_compare_hits_of_one_search() -> None:
    assert render.score_shares([2.0, 1.0, 0.5]) == [1.0, 0.5, 0.25]
    assert render.score_shares([1.5, 0.0, -1.5]) == [1.0, 0.5, 0.0]  # hybrid scores can be negative
    assert render.score_shares([-1.0, -1.0]) == [1.0, 1.0]
    assert render.score_shares([]) == []


def test_store_upload_writes_only_into_the_folder(tmp_path: Path) -> None:
    corpus = tmp_path / "a" / "corpus"
    corpus.mkdir(parents=True)
    written = store_upload(corpus, "../../../x.md", b"# X\n\ntext\n")
    assert written is not None and written.parent == corpus.resolve()
    assert [p.name for p in tmp_path.rglob("x.md")] == ["x.md"]


def test_server_serves_an_index_that_qa_build_saved_to_its_folder(writable_article: tuple[Path, Path]) -> None:
    corpus, index = writable_article
    service = Service(index, corpus, Index.load(index))
    question = "Which glaciers are retreating fastest?"
    assert all("Patagonia" not in h.text for h in service.search(question, 3))
    (corpus / "glaciers.md").write_text(
        "# Glaciers\n\nGlaciers in Patagonia are retreating fastest.\n", encoding="utf-8"
    )
    built = subprocess.run(
        [sys.executable, "-m", "qa", "build", str(corpus), "-o", str(index), "-q"], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    deadline = time.monotonic() + 30
    while "Patagonia" not in service.search(question, 1)[0].text:  # checked about once a second
        assert time.monotonic() < deadline, "the server never served the new index"
        time.sleep(0.3)
    assert service.last_error is None
