"""The FAISS index of passage vectors: exact for small collections, approximate for large ones.

The defaults below were chosen by measurement (``python -m bench index-types``; figures in
``bench/results/latest.md``) on 384-dimensional vectors on a 2-core machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")
AUTO_EXACT_LIMIT = 25_000
"""Below this many passages ``auto`` searches exactly; from here on, HNSW.

Measured on 2 cores: one exact search (k=100) scans about 5 ms per 100,000 vectors, while encoding the
question takes 6-7 ms. Up to about 28,000-30,000 vectors the scan costs at most a fifth of that; HNSW answers
in well under a millisecond at any size here, with 99.9% of the exact top 10 at 100,000.
"""

IVFPQ_MIN_COUNT = 1_000
"""IVF-PQ learns its lists and codebooks from the collection; fewer vectors than this cannot train them."""


@dataclass(frozen=True)
class HNSWConfig:
    """A graph index: ``m`` links a vector, ``ef_construction`` and ``ef_search`` candidates explored.

    Measured on 1M clustered 384-d vectors on 2 cores (``python -m bench index-types``): built in about
    a minute; ``ef_search=128`` keeps 98% of the exact top 10 at a p50 of 0.2 ms (64: 97%, 0.1 ms).
    ``ef_construction=80`` built slower with no better recall in a trial at 100k.
    """

    m: int = 32
    ef_construction: int = 40
    ef_search: int = 128


@dataclass(frozen=True)
class IVFPQConfig:
    """Inverted lists of product-quantised codes.

    ``pq_m`` one-byte codes a vector (lowered to a divisor of the dimension), ``nlist = lists_per_sqrt * sqrt(count)``
    lists trained on ``train_per_list`` vectors each, ``nprobe`` lists scanned a query; ``opq`` rotates the
    vectors first (from 10,000 vectors up, where the codes have their full 8 bits).

    Measured on 1M clustered 384-d vectors on 2 cores: the exact nearest neighbour is among the top 10
    for 96% of queries at a p50 of 1.2 ms, with 82 bytes a vector (codes, ids and the direct map);
    training takes about 4 minutes, mostly OPQ. Without OPQ: 90%; with 48 codes: 91% at 66 bytes.
    Twice as many lists trained three times as long at 1M and found no more.
    """

    pq_m: int = 64
    nprobe: int = 32
    lists_per_sqrt: float = 1.0
    train_per_list: int = 64
    opq: bool = True


def resolve_index_type(index_type: str, count: int) -> str:
    """The index type to build for ``count`` vectors: ``auto`` becomes exact below ``AUTO_EXACT_LIMIT``."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type must be one of {', '.join(INDEX_TYPES)}; got {index_type!r}")
    if index_type == "auto":
        return "flat" if count < AUTO_EXACT_LIMIT else "hnsw"
    return index_type


def build_dense_index(
    vectors: np.ndarray, index_type: str, *, hnsw: HNSWConfig | None = None, ivfpq: IVFPQConfig | None = None
) -> tuple[Any, dict[str, Any]]:
    """Index unit-length ``vectors`` for inner-product search; return the index and its parameters.

    Raises:
        ValueError: An unknown ``index_type``, or ``ivfpq`` for fewer than ``IVFPQ_MIN_COUNT`` vectors.
    """
    import faiss

    count, dim = vectors.shape
    kind = resolve_index_type(index_type, count)
    params: dict[str, Any] = {"type": kind}
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        config = hnsw or HNSWConfig()
        index = faiss.IndexHNSWFlat(dim, config.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
        params.update(hnsw_params(config))
    else:
        index, ivf_params = _ivfpq(vectors, ivfpq or IVFPQConfig())
        params.update(ivf_params)
    if count:
        index.add(vectors)
    return index, params


def hnsw_params(config: HNSWConfig) -> dict[str, Any]:
    """The manifest's ``dense`` parameters of an HNSW index built with ``config``."""
    return {"type": "hnsw", "M": config.m, "ef_construction": config.ef_construction, "ef_search": config.ef_search}


def _ivfpq(vectors: np.ndarray, config: IVFPQConfig) -> tuple[Any, dict[str, Any]]:
    import faiss

    count, dim = vectors.shape
    if count < IVFPQ_MIN_COUNT:
        raise ValueError(
            f"ivfpq needs at least {IVFPQ_MIN_COUNT:,} passages to train on; this collection has {count:,}. "
            "Use index_type='flat' (or 'auto')"
        )
    # Each code byte covers dim / pq_m dimensions, so pq_m must divide dim: the nearest such below it.
    pq_m = max(m for m in range(1, min(config.pq_m, dim) + 1) if dim % m == 0)
    # k-means wants about 39 training points a centroid: fewer lists than that on small collections.
    nlist = max(1, int(min(config.lists_per_sqrt * np.sqrt(count), count // 39)))
    # A codebook of 256 entries needs about 10,000 points; a small collection gets fewer bits a code.
    nbits = int(min(8, np.log2(count / 39)))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.min_points_per_centroid = 1  # sizes above are chosen to train well; no warnings on stderr
    ivf.pq.cp.min_points_per_centroid = 1
    # OPQ rotates the vectors so each code byte gets an equal share of their variance; it trains
    # 256-entry codebooks of its own, so only with full-size codes. The rotation is orthogonal: inner
    # products, and vectors read back, are unchanged.
    opq = config.opq and nbits == 8
    index = faiss.IndexPreTransform(faiss.OPQMatrix(dim, pq_m), ivf) if opq else ivf
    train = min(count, max(config.train_per_list * nlist, 1 << nbits << 6))
    sample = vectors[np.sort(np.random.default_rng(0).permutation(count)[:train])]
    index.train(sample)
    ivf.nprobe = min(config.nprobe, nlist)
    # Hybrid search reads candidates' vectors back by id; IVF lists need a direct map to find them.
    ivf.make_direct_map()
    return index, {"nlist": nlist, "pq_m": pq_m, "nbits": nbits, "opq": opq, "nprobe": ivf.nprobe}


def configure_search(index: Any, params: dict[str, Any]) -> None:
    """Restore the search-time settings that a FAISS file does not keep."""
    import faiss

    if params.get("type") == "hnsw":
        hnsw: Any = faiss.downcast_index(index)
        hnsw.hnsw.efSearch = int(params["ef_search"])
    elif params.get("type") == "ivfpq":
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
