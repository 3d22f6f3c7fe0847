"""The default index: the bundled corpus (or ``$QA_CORPUS``) indexed at ``index/`` (or ``$QA_INDEX``)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from qa.documents import iter_document_paths
from qa.errors import IncompatibleIndex, IndexNotFound
from qa.index import Index
from qa.passage import Hit
from qa.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP
from qa.storage import MANIFEST, readable_path, writer_lock

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_corpus() -> Path:
    return Path(os.environ.get("QA_CORPUS") or PROJECT_ROOT / "corpus")


def default_index() -> Path:
    return Path(os.environ.get("QA_INDEX") or PROJECT_ROOT / "index")


def _signature(index_path: Path, corpus: Path) -> tuple[object, ...]:
    """Changes whenever a corpus file or the saved index changes: cheap, without reading the files."""
    files = []
    for path, doc_id in iter_document_paths(corpus) if corpus.is_dir() else []:
        stat = path.stat()
        files.append((doc_id, stat.st_mtime_ns, stat.st_size))
    manifest = readable_path(index_path) / MANIFEST
    return (tuple(files), manifest.stat().st_mtime_ns if manifest.exists() else None)


_cache: dict[tuple[str, str, str | None], tuple[Index, tuple[object, ...]]] = {}
_cache_lock = threading.Lock()


def open_index(
    index_path: str | os.PathLike[str] | None = None,
    corpus: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    progress: bool | None = None,
) -> Index:
    """Load the index at ``index_path``, building or refreshing it from ``corpus`` when missing or stale.

    A refresh embeds only the passages whose text changed. Within a process the loaded index is kept
    and checked against the corpus files' sizes and times, so repeated calls are cheap.
    """
    index_path = Path(index_path) if index_path is not None else default_index()
    corpus = Path(corpus) if corpus is not None else default_corpus()
    key = (str(index_path.absolute()), str(corpus.absolute()), model)
    with _cache_lock:
        signature = _signature(index_path, corpus)
        cached = _cache.get(key)
        if cached and cached[1] == signature:
            return cached[0]
        index = _load_or_build(index_path, corpus, model, progress)
        _cache[key] = (index, _signature(index_path, corpus))
        return index


def _load_or_build(index_path: Path, corpus: Path, model: str | None, progress: bool | None) -> Index:
    previous: Index | None = None
    try:
        previous = Index.load(index_path)
        reason = previous.stale_reason(corpus, model=model, max_words=DEFAULT_MAX_WORDS, overlap=DEFAULT_OVERLAP)
        if reason is None:
            return previous
        logger.warning("rebuilding the index at %s: %s", index_path, reason)
    except IndexNotFound:
        logger.warning("building the index of %s at %s", corpus, index_path)
    except IncompatibleIndex as error:
        logger.warning("rebuilding the index at %s: %s", index_path, error)
    with writer_lock(index_path, wait=True):
        index = Index.build(corpus, model=model, progress=progress, previous=previous)
        index.save(index_path)
    return Index.load(index_path)


def retrieve(question: str, k: int = 5, *, mode: str = "hybrid") -> list[Hit]:
    """Search the default index, building it first when it is missing or stale.

    Args:
        question: What to ask.
        k: How many passages to return.
        mode: ``hybrid``, ``dense`` or ``lexical``.

    Example:
        >>> hits = retrieve("Which treaty has Pakistan not joined?", k=3)
        >>> hits[0].highlighted_text
        'As Pakistan is not a signatory to the NPT, its nuclear arsenal exists outside ...'
    """
    return open_index().search(question, k, mode=mode)
