"""From a question to ranked passages and the sentences that answer.

A question's path is one way: ``search`` checks it, embeds it and takes its words once; the fusion
(``qa.fusion``) ranks candidate passages; each hit's answering sentence is highlighted. Each step is a
function of the index's contents, so it can be measured and tuned on its own.
"""

from __future__ import annotations

import dataclasses
import unicodedata

import numpy as np

from qa.contents import IndexContents
from qa.embedding import Encoder
from qa.fusion import CANDIDATES, best_sentence, fused_candidates, sentence_scores, top_indices
from qa.lexical import QueryTerms, lexical_text
from qa.passage import Hit, page_at

MODES = ("hybrid", "dense", "lexical")
MAX_QUESTION_CHARS = 2_000
"""Longer questions are refused: the model reads about 1,000 characters, the rest would be dropped."""


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
    hits = [
        Hit(contents.passages[row], score, rank, highlight(contents, row, query, terms))
        for rank, (row, score) in enumerate(rank_passages(contents, query, terms, k, mode), start=1)
    ]
    return [_with_page(hit, contents.pages.get(hit.doc_id, ())) for hit in hits] if contents.pages else hits


def _with_page(hit: Hit, pages: tuple[int, ...]) -> Hit:
    """``hit`` with the page its highlighted sentence (else its passage) starts on, if its document has pages."""
    start = hit.start + (hit.highlights[0][0] if hit.highlights else 0)
    return dataclasses.replace(hit, page=page_at(pages, start)) if pages else hit


def rank_passages(
    contents: IndexContents, query: np.ndarray, terms: QueryTerms, k: int, mode: str
) -> list[tuple[int, float]]:
    """The ``k`` best passages for a question's vector and words, as ``(row, score)``, best first."""
    count = len(contents)
    if mode == "dense":
        scores, ids = contents.dense.search(query[None, :], min(count, k))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    if mode == "lexical":
        lexical = contents.lexical.scores(terms)
        return [(int(i), float(lexical[i])) for i in top_indices(lexical, k)]
    candidates = fused_candidates(contents, query, terms, min(count, max(k, CANDIDATES)))
    return [(int(candidates.rows[j]), float(candidates.fused[j])) for j in top_indices(candidates.fused, k)]


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
