"""FAISS against Milvus Lite on the SQuAD v1.1 dev index: build time, query latency, recall@10 against exact.

    .venv/bin/python -m bench.milvus [--squad FILE] [--queries 500] [--workdir DIR] [--output STEM]

Only the vector stores are timed. The passage vectors (qa's passages of the 48 SQuAD dev articles, as
``Index.build`` splits them, embedded as ``Index.build`` embeds them) and the question vectors are
computed once beforehand and cached in the work folder: embedding is the same work whichever store
holds the vectors. Each store is built from those vectors through ``qa.vectorstore``, the path
``Index.build`` takes, then asked each sampled question alone (as ``qa ask`` does), k=10.

Columns: build (create, insert and index; for Milvus also flush), query p50/p95 (one question a call),
recall@10 against an exact numpy scan, read-back (the stored vectors of 200 passages, as hybrid search
re-scores its candidates), and reopen (what ``Index.load`` spends on the store). Writes
``bench/results/milvus.json`` and ``.md`` (README's table: ``--queries 1000``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, SQUAD, load_average, run_header, write_results

K = 10
READ_BACK = 200  # hybrid search re-scores the union of 100 dense and 100 BM25 candidates


def _log(message: str) -> None:
    print(f"[bench.milvus] {message}", file=sys.stderr, flush=True)


def squad_vectors(squad: Path, queries: int, workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length vectors of the SQuAD dev passages and of ``queries`` sampled questions, cached in ``workdir``."""
    from qa.build import split_collection
    from qa.embedding import embedding_text, load_encoder
    from qa.evaluation import load_squad
    from qa.manifest import Chunking
    from qa.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, SPLITTER_VERSION

    documents, questions = load_squad(squad)
    encoder = load_encoder()
    split = split_collection(
        documents, encoder, Chunking(DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, encoder.max_tokens, SPLITTER_VERSION)
    )
    texts = [embedding_text(p) for p in split.passages]
    asked = [questions[i].question for i in np.random.default_rng(0).permutation(len(questions))[:queries]]
    key = hashlib.sha256("\0".join([encoder.name, *texts, "\1", *asked]).encode()).hexdigest()[:16]
    cache = workdir / f"squad-dev-vectors-{key}.npz"
    if cache.exists():
        _log(f"vectors from {cache}")
        with np.load(cache) as cached:
            return cached["passages"], cached["questions"]
    _log(f"embedding {len(texts):,} passages and {len(asked):,} questions (once; cached in {cache})")
    started = time.perf_counter()
    passages = encoder.encode(texts).astype(np.float32)
    question_vectors = encoder.encode(asked).astype(np.float32)
    _log(f"embedded in {time.perf_counter() - started:.0f} s")
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, passages=passages, questions=question_vectors)
    return passages, question_vectors


def _percentile(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000, q))


def measure(
    name: str,
    build: Callable[[], Any],
    reopen: Callable[[Any, Path], Any],
    passages: np.ndarray,
    questions: np.ndarray,
    exact: np.ndarray,
    scratch: Path,
) -> dict[str, Any]:
    """Build one store, ask every question alone, read vectors back, and reopen it."""
    _log(f"{name}: building")
    started = time.perf_counter()
    store = build()
    build_seconds = time.perf_counter() - started
    store.search(questions[:1], K)  # warm: the first call pays one-off set-up
    latencies, recalls = [], []
    for row, question in enumerate(questions):
        started = time.perf_counter()
        _, ids = store.search(question[None, :], K)
        latencies.append(time.perf_counter() - started)
        recalls.append(len(set(ids[0].tolist()) & set(exact[row].tolist())) / K)
    rng = np.random.default_rng(1)
    reads = []
    for _ in range(50):
        ids = rng.choice(len(passages), READ_BACK, replace=False)
        started = time.perf_counter()
        back = store.vectors(ids)
        reads.append(time.perf_counter() - started)
    exact_copies = bool(np.array_equal(back, passages[ids]))
    count = store.count
    started = time.perf_counter()
    reopened = reopen(store, scratch)
    reopened.search(questions[:1], K)
    reopen_seconds = time.perf_counter() - started
    result = {
        "store": name,
        "count": count,
        "build_s": round(build_seconds, 2),
        "query_p50_ms": round(_percentile(latencies, 50), 2),
        "query_p95_ms": round(_percentile(latencies, 95), 2),
        "recall@10": round(float(np.mean(recalls)), 4),
        "read_back_p50_ms": round(_percentile(reads, 50), 2),
        "exact_vectors": exact_copies,
        "reopen_s": round(reopen_seconds, 2),
    }
    reopened.discard()  # drops a Milvus collection
    store.close()
    _log(f"{name}: {result}")
    return result


