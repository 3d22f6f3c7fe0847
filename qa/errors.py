"""The errors qa raises for bad state. Bad arguments raise ``ValueError``."""

from __future__ import annotations


class QAError(Exception):
    """Base class of qa's errors about the state of a corpus or an index."""


class IndexNotFound(QAError):
    """No index exists at the given path."""


class IncompatibleIndex(QAError):
    """An index exists but cannot be read by this qa: wrong format, truncated or corrupted."""


class EmptyCorpus(QAError):
    """A corpus has no readable documents, or its documents have no text."""


class IndexBusy(QAError):
    """Another process is building the same index."""
