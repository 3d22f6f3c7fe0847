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
from qa.fusion import CANDIDATES, Candidates, best_sentence, fused_candidates, sentence_scores, top_indices
from qa.lexical import QueryTerms, lexical_text
from qa.passage import Answer, Hit, page_at
from qa.ranking import HIT_FEATURES, Ranker, candidates_with_neighbours, default_ranker, sentence_evidence

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


def search(
    contents: IndexContents,
    encoder: Encoder,
    question: str,
    k: int = 5,
    *,
    mode: str = "hybrid",
    ranker: Ranker | None = None,
) -> list[Hit]:
    """The ``k`` passages of ``contents`` that best answer ``question``, best first; see ``Index.search``.

    In hybrid mode the fusion's best passages (and those beside the very best) are ranked again by their
    best sentence, as ``ranker`` (default: the one qa ships) weighs each sentence's evidence; that sentence
    is the hit's highlight, and each hit has a ``confidence``. Dense and lexical modes rank by one signal.

    Raises:
        ValueError: An empty or too long question, ``k < 1``, or an unknown mode.
    """
    question = check_question(question)
    k = check_k(k)
    mode = check_mode(mode)
    query = encoder.encode_query(question)
    terms = contents.lexical.terms(question)  # once: ranking and every hit's highlight use them
    if mode == "hybrid":
        hits = _ranked_by_sentences(contents, question, query, terms, k, ranker or default_ranker())
    else:
        hits = [
            Hit(contents.passages[row], score, rank, highlight(contents, row, query, terms))
            for rank, (row, score) in enumerate(rank_passages(contents, query, terms, k, mode), start=1)
        ]
    return [_with_page(hit, contents.pages.get(hit.doc_id, ())) for hit in hits] if contents.pages else hits


def _with_page(hit: Hit, pages: tuple[int, ...]) -> Hit:
    """``hit`` with the page its highlighted sentence (else its passage) starts on, if its document has pages."""
    start = hit.start + (hit.highlights[0][0] if hit.highlights else 0)
    return dataclasses.replace(hit, page=page_at(pages, start)) if pages else hit


def answer(
    contents: IndexContents,
    encoder: Encoder,
    question: str,
    k: int = 5,
    *,
    mode: str = "hybrid",
    ranker: Ranker | None = None,
) -> Answer:
    """:func:`search`'s hits, and whether the first is likely to answer (see ``Answer.answered``)."""
    ranker = ranker or default_ranker()
    hits = search(contents, encoder, question, k, mode=mode, ranker=ranker)
    first = hits[0].confidence if hits else 0.0
    answered = first is None or first >= ranker.no_answer_below
    return Answer(check_question(question), tuple(hits), answered)


def _ranked_by_sentences(
    contents: IndexContents, question: str, query: np.ndarray, terms: QueryTerms, k: int, ranker: Ranker
) -> list[Hit]:
    candidates = fused_candidates(contents, query, terms, min(len(contents), max(k, CANDIDATES)))
    ranked = candidates.rows[np.argsort(-candidates.fused, kind="stable")]
    reranked = candidates_with_neighbours(contents, ranked, ranker.top, ranker.around)
    scored = [_best_sentences(contents, question, query, terms, candidates, reranked, ranker)]
    # Beyond the passages ranked by their sentences, the fusion's order (only for a k past them).
    taken = set(reranked.tolist())
    if tail := [int(r) for r in ranked if int(r) not in taken][: max(0, k - len(reranked))]:
        scored.append(_best_sentences(contents, question, query, terms, candidates, np.asarray(tail), ranker))
    order = np.argsort(-scored[0][1], kind="stable")
    rows = np.concatenate([reranked[order], *(part[0] for part in scored[1:])])[:k]
    scores = np.concatenate([scored[0][1][order], *(part[1] for part in scored[1:])])[:k]
    spans = [*(scored[0][2][i] for i in order), *(span for part in scored[1:] for span in part[2])][:k]
    hit_evidence = np.concatenate([scored[0][3][order], *(part[3] for part in scored[1:])])[:k]
    margin = np.where(
        np.arange(len(scores)) == 0, scores[0] - (scores[1] if len(scores) > 1 else scores[0] - 1), scores - scores[0]
    )
    matrix = np.column_stack([hit_evidence, scores, margin, 1.0 / np.arange(1, len(scores) + 1)]).astype(np.float32)
    confidence = 1.0 / (1.0 + np.exp(-ranker.confidence.apply(matrix, HIT_FEATURES).astype(np.float64)))
    return [
        Hit(contents.passages[int(row)], float(score), rank, span, float(sure))
        for rank, (row, score, span, sure) in enumerate(zip(rows, scores, spans, confidence, strict=True), start=1)
    ]


def _best_sentences(
    contents: IndexContents,
    question: str,
    query: np.ndarray,
    terms: QueryTerms,
    candidates: Candidates,
    passages: np.ndarray,
    ranker: Ranker,
) -> tuple[np.ndarray, np.ndarray, list[tuple[tuple[int, int], ...]], np.ndarray]:
    """Each passage's best sentence by ``ranker``: the passages, their scores, highlights and evidence."""
    evidence = sentence_evidence(contents, question, query, terms, candidates, passages)
    sentence_scores = ranker.sentences.apply(evidence.matrix)
    scores = np.full(len(passages), -np.inf, dtype=np.float32)
    best = np.full(len(passages), -1, dtype=np.int64)
    for i, (owner, score) in enumerate(zip(evidence.owner.tolist(), sentence_scores.tolist(), strict=True)):
        if score > scores[owner]:
            scores[owner], best[owner] = score, i
    spans: list[tuple[tuple[int, int], ...]] = []
    rows = np.zeros((len(passages), evidence.matrix.shape[1]), dtype=np.float32)
    for j, i in enumerate(best.tolist()):
        if i < 0:  # a passage without sentences (white space only; never from qa's splitter)
            spans.append(())
            continue
        spans.append((contents.sentences[int(passages[j])][int(evidence.sentence[i])],))
        rows[j] = evidence.matrix[i]
    scores[best < 0] = float(scores[best >= 0].min()) - 1.0 if (best >= 0).any() else 0.0
    return passages, scores, spans, rows


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
