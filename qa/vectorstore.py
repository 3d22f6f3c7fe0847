"""Where the passage vectors live: one interface, two stores.

``FaissStore`` keeps them in ``vectors.faiss`` inside the index folder (the default). ``MilvusStore``
(:mod:`qa.milvus`) keeps them in a Milvus collection: a local Milvus Lite file, or a Milvus server or
cluster that several machines share. Passages, sentence vectors and BM25 stay in the index folder
either way, so lexical and hybrid search behave the same on both.

Ids are the passages' positions in the index (``0 .. count - 1``); scores are inner products of
unit-length vectors (cosine similarity).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qa import storage

BACKENDS = ("faiss", "milvus")


class VectorStore(Protocol):
    """The passage vectors of an index, searchable by inner product."""

    backend: str
    """``faiss`` or ``milvus``: what the manifest's ``dense.backend`` says."""
    label: str
    """What holds the vectors, for messages: "the FAISS file", "the Milvus collection qa_…"."""
    exact: bool
    """Whether :meth:`vectors` gives back the very vectors added (not a compressed approximation)."""
    files: tuple[str, ...]
    """The files :meth:`save` writes into the index folder."""

    @property
    def count(self) -> int:
        """How many vectors the store holds."""
        ...

    @property
    def dim(self) -> int:
        """Their dimension."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (float32, one row each) under ``ids``."""
        ...

    def delete(self, ids: np.ndarray) -> None:
        """Remove the vectors of ``ids``; the others keep their ids."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``(len(queries), k)``, best first; ids of -1 pad when fewer are found."""
        ...

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (float32, in the order given)."""
        ...

    def describe(self, folder: Path | None = None) -> dict[str, Any]:
        """The manifest's ``dense`` block; ``folder`` is where the index is being saved."""
        ...

    def save(self, folder: Path) -> None:
        """Write what the store keeps in the index folder (nothing, for a database)."""
        ...

    def close(self) -> None:
        """Let go of connections and files; the store is not used after."""
        ...

    def discard(self) -> None:
        """Delete what building this store created outside the index folder (a failed build's collection)."""
        ...


def backend_of(params: dict[str, Any]) -> str:
    """The backend a manifest's ``dense`` block names; indexes from before backends existed are FAISS."""
    return str(params.get("backend", "faiss"))


def check_backend(backend: str, uri: str | None) -> None:
    """Reject an unknown backend, or a URI where it means nothing, before any work.

    Raises:
        ValueError: A bad combination.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "faiss" and uri is not None:
        raise ValueError("a URI is for backend='milvus'; the FAISS backend keeps vectors in the index folder")
    if backend == "milvus" and not uri:
        raise ValueError(
            "backend='milvus' needs a URI: a local Milvus Lite file such as ./milvus.db, "
            "or a server such as http://localhost:19530 (or set $QA_MILVUS_URI)"
        )


def prepare(backend: str, uri: str | None, index_type: str) -> Callable[[np.ndarray], VectorStore]:
    """Connect now, so that a wrong address fails before minutes of embedding; build later.

    Returns a function that stores the passage vectors and returns the store.

    Raises:
        ValueError: A bad backend, URI or index type.
        MilvusUnavailable: The Milvus URI cannot be reached.
    """
    from qa.dense import resolve_index_type

    check_backend(backend, uri)
    resolve_index_type(index_type, 0)
    if backend == "milvus":
        from qa.milvus import MilvusStore

        assert uri is not None
        return MilvusStore.prepare(uri, index_type)
    return lambda vectors: FaissStore.build(vectors, index_type)


def open_store(folder: Path, params: dict[str, Any]) -> VectorStore:
    """The store the manifest's ``dense`` block describes, for the index read from ``folder``.

    Raises:
        IncompatibleIndex: The store is gone or unreadable.
        MilvusUnavailable: Its Milvus server cannot be reached.
    """
    if backend_of(params) == "milvus":
        from qa.milvus import MilvusStore

        return MilvusStore.open(folder, params)
    return FaissStore.open(folder, params)


def retire(replaced: dict[str, Any] | None, current: dict[str, Any], folder: Path) -> None:
    """After a save, drop the Milvus collection of the index it replaced, unless the new one still uses it.

    Best effort: a collection that cannot be dropped is logged, not raised; the new index is saved.
    """
    if replaced is None or backend_of(replaced) != "milvus":
        return
    from qa.milvus import retire_collection

    retire_collection(replaced, current, folder)


class FaissStore:
    """Vectors in a FAISS index, written to ``vectors.faiss`` (flat, HNSW or IVF-PQ; see :mod:`qa.dense`)."""

    backend = "faiss"
    label = "the FAISS file"
    files: tuple[str, ...] = (storage.VECTORS,)

    def __init__(self, index: Any, params: dict[str, Any]) -> None:
        self.index = index
        self.params = params
        # IVF-PQ keeps codes, not vectors: what it reconstructs is approximate.
        self.exact = params.get("type") in ("flat", "hnsw")

    @classmethod
    def build(cls, vectors: np.ndarray, index_type: str) -> FaissStore:
        from qa.dense import build_dense_index

        index, params = build_dense_index(vectors, index_type)
        return cls(index, params)

    @classmethod
    def open(cls, folder: Path, params: dict[str, Any]) -> FaissStore:
        import faiss

        from qa.dense import configure_search

        index = faiss.read_index(str(folder / storage.VECTORS))
        configure_search(index, params)
        return cls(index, {k: v for k, v in params.items() if k != "backend"})

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not np.array_equal(ids, np.arange(self.count, self.count + len(ids))):
            raise ValueError("a FAISS store numbers vectors by position: add ids count, count + 1, … in order")
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def delete(self, ids: np.ndarray) -> None:
        # FAISS flat and HNSW indexes number vectors by position: removing one renumbers the rest.
        raise ValueError(
            "the FAISS store cannot delete vectors in place; rebuild the index (Index.build with previous= "
            "reuses the vectors of unchanged passages), or use backend='milvus'"
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        vectors: np.ndarray = np.asarray(
            self.index.reconstruct_batch(np.asarray(ids, dtype=np.int64)), dtype=np.float32
        )
        return vectors.reshape(len(ids), self.dim)

    def describe(self, folder: Path | None = None) -> dict[str, Any]:
        return {"backend": self.backend, **self.params}

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(folder / storage.VECTORS))

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass
