"""From a question to ranked passages: candidates from each index, fusion, and the answering sentence.

Pure numpy on what the index holds, so the fusion can be measured and tuned apart from I/O.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

MODES = ("hybrid", "dense", "lexical")
CANDIDATES = 100
"""How many passages each index proposes before fusion; more than any k a person reads."""

MAX_QUESTION_CHARS = 2_000
"""Longer questions are refused: the model reads about 1,000 characters, the rest would be dropped."""


@dataclass(frozen=True)
class FusionWeights:
    """How much each signal counts in hybrid mode: the passage's and its best sentence's cosine, and BM25."""

    passage: float = 1.0
    sentence: float = 1.0
    lexical: float = 1.0


DEFAULT_WEIGHTS = FusionWeights()


def check_question(question: object) -> str:
    """Return the question ready to search with, or raise ``ValueError`` saying what is wrong with it."""
    if not isinstance(question, str):
        raise ValueError(f"the question must be a string; got {type(question).__name__}")
    if len(question) > 100 * MAX_QUESTION_CHARS:  # far too long: refused before any work on it
        raise _too_long(len(question))
    # Control and format characters (NUL, escapes, bidi marks) become spaces; "é" typed either way is one.
    printable = "".join(ch if ch.isprintable() or ch in "\t\n" else " " for ch in question)
    cleaned = unicodedata.normalize("NFC", printable).strip()
    if not cleaned:
        raise ValueError("the question is empty: type a question, e.g. 'Which treaty has Pakistan not joined?'")
    if len(cleaned) > MAX_QUESTION_CHARS:
        raise _too_long(len(cleaned))
    return cleaned


def _too_long(length: int) -> ValueError:
    return ValueError(
        f"the question has {length:,} characters; ask in at most {MAX_QUESTION_CHARS:,} "
        "(the model reads only the first few hundred words)"
    )


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a whole number of at least 1; got {k!r}")
    return k


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return str(mode)


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
