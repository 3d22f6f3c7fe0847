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
from qa.rows import RowMap

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


def updated(
    previous: VectorStore, rows: RowMap, vectors: np.ndarray, backend: str, index_type: str
) -> VectorStore | None:
    """``previous`` changed in place of built anew, where that is quicker and gives the same searches:
    the passages ``rows`` keeps are ``previous``'s, the others new, passage ``i`` with the vector
    ``vectors[i]``. ``None`` where a new store should be built instead.
    """
    if backend == "faiss" and isinstance(previous, FaissStore):
        return previous.updated(rows, vectors, index_type)
    return None


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


MAX_REMOVED_SHARE = 0.2
"""An updated HNSW graph holding more removed vectors than this share of all is built anew instead:
removed vectors cost memory and, beyond a small share, recall (searches walk past them)."""


class FaissStore:
    """Vectors in a FAISS index, written to ``vectors.faiss`` (flat, HNSW or IVF-PQ; see :mod:`qa.dense`).

    FAISS numbers vectors by the order they were added, and an HNSW graph can neither renumber nor
    remove them. So that a rebuild after a change need not build the whole graph again (seconds at
    100,000 passages), an updated HNSW store keeps the old graph: the new passages' vectors are added
    at its end, removed passages' vectors stay but are never returned, and ``slot_rows`` (saved as
    ``vector_rows.npy``) maps each FAISS position to its passage row (-1: removed).
    """

    backend = "faiss"
    label = "the FAISS file"

    def __init__(self, index: Any, params: dict[str, Any], slot_rows: np.ndarray | None = None) -> None:
        self.index = index
        self.params = params
        # IVF-PQ keeps codes, not vectors: what it reconstructs is approximate.
        self.exact = params.get("type") in ("flat", "hnsw")
        self._slot_rows = slot_rows
        self._row_slots: np.ndarray | None = None
        self._search_params: Any = None  # with the selectors below, which FAISS holds as plain pointers
        self._removed: Any = None
        self._selector: Any = None
        self.files: tuple[str, ...] = (storage.VECTORS,)
        if slot_rows is not None:
            import faiss

            self.files = (storage.VECTORS, storage.VECTOR_ROWS)
            live = np.flatnonzero(slot_rows >= 0)
            self._row_slots = np.empty(len(live), dtype=np.int64)
            self._row_slots[slot_rows[live]] = live
            removed = np.flatnonzero(slot_rows < 0)
            if len(removed):
                # The graph still walks through removed vectors (so it stays connected) but never returns them.
                self._removed = faiss.IDSelectorBatch(removed)
                self._selector = faiss.IDSelectorNot(self._removed)
                untyped: Any = faiss  # its type stubs lack the search parameter classes
                self._search_params = untyped.SearchParametersHNSW(
                    efSearch=int(params["ef_search"]), sel=self._selector
                )

    @classmethod
    def build(cls, vectors: np.ndarray, index_type: str) -> FaissStore:
        from qa.dense import build_dense_index

        index, params = build_dense_index(vectors, index_type)
        return cls(index, params)

    def updated(self, rows: RowMap, vectors: np.ndarray, index_type: str) -> FaissStore | None:
        """This HNSW store changed as :func:`updated` says, leaving this one as it is; ``None`` for a
        flat store (built anew as fast as copied), IVF-PQ, another index type or configuration wanted,
        or when more than ``MAX_REMOVED_SHARE`` of the graph would be removed vectors."""
        import faiss

        from qa.dense import HNSWConfig, hnsw_params, resolve_index_type

        if self.params.get("type") != "hnsw" or resolve_index_type(index_type, rows.count) != "hnsw":
            return None
        if {**self.params, "type": "hnsw"} != hnsw_params(HNSWConfig()):
            return None  # built with other settings than today's defaults: build it as a new one would be
        old_slot_rows = self._slot_rows if self._slot_rows is not None else np.arange(self.count)
        new_row_of_old = np.full(self.count + 1, -1, dtype=np.int64)  # the extra -1: a removed slot stays removed
        new_row_of_old[rows.old] = rows.new
        added = rows.added
        slot_rows = np.concatenate([new_row_of_old[old_slot_rows], added])
        if np.count_nonzero(slot_rows < 0) > MAX_REMOVED_SHARE * len(slot_rows):
            return None
        index = faiss.clone_index(self.index)
        graph: Any = faiss.downcast_index(index)
        graph.hnsw.efSearch = int(self.params["ef_search"])
        if len(added):
            index.add(np.ascontiguousarray(vectors[added], dtype=np.float32))
        identity = np.array_equal(slot_rows, np.arange(len(slot_rows)))
        return FaissStore(index, dict(self.params), None if identity else slot_rows)

    @classmethod
    def open(cls, folder: Path, params: dict[str, Any]) -> FaissStore:
        import faiss

        from qa.dense import configure_search

        index = faiss.read_index(str(folder / storage.VECTORS))
        configure_search(index, params)
        slot_rows = None
        if params.get("slot_rows"):
            slot_rows = np.load(folder / storage.VECTOR_ROWS, allow_pickle=False)
            live = np.sort(slot_rows[slot_rows >= 0]) if slot_rows.dtype == np.int64 else None
            if slot_rows.shape != (index.ntotal,) or live is None or not np.array_equal(live, np.arange(len(live))):
                raise ValueError(f"{storage.VECTOR_ROWS} does not match {storage.VECTORS}")
        stored = {k: v for k, v in params.items() if k not in ("backend", "slot_rows", "removed")}
        return cls(index, stored, slot_rows)

    @property
    def count(self) -> int:
        return int(self.index.ntotal) if self._row_slots is None else len(self._row_slots)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if self._slot_rows is not None or not np.array_equal(ids, np.arange(self.count, self.count + len(ids))):
            raise ValueError("a FAISS store numbers vectors by position: add ids count, count + 1, … in order")
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def delete(self, ids: np.ndarray) -> None:
        # FAISS flat and HNSW indexes number vectors by position: removing one renumbers the rest.
        raise ValueError(
            "the FAISS store cannot delete vectors in place; rebuild the index (Index.build with previous= "
            "reuses the vectors of unchanged passages), or use backend='milvus'"
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._slot_rows is None:
            scores, ids = self.index.search(queries, k)
            return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        scores, slots = self.index.search(queries, k, params=self._search_params)
        rows = np.where(slots >= 0, self._slot_rows[np.maximum(slots, 0)], -1)
        return np.asarray(scores, dtype=np.float32), rows.astype(np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        slots = ids if self._row_slots is None else self._row_slots[ids]
        vectors: np.ndarray = np.asarray(self.index.reconstruct_batch(slots), dtype=np.float32)
        return vectors.reshape(len(ids), self.dim)

    def describe(self, folder: Path | None = None) -> dict[str, Any]:
        if self._slot_rows is None:
            return {"backend": self.backend, **self.params}
        removed = int(np.count_nonzero(self._slot_rows < 0))
        return {"backend": self.backend, **self.params, "slot_rows": True, "removed": removed}

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(folder / storage.VECTORS))
        if self._slot_rows is not None:
            np.save(folder / storage.VECTOR_ROWS, self._slot_rows, allow_pickle=False)

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass
