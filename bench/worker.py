"""The measurements that run in a child process: ``python -m bench.worker TASK PARAMS_JSON RESULT_FILE``.

Each task runs in a fresh interpreter started by ``bench.common.run_task`` so its peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import data
from bench.common import MIB, summary
from qa.embedding import DEFAULT_BATCH_SIZE

K = 5
"""Passages asked for per question: the ``qa ask`` default."""
SINGLE_THREAD_FLOOR = "floor, 1 thread"


def _texts_of(index: Any) -> tuple[list[str], list[str]]:
    """The passage texts (as the model reads them) and sentence texts of an index, in index order."""
    from qa.embedding import embedding_text

    contents = index.contents
    passages = [embedding_text(p) for p in contents.passages]
    sentences = [p.text[s:e] for p, spans in zip(contents.passages, contents.sentences, strict=True) for s, e in spans]
    return passages, sentences


def _warm(model: Any, batch_size: int) -> None:
    """Run the model once so one-off costs (thread pools, first allocations) fall outside every timing."""
    model.encode(["a warm-up sentence"] * batch_size, batch_size=batch_size)


class RSSSampler:
    """Samples this process's resident memory every 20 ms and keeps the peak seen during each stage.

    Tells where a build's peak comes from (the kernel's own peak figure says only how high it went).
    A new high shorter than the 20 ms between samples is still caught: at each stage boundary the
    kernel's peak is read, and a rise since the last boundary belongs to the stage that just ran.
    """

    def __init__(self) -> None:
        self.stage = "other"
        self.peaks: dict[str, int] = {}
        self._high_water = _peak_rss()
        self._lock = threading.Lock()  # the sampling thread and stage changes must not interleave
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        """Record the resident memory now against the current stage."""
        with self._lock:
            self._record(self.stage, _rss())

    def end_stage(self, next_stage: str) -> None:
        """The current stage ends (its peak is settled) and ``next_stage`` begins."""
        with self._lock:
            self._record(self.stage, _rss())
            if (high_water := _peak_rss()) > self._high_water:
                self._record(self.stage, high_water)
                self._high_water = high_water
            self.stage = next_stage

    def _record(self, stage: str, rss: int) -> None:
        self.peaks[stage] = max(self.peaks.get(stage, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.sample()

    def stop(self) -> dict[str, float]:
        """Stop sampling; the peak of each stage in MiB."""
        self.end_stage(self.stage)
        self._stop.set()
        self._thread.join()
        return {stage: round(peak / MIB, 1) for stage, peak in self.peaks.items()}


def _rss() -> int:
    """This process's resident memory now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    """The highest resident memory of this process so far, in bytes (the kernel's high-water mark)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes


