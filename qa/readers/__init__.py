"""Readers of binary document formats (PDF, Word), sandboxed and cached.

A PDF or Word file is parsed in a worker process with a time and memory limit (``qa.readers.worker``),
so a hostile or broken file costs that one file, never the build or the server. What a parse gives is
kept in a per-user cache keyed by the file's content hash (``qa.readers.cache``), so an unchanged file
costs a hash of its bytes, not a parse, when a rebuild or a staleness check reads the folder again.
"""

from __future__ import annotations

from dataclasses import dataclass

BINARY_SUFFIXES = (".pdf", ".docx")
"""File types read by a parser in the worker process rather than decoded as UTF-8 text."""

READER_VERSION = 1
"""Raise when a reader's output changes for the same file: cached extractions of older readers are not used."""


@dataclass(frozen=True)
class Extracted:
    """What a reader got from a file: its text (Markdown-like: ``#`` headings, ``-`` list items, paragraphs
    between blank lines), its title when the file names one, and where each page starts in the text."""

    text: str
    title: str = ""
    pages: tuple[int, ...] = ()


class ReadError(Exception):
    """A file that cannot be read; ``reason`` says why and what to do (shown as "skipped FILE: reason").

    ``kind``: ``invalid`` (the file itself: encrypted, damaged, no text), or ``timeout``, ``memory`` and
    ``crash``, which depend on the limits the worker ran under.
    """

    def __init__(self, reason: str, kind: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def read_binary(data: bytes, suffix: str) -> Extracted:
    """The text of a PDF or Word file's bytes: from the cache, else parsed in the sandboxed worker.

    Raises:
        ReadError: The file cannot be read (the reason says why and what to do).
    """
    from qa.readers import cache, worker

    digest = cache.digest(data)
    limits = worker.current_limits()
    found = cache.lookup(digest, suffix, limits)
    if isinstance(found, Extracted):
        return found
    if isinstance(found, ReadError):
        raise found
    try:
        extracted = worker.extract_sandboxed(suffix, data, limits)
    except ReadError as error:
        cache.store(digest, suffix, error, limits)
        raise
    cache.store(digest, suffix, extracted, limits)
    return extracted
