"""BM25: qa's tokens and scores against bm25s's, updates against builds, and sentence scores."""

from __future__ import annotations

from pathlib import Path
from random import Random

import bm25s
import numpy as np
import pytest
import Stemmer
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.lexical import BM25_B, BM25_K1, TOKENIZATION, LexicalIndex, QueryTerms, tokenize
from qa.rows import RowMap

WORDS = ["The", "treaty", "was", "signed", "by", "nations", "Pakistan", "never", "joined", "it", "running", "runs"]
texts = st.lists(
    st.one_of(st.sampled_from(WORDS), st.text(max_size=12)).map(str),
    max_size=30,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4))
def test_tokens_are_those_bm25s_would_count(batch: list[str]) -> None:
    # An index built with one and searched with the other must agree word for word.
    expected = bm25s.tokenize(
        batch,
        lower=TOKENIZATION["lower"],
        token_pattern=TOKENIZATION["token_pattern"],
        stopwords=TOKENIZATION["stopwords"],
        stemmer=Stemmer.Stemmer(TOKENIZATION["stemmer"]),
        return_ids=False,
        show_progress=False,
    )
    assert tokenize(batch) == [list(tokens) for tokens in expected]


def test_stop_words_go_and_words_are_stemmed() -> None:
    assert tokenize(["The treaties were signed; Pakistan has not joined them.", ""]) == [
        ["treati", "sign", "pakistan", "join"],
        [],
    ]


def test_sentence_scores_favour_the_sentence_with_the_rarer_shared_word() -> None:
    index = LexicalIndex.build(
        ["Pakistan never joined the treaty.", "The treaty was signed in 1968.", "Treaty talks went on for years."]
    )
    terms = index.terms("When was the treaty signed? treaty")
    assert terms.words == ("treati", "sign", "treati")  # the repeated word counts twice for ranking
    assert terms.idf["sign"] > terms.idf["treati"]  # in one passage, not in all three
    scores = index.text_scores(terms, ["Pakistan never joined the treaty.", "It was signed in 1968.", "Nothing."])
    assert scores[1] > scores[0] > scores[2] == 0
    assert index.scores(index.terms("unknown words only")).tolist() == [0.0, 0.0, 0.0]


def test_passages_without_a_single_word_still_index() -> None:
    index = LexicalIndex.build([":", "the and of", "—"])
    assert index.count == 3
    assert index.scores(index.terms("the treaty")).tolist() == [0.0, 0.0, 0.0]


def _bm25s_scores(texts: list[str], words: list[str]) -> np.ndarray:
    reference = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
    reference.index(tokenize(texts), show_progress=False)
    return np.array([reference.get_scores([word]) for word in words], dtype=np.float32)


def _scores(index: LexicalIndex, words: list[str]) -> np.ndarray:
    return np.array([index.scores(QueryTerms((word,), {})) for word in words], dtype=np.float32)


@settings(max_examples=150, deadline=None)
@given(st.lists(texts, min_size=1, max_size=8), st.integers(min_value=1, max_value=7))
def test_scores_are_those_bm25s_would_compute(batch: list[str], score_slice: int) -> None:
    # Scores are computed a slice of entries at a time; small slices cut passages in two.
    index = LexicalIndex.build(batch, score_slice=score_slice)
    words = sorted(index.vocabulary)
    assert words == sorted({word for tokens in tokenize(batch) for word in tokens})
    if words:
        np.testing.assert_allclose(_scores(index, words), _bm25s_scores(batch, words), rtol=1e-6, atol=0)


@settings(max_examples=150, deadline=None)
@given(st.lists(texts, min_size=1, max_size=8), st.lists(texts, max_size=4), st.randoms(use_true_random=False))
def test_an_update_scores_as_a_build_of_the_new_collection(old: list[str], added: list[str], rng: Random) -> None:
    # Passages kept (some dropped, reordered) from the old collection, and new ones among them.
    kept = rng.sample(range(len(old)), rng.randint(0, len(old)))
    rows = [*kept, *([-1] * len(added))]
    rng.shuffle(rows)
    if not rows:
        return
    new_texts = iter(added)
    collection = [old[row] if row >= 0 else next(new_texts) for row in rows]
    pairs = [(new, row) for new, row in enumerate(rows) if row >= 0]
    row_map = RowMap.from_pairs(len(rows), [new for new, _ in pairs], [row for _, row in pairs])
    updated = LexicalIndex.build(old).updated(row_map, added)
    rebuilt = LexicalIndex.build(collection)
    assert updated.count == rebuilt.count == len(collection)
    assert sorted(updated.vocabulary) == sorted(rebuilt.vocabulary)
    for question in [*collection, "treaty signed Pakistan"]:
        terms = updated.terms(question)
        assert terms == rebuilt.terms(question)
        np.testing.assert_array_equal(updated.scores(terms), rebuilt.scores(terms))


def test_word_counts_survive_save_and_load(tmp_path: Path) -> None:
    index = LexicalIndex.build(["Pakistan never joined the treaty.", "The treaty was signed in 1968."])
    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    updated = loaded.updated(RowMap.from_pairs(2, [0], [1]), ["Talks on the treaty went on for years."])
    assert updated.scores(updated.terms("treaty signed")).tolist() == pytest.approx(
        LexicalIndex.build(["The treaty was signed in 1968.", "Talks on the treaty went on for years."])
        .scores(updated.terms("treaty signed"))
        .tolist()
    )
