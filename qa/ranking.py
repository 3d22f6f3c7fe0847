"""Evidence about each candidate sentence: what the answer-sentence ranker weighs.

For a question, the hybrid fusion (``qa.retrieval``) ranks candidate passages; the best of them, and
the passages beside them in their documents, have every sentence described here by a row of numbers:
how close its meaning is to the question's (alone, and with its neighbours), how many of the question's
words it holds and how rare they are, whether it holds what the question asks for (a year for "when",
a number for "how many", a name for "who"), and how its passage ranked. A learned linear model
(``qa.ranker``) weighs them into one score per sentence: a passage ranks by its best sentence, and that
sentence is its highlight.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.contents import IndexContents
from qa.fusion import Candidates, best_sentence_scores
from qa.lexical import BM25_B, BM25_K1, QueryTerms, lexical_text, tokenize

FEATURES = (
    "passage_cosine",
    "passage_bm25",
    "fused",
    "sentence_cosine",
    "sentence_bm25",
    "coverage",
    "window_coverage",
    "neighbour_cosine",
    "window_cosine",
    "answer_type",
    "novelty",
    "length",
    "passage_rank",
    "raw_passage_cosine",
    "raw_sentence_cosine",
    "raw_sentence_bm25",
    "raw_window_cosine",
    "raw_passage_bm25",
)
"""The columns of a sentence's evidence, in order."""

# ------------------------------------------------------------------------------------- answer types

_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})s?\b")
_MONTH = re.compile(
    r"\b(January|February|March|April|May|June|July|August|September|October|November|December|century|centuries)\b"
)
_NUMBER = re.compile(
    r"\b(\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|hundreds|thousand|thousands|million|millions|billion|billions|dozen|percent|half|third|quarter)\b",
    re.IGNORECASE,
)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+(?:of\s+|de\s+|van\s+)?[A-Z][a-z]+)*")

QUESTION_TYPES = ("date", "number", "person", "place", "other")


def question_type(question: str) -> str:
    """What kind of answer a question asks for: a date, a number, a person, a place, or other."""
    q = question.lower()
    if re.search(r"\b(when|what year|which year|what date|what century|which century|what decade|how long ago)\b", q):
        return "date"
    if re.search(
        r"\b(how (many|much|long|far|old|large|big|tall|high|often|fast)|what (percentage|number|amount))\b", q
    ):
        return "number"
    if re.search(r"\b(who|whom|whose)\b", q):
        return "person"
    if re.search(r"\bwhere\b", q):
        return "place"
    return "other"


def holds_answer_type(kind: str, sentence: str, question: str) -> bool:
    """Whether ``sentence`` holds something of the kind the question asks for, beyond the question's own words."""
    if kind == "date":
        found = {m.group(0) for m in _YEAR.finditer(sentence)} | {m.group(0) for m in _MONTH.finditer(sentence)}
    elif kind == "number":
        found = {m.group(0).lower() for m in _NUMBER.finditer(sentence)}
    elif kind in ("person", "place"):
        found = {m.group(0) for m in _NAME.finditer(sentence)}
    else:
        return False
    asked = question.lower()
    return any(item.lower() not in asked for item in found)


# ---------------------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class SentenceEvidence:
    """The candidate sentences of one question and their evidence.

    Attributes:
        passages: The candidate passages' rows, in the order the fusion ranked them.
        owner: Per sentence, its passage's position in ``passages``.
        sentence: Per sentence, its position among its passage's sentences.
        rows: Per sentence, its row in the index's sentence vectors.
        matrix: Per sentence, its evidence (``FEATURES``), float32.
    """

    passages: np.ndarray
    owner: np.ndarray
    sentence: np.ndarray
    rows: np.ndarray
    matrix: np.ndarray


def _standardized(values: np.ndarray) -> np.ndarray:
    spread = float(values.std())
    return (values - values.mean()) / spread if spread > 1e-9 else np.zeros_like(values)


