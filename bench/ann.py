"""Index types on synthetic vectors: build time, single-query latency, recall against exact search, size.

Runs inside a ``bench.worker`` child (tasks ``ann-sizes`` and ``ann-flat-scan``). Every qa index type is built by
``qa.dense.build_dense_index``, the code path ``Index.build`` uses, with the configuration measured.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import log, summary
from bench.data import clustered_vectors

K = 10


def exact_neighbours(database: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """The exact top ``k`` by inner product, by blocked matrix products (no second copy of the database)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for begin in range(0, len(database), 131_072):
        scores = queries @ database[begin : begin + 131_072].T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        merged_ids = np.concatenate([best_ids, top + begin], axis=1)
        order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(merged_scores, order, axis=1)
        best_ids = np.take_along_axis(merged_ids, order, axis=1)
    return best_ids


def recall(found: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Share of the exact top 10 in the found top 10, and how often the exact nearest is in the found 10."""
    overlap = [len(set(f.tolist()) & set(e.tolist())) / exact.shape[1] for f, e in zip(found, exact, strict=True)]
    nearest = [e[0] in set(f.tolist()) for f, e in zip(found, exact, strict=True)]
    return {"recall_at_10": round(float(np.mean(overlap)), 4), "nearest_in_10": round(float(np.mean(nearest)), 4)}


def single_query_latency(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> dict[str, float]:
    """Latency of one query at a time, as a question is asked, after a few warm-up searches."""
    for query in queries[:10]:
        search(query[None, :])
    times = []
    for query in queries:
        started = time.perf_counter()
        search(query[None, :])
        times.append(time.perf_counter() - started)
    return summary(times)


def index_bytes(index: Any) -> int:
    """The size of the index as saved: what a FAISS file on disk (and, near enough, in memory) takes."""
    import faiss

    handle, path = tempfile.mkstemp(suffix=".faiss")
    os.close(handle)
    try:
        faiss.write_index(index, path)
        return os.path.getsize(path)
    finally:
        os.unlink(path)


def _measure(
    index: Any,
    params: dict[str, Any],
    sweep: list[dict[str, Any]],
    vectors_count: int,
    queries: np.ndarray,
    exact: np.ndarray,
    latency_queries: int,
) -> list[dict[str, Any]]:
    """Recall and latency of a built index at each search-time setting in ``sweep``."""
    from qa.dense import configure_search

    rows = []
    size = index_bytes(index)
    for setting in sweep:
        if params["type"] == "ivfpqr":
            index.nprobe = setting.get("nprobe", index.nprobe)
        else:
            configure_search(index, params | setting)
        _, found = index.search(queries, K)
        row = {**setting, **recall(found, exact)}
        row |= single_query_latency(lambda q: index.search(q, K), queries[:latency_queries])
        row["bytes_per_vector"] = round(size / vectors_count, 1)
        rows.append(row)
    return rows


def task_sizes(params: dict[str, Any]) -> dict[str, Any]:
    """Every configured index type at one collection size."""
    import faiss

    from qa.dense import HNSWConfig, IVFPQConfig, build_dense_index

    count = int(params["count"])
    started = time.perf_counter()
    vectors, queries = clustered_vectors(count, params["queries"], seed=params.get("seed", 0))
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    exact = exact_neighbours(vectors, queries)
    exact_s = time.perf_counter() - started
    latency_queries = params["latency_queries"]
    result: dict[str, Any] = {
        "count": count,
        "dim": vectors.shape[1],
        "queries": len(queries),
        "latency_queries": latency_queries,
        "generate_s": round(generate_s, 2),
        "exact_ground_truth_s": round(exact_s, 2),
        "faiss_threads": faiss.omp_get_max_threads(),
        "profile": neighbour_profile(vectors, queries[:200], exact),
        "configs": [],
    }
    for config in params["configs"]:
        kind = config["type"]
        log(f"  {count:,} vectors: building {kind} {config.get('build', '')}")
        started = time.perf_counter()
        if kind == "hnsw":
            index, built = build_dense_index(vectors, "hnsw", hnsw=HNSWConfig(**config.get("build", {})))
        elif kind == "ivfpq":
            index, built = build_dense_index(vectors, "ivfpq", ivfpq=IVFPQConfig(**config.get("build", {})))
        elif kind == "ivfpqr":
            index, built = ivfpqr(vectors, **config.get("build", {}))
        else:
            index, built = build_dense_index(vectors, "flat")
        build_s = time.perf_counter() - started
        rows = _measure(index, built, config.get("sweep", [{}]), count, queries, exact, latency_queries)
        result["configs"].append({"type": kind, "params": built, "build_s": round(build_s, 2), "results": rows})
        del index
    return result


def ivfpqr(vectors: np.ndarray, pq_m: int = 32, refine_m: int = 32, nprobe: int = 32) -> tuple[Any, dict[str, Any]]:
    """Not in qa: IVF-PQ whose candidates are re-ranked by a second PQ code of the first one's residual.

    Measured beside qa's types because it finds more at the same bytes; FAISS offers it for L2 only, so
    qa would have to turn its distances into cosines (1 - d/2 for unit vectors) to use it.
    """
    import faiss

    count, dim = vectors.shape
    nlist = max(1, int(min(np.sqrt(count), count // 39)))
    index = faiss.IndexIVFPQR(faiss.IndexFlatL2(dim), dim, nlist, pq_m, 8, refine_m, 8)
    sample = vectors[np.sort(np.random.default_rng(0).permutation(count)[: min(count, max(64 * nlist, 16_384))])]
    index.train(sample)
    index.add(vectors)
    index.nprobe = min(nprobe, nlist)
    index.make_direct_map()  # as qa would need, to read candidates' vectors back
    return index, {"type": "ivfpqr", "nlist": nlist, "pq_m": pq_m, "refine_m": refine_m, "nprobe": index.nprobe}


def neighbour_profile(vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Mean cosine of a query to its 1st and 10th nearest neighbour and to a random vector.

    Compared with the same figures for real passage vectors, it shows how hard the synthetic set is.
    """
    first = np.einsum("ij,ij->i", queries, vectors[exact[: len(queries), 0]])
    tenth = np.einsum("ij,ij->i", queries, vectors[exact[: len(queries), K - 1]])
    rng = np.random.default_rng(1)
    random = np.einsum("ij,ij->i", queries, vectors[rng.integers(0, len(vectors), len(queries))])
    return {
        "cos_1st": round(float(first.mean()), 3),
        "cos_10th": round(float(tenth.mean()), 3),
        "cos_random": round(float(random.mean()), 3),
    }


def task_flat_scan(params: dict[str, Any]) -> dict[str, Any]:
    """Single-query exact (flat) search latency by collection size, beside encoding one question.

    The exact index is worth keeping while its scan stays small next to the encoding every question
    pays anyway; ``AUTO_EXACT_LIMIT`` is chosen from this curve. Each search runs with the default
    threads and with one, alternately: FAISS splits a single query's scan over its OpenMP threads,
    and on a busy machine waiting for the second thread can cost more than the scan.
    """
    import faiss
    import torch

    from qa.embedding import SentenceTransformerEncoder

    model = SentenceTransformerEncoder().model
    questions = [f"What happened to the river in the year {1800 + i}?" for i in range(params["latency_queries"])]
    threads, torch_threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    model.encode(questions[:8])

    def alternate(run: Callable[[int], Any], count: int) -> dict[str, dict[str, float]]:
        timings: dict[str, list[float]] = {"default": [], "1 thread": []}
        for i in range(count + 5):
            for setting in ("default", "1 thread") if i % 2 == 0 else ("1 thread", "default"):
                faiss.omp_set_num_threads(threads if setting == "default" else 1)
                torch.set_num_threads(torch_threads if setting == "default" else 1)
                started = time.perf_counter()
                run(i)
                if i >= 5:  # the first few warm up
                    timings[setting].append(time.perf_counter() - started)
        faiss.omp_set_num_threads(threads)
        torch.set_num_threads(torch_threads)
        return {setting: summary(values) for setting, values in timings.items()}

    encode = alternate(
        lambda i: model.encode([questions[i % len(questions)]], normalize_embeddings=True), len(questions)
    )
    largest = max(params["sizes"])
    vectors, queries = clustered_vectors(largest, params["latency_queries"], seed=params.get("seed", 0))
    sizes = []
    for count in sorted(params["sizes"]):
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors[:count])
        by_threads = alternate(lambda i, f=flat: f.search(queries[i % len(queries)][None, :], 100), len(queries))
        sizes.append({"count": count, **by_threads["default"], "one_thread": by_threads["1 thread"]})
        del flat
    return {
        "encode_question": encode["default"],
        "encode_question_one_thread": encode["1 thread"],
        "threads": {"faiss": threads, "torch": torch_threads},
        "flat": sizes,
    }


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ann-sizes": task_sizes,
    "ann-flat-scan": task_flat_scan,
}
