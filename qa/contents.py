"""What an index holds, as plain data: its manifest, passages, sentence vectors, vector store and BM25.

Built by :mod:`qa.build`, written and read by :mod:`qa.index_files`, searched by :mod:`qa.retrieval`;
:class:`qa.Index` holds one with the encoder that made it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qa.lexical import LexicalIndex
from qa.manifest import Manifest
from qa.passage import Passage
from qa.vectorstore import VectorStore

SentenceSpans = Sequence[tuple[int, int]]
"""A passage's sentences: ``(start, end)`` offsets into its text."""


@dataclass(frozen=True)
class DocumentRecord:
    """A document as an index records it (``documents.jsonl``): what a rebuild compares to reuse its passages."""

    id: str
    title: str
    sha256: str
    """Of its text: an unchanged document keeps its passages."""
    passages: int
    """How many passages of the index are its own, in order from its first."""
    repeats: int = 0
    """Its passages left out as copies of passages indexed already (a document with any is split again)."""
    pages: tuple[int, ...] = ()
    """Where its pages start in its text (PDF), for the page of a hit; empty for other formats, and in
    indexes saved before pages were kept."""

    def to_json(self) -> dict[str, Any]:
        record = {"id": self.id, "title": self.title, "sha256": self.sha256, "passages": self.passages,
                  "repeats": self.repeats}  # fmt: skip
        return record | {"pages": list(self.pages)} if self.pages else record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> DocumentRecord:
        """Raises ``KeyError``, ``TypeError`` or ``ValueError`` for a record that is not one."""
        return cls(
            str(record["id"]),
            str(record["title"]),
            str(record["sha256"]),
            int(record["passages"]),
            int(record.get("repeats") or 0),
            tuple(int(page) for page in record.get("pages") or ()),
        )


def sentence_offsets(sentences: Sequence[SentenceSpans]) -> np.ndarray:
    """Where each passage's sentences start in the sentence-vector array, and (last) how many there are."""
    return np.concatenate([[0], np.cumsum([len(spans) for spans in sentences])]).astype(np.int64)


@dataclass(frozen=True)
class IndexContents:
    """Everything an index holds. Row ``i`` of every per-passage field is passage ``i``.

    Attributes:
        manifest: What the index is (its ``files`` are filled in when it is saved).
        passages: The passages, in document order.
        sentences: Each passage's sentences, as offsets into its text.
        acronyms: Each passage's acronyms that its document defines, with their long forms (BM25 counts both).
        sentence_vectors: One float16 row per sentence, passage by passage (``sentence_offsets``).
        dense: The passage vectors.
        lexical: BM25 over the passages.
        documents: The documents, in the order their passages are.
    """

    manifest: Manifest
    passages: Sequence[Passage]
    sentences: Sequence[SentenceSpans]
    acronyms: Sequence[Mapping[str, str]]
    sentence_vectors: np.ndarray
    dense: VectorStore
    lexical: LexicalIndex
    documents: Sequence[DocumentRecord]
    sentence_offsets: np.ndarray = field(init=False, repr=False, compare=False)
    sentence_documents: np.ndarray = field(init=False, repr=False, compare=False)
    """Per sentence, the position of its document in ``documents``: which sentences are neighbours."""

    pages: Mapping[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    """Where each page starts, by document id, of the documents that have pages (PDF)."""

    def __post_init__(self) -> None:
        offsets = sentence_offsets(self.sentences)
        object.__setattr__(self, "sentence_offsets", offsets)
        passage_documents = np.repeat(np.arange(len(self.documents)), [d.passages for d in self.documents])
        object.__setattr__(self, "sentence_documents", np.repeat(passage_documents, np.diff(offsets)).astype(np.int32))
        object.__setattr__(self, "pages", {d.id: d.pages for d in self.documents if d.pages})

    def __len__(self) -> int:
        return len(self.passages)

    def sentence_rows(self, passage: int) -> slice:
        """The rows of ``sentence_vectors`` of a passage's sentences."""
        return slice(int(self.sentence_offsets[passage]), int(self.sentence_offsets[passage + 1]))