def _neighbour_rows(contents: IndexContents, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sentence rows just before and after each of ``rows`` in the same document (-1: none)."""
    document = contents.sentence_documents
    before, after = rows - 1, rows + 1
    last = len(document) - 1
    before = np.where((before >= 0) & (document[np.maximum(before, 0)] == document[rows]), before, -1)
    after = np.where((after <= last) & (document[np.minimum(after, last)] == document[rows]), after, -1)
    return before, after


def _sentence_text(contents: IndexContents, row: int) -> tuple[int, str]:
    passage = int(np.searchsorted(contents.sentence_offsets, row, side="right") - 1)
    start, end = contents.sentences[passage][row - int(contents.sentence_offsets[passage])]
    return passage, contents.passages[passage].text[start:end]


def _z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``values`` standardised by the mean and spread of ``reference``."""
    spread = float(reference.std())
    return (values - reference.mean()) / spread if spread > 1e-9 else np.zeros_like(values)


def sentence_evidence(
    contents: IndexContents,
    question: str,
    query: np.ndarray,
    terms: QueryTerms,
    candidates: Candidates,
    passages: np.ndarray,
) -> SentenceEvidence:
    """The evidence of every sentence of ``passages`` (rows, best first), whose passage signals are
    standardised by the fusion's ``candidates``, as the fusion standardised them."""
    offsets = contents.sentence_offsets
    passage_cos = contents.dense.vectors(passages) @ query
    best_cos = best_sentence_scores(contents, passages, query, passage_cos)
    passage_bm25 = candidates.all_bm25[passages]
    fused = (
        _z(passage_cos, candidates.passage_cosine)
        + _z(best_cos, candidates.sentence_cosine)
        + _z(passage_bm25, candidates.bm25)
    )
    counts = (offsets[passages + 1] - offsets[passages]).astype(np.int64)
    owner = np.repeat(np.arange(len(passages)), counts)
    sentence = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = offsets[passages][owner] + sentence
    vectors = contents.sentence_vectors
    cosine = vectors[rows].astype(np.float32) @ query if len(rows) else np.zeros(0, np.float32)
    before, after = _neighbour_rows(contents, rows) if len(rows) else (rows, rows)
    neighbour_cos = cosine.copy()  # a sentence alone in its document is its own neighbourhood
    window_vec = vectors[rows].astype(np.float32) if len(rows) else np.zeros((0, len(query)), np.float32)
    seen_side = np.zeros(len(rows), dtype=bool)
    for side in (before, after):
        has = side >= 0
        if has.any():
            side_cos = vectors[side[has]].astype(np.float32) @ query
            neighbour_cos[has] = np.where(seen_side[has], np.maximum(neighbour_cos[has], side_cos), side_cos)
            seen_side |= has
            window_vec[has] += vectors[side[has]].astype(np.float32)
    norms = np.linalg.norm(window_vec, axis=1)
    window_cos = (window_vec @ query) / np.maximum(norms, 1e-9)
    kind = question_type(question)
    texts = [
        contents.passages[passage].text[slice(*contents.sentences[passage][index])]
        for passage, index in zip(passages[owner].tolist(), sentence.tolist(), strict=True)
    ]
    answer_type = np.array([holds_answer_type(kind, text, question) for text in texts], dtype=np.float32)
    if contents.lexical.has_sentence_counts:
        bm25, coverage, window_coverage, novelty, length = words_from_counts(contents, terms, rows, before, after)
    else:
        bm25, coverage, window_coverage, novelty, length = words_from_texts(contents, terms, rows, before, after)
    columns = {
        "passage_cosine": _z(passage_cos, candidates.passage_cosine)[owner],
        "passage_bm25": _z(passage_bm25, candidates.bm25)[owner],
        "fused": fused[owner],
        "sentence_cosine": _standardized(cosine),
        "sentence_bm25": _standardized(bm25),
        "coverage": coverage,
        "window_coverage": window_coverage,
        "neighbour_cosine": _standardized(neighbour_cos),
        "window_cosine": _standardized(window_cos),
        "answer_type": answer_type,
        "novelty": novelty,
        "length": length,
        "passage_rank": 1.0 / (1.0 + owner),
        "raw_passage_cosine": passage_cos[owner],
        "raw_sentence_cosine": cosine,
        "raw_sentence_bm25": bm25,
        "raw_window_cosine": window_cos,
        "raw_passage_bm25": passage_bm25[owner],
    }
    matrix = np.column_stack([columns[name] for name in FEATURES]).astype(np.float32)
    return SentenceEvidence(passages, owner, sentence, rows, matrix)


def words_from_counts(
    contents: IndexContents, terms: QueryTerms, rows: np.ndarray, before: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The word evidence of sentences ``rows`` from the word counts the index keeps: sentence BM25 (with the
    index's idf, lengths normalised by these sentences' mean), idf-weighted coverage of the question's
    words alone and with the neighbours, the share of its words the question lacks, and its length."""
    vocabulary = contents.lexical.vocabulary
    words = sorted(terms.idf, key=lambda w: vocabulary[w])  # the question's distinct words, by column
    wanted = np.array([vocabulary[w] for w in words], dtype=np.int64)
    idf = np.array([terms.idf[w] for w in words], dtype=np.float64)
    total_idf = float(idf.sum()) or 1.0
    unique = np.unique(np.concatenate([rows, before[before >= 0], after[after >= 0]]))
    counts = contents.lexical.sentence_words(unique)
    per_row = np.diff(counts.indptr)
    owner = np.repeat(np.arange(len(unique)), per_row)
    frequency = np.zeros((len(unique), len(wanted)), dtype=np.float64)  # of the question's words, per sentence
    if len(wanted):
        column = np.minimum(np.searchsorted(wanted, counts.ids), len(wanted) - 1)
        hit = wanted[column] == counts.ids
        frequency[owner[hit], column[hit]] = counts.counts[hit]
    length = np.zeros(len(unique))
    np.add.at(length, owner, counts.counts)
    mine = np.searchsorted(unique, rows)
    lengths, tf = length[mine], frequency[mine]
    average = max(float(lengths.mean()) if len(lengths) else 0.0, 1.0)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / average)
    bm25 = (idf * tf * (BM25_K1 + 1) / (tf + norm[:, None])).sum(axis=1)
    present = tf > 0
    window = present.copy()
    for side in (before, after):
        has = side >= 0
        window[has] |= frequency[np.searchsorted(unique, side[has])] > 0
    distinct = per_row[mine].astype(np.float64)
    return (
        bm25.astype(np.float32),
        ((present @ idf) / total_idf).astype(np.float32),
        ((window @ idf) / total_idf).astype(np.float32),
        ((distinct - present.sum(axis=1)) / np.maximum(distinct, 1.0)).astype(np.float32),
        np.log1p(lengths).astype(np.float32),
    )


def words_from_texts(
    contents: IndexContents, terms: QueryTerms, rows: np.ndarray, before: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray, ...]:
    """What :func:`words_from_counts` gives, by tokenizing the sentences: for an index that keeps no
    sentence word counts (saved by an earlier qa)."""
    every = sorted({int(r) for r in np.concatenate([rows, before, after]) if r >= 0})
    texts = []
    for row in every:
        passage, text = _sentence_text(contents, row)
        texts.append(lexical_text(text, contents.acronyms[passage]))
    tokens = dict(zip(every, tokenize(texts), strict=True))
    mine = [tokens[int(r)] for r in rows]
    idf = terms.idf
    total_idf = sum(idf.values()) or 1.0
    lengths = np.array([len(words) for words in mine], dtype=np.float64)
    average = max(float(lengths.mean()) if len(lengths) else 0.0, 1.0)
    bm25 = np.zeros(len(rows))
    coverage, window_coverage, novelty = np.zeros(len(rows)), np.zeros(len(rows)), np.zeros(len(rows))
    for i, words in enumerate(mine):
        norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[i] / average)
        present = set(words)
        for word, weight in idf.items():
            if tf := words.count(word):
                bm25[i] += weight * tf * (BM25_K1 + 1) / (tf + norm)
        coverage[i] = sum(weight for word, weight in idf.items() if word in present) / total_idf
        window = present | set(tokens.get(int(before[i]), ())) | set(tokens.get(int(after[i]), ()))
        window_coverage[i] = sum(weight for word, weight in idf.items() if word in window) / total_idf
        novelty[i] = (len(present) - sum(1 for word in idf if word in present)) / max(len(present), 1)
    return (
        bm25.astype(np.float32),
        coverage.astype(np.float32),
        window_coverage.astype(np.float32),
        novelty.astype(np.float32),
        np.log1p(lengths).astype(np.float32),
    )


def candidates_with_neighbours(
    contents: IndexContents, ranked: Sequence[int] | np.ndarray, top: int, around: int
) -> np.ndarray:
    """The ``top`` best passages, then the passages beside the ``around`` best (same document), deduplicated."""
    chosen = list(dict.fromkeys(int(r) for r in ranked[:top]))
    seen = set(chosen)
    for row in ranked[:around]:
        for neighbour in (int(row) - 1, int(row) + 1):
            if (
                0 <= neighbour < len(contents.passages)
                and neighbour not in seen
                and contents.passages[neighbour].doc_id == contents.passages[int(row)].doc_id
            ):
                chosen.append(neighbour)
                seen.add(neighbour)
    return np.asarray(chosen, dtype=np.int64)


# ------------------------------------------------------------------------------------------ the ranker


RANKER_FILE = Path(__file__).resolve().parent / "ranker.json"
"""The trained weights that ship with qa (``python -m bench.train_ranker`` writes them)."""


HIT_FEATURES = (*FEATURES, "score", "margin", "hit_rank")
"""A hit's evidence, for its confidence: its best sentence's, then its score, how far it leads the next
hit (the first) or trails the first (the others), and 1 / its rank."""


@dataclass(frozen=True)
class LinearModel:
    """A weighted sum of named columns (of ``FEATURES`` or ``HIT_FEATURES``), plus a bias."""

    features: tuple[str, ...]
    weights: np.ndarray
    bias: float = 0.0

    def apply(self, matrix: np.ndarray, names: Sequence[str] = FEATURES) -> np.ndarray:
        """The model's value for each row of ``matrix``, whose columns are ``names``."""
        columns = [list(names).index(name) for name in self.features]
        scores: np.ndarray = matrix[:, columns].astype(np.float64) @ self.weights + self.bias
        return scores.astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "weights": [round(float(w), 6) for w in self.weights],
            "bias": round(self.bias, 6),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        features = tuple(str(name) for name in data["features"])
        unknown = [name for name in features if name not in HIT_FEATURES]
        weights = np.asarray(data["weights"], dtype=np.float64)
        if unknown or len(weights) != len(features):
            raise ValueError(
                f"a model names unknown evidence {unknown} or has {len(weights)} weights for {len(features)}"
            )
        return cls(features, weights, float(data.get("bias", 0.0)))


@dataclass(frozen=True)
class Ranker:
    """What orders a question's candidate sentences, and how sure to be of a hit.

    Attributes:
        sentences: Scores each candidate sentence; a passage ranks by its best sentence's score.
        confidence: From a hit's evidence (its best sentence's, with its rank and score), the log-odds
            that the hit holds the answer: the logistic of it is the hit's ``confidence``.
        top: How many of the fusion's best passages are ranked by their sentences.
        around: Of those, how many bring the passages beside them in their document.
        no_answer_below: A first hit less sure than this is shown with "no answer here".
    """

    sentences: LinearModel
    confidence: LinearModel
    top: int = 20
    around: int = 5
    no_answer_below: float = 0.5
    trained_on: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "sentences": self.sentences.to_json(),
            "confidence": self.confidence.to_json(),
            "top": self.top,
            "around": self.around,
            "no_answer_below": self.no_answer_below,
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ranker:
        if data.get("version") != 1:
            raise ValueError(f"the ranker file is of version {data.get('version')!r}; this qa reads version 1")
        return cls(
            LinearModel.from_json(data["sentences"]),
            LinearModel.from_json(data["confidence"]),
            int(data.get("top", 20)),
            int(data.get("around", 5)),
            float(data.get("no_answer_below", 0.5)),
            str(data.get("trained_on", "")),
        )


@functools.cache
def default_ranker() -> Ranker:
    """The ranker that ships with qa."""
    return Ranker.from_json(json.loads(RANKER_FILE.read_text(encoding="utf-8")))
