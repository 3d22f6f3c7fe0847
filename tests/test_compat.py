"""Indexes saved before the Index refactor (tests/data/format-2) load and answer exactly as they did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import qa

FIXTURE = Path(__file__).resolve().parent / "data" / "format-2"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy (loading takes locks beside the index, and the repository's copy must stay as it is)."""
    copy = tmp_path_factory.mktemp("compat") / "format-2"
    shutil.copytree(FIXTURE, copy)
    return copy


@pytest.mark.parametrize("name", ["flat", "hnsw-updated"])
def test_an_index_saved_before_answers_as_it_did(saved: Path, name: str) -> None:
    """Its files are read as they were written: dense and lexical searches, which rank by the stored vectors
    and word counts alone, answer exactly as they did. Hybrid search ranks by a model that ships with qa
    and improves from version to version; it must still find the answers."""
    expected = json.loads((saved / "expected.json").read_text(encoding="utf-8"))[name]
    index = qa.Index.load(saved / name)
    # The same corpus, but split before list items joined their lead-in: a refresh would rebuild it.
    assert index.stale_reason() == "it was split by another version of qa's splitter (1, now 2)"
    for mode in ("dense", "lexical"):
        for question, hits in expected[mode].items():
            got = index.search(question, 3, mode=mode)
            assert [(h.passage.id, [list(s) for s in h.highlights]) for h in got] == [
                (passage, highlights) for passage, _, highlights in hits
            ], (mode, question)
            assert [h.score for h in got] == pytest.approx([score for _, score, _ in hits], abs=1e-4)
    hit = index.search("Which treaty has Pakistan not joined?", 1)[0]
    assert "not a signatory to the NPT" in hit.highlighted_text and hit.confidence is not None
    assert index.search("When did Pakistan test its weapons?", 1)[0].doc_id == "notes.md"


def test_an_index_saved_before_is_updated_in_place(saved: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(saved / "corpus", corpus)
    (corpus / "more.md").write_text("# More\n\nGlaciers in Patagonia are retreating fast.\n", encoding="utf-8")
    old = qa.Index.load(saved / "hnsw-updated")
    new = qa.Index.build(corpus, previous=old, index_type="hnsw", progress=False)
    # Split by another splitter version: every document is split again, and every passage whose text and
    # sentences came out the same keeps its vectors (all but the one holding a list, now one sentence).
    assert new.build_report is not None and new.build_report.split_documents == ("article.md", "more.md", "notes.md")
    assert new.build_report.kept_passages == len(old) - 1
    assert new.search("Which glaciers are retreating?", 1)[0].doc_id == "more.md"
