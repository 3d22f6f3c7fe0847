"""Index: build, search, save, load, and what happens with bad input or a damaged index."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import qa
from qa.embedding import DEFAULT_RUNTIME, Encoder
from qa.errors import EmptyCorpus, IncompatibleIndex, IndexNotFound
from qa.fusion import best_sentence_scores
from qa.manifest import format_version_for
from tests.conftest import CORPUS, RecordingEncoder

QUESTION = "Which treaty has Pakistan not joined?"


def test_npt_question_finds_the_npt_passage_first(article_index: qa.Index) -> None:
    for mode in ("hybrid", "dense"):
        hit = article_index.search(QUESTION, k=3, mode=mode)[0]
        assert "not a signatory to the NPT" in hit.text, mode
        assert hit.section == "The Global Impact"


def test_hits_carry_passage_fields_ranks_and_highlight(article_index: qa.Index) -> None:
    hits = article_index.search(QUESTION, k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score >= hits[1].score >= hits[2].score
    top = hits[0]
    document = (Path(article_index.corpus or "") / top.doc_id).read_text(encoding="utf-8")
    assert document[top.start : top.end] == top.text
    assert top.title == "Putin and Bush on Pakistan’s Nuclear Proliferation"
    assert top.highlighted_text.startswith("As Pakistan is not a signatory to the NPT")
    record = top.to_dict()
    assert {"text", "score", "rank", "doc_id", "title", "section", "start", "end", "highlights"} <= set(record)
    json.dumps(record)


def test_dense_scores_match_brute_force_numpy(article_index: qa.Index, encoder: qa.Index) -> None:
    from qa.embedding import embedding_text

    passages = article_index.passages
    vectors = article_index.encoder.encode([embedding_text(p) for p in passages])
    query = article_index.encoder.encode([QUESTION])[0]
    expected = np.argsort(-(vectors @ query), kind="stable")[:5]
    hits = article_index.search(QUESTION, k=5, mode="dense")
    assert [h.passage.id for h in hits] == [passages[i].id for i in expected]
    assert np.allclose([h.score for h in hits], np.sort(vectors @ query)[::-1][:5], atol=1e-5)


def test_k_larger_than_the_index_returns_every_passage(article_index: qa.Index) -> None:
    for mode in ("hybrid", "dense", "lexical"):
        hits = article_index.search(QUESTION, k=1000, mode=mode)
        assert len(hits) == len(article_index) and len({h.passage.id for h in hits}) == len(article_index)


@pytest.mark.parametrize(
    ("question", "k", "mode", "message"),
    [
        ("", 3, "hybrid", "the question is empty"),
        ("   \n\t", 3, "hybrid", "the question is empty"),
        ("\x00\x01", 3, "hybrid", "the question is empty"),
        ("x" * 100_000, 3, "hybrid", "the question has 100,000 characters; ask in at most 2,000"),
        (QUESTION, 0, "hybrid", "k must be a whole number of at least 1; got 0"),
        (QUESTION, -2, "hybrid", "k must be a whole number of at least 1; got -2"),
        (QUESTION, 3, "fuzzy", "mode must be one of hybrid, dense, lexical; got 'fuzzy'"),
    ],
)
def test_bad_search_arguments_raise_value_error(
    article_index: qa.Index, question: str, k: int, mode: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        article_index.search(question, k, mode=mode)


def test_save_load_round_trip_gives_the_same_hits_and_scores(article_index: qa.Index, tmp_path: Path) -> None:
    article_index.save(tmp_path / "copy")
    loaded = qa.Index.load(tmp_path / "copy")
    for mode in ("hybrid", "dense", "lexical"):
        before = article_index.search("What did Putin fear?", k=5, mode=mode)
        after = loaded.search("What did Putin fear?", k=5, mode=mode)
        assert [(h.passage, h.score, h.highlights) for h in before] == [
            (h.passage, h.score, h.highlights) for h in after
        ]


def test_a_loaded_index_answers_on_after_its_folder_is_replaced(article_index: qa.Index, tmp_path: Path) -> None:
    # A server maps the sentence vectors rather than reading them; a rebuild swaps the folder and
    # deletes the old one under it, and the server must answer from what it loaded until it reloads.
    article_index.save(tmp_path / "served")
    served = qa.Index.load(tmp_path / "served")
    assert isinstance(served.contents.sentence_vectors, np.memmap)
    before = [(h.passage, h.score, h.highlights) for h in served.search("What did Putin fear?", k=5)]
    old_file = tmp_path / "served" / "sentences.npy"
    old_inode = old_file.stat().st_ino
    article_index.save(tmp_path / "served")
    assert old_file.stat().st_ino != old_inode  # the file the index mapped is gone
    assert [(h.passage, h.score, h.highlights) for h in served.search("What did Putin fear?", k=5)] == before
    np.testing.assert_array_equal(
        served.contents.sentence_vectors, article_index.contents.sentence_vectors
    )  # every page


def test_manifest_records_what_built_the_index(article_index_path: Path) -> None:
    manifest = json.loads((article_index_path / "manifest.json").read_text())
    # The default runtime's: an ONNX index is of the format an older qa (which would embed on torch) refuses.
    assert manifest["runtime"] == DEFAULT_RUNTIME
    assert manifest["format_version"] == format_version_for(DEFAULT_RUNTIME)
    assert manifest["model"] == "all-MiniLM-L6-v2"
    assert manifest["dim"] == 384
    assert manifest["count"] == len(list((article_index_path / "passages.jsonl").open()))
    assert manifest["chunking"] == {
        "max_words": qa.splitting.DEFAULT_MAX_WORDS,
        "overlap": 0,
        "max_tokens": 256,
        "splitter": qa.splitting.SPLITTER_VERSION,
    }
    assert manifest["embedding"] == {"passage_vectors": "own", "context": "title+section"}
    assert manifest["corpus"]["path"] == "../corpus" and len(manifest["corpus"]["fingerprint"]) == 64
    assert manifest["qa_version"] == qa.__version__ and manifest["created"].endswith("Z")
    assert sorted(p.name for p in article_index_path.iterdir()) == [
        "bm25",
        "documents.jsonl",
        "manifest.json",
        "passages.jsonl",
        "sentences.npy",
        "vectors.faiss",
    ]


def test_build_from_documents_and_from_a_folder_agree(article_index: qa.Index) -> None:
    document = qa.Document(
        id="article.md",
        text=(Path(article_index.corpus or "") / article_index.documents[0].id).read_text(),
        title="T",
    )
    index = qa.Index.build([document], progress=False)
    assert [p.text for p in index.passages] == [p.text for p in article_index.passages]
    assert index.passages[0].id == "article.md#0" and index.passages[0].title == "T"


def test_build_rejects_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(EmptyCorpus, match="does not exist"):
        qa.Index.build(tmp_path / "missing")
    with pytest.raises(EmptyCorpus, match="has no readable documents"):
        (tmp_path / "empty").mkdir()
        qa.Index.build(tmp_path / "empty")
    with pytest.raises(EmptyCorpus, match="no documents to index"):
        qa.Index.build([])
    with pytest.raises(EmptyCorpus, match="the documents have no text"):
        qa.Index.build([qa.Document(id="a", text="   ")])
    with pytest.raises(ValueError, match="two documents have the id 'a'"):
        qa.Index.build([qa.Document(id="a", text="x."), qa.Document(id="a", text="y.")])
    with pytest.raises(ValueError, match="index_type must be one of"):
        qa.Index.build([qa.Document(id="a", text="x.")], index_type="tree")


def test_stale_when_the_corpus_or_settings_change(writable_article: tuple[Path, Path]) -> None:
    corpus, path = writable_article
    index = qa.Index.load(path)
    assert index.stale_reason() is None
    assert index.stale_reason(max_words=7) == f"it was built with max_words={qa.splitting.DEFAULT_MAX_WORDS}, not 7"
    assert "not 'other-model'" in (index.stale_reason(model="other-model") or "")
    (corpus / "new.md").write_text("# New\n\nA new document about treaties.", encoding="utf-8")
    assert index.stale_reason() == f"the documents in {corpus} have changed since it was built"


def test_incremental_rebuild_embeds_only_changed_text_and_equals_a_full_rebuild(
    writable_article: tuple[Path, Path],
) -> None:
    corpus, path = writable_article
    old = qa.Index.load(path)
    (corpus / "extra.md").write_text("# Extra\n\nGlaciers in Patagonia are retreating fast.", encoding="utf-8")
    recording = RecordingEncoder(old.encoder)
    updated = qa.Index.build(corpus, previous=old, encoder=recording, progress=False)
    # The new passage (with its title) and its one sentence, nothing else.
    assert recording.texts == [
        "Extra\nGlaciers in Patagonia are retreating fast.",
        "Glaciers in Patagonia are retreating fast.",
    ]
    assert updated.build_report is not None and updated.build_report.embedded_texts == 2
    full = qa.Index.build(corpus, progress=False)
    question = "Which glaciers are retreating?"
    assert [(h.passage, round(h.score, 5)) for h in updated.search(question, 5)] == [
        (h.passage, round(h.score, 5)) for h in full.search(question, 5)
    ]
    (corpus / "extra.md").unlink()
    removed = qa.Index.build(corpus, previous=updated, progress=False)
    assert all(p.doc_id != "extra.md" for p in removed.passages)


def test_load_missing_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound, match=re.escape(f"no index at {tmp_path / 'none'}: build one with `qa build")):
        qa.Index.load(tmp_path / "none")


def _damaged(article_index_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "damaged"
    shutil.copytree(article_index_path, path)
    return path


def test_truncated_or_corrupted_faiss_file_is_reported(article_index_path: Path, tmp_path: Path) -> None:
    path = _damaged(article_index_path, tmp_path)
    data = (path / "vectors.faiss").read_bytes()
    (path / "vectors.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        IncompatibleIndex, match=re.escape("vectors.faiss is missing, truncated or changed since it was saved; rebuild")
    ):
        qa.Index.load(path)
    (path / "vectors.faiss").write_bytes(bytes(len(data)))
    with pytest.raises(IncompatibleIndex, match="truncated or changed"):
        qa.Index.load(path)


def test_unknown_manifest_version_and_missing_fields_are_reported(article_index_path: Path, tmp_path: Path) -> None:
    path = _damaged(article_index_path, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(
        IncompatibleIndex, match=re.escape("has index format 99; this qa reads formats 1, 2 and 3. Rebuild it")
    ):
        qa.Index.load(path)
    del manifest["dim"], manifest["files"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleIndex, match="lacks dim, files; it was not written by qa or is damaged"):
        qa.Index.load(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(IncompatibleIndex, match="is unreadable"):
        qa.Index.load(path)


def test_passage_count_disagreeing_with_faiss_is_reported(article_index_path: Path, tmp_path: Path) -> None:
    path = _damaged(article_index_path, tmp_path)
    lines = (path / "passages.jsonl").read_text().splitlines(keepends=True)
    (path / "passages.jsonl").write_text("".join(lines[:-1]))
    manifest = json.loads((path / "manifest.json").read_text())
    from qa.index_files import file_record

    manifest["files"]["passages.jsonl"] = file_record(path / "passages.jsonl").to_json()  # as if written so
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        IncompatibleIndex, match=r"inconsistent: the manifest says \d+ passages, the FAISS file holds \d+"
    ):
        qa.Index.load(path)


def test_best_sentence_scores_are_each_passages_best_sentence(article_index: qa.Index) -> None:
    contents, encoder = article_index.contents, article_index.encoder
    query = encoder.encode_query(QUESTION)
    passages = np.array([4, 0, 2, 3, 0])  # any order, repeats allowed
    # Each sentence embedded again by the model: the index keeps its vectors as float16.
    expected = [
        float((encoder.encode([contents.passages[i].text[s:e] for s, e in contents.sentences[i]]) @ query).max())
        for i in passages.tolist()
    ]
    own = contents.dense.vectors(passages) @ query
    np.testing.assert_allclose(best_sentence_scores(contents, passages, query, own), expected, atol=2e-3)


def test_sentence_mean_passages_embed_only_sentences(article_index: qa.Index, tmp_path: Path) -> None:
    encoder = article_index.encoder
    recording = RecordingEncoder(encoder)
    fast = qa.Index.build(
        article_index.corpus or "", encoder=recording, passage_vectors_from="sentence-mean", progress=False
    )
    sentences = [p.text[s:e] for p, spans in zip(fast.passages, fast.contents.sentences, strict=True) for s, e in spans]
    assert sorted(recording.texts) == sorted(set(sentences))  # one model pass: sentences only, each once
    first = fast.contents.sentences[0]
    weights = np.array([e - s for s, e in first], dtype=np.float32)
    mean = weights @ encoder.encode([fast.passages[0].text[s:e] for s, e in first])
    np.testing.assert_allclose(fast.contents.dense.vectors(np.array([0]))[0], mean / np.linalg.norm(mean), atol=2e-3)
    for mode in ("hybrid", "dense"):
        assert "not a signatory to the NPT" in fast.search(QUESTION, 1, mode=mode)[0].text, mode
    fast.save(tmp_path / "fast")
    assert qa.Index.load(tmp_path / "fast").manifest.passage_vectors == "sentence-mean"


def test_passage_vectors_are_reused_only_when_made_alike(article_index: qa.Index) -> None:
    corpus = article_index.corpus or ""
    fast = qa.Index.build(corpus, passage_vectors_from="sentence-mean", previous=article_index, progress=False)
    # Its sentence vectors all came from the earlier index: they are the model's either way.
    np.testing.assert_array_equal(fast.contents.sentence_vectors, article_index.contents.sentence_vectors)
    again = qa.Index.build(corpus, previous=fast, progress=False)
    assert again.manifest.passage_vectors == "sentence-mean"  # a rebuild keeps the choice
    back = qa.Index.build(corpus, previous=fast, passage_vectors_from="own", progress=False)
    # Passage vectors of the sentence-mean index are not taken for the model's own: embedded again.
    np.testing.assert_allclose(
        back.contents.dense.vectors(np.arange(len(back))),
        article_index.contents.dense.vectors(np.arange(len(back))),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="passage_vectors_from must be one of own, sentence-mean; got 'fast'"):
        qa.Index.build(corpus, passage_vectors_from="fast")


def test_a_rebuild_splits_only_changed_documents(writable_article: tuple[Path, Path]) -> None:
    corpus, path = writable_article
    (corpus / "extra.md").write_text("# Extra\n\nGlaciers in Patagonia are retreating fast.", encoding="utf-8")
    (corpus / "zcopy.md").write_text("# Copy\n\nGlaciers in Patagonia are retreating fast.", encoding="utf-8")
    old = qa.Index.build(corpus, previous=qa.Index.load(path), progress=False)
    (corpus / "extra.md").write_text("# Extra\n\nGlaciers in the Alps shrink too.", encoding="utf-8")
    updated = qa.Index.build(corpus, previous=old, progress=False)
    # The changed document, and the copy that lost its passage to extra.md before (it may not now).
    assert updated.build_report is not None and updated.build_report.split_documents == ("extra.md", "zcopy.md")
    full = qa.Index.build(corpus, progress=False)
    assert updated.passages == full.passages and updated.contents.sentences == full.contents.sentences
    assert updated.documents == full.documents
    resized = qa.Index.build(corpus, previous=updated, max_words=80, progress=False)
    assert resized.build_report is not None  # other passage sizes: every document is split again
    assert resized.build_report.split_documents == ("extra.md", "putin-bush-pakistan-nuclear.md", "zcopy.md")
    # A new document, first in order, now holds the article's first passage: the article loses it.
    article = qa.Index.load(path).passages[0].text
    (corpus / "aaa.md").write_text(article, encoding="utf-8")
    taken = qa.Index.build(corpus, previous=updated, progress=False)
    full = qa.Index.build(corpus, progress=False)
    assert taken.passages == full.passages and taken.documents == full.documents
    assert [p.doc_id for p in taken.passages if p.text == article] == ["aaa.md"]


def _article_sections() -> list[qa.Document]:
    """The bundled article cut at its headings: a small real collection of several documents."""
    text = (CORPUS / "putin-bush-pakistan-nuclear.md").read_text(encoding="utf-8")
    parts = [part.strip() for part in text.split("\n## ") if part.strip()]
    return [qa.Document(f"part-{i}.md", part, f"Part {i}") for i, part in enumerate(parts)]


def _assert_same_answers(index: qa.Index, expected: qa.Index) -> None:
    """Each mode's top 8 for a few questions: the same passages, the same scores to 1e-5 (the model's
    vector of one text differs that much when it is embedded in another batch, padded to another length;
    the hybrid score, a weighted sum of a sentence's evidence, to 1e-4 of itself)."""
    for question in ["Which treaty has Pakistan not joined?", "What did Putin tell Bush?", "glaciers retreating"]:
        for mode in ("hybrid", "dense", "lexical"):
            hits, wanted = index.search(question, 8, mode=mode), expected.search(question, 8, mode=mode)
            assert [h.passage for h in hits] == [h.passage for h in wanted], (question, mode)
            assert [h.score for h in hits] == pytest.approx([h.score for h in wanted], abs=1e-5, rel=1e-4)


