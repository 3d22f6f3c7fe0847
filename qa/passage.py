"""The values qa returns: passages of documents and ranked hits."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Passage:
    """A run of whole sentences of one document: ``document.text[start:end] == text``.

    Attributes:
        id: ``"{doc_id}#{ordinal}"``; the same document split the same way gives the same ids.
        doc_id: The document's id (for a folder, its path relative to the folder).
        title: The document's title.
        section: The heading the passage stands under ("" before the first heading).
        start: Offset of the passage's first character in the document's text.
        end: Offset just past its last character.
        text: The passage as it stands in the document.
    """

    id: str
    doc_id: str
    title: str
    section: str
    start: int
    end: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "doc_id": self.doc_id,
            "title": self.title,
            "section": self.section,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


@dataclass(frozen=True)
class Hit:
    """A passage returned for a question.

    Attributes:
        passage: The passage.
        score: How well it answers, higher is better; comparable within one search only.
        rank: 1 for the best hit.
        highlights: ``(start, end)`` offsets into ``text`` of the sentence(s) that best answer the question.
        confidence: The probability that the hit holds the answer, in [0, 1] (hybrid mode; ``None`` in the
            dense and lexical modes, which rank by one raw signal).
        page: The page (1 for the first) where the highlighted sentence starts, else the passage, in a
            document with pages (PDF); ``None`` in other documents.
    """

    passage: Passage
    score: float
    rank: int
    highlights: tuple[tuple[int, int], ...] = ()
    confidence: float | None = None
    page: int | None = None

    @property
    def text(self) -> str:
        return self.passage.text

    @property
    def doc_id(self) -> str:
        return self.passage.doc_id

    @property
    def title(self) -> str:
        return self.passage.title

    @property
    def section(self) -> str:
        return self.passage.section

    @property
    def start(self) -> int:
        return self.passage.start

    @property
    def end(self) -> int:
        return self.passage.end

    @property
    def highlighted_text(self) -> str:
        """The highlighted sentence(s), joined by a space."""
        return " ".join(self.text[s:e] for s, e in self.highlights)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the passage's fields, ``score``, ``rank``, ``confidence``, ``highlights`` and ``page``."""
        return {
            "rank": self.rank,
            "score": self.score,
            "confidence": self.confidence,
            **self.passage.to_dict(),
            "highlights": [list(span) for span in self.highlights],
            "page": self.page,
        }


@dataclass(frozen=True)
class Answer:
    """What a question gets: the hits, best first, and whether they are likely to hold its answer.

    Attributes:
        question: The question as asked.
        hits: The passages that answer best, best first (given even when ``answered`` is false: they are
            the closest the documents come).
        answered: ``False`` when even the first hit is unlikely to hold the answer ("no answer here"):
            its confidence is under the threshold qa was trained to (see README, Quality). Always ``True``
            in the dense and lexical modes, which have no confidence.
    """

    question: str
    hits: tuple[Hit, ...]
    answered: bool

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answered": self.answered, "hits": [hit.to_dict() for hit in self.hits]}


def page_at(pages: Sequence[int], offset: int) -> int | None:
    """The page (1-based) holding character ``offset`` of a document whose pages start at ``pages``;
    ``None`` when it has none."""
    return bisect_right(pages, offset) if pages else None  # pages[0] is 0: the first page is 1
