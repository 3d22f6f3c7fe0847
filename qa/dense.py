"""The FAISS index of passage vectors: exact for small collections, approximate for large ones."""

from __future__ import annotations

from typing import Any

import numpy as np

INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")
AUTO_EXACT_LIMIT = 200_000
"""Below this many passages ``auto`` searches exactly: a flat scan is still fast there and has full recall."""

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
IVFPQ_PQ_M = 48  # 48 one-byte codes + an 8-byte id: 56 bytes a vector
IVFPQ_NPROBE = 32


def resolve_index_type(index_type: str, count: int) -> str:
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type must be one of {', '.join(INDEX_TYPES)}; got {index_type!r}")
    if index_type == "auto":
        return "flat" if count < AUTO_EXACT_LIMIT else "hnsw"
    return index_type


def build_dense_index(vectors: np.ndarray, index_type: str) -> tuple[Any, dict[str, Any]]:
    """Index unit-length ``vectors`` for inner-product search; return the index and its parameters."""
    import faiss

    count, dim = vectors.shape
    kind = resolve_index_type(index_type, count)
    params: dict[str, Any] = {"type": kind}
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        params.update(M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, ef_search=HNSW_EF_SEARCH)
    else:
        if count < 1_000:
            raise ValueError(
                f"ivfpq needs at least 1,000 passages to train on; this collection has {count}. "
                "Use index_type='flat' (or 'auto')"
            )
        nlist = int(min(4 * np.sqrt(count), count // 39))
        pq_m = IVFPQ_PQ_M if dim % IVFPQ_PQ_M == 0 else 1
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).permutation(count)[: min(count, 256 * nlist)]]
        index.train(sample)
        index.nprobe = min(IVFPQ_NPROBE, nlist)
        params.update(nlist=nlist, pq_m=pq_m, nbits=8, nprobe=index.nprobe)
    if count:
        index.add(vectors)
    return index, params


def configure_search(index: Any, params: dict[str, Any]) -> None:
    """Restore the search-time settings that a FAISS file does not keep."""
    import faiss

    if params.get("type") == "hnsw":
        hnsw: Any = faiss.downcast_index(index)
        hnsw.hnsw.efSearch = int(params["ef_search"])
    elif params.get("type") == "ivfpq":
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
