"""The BM25 index beside the dense one: bm25s with English stemming and stop words."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The tokenisation is part of the index format: a query must be cut as the passages were.
TOKENIZATION = {"lower": True, "stopwords": "en_plus", "stemmer": "english", "token_pattern": r"(?u)\b\w+\b"}
BM25_K1 = 1.2
BM25_B = 0.75
BM25_PARAMS = {"k1": BM25_K1, "b": BM25_B, "method": "lucene"}


def _stem_words() -> Any:
    import Stemmer

    return Stemmer.Stemmer(TOKENIZATION["stemmer"]).stemWords


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-case, split into words, drop English stop words, stem: what BM25 counts."""
    import bm25s

    tokens = bm25s.tokenize(
        list(texts),
        lower=True,
        token_pattern=TOKENIZATION["token_pattern"],
        stopwords=TOKENIZATION["stopwords"],
        stemmer=_stem_words(),
        return_ids=False,
        show_progress=False,
    )
    return [list(t) for t in tokens]


class LexicalIndex:
    """BM25 scores of every passage for a question."""

    def __init__(self, bm25: Any) -> None:
        self._bm25 = bm25

    @classmethod
    def build(cls, texts: Sequence[str]) -> LexicalIndex:
        import bm25s

        bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
        bm25.index(tokenize(texts), show_progress=False)
        return cls(bm25)

    @property
    def count(self) -> int:
        return int(self._bm25.scores["num_docs"])

    def scores(self, question: str) -> np.ndarray:
        """BM25 score of each passage, in passage order (zeros when no word of the question is known)."""
        vocab = self._bm25.vocab_dict
        words = [w for w in tokenize([question])[0] if w in vocab]
        if not words:
            return np.zeros(self.count, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(words), dtype=np.float32)

    def text_scores(self, question: str, texts: Sequence[str]) -> np.ndarray:
        """BM25 of a few short texts (a passage's sentences) for ``question``, with the index's word weights."""
        words = set(tokenize([question])[0]) & self._bm25.vocab_dict.keys()
        scores = np.zeros(len(texts), dtype=np.float32)
        if not words or not texts:
            return scores
        indptr = self._bm25.scores["indptr"]
        idf = {}
        for word in words:
            column = self._bm25.vocab_dict[word]
            frequency = int(indptr[column + 1] - indptr[column])
            idf[word] = np.log(1 + (self.count - frequency + 0.5) / (frequency + 0.5))
        tokenized = tokenize(texts)
        average = max(float(np.mean([len(t) for t in tokenized])), 1.0)
        k1, b = BM25_K1, BM25_B
        for i, tokens in enumerate(tokenized):
            norm = k1 * (1 - b + b * len(tokens) / average)
            for word in words:
                if tf := tokens.count(word):
                    scores[i] += idf[word] * tf * (k1 + 1) / (tf + norm)
        return scores

    def save(self, folder: Path) -> None:
        self._bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        import bm25s

        return cls(bm25s.BM25.load(str(folder), mmap=False, allow_pickle=False, show_progress=False))