class StubEncoder:
    """The real encoder's tokenizer with random unit vectors in place of the model's forward pass.

    Used only where it is labelled: it measures everything a build does except the neural network,
    whose memory is per batch and does not grow with the collection.
    """

    def __init__(self, encoder: Any) -> None:
        self.inner = encoder
        self.name = encoder.name
        self.runtime = encoder.runtime

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    @property
    def max_tokens(self) -> int:
        return int(self.inner.max_tokens)

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def encode(self, texts: Any, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        rng = np.random.default_rng(len(texts))
        vectors = rng.standard_normal((len(texts), self.dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    def encode_query(self, question: str) -> np.ndarray:
        return self.encode([question])[0]

    def warm_queries(self, questions: Any, *, batch_size: int = 64) -> None:
        pass


def _documents(source: dict[str, Any]) -> list[Any]:
    if source["name"] == "squad":
        documents = data.squad()[0]
        return documents[: source["documents"]] if source.get("documents") else documents
    if source["name"] == "scifact":
        return data.scifact(int(source["documents"]))
    raise ValueError(f"unknown source {source!r}")


# ------------------------------------------------------------------------------------------- tasks


def task_build(params: dict[str, Any]) -> dict[str, Any]:
    """``Index.build`` of a collection, then ``save``; with the real model or (labelled) a stub encoder."""
    from qa.embedding import SentenceTransformerEncoder
    from qa.index import Index

    documents = _documents(params["source"])
    real = SentenceTransformerEncoder()
    model = real.model  # loading the model is start-up, not build throughput
    encoder: Any = StubEncoder(real) if params.get("stub") else real
    if not params.get("stub"):
        _warm(model, params["batch_size"])
    sampler = RSSSampler()
    started = time.perf_counter()
    index = Index.build(
        documents,
        encoder=encoder,
        batch_size=params["batch_size"],
        index_type=params.get("index_type", "auto"),
        passage_vectors_from=params.get("passage_vectors_from", "own"),
        progress=False,
        on_stage=sampler.end_stage,  # each stage's memory peak
    )
    build_s = time.perf_counter() - started
    stages = dict(index.build_report.stage_seconds) if index.build_report else {}
    sampler.end_stage("save")
    started = time.perf_counter()
    index.save(params["output"])
    save_s = time.perf_counter() - started
    peaks = sampler.stop()
    # What qa took, from start-up to the index saved; the statistics below are the benchmark's own.
    build_peak_mib = round(_peak_rss() / MIB, 1)
    passages, sentences = _texts_of(index)
    return {
        "documents": len(documents),
        "batch_size": params["batch_size"],
        "passages": len(index),
        "sentences": len(sentences),
        "distinct_texts": len(set(passages) | set(sentences)),
        "passage_tokens_mean": _mean_tokens(encoder, passages[:2000]),
        "sentence_tokens_mean": _mean_tokens(encoder, sentences[:2000]),
        "dense": index.manifest.to_json()["dense"],
        "build_s": round(build_s, 3),
        "save_s": round(save_s, 3),
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "vectors_total_s": round(stages.get("reuse", 0.0) + stages.get("embed", 0.0), 3),
        "peak_rss_by_stage_mib": peaks,
        "build_peak_rss_mib": build_peak_mib,
        "passages_per_s": round(len(index) / build_s, 2),
    }


def _mean_tokens(encoder: Any, texts: list[str]) -> float:
    return round(float(np.mean([encoder.count_tokens(t) for t in texts])), 1) if texts else 0.0


def task_bare_encode(params: dict[str, Any]) -> dict[str, Any]:
    """Bare ``model.encode`` of an index's passages (the issue's baseline), and of passages + sentences."""
    from qa.embedding import SentenceTransformerEncoder
    from qa.index import Index

    index = Index.load(params["index"])
    passages, sentences = _texts_of(index)
    del index
    model = SentenceTransformerEncoder().model
    _warm(model, params["batch_size"])

    def encode(texts: list[str]) -> float:
        started = time.perf_counter()
        model.encode(texts, batch_size=params["batch_size"], normalize_embeddings=True, convert_to_numpy=True)
        return time.perf_counter() - started

    passages_s = encode(passages)
    result: dict[str, Any] = {
        "passages": len(passages),
        "passages_s": round(passages_s, 3),
        "passages_per_s": round(len(passages) / passages_s, 2),
    }
    if params.get("with_sentences"):
        distinct = list(dict.fromkeys(sentences))  # a build embeds each distinct text once
        sentences_s = encode(distinct)
        result |= {
            "sentences": len(distinct),
            "sentences_s": round(sentences_s, 3),
            "all_s": round(passages_s + sentences_s, 3),
            "all_passages_per_s": round(len(passages) / (passages_s + sentences_s), 2),
        }
    return result


def _profile_search(index: Any, questions: list[str]) -> dict[str, dict[str, float]]:
    """Mean milliseconds a question spends in each step of a search, by mode (a separate pass).

    ``Index.search`` is ``qa.retrieval.search``: the question embedded, its words taken, the passages
    ranked, each hit's sentence highlighted. The same public steps are called here one by one and timed.
    """
    from qa import retrieval

    contents, encoder = index.contents, index.encoder
    profile: dict[str, dict[str, float]] = {}
    for mode in ("hybrid", "dense", "lexical"):
        spent = dict.fromkeys(["encode question", "question words (BM25)", "rank passages", "highlight (total)"], 0.0)
        started = time.perf_counter()
        for question in questions:
            marks = [time.perf_counter()]
            query = encoder.encode_query(question)
            marks.append(time.perf_counter())
            terms = contents.lexical.terms(question)
            marks.append(time.perf_counter())
            ranked = retrieval.rank_passages(contents, query, terms, K, mode)
            marks.append(time.perf_counter())
            for row, _ in ranked:
                retrieval.highlight(contents, row, query, terms)
            marks.append(time.perf_counter())
            for label, begin, end in zip(spent, marks, marks[1:], strict=False):
                spent[label] += end - begin
        total = time.perf_counter() - started
        profile[mode] = {"total": round(total / len(questions) * 1e3, 3)} | {
            label: round(seconds / len(questions) * 1e3, 3) for label, seconds in spent.items()
        }
    return profile


def task_latency(params: dict[str, Any]) -> dict[str, Any]:
    """Warm single-question latency of each mode beside the floor, interleaved question by question."""
    import faiss
    import torch

    from qa.embedding import SentenceTransformerEncoder
    from qa.index import Index

    # No question vectors kept: every search embeds its question, as a new question does (asked in
    # several modes back to back, it would otherwise be embedded by the first only).
    encoder = SentenceTransformerEncoder(query_cache_size=0)
    index = Index.load(params["index"], encoder=encoder)
    model = encoder.model  # the one the index uses: models are loaded once per process
    # The floor searches the index's own vectors, in passage order.
    vectors = index.contents.dense.vectors(np.arange(len(index)))
    floor_index = faiss.IndexFlatIP(vectors.shape[1])
    floor_index.add(vectors)
    indexed = {d.id for d in index.documents}
    questions = [q for q in data.squad()[1] if q.doc_id in indexed]
    questions = data.sample(questions, params["warmup"] + params["questions"], seed=params.get("seed", 0))
    passages = index.passages
    by_id = {p.id: i for i, p in enumerate(passages)}

    def floor(question: str) -> list[int]:
        vector = model.encode([question], normalize_embeddings=True, convert_to_numpy=True)
        _, ids = floor_index.search(vector, K)
        return [int(i) for i in ids[0]]

    def mode_runner(mode: str) -> Callable[[str], list[int]]:
        def run(question: str) -> list[int]:
            return [by_id[hit.passage.id] for hit in index.search(question, K, mode=mode)]

        return run

    runners: dict[str, Callable[[str], list[int]]] = {"floor": floor} | {
        mode: mode_runner(mode) for mode in ("hybrid", "dense", "lexical")
    }
    threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    if threads > 1:
        # The floor again on one thread: shows what the default thread count costs or gains here.
        runners[SINGLE_THREAD_FLOOR] = floor
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    found: dict[str, int] = dict.fromkeys(names, 0)
    for number, question in enumerate(questions):
        measured = number >= params["warmup"]
        # Each question runs every variant back to back, in a rotating order, so that a burst of load
        # from elsewhere on the machine falls on all of them alike and none always goes first.
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            single = name == SINGLE_THREAD_FLOOR
            if single:  # set outside the timing; the pools keep their threads, they just wait
                torch.set_num_threads(1)
                faiss.omp_set_num_threads(1)
            started = time.perf_counter()
            ids = runners[name](question.text)
            elapsed = time.perf_counter() - started
            if single:
                torch.set_num_threads(threads)
                faiss.omp_set_num_threads(faiss_threads)
            if measured:
                times[name].append(elapsed)
                found[name] += any(
                    passages[i].doc_id == question.doc_id
                    and passages[i].start <= question.answer_offset < passages[i].end
                    for i in ids
                )
    floor_times = np.asarray(times["floor"])
    floor_p50 = float(np.percentile(floor_times, 50)) * 1e3
    result: dict[str, Any] = {
        "passages": len(passages),
        "questions": len(floor_times),
        "k": K,
        "torch_threads": threads,
        "faiss_threads": faiss_threads,
        "modes": {},
    }
    for name in names:
        stats: dict[str, Any] = summary(times[name])
        stats["p50_vs_floor"] = round(stats["p50_ms"] / floor_p50, 3)
        stats["paired_median_ratio"] = round(float(np.median(np.asarray(times[name]) / floor_times)), 3)
        stats["answer_in_top5"] = round(found[name] / len(floor_times), 3)
        result["modes"][name] = stats
    profiled = [q.text for q in questions[params["warmup"] :]][: params.get("profile_questions", 50)]
    result["profile_ms"] = _profile_search(index, profiled)
    return result


def task_incremental(params: dict[str, Any]) -> dict[str, Any]:
    """Rebuild with ``previous=`` after one document changed, against embedding that document and saving."""
    import shutil

    from qa.documents import Document
    from qa.embedding import SentenceTransformerEncoder, embedding_text
    from qa.index import Index

    documents = _documents(params["source"])
    model = SentenceTransformerEncoder().model
    _warm(model, DEFAULT_BATCH_SIZE)
    resident = _rss()
    started = time.perf_counter()
    old = Index.load(params["index"])
    load_s = time.perf_counter() - started
    loaded_mib = round((_rss() - resident) / MIB, 1)  # what a server holds for it before any search
    # Rewrite every sentence of one document, so the update must embed all of it, like the baseline.
    target = len(documents) // 2
    changed = documents[target]
    documents[target] = Document(changed.id, data.variant(changed.text, 997), changed.title)
    scratch = Path(params["scratch"])
    update_times: list[float] = []
    bare_times: list[float] = []
    texts = 0
    stages: dict[str, float] = {}
    for _ in range(params["repeats"]):
        started = time.perf_counter()
        new = Index.build(documents, previous=old, encoder=old.encoder, progress=False)
        stages = {
            "build (total)": time.perf_counter() - started,
            **(new.build_report.stage_seconds if new.build_report else {}),
        }
        new.save(scratch / "updated")
        update_times.append(time.perf_counter() - started)
        rows = [i for i, p in enumerate(new.passages) if p.doc_id == changed.id]
        own = [embedding_text(new.passages[i]) for i in rows] + [
            new.passages[i].text[s:e] for i in rows for s, e in new.contents.sentences[i]
        ]
        texts = len(own)
        started = time.perf_counter()
        model.encode(own, batch_size=DEFAULT_BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True)
        new.save(scratch / "bare")
        bare_times.append(time.perf_counter() - started)
        del new
    shutil.rmtree(scratch, ignore_errors=True)
    update = float(np.median(update_times))
    bare = float(np.median(bare_times))
    return {
        "passages": len(old),
        "documents": len(documents),
        "changed_document_texts": texts,
        "load_previous_s": round(load_s, 3),
        "loaded_index_mib": loaded_mib,
        "update_s": round(update, 3),
        "bare_s": round(bare, 3),
        "ratio": round(update / bare, 3),
        "repeats": params["repeats"],
        "update_stages_s": {k: round(v, 3) for k, v in stages.items()},
        "dense": old.manifest.to_json()["dense"],
    }


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "build": task_build,
    "bare-encode": task_bare_encode,
    "latency": task_latency,
    "incremental": task_incremental,
}


def main(argv: list[str]) -> int:
    task, params, result_file = argv[0], json.loads(argv[1]), Path(argv[2])
    if task.startswith("ann-"):
        from bench import ann

        result = ann.TASKS[task](params)
    elif task.startswith("runtime-"):
        from bench import runtimes

        result = runtimes.TASKS[task](params)
    else:
        result = TASKS[task](params)
    result_file.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
