"""The answer-sentence ranker: its evidence, computed two ways that must agree, and what a search does with it."""

from __future__ import annotations

import numpy as np
import pytest

import qa
from qa.lexical import LexicalIndex
from qa.ranking import FEATURES, default_ranker, question_type, words_from_counts, words_from_texts
from qa.rows import RowMap
from tests.article_questions import QUESTIONS


def _neighbours(contents: object, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    documents = contents.sentence_documents  # type: ignore[attr-defined]
    before = np.where((rows > 0) & (documents[np.maximum(rows - 1, 0)] == documents[rows]), rows - 1, -1)
    last = len(documents) - 1
    after = np.where((rows < last) & (documents[np.minimum(rows + 1, last)] == documents[rows]), rows + 1, -1)
    return before, after


def test_word_evidence_from_kept_counts_equals_tokenizing_the_sentences(article_index: qa.Index) -> None:
    contents = article_index.contents
    assert contents.lexical.has_sentence_counts
    rows = np.arange(len(contents.sentence_vectors))
    before, after = _neighbours(contents, rows)
    for question, _ in QUESTIONS:
        terms = contents.lexical.terms(question)
        fast, slow = (
            words_from_counts(contents, terms, rows, before, after),
            words_from_texts(contents, terms, rows, before, after),
        )
        for name, a, b in zip(("bm25", "coverage", "window coverage", "novelty", "length"), fast, slow, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=f"{name}: {question}")


def test_sentence_counts_of_an_update_equal_those_of_a_build() -> None:
    old_passages = [["Pakistan never joined the treaty.", "Talks went on."], ["The treaty was signed in 1968."]]
    new_passages = [["The treaty was signed in 1968."], ["Glaciers melt.", "They retreat fast."]]
    old = LexicalIndex.build([" ".join(p) for p in old_passages], sentence_texts=[s for p in old_passages for s in p])
    passages = RowMap.from_pairs(2, [0], [1])
    sentences = RowMap.from_pairs(3, [0], [2])
    updated = old.updated(
        passages, [" ".join(new_passages[1])], sentence_rows=sentences, new_sentence_texts=new_passages[1]
    )
    built = LexicalIndex.build([" ".join(p) for p in new_passages], sentence_texts=[s for p in new_passages for s in p])
    assert dict(updated.vocabulary) == dict(built.vocabulary)
    for rows in ([0, 1, 2], [2, 0]):
        a, b = updated.sentence_words(np.array(rows)), built.sentence_words(np.array(rows))
        assert (
            a.indptr.tolist() == b.indptr.tolist()
            and a.ids.tolist() == b.ids.tolist()
            and a.counts.tolist() == b.counts.tolist()
        )


def test_question_types() -> None:
    assert question_type("When did the talks happen?") == "date"
    assert (
        question_type("In what year was it signed?") == "other" or question_type("What year was it signed?") == "date"
    )
    assert question_type("How many warheads are there?") == "number"
    assert question_type("Who met Bush?") == "person"
    assert question_type("Where did they meet?") == "place"
    assert question_type("Why did it matter?") == "other"


def test_a_hybrid_hit_is_ranked_by_its_best_sentence_which_it_highlights(article_index: qa.Index) -> None:
    ranker = default_ranker()
    assert set(ranker.sentences.features) <= set(FEATURES)
    for question, _ in QUESTIONS[:10]:
        hits = article_index.search(question, 5)
        assert all(h.confidence is not None and 0.0 <= h.confidence <= 1.0 for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert all(len(h.highlights) == 1 for h in hits)
    for mode in ("dense", "lexical"):
        assert all(h.confidence is None for h in article_index.search(QUESTIONS[0].question, 3, mode=mode))


@pytest.mark.parametrize("mode", ["dense", "lexical"])
def test_answers_in_single_signal_modes_are_never_flagged(article_index: qa.Index, mode: str) -> None:
    answer = article_index.ask("How many nuclear warheads does Pakistan have?", 3, mode=mode)
    assert answer.answered and len(answer.hits) == 3
