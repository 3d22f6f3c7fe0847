"""The BM25 index beside the dense one: bm25s with English stemming and stop words."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The tokenisation is part of the index format: a query must be cut as the passages were.
TOKEN_PATTERN = r"(?u)\b\w+\b"
TOKENIZATION = {"lower": True, "stopwords": "en_plus", "stemmer": "english", "token_pattern": TOKEN_PATTERN}
BM25_K1 = 1.2
BM25_B = 0.75
BM25_PARAMS = {"k1": BM25_K1, "b": BM25_B, "method": "lucene"}


_WORD = re.compile(TOKEN_PATTERN)
_stemmers = threading.local()  # a PyStemmer stemmer keeps state: one per thread


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


def _stem_words(words: list[str]) -> list[str]:
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        import Stemmer

        stemmer = _stemmers.english = Stemmer.Stemmer("english")
    stemmed: list[str] = stemmer.stemWords(words)
    return stemmed


def tokenize(texts: Iterable[str]) -> list[list[str]]:
    """Lower-case, split into words, drop English stop words, stem: what BM25 counts.

    The same tokens as ``bm25s.tokenize`` with ``TOKENIZATION`` (a test holds them equal), without its
    per-call vocabulary: a search tokenizes the question and each hit's sentences, and this is about
    three times faster there. Each distinct word is stemmed once per call, which makes a collection's
    tokens half again as fast as stemming text by text.
    """
    stopwords = _stopwords()
    stems: dict[str, str] = {}
    tokens = []
    for text in texts:
        words = [w for w in _WORD.findall(text.lower()) if w not in stopwords]
        if new := [w for w in dict.fromkeys(words) if w not in stems]:
            stems.update(zip(new, _stem_words(new), strict=True))
        tokens.append([stems[w] for w in words])
    return tokens


@dataclass(frozen=True)
class QueryTerms:
    """A question's words that the index knows, stemmed, and their idf.

    ``words`` keeps repeats: ranking counts a repeated word again (as Lucene does); a sentence's
    score for the highlight counts each word once.
    """

    words: tuple[str, ...]
    idf: dict[str, float]


class LexicalIndex:
    """BM25 scores of every passage for a question."""

    def __init__(self, bm25: Any) -> None:
        self._bm25 = bm25

    @classmethod
    def build(cls, texts: Iterable[str]) -> LexicalIndex:
        import bm25s

        bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
        tokens = tokenize(texts)  # a generator stays one: texts are made and dropped one at a time
        if not any(tokens):  # only stop words and punctuation: bm25s cannot index an empty vocabulary
            tokens = [[""] for _ in tokens]  # and "" is no word a question can have
        bm25.index(tokens, show_progress=False)
        return cls(bm25)

    @property
    def count(self) -> int:
        return int(self._bm25.scores["num_docs"])

    def terms(self, question: str) -> QueryTerms:
        """The question's words as BM25 counts them: those the index knows, with their weights (idf)."""
        vocab = self._bm25.vocab_dict
        indptr = self._bm25.scores["indptr"]
        words = tuple(w for w in tokenize([question])[0] if w in vocab)
        idf = {}
        for word in words:
            frequency = int(indptr[vocab[word] + 1] - indptr[vocab[word]])
            idf[word] = float(np.log(1 + (self.count - frequency + 0.5) / (frequency + 0.5)))
        return QueryTerms(words, idf)

    def scores(self, terms: QueryTerms) -> np.ndarray:
        """BM25 score of each passage, in passage order (zeros when no word of the question is known)."""
        if not terms.words:
            return np.zeros(self.count, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(list(terms.words)), dtype=np.float32)

    def text_scores(self, terms: QueryTerms, texts: Sequence[str]) -> np.ndarray:
        """BM25 of a few short texts (a passage's sentences), with the index's word weights."""
        scores = np.zeros(len(texts), dtype=np.float32)
        if not terms.words or not texts:
            return scores
        tokenized = tokenize(texts)
        average = max(sum(map(len, tokenized)) / len(tokenized), 1.0)
        k1, b = BM25_K1, BM25_B
        for i, tokens in enumerate(tokenized):
            norm = k1 * (1 - b + b * len(tokens) / average)
            for word, idf in terms.idf.items():
                if tf := tokens.count(word):
                    scores[i] += idf * tf * (k1 + 1) / (tf + norm)
        return scores

    def save(self, folder: Path) -> None:
        self._bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        import bm25s

        return cls(bm25s.BM25.load(str(folder), mmap=False, allow_pickle=False, show_progress=False))
