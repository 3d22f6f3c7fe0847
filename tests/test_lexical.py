"""BM25 words: qa's tokenizer against bm25s's, and sentence scores with the index's word weights."""

from __future__ import annotations

import bm25s
import Stemmer
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.lexical import TOKENIZATION, LexicalIndex, tokenize

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
