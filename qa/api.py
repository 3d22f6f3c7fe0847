"""Keeping an index in step with its documents: one refresh path for ``qa build``, ``qa.retrieve`` and the web app.

The default index is the bundled corpus (or ``$QA_CORPUS``) indexed at ``index/`` (or ``$QA_INDEX``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qa import storage
from qa.build import Progress
from qa.documents import Corpus, iter_document_paths, read_corpus
from qa.embedding import Encoder, asked_runtime
from qa.errors import EmptyCorpus, IncompatibleIndex, IndexNotFound
from qa.index import Index
from qa.passage import Hit
from qa.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP
from qa.storage import MANIFEST, readable_path, writer_lock

logger = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parent.parent
"""The repository, when qa runs from a checkout of it (``pip install -e .``, or its folder on the path)."""


def in_checkout() -> bool:
    """Whether qa runs from its repository rather than from an installed package."""
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "corpus").is_dir()


def bundled_corpus() -> Path:
    """The folder of the bundled article: ``corpus/`` in a checkout, the package's ``qa/corpus`` installed."""
    if in_checkout():
        return CHECKOUT / "corpus"
    return Path(__file__).resolve().parent / "corpus"


def default_corpus() -> Path:
    """``$QA_CORPUS``, else the bundled article."""
    return Path(os.environ.get("QA_CORPUS") or bundled_corpus())


def default_index() -> Path:
    """``$QA_INDEX``, else ``index/`` in a checkout, else a folder of the user's data (never site-packages)."""
    if os.environ.get("QA_INDEX"):
        return Path(os.environ["QA_INDEX"])
    if in_checkout():
        return CHECKOUT / "index"
    import platformdirs

    return Path(platformdirs.user_data_dir("qa", appauthor=False)) / "index"


def _load_previous(index_path: Path, encoder: Encoder | None) -> Index | None:
    """The index at ``index_path`` to reuse, or ``None`` when there is none or it cannot be read."""
    try:
        return Index.load(index_path, encoder=encoder, warn_if_stale=False)
    except IndexNotFound:
        return None
    except IncompatibleIndex as error:
        logger.warning("building the index at %s anew: %s", index_path, error)
        return None
    except ValueError:  # of another model than the one wanted: nothing to reuse
        return None


def refresh(
    index_path: str | os.PathLike[str],
    corpus: str | os.PathLike[str],
    *,
    wait: bool = True,
    rebuild: bool = False,
    model: str | None = None,
    encoder: Encoder | None = None,
    runtime: str | None = None,
    max_words: int | None = None,
    overlap: int | None = None,
    progress: bool | None = None,
    on_progress: Progress | None = None,
    on_stage: Callable[[str], None] | None = None,
    **build_options: Any,
) -> Index:
    """The index at ``index_path`` of the documents in ``corpus``, built or brought up to date first if needed.

    The index there is loaded; unless ``rebuild``, it is returned as it is when nothing changed (the
    corpus is read once to check, and a rebuild starts from what was read). Otherwise a new index is built
    reusing it (only changed documents are split, only new text embedded), saved atomically, and loaded.
    One writer at a time: ``wait`` for another process's build of the same index, or raise ``IndexBusy``.

    Args:
        rebuild: Build even when the index matches its documents (``qa build`` does, so that settings apply).
        model, encoder: The model (a name, or the encoder itself); default ``$QA_MODEL``, else the packaged
            one. An index of another model is built anew.
        runtime: How the model runs (``torch``, ``onnx``, ``onnx-int8``); default ``$QA_RUNTIME``, else
            the existing index's, else qa's default. An index built on another runtime than one asked for
            is built anew.
        max_words, overlap: Passage sizes; default: the existing index's, else qa's defaults.
        build_options: Further options of :meth:`Index.build` (``index_type``, ``batch_size``, ``backend``...).

    Raises:
        EmptyCorpus: The corpus folder is missing or has no readable document.
        IndexBusy: Another process is writing the index and ``wait`` is false.
    """
    index_path = Path(index_path)
    # $QA_RUNTIME asks for a runtime as the argument does: judged stale by it now, not at the next rebuild.
    runtime = asked_runtime(runtime)
    saved = storage.generation(index_path)  # before loading: a save after it is noticed under the lock
    previous = _load_previous(index_path, encoder)
    read: Corpus | None = None
    if previous is not None and not rebuild:
        read = read_corpus(corpus)
        if (reason := _stale_reason(previous, read, model, max_words, overlap, runtime)) is None:
            return previous
        logger.warning("rebuilding the index at %s: %s", index_path, reason)
    elif previous is None and not rebuild:
        logger.warning("building the index of %s at %s", corpus, index_path)
    with writer_lock(index_path, wait=wait):
        if storage.generation(index_path) != saved:  # another process saved it while we waited: start from that
            previous = _load_previous(index_path, encoder)
            if (
                previous is not None
                and read is not None
                and not _stale_reason(previous, read, model, max_words, overlap, runtime)
            ):
                return previous
        chunking = previous.manifest.chunking if previous is not None else None
        index = Index.build(
            read if read is not None else corpus,
            model=model,
            encoder=encoder,
            runtime=runtime,
            max_words=max_words if max_words is not None else chunking.max_words if chunking else DEFAULT_MAX_WORDS,
            overlap=overlap if overlap is not None else chunking.overlap if chunking else DEFAULT_OVERLAP,
            progress=progress,
            previous=previous,
            on_progress=on_progress,
            on_stage=on_stage,
            **build_options,
        )
        if on_progress is not None:
            on_progress(0.97, "saving the index")
        index.save(index_path)
    if on_progress is not None:
        on_progress(0.99, "loading the new index")
    loaded = Index.load(index_path, encoder=index.encoder, warn_if_stale=False)
    loaded.build_report = index.build_report
    return loaded


def _stale_reason(
    index: Index, corpus: Corpus, model: str | None, max_words: int | None, overlap: int | None, runtime: str | None
) -> str | None:
    try:
        return index.stale_reason(corpus, model=model, max_words=max_words, overlap=overlap, runtime=runtime)
    except EmptyCorpus as error:
        return str(error)


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

    Within a process the loaded index is kept and checked against the corpus files' sizes and times, so
    repeated calls are cheap.
    """
    index_path = Path(index_path) if index_path is not None else default_index()
    corpus = Path(corpus) if corpus is not None else default_corpus()
    key = (str(index_path.absolute()), str(corpus.absolute()), model)
    with _cache_lock:
        signature = _signature(index_path, corpus)
        cached = _cache.get(key)
        if cached and cached[1] == signature:
            return cached[0]
        index = refresh(
            index_path, corpus, model=model, max_words=DEFAULT_MAX_WORDS, overlap=DEFAULT_OVERLAP, progress=progress
        )
        _cache[key] = (index, _signature(index_path, corpus))
        return index


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