def test_an_updated_hnsw_index_searches_as_a_new_build(tmp_path: Path) -> None:
    def build(documents: list[qa.Document], previous: qa.Index | None = None) -> qa.Index:
        return qa.Index.build(documents, index_type="hnsw", max_words=30, previous=previous, progress=False)

    documents = _article_sections()
    old = build(documents)
    assert len(old) > 30 and len(documents) >= 5
    # The first document removed (every row after it shifts) and one added: vectors go and come.
    changed = [*documents[1:], qa.Document("extra.md", "Glaciers in Patagonia are retreating fast.", "Extra")]
    updated = build(changed, old)
    assert updated.manifest.dense["slot_rows"] and updated.manifest.dense["removed"] > 0
    full = build(changed)
    assert "slot_rows" not in full.manifest.dense
    assert updated.passages == full.passages
    _assert_same_answers(updated, full)
    updated.save(tmp_path / "index")
    loaded = qa.Index.load(tmp_path / "index")
    _assert_same_answers(loaded, full)
    rows = np.arange(len(full))
    np.testing.assert_allclose(loaded.contents.dense.vectors(rows), full.contents.dense.vectors(rows), atol=1e-5)
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "index", damaged)
    slot_rows = np.load(damaged / "vector_rows.npy")
    np.save(damaged / "vector_rows.npy", slot_rows[::-1])  # the map shuffled: passages would get others' vectors
    with pytest.raises(IncompatibleIndex, match=re.escape("vector_rows.npy is missing, truncated or changed")):
        qa.Index.load(damaged)
    # An update of an update: the map from graph positions to passages carries over.
    again = [*changed[:-1], qa.Document("extra.md", "Glaciers in the Alps shrink too.", "Extra")]
    twice = build(again, loaded)
    assert twice.manifest.dense["removed"] > updated.manifest.dense["removed"]
    _assert_same_answers(twice, build(again))
    # Most of the graph gone: built anew rather than walked through removed vectors.
    assert "slot_rows" not in build(documents[:2], twice).manifest.dense