def _faiss(index_type: str, passages: np.ndarray) -> tuple[Callable[[], Any], Callable[[Any, Path], Any]]:
    from qa.vectorstore import FaissStore

    def reopen(store: Any, scratch: Path) -> Any:
        folder = scratch / f"faiss-{index_type}"
        folder.mkdir()
        store.save(folder)
        return FaissStore.open(folder, store.describe())

    return (lambda: FaissStore.build(passages, index_type)), reopen


def _milvus(
    index_type: str, passages: np.ndarray, scratch: Path
) -> tuple[Callable[[], Any], Callable[[Any, Path], Any]]:
    from qa.milvus import MilvusStore

    uri = str(scratch / f"milvus-{index_type}.db")

    def reopen(store: Any, scratch: Path) -> Any:
        params = store.describe(scratch / "index")
        store.close()  # lets go of the Milvus Lite file: the reopen starts it afresh, as a new process would
        return MilvusStore.open(scratch / "index", params)

    return (lambda: MilvusStore.prepare(uri, index_type)(passages)), reopen


def markdown(report: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in report["versions"].items())
    lines = [
        "# Vector stores: FAISS against Milvus Lite",
        "",
        run_header(report["command"], report["load_before"], report["load_after"]),
        "",
        f"{report['data']}; {report['timed']}; {versions}. Each question asked alone; recall@10 against an exact "
        "scan; read-back: the stored vectors of 200 passages, as hybrid search re-scores its candidates; reopen: "
        "what `Index.load` spends on the store.",
        "",
        "| store | build s | query p50 ms | query p95 ms | recall@10 | read 200 vectors p50 ms | reopen s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['store']} | {r['build_s']:.2f} | {r['query_p50_ms']:.2f} | {r['query_p95_ms']:.2f} | "
            f"{r['recall@10']:.3f} | {r['read_back_p50_ms']:.2f} | {r['reopen_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.milvus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v1.1 dev JSON (read, never copied)")
    parser.add_argument("--queries", type=int, default=500, help="questions sampled (seed 0)")
    parser.add_argument("--types", default="flat,hnsw", help="index types to compare, comma-separated")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "qa-bench-milvus", help="vector cache"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "milvus", help="the results' stem (.json and .md)")
    args = parser.parse_args(argv)

    passages, questions = squad_vectors(args.squad, args.queries, args.workdir)
    exact = np.argsort(-(questions @ passages.T), axis=1, kind="stable")[:, :K]
    load_before = load_average()
    results = []
    with tempfile.TemporaryDirectory(prefix="milvus-bench-") as scratch_name:
        scratch = Path(scratch_name)
        for index_type in args.types.split(","):
            for name, (build, reopen) in (
                (f"FAISS {index_type}", _faiss(index_type, passages)),
                (f"Milvus Lite {index_type}", _milvus(index_type, passages, scratch)),
            ):
                results.append(measure(name, build, reopen, passages, questions, exact, scratch))
                shutil.rmtree(scratch / "index", ignore_errors=True)
    import milvus_lite
    import pymilvus

    command = "python -m bench.milvus" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    report = {
        "command": command,
        "data": f"SQuAD v1.1 dev: {len(passages):,} passages, {len(questions):,} questions, k={K}",
        "timed": "vector stores only (vectors precomputed once with qa.embedding.Encoder)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": load_before,
        "load_after": load_average(),
        "versions": {"milvus-lite": milvus_lite.__version__, "pymilvus": pymilvus.__version__},
        "results": results,
    }
    text = markdown(report)
    print(text)
    write_results(args.output, report, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
