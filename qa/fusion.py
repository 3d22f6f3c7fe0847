"""The hybrid fusion: each index proposes its best passages, and their signals are standardised and added.

Three signals per candidate passage: its cosine with the question, its best sentence's cosine, and its
BM25. Pure numpy on what the index holds, so the fusion can be measured and tuned apart from I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.contents import IndexContents
from qa.lexical import QueryTerms

CANDIDATES = 100
"""How many passages each index proposes before fusion; more than any k a person reads."""


@dataclass(frozen=True)
class FusionWeights:
    """How much each signal counts in hybrid mode: the passage's and its best sentence's cosine, and BM25."""

    passage: float = 1.0
    sentence: float = 1.0
    lexical: float = 1.0


DEFAULT_WEIGHTS = FusionWeights()


def top_indices(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` highest scores, best first, ties broken by lower index."""
    count = min(count, len(scores))
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, count - 1)[:count] if count < len(scores) else np.arange(len(scores))
    order = np.lexsort((part, -scores[part]))
    return part[order].astype(np.int64)


def _standardized(values: np.ndarray) -> np.ndarray:
    spread = float(values.std())
    return (values - values.mean()) / spread if spread > 1e-9 else np.zeros_like(values)


def fuse(
    passage_scores: np.ndarray,
    sentence_scores: np.ndarray,
    lexical_scores: np.ndarray,
    weights: FusionWeights = DEFAULT_WEIGHTS,
) -> np.ndarray:
    """Hybrid score of each candidate: a weighted sum of its signals, each standardised over the candidates.

    Standardising (z-scores) puts cosine similarities and unbounded BM25 scores on one scale; it measured
    a little better than min-max scaling and much better than raw scores on SQuAD (README).
    """
    return (
        weights.passage * _standardized(passage_scores)
        + weights.sentence * _standardized(sentence_scores)
        + weights.lexical * _standardized(lexical_scores)
    ).astype(np.float32)


HIGHLIGHT_LEXICAL_WEIGHT = 2.0
"""Sentence BM25 counts twice the sentence's embedding similarity: measured best on SQuAD (README)."""


def best_sentence(dense_scores: np.ndarray, lexical_scores: np.ndarray) -> int:
    """Index of the sentence that answers best: meaning and shared words, each standardised within the passage."""
    combined = _standardized(dense_scores) + HIGHLIGHT_LEXICAL_WEIGHT * _standardized(lexical_scores)
    return int(np.argmax(combined))


@dataclass(frozen=True)
class Candidates:
    """The passages each index proposes for a question, and their signals (raw, one row each)."""

    rows: np.ndarray
    passage_cosine: np.ndarray
    sentence_cosine: np.ndarray
    """The cosine of each passage's best sentence."""
    bm25: np.ndarray
    fused: np.ndarray
    """The hybrid score: the signals standardised over the candidates and added."""
    all_bm25: np.ndarray
    """BM25 of every passage of the index (computed anyway), for passages beside the candidates."""


def fused_candidates(contents: IndexContents, query: np.ndarray, terms: QueryTerms, pool: int) -> Candidates:
    """The union of the ``pool`` best passages by meaning and by words, with their signals and hybrid score."""
    lexical = contents.lexical.scores(terms)
    _, dense_ids = contents.dense.search(query[None, :], pool)
    rows = np.union1d(dense_ids[0][dense_ids[0] >= 0], top_indices(lexical, pool))
    passage_scores = contents.dense.vectors(rows) @ query
    sentence_scores = best_sentence_scores(contents, rows, query, passage_scores)
    fused = fuse(passage_scores, sentence_scores, lexical[rows], DEFAULT_WEIGHTS)
    return Candidates(rows, passage_scores, sentence_scores, lexical[rows], fused, lexical)


def best_sentence_scores(
    contents: IndexContents, passages: np.ndarray, query: np.ndarray, passage_scores: np.ndarray
) -> np.ndarray:
    """The cosine of each passage's best sentence (one product over all their sentences).

    A passage without sentences (whitespace only; never from qa's splitter) counts as its own best sentence.
    """
    offsets = contents.sentence_offsets
    starts = offsets[passages]
    counts = offsets[passages + 1] - starts
    rows = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    scores = contents.sentence_vectors[rows].astype(np.float32) @ query
    best = np.asarray(passage_scores, dtype=np.float32).copy()
    has = counts > 0
    best[has] = np.maximum.reduceat(scores, (np.cumsum(counts) - counts)[has]) if has.any() else []
    return best


def sentence_scores(contents: IndexContents, passage: int, query: np.ndarray) -> np.ndarray:
    """The cosine of each of a passage's sentences with the question's vector."""
    scores: np.ndarray = contents.sentence_vectors[contents.sentence_rows(passage)].astype(np.float32) @ query
    return scores