def test_an_edit_reuses_the_unchanged_passages_of_the_edited_document(encoder: Encoder) -> None:
    def build(
        documents: list[qa.Document], previous: qa.Index | None = None, encoder: Encoder | None = None
    ) -> qa.Index:
        return qa.Index.build(
            documents, index_type="hnsw", max_words=30, previous=previous, encoder=encoder, progress=False
        )

    documents = _article_sections()
    old = build(documents)
    # A word changed at the end of the longest document: its last passage changes, the others only move.
    longest = max(range(len(documents)), key=lambda i: len(documents[i].text))
    text = documents[longest].text
    cut = text.rindex(" ", 0, len(text) - 2)
    edited = list(documents)
    edited[longest] = qa.Document(documents[longest].id, text[:cut] + " indeed" + text[cut:], documents[longest].title)
    recording = RecordingEncoder(encoder)
    updated = build(edited, old, recording)
    changed = [p for p in updated.passages if p.text not in {q.text for q in old.passages}]
    assert len(changed) == 1 and "indeed" in changed[0].text
    # That passage, and its sentence with the edit: everything else is reused.
    assert len(recording.texts) == 2 and all("indeed" in t for t in recording.texts)
    assert updated.manifest.dense["removed"] == 1
    _assert_same_answers(updated, build(edited))
