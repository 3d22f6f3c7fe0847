"""Each FAISS index type against brute-force numpy on a small seeded clustered set (recall, never timings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa.dense import (
    AUTO_EXACT_LIMIT,
    IVFPQ_MIN_COUNT,
    IVFPQConfig,
    build_dense_index,
    configure_search,
    resolve_index_type,
)

DIM = 64
K = 10


def clustered(count: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors gathered around 40 centres, and queries drawn from the same mixture.

    Clustered rather than uniform: in a uniform cloud every neighbour is about as far as any other, so
    recall would measure noise, not the index.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM))

    def draw(n: int) -> np.ndarray:
        points = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIM))
        return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)

    return draw(count), draw(queries)


@pytest.fixture(scope="module")
def collection() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vectors, queries = clustered(3_000, 200)
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :K]
    return vectors, queries, exact


_built: dict[str, tuple[Any, dict[str, Any]]] = {}


def built(kind: str, vectors: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """Each index type built once for the module: training IVF-PQ takes seconds on a busy machine."""
    if kind not in _built:
        _built[kind] = build_dense_index(vectors, kind)
    return _built[kind]


def overlap(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / K for f, e in zip(found.tolist(), exact.tolist(), strict=True)]))


def nearest_found(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([e[0] in f for f, e in zip(found.tolist(), exact.tolist(), strict=True)]))


def test_flat_is_exact(collection: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    vectors, queries, exact = collection
    index, params = build_dense_index(vectors, "flat")
    scores, found = index.search(queries, K)
    assert params == {"type": "flat"}
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, exact, axis=1), rtol=1e-5, atol=1e-5)
    assert overlap(found, exact) > 0.999  # equal up to ties in float rounding


def test_hnsw_recall(collection: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    vectors, queries, exact = collection
    index, params = built("hnsw", vectors)
    _, found = index.search(queries, K)
    assert params["type"] == "hnsw"
    assert overlap(found, exact) >= 0.9


def test_ivfpq_finds_the_nearest(collection: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    vectors, queries, exact = collection
    index, params = built("ivfpq", vectors)
    _, found = index.search(queries, K)
    assert params["type"] == "ivfpq"
    assert nearest_found(found, exact) >= 0.8


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_indexes_return_vectors_by_id(
    collection: tuple[np.ndarray, np.ndarray, np.ndarray], kind: str
) -> None:
    """Hybrid search scores its candidates with vectors read back by id; every type must allow it."""
    vectors, _, _ = collection
    index, _ = built(kind, vectors)
    ids = np.array([0, 17, 2_999], dtype=np.int64)
    back = index.reconstruct_batch(ids)
    assert back.shape == (3, DIM)
    cosines = np.einsum("ij,ij->i", back, vectors[ids]) / np.linalg.norm(back, axis=1)
    assert (cosines > 0.9).all()  # exact for HNSW, close for product-quantised codes


def test_search_settings_survive_save_and_load(
    collection: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    import faiss

    vectors, _, _ = collection
    for kind in ("hnsw", "ivfpq"):
        index, params = built(kind, vectors)
        path = str(tmp_path / f"{kind}.faiss")
        faiss.write_index(index, path)
        loaded = faiss.read_index(path)
        configure_search(loaded, params)
        if kind == "hnsw":
            assert faiss.downcast_index(loaded).hnsw.efSearch == params["ef_search"]
        else:
            assert faiss.extract_index_ivf(loaded).nprobe == params["nprobe"]
            assert loaded.reconstruct(3).shape == (DIM,)


def test_auto_is_exact_below_the_limit() -> None:
    assert resolve_index_type("auto", 0) == "flat"
    assert resolve_index_type("auto", AUTO_EXACT_LIMIT - 1) == "flat"
    assert resolve_index_type("auto", AUTO_EXACT_LIMIT) == "hnsw"
    vectors, _ = clustered(300, 1)
    _, params = build_dense_index(vectors, "auto")
    assert params["type"] == "flat"


def test_auto_builds_hnsw_from_the_size_readme_gives() -> None:
    import faiss

    # README: "auto searches exactly below 25,000 passages". Built, not only named: the index built is the kind.
    vectors, queries = clustered(25_000, 50, seed=4)
    exact_index, params = build_dense_index(vectors[:24_999], "auto")
    assert params["type"] == "flat" and isinstance(exact_index, faiss.IndexFlatIP)
    graph, params = build_dense_index(vectors, "auto")
    assert params["type"] == "hnsw" and isinstance(faiss.downcast_index(graph), faiss.IndexHNSWFlat)
    assert graph.ntotal == 25_000
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :K]
    assert overlap(graph.search(queries, K)[1], exact) >= 0.9


def test_explicit_types_are_kept_at_any_size() -> None:
    for kind in ("flat", "hnsw", "ivfpq"):
        assert resolve_index_type(kind, 10) == kind


def test_ivfpq_rejects_tiny_collections() -> None:
    vectors, _ = clustered(IVFPQ_MIN_COUNT - 1, 1)
    with pytest.raises(ValueError, match=r"ivfpq needs at least 1,000 passages.*has 999.*index_type='flat'"):
        build_dense_index(vectors, "ivfpq")


def test_ivfpq_trains_on_the_smallest_allowed_collection() -> None:
    vectors, queries = clustered(IVFPQ_MIN_COUNT, 20)
    index, params = build_dense_index(vectors, "ivfpq")
    assert index.ntotal == IVFPQ_MIN_COUNT
    assert params["nbits"] < 8  # too few vectors for 256-entry codebooks
    _, found = index.search(queries, K)
    assert (found >= 0).all()


def test_unknown_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="index_type must be one of auto, flat, hnsw, ivfpq"):
        resolve_index_type("annoy", 10)


def test_empty_collection_builds_an_empty_exact_index() -> None:
    index, params = build_dense_index(np.zeros((0, DIM), dtype=np.float32), "auto")
    assert params["type"] == "flat"
    assert index.ntotal == 0


def test_ivfpq_rotates_large_collections_and_keeps_inner_products(tmp_path: Path) -> None:
    import faiss

    vectors, queries = clustered(10_000, 50, seed=3)
    # 16 codes of 4 dimensions: the same path as the default, trained in seconds.
    index, params = build_dense_index(vectors, "ivfpq", ivfpq=IVFPQConfig(pq_m=16))
    assert params["opq"] and params["nbits"] == 8 and params["pq_m"] == 16
    assert isinstance(index, faiss.IndexPreTransform)
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :K]
    scores, found = index.search(queries, K)
    assert nearest_found(found, exact) >= 0.8
    # Scores are inner products with the original vectors (not distances, not of an unrotated query).
    np.testing.assert_allclose(scores[:, 0], np.einsum("ij,ij->i", queries, vectors[found[:, 0]]), atol=0.1)
    # Written and read back, with the search settings restored, it answers the same and gives vectors back.
    path = tmp_path / "ivfpq.faiss"
    faiss.write_index(index, str(path))
    loaded = faiss.read_index(str(path))
    configure_search(loaded, params)
    assert faiss.extract_index_ivf(loaded).nprobe == params["nprobe"]
    np.testing.assert_array_equal(loaded.search(queries, K)[1], found)
    back = loaded.reconstruct_batch(np.array([5, 17], dtype=np.int64))
    assert back.shape == (2, DIM) and np.allclose(np.einsum("ij,ij->i", back, vectors[[5, 17]]), 1.0, atol=0.15)
