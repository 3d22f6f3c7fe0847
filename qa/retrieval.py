"""From a question to ranked passages: candidates from each index, fusion, and the answering sentence.

A question's path is one way: ``search`` embeds it and takes its words once, ``rank_passages`` asks the
vector store and BM25 for candidates and fuses their signals, ``highlight`` picks each hit's answering
sentence. Each step is a function of the index's contents, so it can be measured and tuned on its own.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from qa.contents import IndexContents
from qa.embedding import Encoder
from qa.lexical import QueryTerms, lexical_text
from qa.passage import Hit

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


# ------------------------------------------------------------------------------------------- search


def search(contents: IndexContents, encoder: Encoder, question: str, k: int = 5, *, mode: str = "hybrid") -> list[Hit]:
    """The ``k`` passages of ``contents`` that best answer ``question``, best first; see ``Index.search``.

    Raises:
        ValueError: An empty or too long question, ``k < 1``, or an unknown mode.
    """
    question = check_question(question)
    k = check_k(k)
    mode = check_mode(mode)
    query = encoder.encode_query(question)
    terms = contents.lexical.terms(question)  # once: ranking and every hit's highlight use them
    return [
        Hit(contents.passages[row], score, rank, highlight(contents, row, query, terms))
        for rank, (row, score) in enumerate(rank_passages(contents, query, terms, k, mode), start=1)
    ]


def rank_passages(
    contents: IndexContents, query: np.ndarray, terms: QueryTerms, k: int, mode: str
) -> list[tuple[int, float]]:
    """The ``k`` best passages for a question's vector and words, as ``(row, score)``, best first."""
    count = len(contents)
    if mode == "dense":
        scores, ids = contents.dense.search(query[None, :], min(count, k))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    lexical = contents.lexical.scores(terms)
    if mode == "lexical":
        return [(int(i), float(lexical[i])) for i in top_indices(lexical, k)]
    pool = min(count, max(k, CANDIDATES))
    _, dense_ids = contents.dense.search(query[None, :], pool)
    candidates = np.union1d(dense_ids[0][dense_ids[0] >= 0], top_indices(lexical, pool))
    passage_scores = contents.dense.vectors(candidates) @ query
    sentence_scores = best_sentence_scores(contents, candidates, query, passage_scores)
    fused = fuse(passage_scores, sentence_scores, lexical[candidates], DEFAULT_WEIGHTS)
    return [(int(candidates[j]), float(fused[j])) for j in top_indices(fused, k)]


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


def highlight(
    contents: IndexContents, passage: int, query: np.ndarray, terms: QueryTerms
) -> tuple[tuple[int, int], ...]:
    """The offsets in the passage's text of the sentence that answers best (none for a passage without any)."""
    sentences = contents.sentences[passage]
    if not sentences:
        return ()
    text = contents.passages[passage].text
    acronyms = contents.acronyms[passage]
    lexical = contents.lexical.text_scores(terms, [lexical_text(text[s:e], acronyms) for s, e in sentences])
    return (sentences[best_sentence(sentence_scores(contents, passage, query), lexical)],)
