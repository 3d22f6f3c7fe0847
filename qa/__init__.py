"""qa: ask a question about a collection of documents, get the passages that answer it.

Example:
    >>> import qa
    >>> hits = qa.retrieve("Which treaty has Pakistan not joined?", k=3)
    >>> print(hits[0].text)
"""

from __future__ import annotations

from qa.documents import Corpus, Document, read_corpus
from qa.errors import EmptyCorpus, IncompatibleIndex, IndexBusy, IndexNotFound, QAError
from qa.passage import Answer, Hit, Passage
from qa.splitting import split_document, split_text
from qa.version import __version__

# Index and retrieve pull in numpy and FAISS: they are imported on first use so `import qa` stays cheap.
__all__ = [
    "Answer",
    "Corpus",
    "Document",
    "EmptyCorpus",
    "Hit",
    "IncompatibleIndex",
    "Index",
    "IndexBusy",
    "IndexNotFound",
    "Passage",
    "QAError",
    "__version__",
    "read_corpus",
    "retrieve",
    "split_document",
    "split_text",
]


def __getattr__(name: str) -> object:
    if name == "Index":
        from qa.index import Index

        return Index
    if name == "retrieve":
        from qa.api import retrieve

        return retrieve
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
