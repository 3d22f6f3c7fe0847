"""The Milvus backend on Milvus Lite: the same answers as FAISS, rebuilds, restarts, and clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import qa
from qa.errors import IncompatibleIndex
from qa.milvus import MilvusStore, MilvusUnavailable, connect, disconnect, public_uri
from qa.vectorstore import FaissStore
from tests.article_questions import QUESTIONS
from tests.conftest import ROOT, SQUAD, RecordingEncoder, require_data, require_milvus

require_milvus()  # qa.milvus imports pymilvus only when used

UNREACHABLE = "http://127.0.0.1:1"  # nothing listens on port 1: the connection is refused at once


@pytest.fixture
def closing() -> Iterator[list[qa.Index]]:
    """Indexes to close after the test, so that each Milvus Lite file is released."""
    opened: list[qa.Index] = []
    yield opened
    for index in opened:
        index.close()


def _collections(db: Path) -> list[str]:
    uri = str(db.absolute())
    client = connect(uri)
    try:
        return sorted(client.list_collections())
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
    article_index: qa.Index, tmp_path: Path, closing: list[qa.Index]
) -> None:
    milvus = qa.Index.build(
        article_index.corpus or "", backend="milvus", uri=str(tmp_path / "milvus.db"), previous=article_index
    )
    closing.append(milvus)
    assert milvus.manifest.backend == "milvus" and milvus.manifest.dense_type == "flat"
    _assert_same_hits(article_index, milvus, [q for q, _ in QUESTIONS])
    for question, _ in QUESTIONS[:5]:  # hybrid reads candidates' vectors back from the collection
        assert [(h.passage, round(h.score, 5), h.highlights) for h in milvus.search(question, 3)] == [
            (h.passage, round(h.score, 5), h.highlights) for h in article_index.search(question, 3)
        ]
    hits = milvus.search("Which treaty has Pakistan not joined?", k=1000, mode="dense")
    assert len(hits) == len(article_index)


@pytest.mark.slow
def test_squad_slice_gets_the_same_passages_from_milvus_and_faiss(tmp_path: Path, closing: list[qa.Index]) -> None:
    require_data(SQUAD)
    from qa.evaluation import load_squad

    documents, questions = load_squad(SQUAD)
    documents = documents[:2]
    faiss = qa.Index.build(documents, progress=False)
    # The passage vectors come from the FAISS index: both stores search the very same vectors.
    milvus = qa.Index.build(documents, backend="milvus", uri=str(tmp_path / "milvus.db"), previous=faiss)
    closing.append(milvus)
    assert len(milvus) == len(faiss) > 50
    asked = [q.question for q in questions if q.article < 2][::8]
    assert len(asked) >= 25
    _assert_same_hits(faiss, milvus, asked, k=10)


def test_cli_builds_on_milvus_lite_and_answers_like_faiss(
    tmp_path: Path, article_index: qa.Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.cli import main

    monkeypatch.chdir(tmp_path)
    corpus = str(article_index.corpus)
    assert main(["build", corpus, "-o", "idx", "-q", "--backend", "milvus", "--uri", "./milvus.db"]) == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["dense"]["uri"] == "../milvus.db"  # relative to the index folder, like the corpus
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
    assert _collections(tmp_path / "milvus.db") == [rebuilt["collection"]]
    # Back to FAISS: the collection goes too.
    assert main(["build", corpus, "-o", "idx", "-q", "--backend", "faiss"]) == 0
    assert (tmp_path / "idx" / "vectors.faiss").exists() and _collections(tmp_path / "milvus.db") == []


# ------------------------------------------------------------------------------ rebuilds and saves


def test_incremental_rebuild_on_milvus_embeds_only_new_text(
    writable_article: tuple[Path, Path], tmp_path: Path, closing: list[qa.Index]
) -> None:
    corpus, faiss_path = writable_article
    db = tmp_path / "milvus.db"
    old = qa.Index.build(corpus, backend="milvus", uri=str(db), previous=qa.Index.load(faiss_path))
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
    assert _collections(db) == [removed.manifest.dense["collection"]]


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
    article_index: qa.Index, tmp_path: Path, closing: list[qa.Index]
) -> None:
    db, path = tmp_path / "milvus.db", tmp_path / "idx"
    first = qa.Index.build(article_index.corpus or "", backend="milvus", uri=str(db), previous=article_index)
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
    article_index: qa.Index, tmp_path: Path, closing: list[qa.Index]
) -> None:
    db = tmp_path / "milvus.db"
    built = qa.Index.build(article_index.corpus or "", backend="milvus", uri=str(db), previous=article_index)
    closing.append(built)
    built.save(tmp_path / "idx")
    built.contents.dense.discard()
    with pytest.raises(IncompatibleIndex, match=r"the Milvus collection qa_\w+ at .*milvus.db does not exist"):
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


def test_milvus_store_adds_deletes_searches_and_returns_exact_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    uri = str(tmp_path / "milvus.db")
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
        assert store.describe()["uri"] == uri and store.describe(tmp_path / "idx")["uri"] == "../milvus.db"
    finally:
        store.discard()
    assert _collections(tmp_path / "milvus.db") == []
