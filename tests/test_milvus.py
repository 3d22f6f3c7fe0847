"""The Milvus backend on Milvus Lite and on a real Milvus server: the same answers as FAISS, rebuilds,
restarts, and clear errors when the server is killed, restarted, slow or refuses the credentials.

Tests that take ``milvus_uri`` run twice: on a Milvus Lite file, and on a database of their own on the
run's Milvus server (``milvus_server`` in conftest). The tests that kill, restart or lock out a server
do it to one of their own (``secured``), with authorization enabled.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

import qa
from qa.errors import IncompatibleIndex, QAError
from qa.milvus import MilvusStore, MilvusUnavailable, connect, disconnect, is_local, public_uri, resolve_uri
from qa.vectorstore import FaissStore
from tests.article_questions import QUESTIONS
from tests.conftest import ROOT, SQUAD, RecordingEncoder, require_data, require_milvus, start_milvus_server

if TYPE_CHECKING:
    from tests.milvus_server import MilvusServer

require_milvus()  # qa.milvus imports pymilvus only when used

UNREACHABLE = "http://127.0.0.1:1"  # nothing listens on port 1: the connection is refused at once
QUESTION = "Which treaty has Pakistan not joined?"
RECOVERY = 240
"""Seconds a restarted server may take to answer again: it reloads its collections, and serves strong
reads once its previous sessions have expired (about 30 s after a restart with the test servers' settings)."""


@pytest.fixture(params=["lite", "server"])
def milvus_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a test's collections go: a Milvus Lite file, or a database of its own on the run's server."""
    if request.param == "lite":
        yield str(tmp_path / "milvus.db")
        return
    server: MilvusServer = request.getfixturevalue("milvus_server")
    uri = f"{server.uri}/test_{uuid.uuid4().hex[:8]}"
    client = connect(server.uri)
    try:
        client.create_database(uri.rsplit("/", 1)[1], timeout=30)
        yield uri
        inside = connect(uri)
        try:  # a database is dropped only once empty
            for name in inside.list_collections(timeout=30):
                inside.drop_collection(name, timeout=30)
        finally:
            disconnect(inside, uri)
        client.drop_database(uri.rsplit("/", 1)[1], timeout=30)
    finally:
        disconnect(client, server.uri)


@pytest.fixture
def closing() -> Iterator[list[qa.Index]]:
    """Indexes to close after the test, so that each Milvus Lite file is released."""
    opened: list[qa.Index] = []
    yield opened
    for index in opened:
        index.close()


def _collections(uri: str) -> list[str]:
    uri = resolve_uri(uri)
    client = connect(uri)
    try:
        return sorted(client.list_collections(timeout=30))
    finally:
        disconnect(client, uri)


def _dense(index: qa.Index, question: str, k: int = 5) -> list[tuple[str, float]]:
    return [(h.passage.id, h.score) for h in index.search(question, k, mode="dense")]


def _assert_same_hits(faiss: qa.Index, milvus: qa.Index, questions: list[str], k: int = 5) -> None:
    for question in questions:
        expected, got = _dense(faiss, question, k), _dense(milvus, question, k)
        assert [p for p, _ in got] == [p for p, _ in expected], question
        assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-5), question


# ---------------------------------------------------------------------------------------- answers


def test_article_questions_get_the_same_passages_from_milvus_and_faiss(
    article_index: qa.Index, milvus_uri: str, closing: list[qa.Index]
) -> None:
    milvus = qa.Index.build(article_index.corpus or "", backend="milvus", uri=milvus_uri, previous=article_index)
    closing.append(milvus)
    assert milvus.manifest.backend == "milvus" and milvus.manifest.dense_type == "flat"
    _assert_same_hits(article_index, milvus, [q for q, _ in QUESTIONS])
    for question, _ in QUESTIONS[:5]:  # hybrid reads candidates' vectors back from the collection
        assert [(h.passage, round(h.score, 5), h.highlights) for h in milvus.search(question, 3)] == [
            (h.passage, round(h.score, 5), h.highlights) for h in article_index.search(question, 3)
        ]
    hits = milvus.search("Which treaty has Pakistan not joined?", k=1000, mode="dense")
    assert len(hits) == len(article_index)


@pytest.fixture(scope="module")
def squad_slice() -> tuple[list[qa.Document], qa.Index, list[str]]:
    """The first two SQuAD dev articles, their FAISS index (built once for Milvus Lite and the server),
    and every eighth of their questions."""
    require_data(SQUAD)
    from qa.evaluation import load_squad

    documents, questions = load_squad(SQUAD)
    asked = [q.question for q in questions if q.article < 2][::8]
    assert len(asked) >= 25
    return documents[:2], qa.Index.build(documents[:2], progress=False), asked


@pytest.mark.slow
def test_squad_slice_gets_the_same_passages_from_milvus_and_faiss(
    squad_slice: tuple[list[qa.Document], qa.Index, list[str]], milvus_uri: str, closing: list[qa.Index]
) -> None:
    documents, faiss, asked = squad_slice
    # The passage vectors come from the FAISS index: both stores search the very same vectors.
    milvus = qa.Index.build(documents, backend="milvus", uri=milvus_uri, previous=faiss)
    closing.append(milvus)
    assert len(milvus) == len(faiss) > 50
    _assert_same_hits(faiss, milvus, asked, k=10)


def test_cli_builds_on_milvus_and_answers_like_faiss(
    tmp_path: Path, article_index: qa.Index, milvus_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.cli import main

    monkeypatch.chdir(tmp_path)
    corpus = str(article_index.corpus)
    given = "./milvus.db" if is_local(milvus_uri) else milvus_uri
    assert main(["build", corpus, "-o", "idx", "-q", "--backend", "milvus", "--uri", given]) == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    # A local file relative to the index folder, like the corpus; a server's URI as given.
    assert manifest["dense"]["uri"] == ("../milvus.db" if is_local(milvus_uri) else milvus_uri)
    assert "vectors.faiss" not in manifest["files"] and not (tmp_path / "idx" / "vectors.faiss").exists()
    first = qa.Index.load(tmp_path / "idx")
    try:
        hit = first.search("Which treaty has Pakistan not joined?", k=1)[0]
        assert "not a signatory to the NPT" in hit.text and hit.section == "The Global Impact"
    finally:
        first.close()
    # A rebuild without --backend keeps the index's backend and URI, and drops the replaced collection.
    assert main(["build", corpus, "-o", "idx", "-q"]) == 0
    rebuilt = json.loads((tmp_path / "idx" / "manifest.json").read_text())["dense"]
    assert rebuilt["backend"] == "milvus" and rebuilt["collection"] != manifest["dense"]["collection"]
    assert _collections(milvus_uri) == [rebuilt["collection"]]
    # Back to FAISS: the collection goes too.
    assert main(["build", corpus, "-o", "idx", "-q", "--backend", "faiss"]) == 0
    assert (tmp_path / "idx" / "vectors.faiss").exists() and _collections(milvus_uri) == []


# ------------------------------------------------------------------------------ rebuilds and saves


def test_incremental_rebuild_on_milvus_embeds_only_new_text(
    writable_article: tuple[Path, Path], tmp_path: Path, milvus_uri: str, closing: list[qa.Index]
) -> None:
    corpus, faiss_path = writable_article
    old = qa.Index.build(corpus, backend="milvus", uri=milvus_uri, previous=qa.Index.load(faiss_path))
    old.save(tmp_path / "idx")
    closing.append(old)
    (corpus / "extra.md").write_text("# Extra\n\nGlaciers in Patagonia are retreating fast.", encoding="utf-8")
    loaded = qa.Index.load(tmp_path / "idx")
    closing.append(loaded)
    assert loaded.stale_reason() == f"the documents in {corpus} have changed since it was built"

    recording = RecordingEncoder(loaded.encoder)
    added = qa.Index.build(corpus, previous=loaded, encoder=recording, progress=False)  # backend and URI from it
    closing.append(added)
    assert len(recording.texts) == 2  # the new passage and its one sentence: every other vector read back from Milvus
    assert added.manifest.backend == "milvus"
    added.save(tmp_path / "idx")
    assert qa.Index.load(tmp_path / "idx").stale_reason() is None
    full = qa.Index.build(corpus, progress=False)
    _assert_same_hits(full, added, ["Which glaciers are retreating?", "Which treaty has Pakistan not joined?"])

    (corpus / "extra.md").unlink()
    removed = qa.Index.build(corpus, previous=added, progress=False)
    closing.append(removed)
    removed.save(tmp_path / "idx")
    assert all(p.doc_id != "extra.md" for p in removed.passages)
    assert all(
        h.passage.doc_id != "extra.md" for h in removed.search("Which glaciers are retreating?", 20, mode="dense")
    )
    # Only the saved index's collection is left: each save dropped the one it replaced.
    assert _collections(milvus_uri) == [removed.manifest.dense["collection"]]


@contextlib.contextmanager
def files_limited_to(size: int) -> Iterator[None]:
    """Writing a file past ``size`` bytes fails in this process (EFBIG), as a full disk fails a write."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error to raise, not a signal that kills
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_failed_build_or_save_leaves_the_previous_index_usable(
    article_index: qa.Index, tmp_path: Path, milvus_uri: str, closing: list[qa.Index]
) -> None:
    db, path = milvus_uri, tmp_path / "idx"
    first = qa.Index.build(article_index.corpus or "", backend="milvus", uri=db, previous=article_index)
    closing.append(first)
    first.save(path)
    collection = first.manifest.dense["collection"]

    def interrupted(stage: str) -> None:  # the build stops after filling its new collection, as Ctrl+C would
        if stage == "bm25":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        qa.Index.build(article_index.corpus or "", previous=first, on_stage=interrupted)
    assert _collections(db) == [collection]  # the failed build's collection is dropped

    second = qa.Index.build(article_index.corpus or "", previous=first)
    closing.append(second)
    with files_limited_to(4096), pytest.raises(OSError, match="File too large"):
        second.save(path)  # the save fails writing its files, before the new folder is swapped in
    assert sorted(_collections(db)) == sorted([collection, second.manifest.dense["collection"]])
    reopened = qa.Index.load(path)
    closing.append(reopened)
    assert reopened.manifest.dense["collection"] == collection
    _assert_same_hits(article_index, reopened, ["Which treaty has Pakistan not joined?"])
    second.save(path)  # a retry succeeds, and only then is the old collection dropped
    assert _collections(db) == [second.manifest.dense["collection"]]


def test_the_lite_file_may_not_live_inside_the_index_folder(
    article_index: qa.Index, tmp_path: Path, closing: list[qa.Index]
) -> None:
    (tmp_path / "idx").mkdir()
    index = qa.Index.build(article_index.corpus or "", uri=str(tmp_path / "idx" / "milvus.db"), previous=article_index)
    closing.append(index)
    with pytest.raises(ValueError, match="is inside the index folder"):
        index.save(tmp_path / "idx")


# -------------------------------------------------------------------------------------- restarts

_SEARCH_IN_A_NEW_PROCESS = """
import json, sys
import qa
from qa.errors import QAError
try:
    index = qa.Index.load(sys.argv[1])
except QAError as error:
    print(json.dumps({"error": str(error)}))
    raise SystemExit(0)
print(json.dumps([[h.passage.id, h.score] for h in index.search(sys.argv[2], 5, mode="dense")]))
"""


def _search_in_a_new_process(path: Path, question: str) -> object:
    result = subprocess.run(
        [sys.executable, "-c", _SEARCH_IN_A_NEW_PROCESS, str(path), question],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT.parent,  # not where the index is: relative URIs must resolve from the index folder
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_a_saved_milvus_index_reopens_in_a_new_process(
    article_index: qa.Index, tmp_path: Path, closing: list[qa.Index]
) -> None:
    question = "What was Putin worried could happen with Pakistan's nuclear materials?"
    built = qa.Index.build(
        article_index.corpus or "", backend="milvus", uri=str(tmp_path / "milvus.db"), previous=article_index
    )
    built.save(tmp_path / "idx")
    expected = [[p, s] for p, s in _dense(built, question)]

    # Milvus Lite serves one process at a time: while this one holds the file, another is told why it cannot.
    refused = _search_in_a_new_process(tmp_path / "idx", question)
    assert isinstance(refused, dict) and "is open in another process" in refused["error"]

    built.close()  # as if this process had stopped
    moved = tmp_path / "moved"  # the index and its Milvus Lite file move together
    moved.mkdir()
    shutil.move(tmp_path / "idx", moved / "idx")
    shutil.move(tmp_path / "milvus.db", moved / "milvus.db")
    got = _search_in_a_new_process(moved / "idx", question)
    assert isinstance(got, list) and [p for p, _ in got] == [p for p, _ in expected]
    assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)

    reopened = qa.Index.load(moved / "idx")  # and in this process again, after the other let go
    closing.append(reopened)
    _assert_same_hits(article_index, reopened, [question])


def test_a_dropped_collection_is_reported_as_an_incompatible_index(
    article_index: qa.Index, tmp_path: Path, milvus_uri: str, closing: list[qa.Index]
) -> None:
    built = qa.Index.build(article_index.corpus or "", backend="milvus", uri=milvus_uri, previous=article_index)
    closing.append(built)
    built.save(tmp_path / "idx")
    built.contents.dense.discard()
    with pytest.raises(IncompatibleIndex, match=rf"the Milvus collection qa_\w+ at {milvus_uri} does not exist"):
        qa.Index.load(tmp_path / "idx")


# -------------------------------------------------------------------------------- unreachable URIs


def test_an_unreachable_server_fails_fast_with_what_to_check(
    article_index_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QA_MILVUS_TIMEOUT", "3")

    class Untouched:
        """An encoder that fails if it is used at all: the URI must be checked before any work."""

        name = "all-MiniLM-L6-v2"

        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the encoder's {name} was used before the URI was checked")

    started = time.perf_counter()
    with pytest.raises(MilvusUnavailable) as raised:
        qa.Index.build(
            article_index_path.parent / "corpus",
            backend="milvus",
            uri=UNREACHABLE,
            encoder=Untouched(),  # type: ignore[arg-type]
        )
    assert time.perf_counter() - started < 5
    message = str(raised.value)
    assert message.startswith(f"cannot reach Milvus at {UNREACHABLE}")
    assert "check that the Milvus server is running" in message and "QA_MILVUS_TOKEN" in message

    # An index whose server is gone says the same when loaded, and the CLI prints it without a traceback.
    path = tmp_path / "idx"
    shutil.copytree(article_index_path, path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["dense"] = {
        "backend": "milvus",
        "type": "flat",
        "uri": "http://user:secret@127.0.0.1:1",
        "collection": "c",
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MilvusUnavailable, match=r"cannot reach Milvus at http://127\.0\.0\.1:1 \("):
        qa.Index.load(path)
    result = subprocess.run(
        [sys.executable, "-m", "qa", "ask", "Which treaty?", "-i", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "QA_MILVUS_TIMEOUT": "3"},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("qa: error: cannot reach Milvus at http://127.0.0.1:1 (")
    assert "Traceback" not in result.stderr and "secret" not in result.stderr


def test_bad_backend_arguments_are_rejected_before_any_work(tmp_path: Path) -> None:
    document = [qa.Document(id="a", text="Some text.")]
    with pytest.raises(ValueError, match="backend must be one of faiss, milvus; got 'chroma'"):
        qa.Index.build(document, backend="chroma")
    with pytest.raises(ValueError, match="a URI is for backend='milvus'"):
        qa.Index.build(document, backend="faiss", uri="./milvus.db")
    with pytest.raises(ValueError, match=r"a Milvus URI is a local file ending in \.db"):
        qa.Index.build(document, uri=str(tmp_path / "milvus.sqlite"))
    with pytest.raises(MilvusUnavailable, match=r"the folder .* does not exist"):
        qa.Index.build(document, uri=str(tmp_path / "missing" / "milvus.db"))


def test_manifest_uris_carry_no_credentials() -> None:
    assert public_uri("http://root:Milvus@db.example:19530/qa") == "http://db.example:19530/qa"
    assert public_uri("https://token@host") == "https://host"
    assert public_uri("https://[::1]:19530") == "https://[::1]:19530"
    assert public_uri("./milvus.db") == "./milvus.db"


# ------------------------------------------------------------------------------------ the stores


def test_milvus_store_adds_deletes_searches_and_returns_exact_vectors(tmp_path: Path, milvus_uri: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    uri = milvus_uri
    store = MilvusStore.prepare(uri, "hnsw")(vectors[:200])
    faiss = FaissStore.build(vectors[:200], "flat")
    try:
        assert (store.count, store.dim, store.params["type"]) == (200, 16, "hnsw")
        store.add(np.arange(200, 300), vectors[200:])
        faiss.add(np.arange(200, 300), vectors[200:])
        assert store.count == 300 == faiss.count
        ids = np.array([299, 0, 17])
        assert np.array_equal(store.vectors(ids), vectors[ids]) and np.array_equal(faiss.vectors(ids), vectors[ids])
        scores, found = store.search(vectors[:3], 5)
        expected_scores, expected = faiss.search(vectors[:3], 5)
        assert np.array_equal(found, expected) and np.allclose(scores, expected_scores, atol=1e-5)
        # Read right after the delete: a server answering with Bounded consistency (its default) would
        # still count and find the deleted vectors; the collection is created Strong.
        store.delete(np.array([0, 1, 2]))
        assert store.count == 297
        _, found = store.search(vectors[:3], 5)
        assert not set(found.ravel()) & {0, 1, 2}
        with pytest.raises(IncompatibleIndex, match="lacks the vectors of 1 passages"):
            store.vectors(np.array([1]))
        _, padded = store.search(vectors[:1], 400)
        assert (padded[0, :297] >= 0).all() and (padded[0, 297:] == -1).all()
        with pytest.raises(ValueError, match="cannot delete vectors in place"):
            faiss.delete(np.array([0]))
        relative = "../milvus.db" if is_local(uri) else uri
        assert store.describe()["uri"] == uri and store.describe(tmp_path / "idx")["uri"] == relative
    finally:
        store.discard()
    assert _collections(uri) == []


# --------------------------------------------------------------------------- server: sharing, faults


def test_a_server_index_is_searched_by_another_process_while_this_one_holds_it(
    article_index: qa.Index, tmp_path: Path, milvus_server: MilvusServer, closing: list[qa.Index]
) -> None:
    question = "What was Putin worried could happen with Pakistan's nuclear materials?"
    built = qa.Index.build(article_index.corpus or "", backend="milvus", uri=milvus_server.uri, previous=article_index)
    closing.append(built)
    built.save(tmp_path / "idx")
    # Unlike a Milvus Lite file, a server serves any number of processes at once.
    got = _search_in_a_new_process(tmp_path / "idx", question)
    assert isinstance(got, list) and [p for p, _ in got] == [p for p, _ in _dense(built, question)]


def test_an_answer_later_than_the_timeout_is_a_qa_error(
    article_index: qa.Index, milvus_server: MilvusServer, closing: list[qa.Index], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not on Milvus Lite: over its local socket, calls of any deadline may come back answered.
    index = qa.Index.build(article_index.corpus or "", backend="milvus", uri=milvus_server.uri, previous=article_index)
    closing.append(index)
    monkeypatch.setenv("QA_MILVUS_TIMEOUT", "0.00001")  # no server answers in 10 µs
    with pytest.raises(MilvusUnavailable) as raised:
        index.search(QUESTION, 3, mode="dense")
    message = str(raised.value)
    assert message.startswith(f"Milvus at {milvus_server.uri} did not answer within ")
    assert "while searching (DEADLINE_EXCEEDED" in message and "$QA_MILVUS_TIMEOUT" in message
    monkeypatch.setenv("QA_MILVUS_TIMEOUT", "0")
    with pytest.raises(ValueError, match=r"\$QA_MILVUS_TIMEOUT must be a number of seconds above 0; got '0'"):
        index.search(QUESTION, 3, mode="dense")
    monkeypatch.delenv("QA_MILVUS_TIMEOUT")
    _assert_same_hits(article_index, index, [QUESTION])  # and with time to answer, it does


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory, milvus_binary: Path) -> Iterator[MilvusServer]:
    """A server of these tests' own, with authorization enabled, to kill, restart and lock out."""
    yield from start_milvus_server(tmp_path_factory.mktemp("milvus-secured"), milvus_binary, authorization=True)


@pytest.fixture
def secured(secured_server: MilvusServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MilvusServer]:
    """The secured server, serving, with ``$QA_MILVUS_TOKEN`` its root user's; serving again after the test."""
    monkeypatch.setenv("QA_MILVUS_TOKEN", secured_server.token)
    secured_server.start()
    yield secured_server
    secured_server.start()  # after a test that failed with the server stopped


def _saved_on(server: MilvusServer, article_index: qa.Index, path: Path) -> Path:
    index = qa.Index.build(article_index.corpus or "", backend="milvus", uri=server.uri, previous=article_index)
    try:
        index.save(path)
    finally:
        index.close()
    return path


def _ask(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qa", "ask", QUESTION, "-i", str(path), "-k", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error ``qa`` printed, checked to be one line, with exit status 1 and no traceback."""
    assert result.returncode == 1 and result.stdout == "", (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qa: error: "), result.stderr
    return lines[0]


def _ask_until_answered(path: Path, **env: str) -> tuple[list[object], list[str]]:
    """``qa ask``'s hits once the restarted server answers, and the errors it printed until then."""
    errors: list[str] = []
    deadline = time.monotonic() + RECOVERY
    while True:
        result = _ask(path, **env)
        if result.returncode == 0:
            return [json.loads(line) for line in result.stdout.splitlines()], errors
        errors.append(_one_line_error(result))
        assert time.monotonic() < deadline, f"no answer {RECOVERY} s after the restart; qa said: {errors}"
        time.sleep(1)


def test_a_killed_server_is_a_one_line_error_and_answers_again_once_restarted(
    secured: MilvusServer, article_index: qa.Index, tmp_path: Path
) -> None:
    path = _saved_on(secured, article_index, tmp_path / "idx")
    before = _ask(path)
    assert before.returncode == 0, before.stderr
    expected = [json.loads(line) for line in before.stdout.splitlines()]
    assert len(expected) == 3 and "not a signatory to the NPT" in str(expected[0])

    secured.kill()
    line = _one_line_error(_ask(path, QA_MILVUS_TIMEOUT="3"))
    assert line.startswith(f"qa: error: cannot reach Milvus at {secured.uri} (")
    assert "check that the Milvus server is running" in line and secured.token not in line

    # Restarted on the same data folder, as a user would, without waiting for more than its health check.
    secured.start(serving=False)
    answered, errors = _ask_until_answered(path, QA_MILVUS_TIMEOUT="5")
    assert answered == expected
    assert all(secured.uri in error for error in errors), errors


def test_a_gracefully_restarted_server_answers_late_as_a_qa_error_then_answers(
    secured: MilvusServer, article_index: qa.Index, tmp_path: Path
) -> None:
    path = _saved_on(secured, article_index, tmp_path / "idx")
    before = _ask(path)
    assert before.returncode == 0, before.stderr
    # What the issue saw: after a restart the first `qa ask` waited out its deadline, with a traceback.
    secured.stop()
    secured.start(serving=False)
    answered, errors = _ask_until_answered(path, QA_MILVUS_TIMEOUT="5")
    assert answered == [json.loads(line) for line in before.stdout.splitlines()]
    assert all(secured.uri in error for error in errors), errors


def test_searches_while_the_server_is_killed_fail_as_qa_errors_and_recover_after_a_restart(
    secured: MilvusServer, article_index: qa.Index, closing: list[qa.Index], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `qa serve` sees it: one loaded index, searched before, during and after the server's death."""
    monkeypatch.setenv("QA_MILVUS_TIMEOUT", "3")
    index = qa.Index.build(article_index.corpus or "", backend="milvus", uri=secured.uri, previous=article_index)
    closing.append(index)
    expected = _dense(index, QUESTION)
    answers: list[object] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                answers.append(_dense(index, QUESTION))
            except BaseException as error:  # any kind: only a QAError may come out
                failures.append(error)

    searching = threading.Thread(target=search)
    searching.start()
    try:
        while len(answers) < 20:
            time.sleep(0.01)
        secured.kill()  # while searches are under way
        deadline = time.monotonic() + 120
        while len(failures) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        searching.join()
    assert failures and all(answer == expected for answer in answers)
    assert all(isinstance(error, QAError) for error in failures), failures
    assert all(f"Milvus at {secured.uri}" in str(error) and "\n" not in str(error) for error in failures), failures

    secured.start(serving=False)
    deadline = time.monotonic() + RECOVERY
    while True:  # the same loaded index answers again, with no reload
        try:
            assert _dense(index, QUESTION) == expected
            break
        except QAError as error:
            assert time.monotonic() < deadline, f"no answer {RECOVERY} s after the restart: {error}"
            time.sleep(1)


def test_wrong_or_missing_credentials_are_a_qa_error_naming_the_token_variable(
    secured: MilvusServer, article_index: qa.Index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _saved_on(secured, article_index, tmp_path / "idx")
    for token, said in (("root:not-the-password", "the one it holds is wrong"), ("", "it is not set")):
        monkeypatch.setenv("QA_MILVUS_TOKEN", token)
        with pytest.raises(MilvusUnavailable) as raised:
            qa.Index.load(path)
        message = str(raised.value)
        assert message.startswith(f"Milvus at {secured.uri} refused the credentials (UNAUTHENTICATED")
        assert f"set $QA_MILVUS_TOKEN to the server's user:password or API key ({said})" in message
        assert "not-the-password" not in message
    line = _one_line_error(_ask(path, QA_MILVUS_TOKEN="root:not-the-password"))
    assert "refused the credentials" in line and "$QA_MILVUS_TOKEN" in line and "not-the-password" not in line

    # A user the server knows, without the privileges qa needs.
    monkeypatch.setenv("QA_MILVUS_TOKEN", secured.token)
    admin = connect(secured.uri)
    try:
        admin.create_user("reader", "reader-password", timeout=30)
        monkeypatch.setenv("QA_MILVUS_TOKEN", "reader:reader-password")
        with pytest.raises(MilvusUnavailable) as raised:
            qa.Index.load(path)
        message = str(raised.value)
        assert message.startswith(f"Milvus at {secured.uri} denied permission while loading the collection (")
        assert "PERMISSION_DENIED" in message and "the user in $QA_MILVUS_TOKEN lacks that privilege" in message
        assert "reader-password" not in message
    finally:
        admin.drop_user("reader", timeout=30)
        disconnect(admin, secured.uri)
