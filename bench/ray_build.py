"""A build of the SciFact corpus here and on a local Ray, each against bare ``model.encode`` of the same texts.

    .venv/bin/python -m bench.ray_build [--documents N] [--workers 2] [--out bench/results/ray-build]

One process, in this order: ``Index.build`` here (the model on this process's threads) and ``save``; bare
``model.encode`` of the texts that build embedded (its passages as the model reads them and its distinct
sentences, batch size 16, this process's threads); a local Ray with ``--workers`` workers of one CPU
started and its workers loaded (timed apart: that is start-up, not throughput), then ``Index.build(...,
executor=RayExecutor(...))`` and ``save``; bare ``model.encode`` of the texts again (the ratios use the mean
of the two, as the load of a shared machine drifts); last, bare ``model.encode`` on one thread, as each
worker runs, of a sample of the same texts. The Ray build is checked to equal the local one.

What it reports: each build's rate against the bare rate; the per-worker rate ``r`` (texts per second per
worker while the Ray build embeds); and the serial part of a build, which one machine does whatever the
cluster: reading and splitting, FAISS, BM25 and the save. A build on ``W`` workers then takes about
``start + serial + D / (W * r)`` for ``D`` distinct texts. Ray's 2 workers are the same 2 cores the local
build uses, so Ray should not beat it; on a machine oversubscribed by other work its one-thread workers
can, as torch's threads then wait on each other (the one-thread sample shows whether that was so).

``--render FILE.json`` writes the Markdown report of an earlier run's JSON again, without measuring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import data
from bench.common import RESULTS, default_workdir, git_revision, load_average, log, machine, versions

SAMPLE = 2_000
"""Texts of the one-thread bare encoding: every k-th of the texts sorted by length, so long and short alike."""


def _texts(index: Any) -> list[str]:
    """The distinct texts a build of ``index`` embeds: each passage as the model reads it, each sentence."""
    from qa.embedding import embedding_text

    contents = index.contents
    passages = [embedding_text(p) for p in contents.passages]
    sentences = [p.text[s:e] for p, spans in zip(contents.passages, contents.sentences, strict=True) for s, e in spans]
    return list(dict.fromkeys([*passages, *sentences]))


def _bare(model: Any, texts: list[str], batch_size: int) -> float:
    """Seconds for bare ``model.encode`` of ``texts``, sorted long first as a build sorts them."""
    ordered = sorted(texts, key=len, reverse=True)
    started = time.perf_counter()
    model.encode(ordered, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return time.perf_counter() - started


def _build(documents: list[Any], encoder: Any, output: Path, **options: Any) -> tuple[Any, dict[str, Any]]:
    from qa.index import Index

    load = load_average()
    started = time.perf_counter()
    index = Index.build(documents, encoder=encoder, progress=False, **options)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    index.save(output)
    save_s = time.perf_counter() - started
    report = index.build_report
    return index, {
        "build_s": round(build_s, 2),
        "save_s": round(save_s, 2),
        "stages_s": {k: round(v, 2) for k, v in report.stage_seconds.items()},
        "embedded_texts": report.embedded_texts,
        "passages": len(index),
        "load_average": [load, load_average()],
    }


def _serial(result: dict[str, Any]) -> float:
    """What one machine does whatever the cluster: everything but embedding."""
    stages = result["stages_s"]
    return round(result["build_s"] - stages.get("embed", 0.0) + result["save_s"], 2)


def _compare(built: Any, local: Any) -> dict[str, Any]:
    """How far the Ray build is from the local one."""
    a, b = built.contents, local.contents
    rows = np.arange(len(b.passages))
    return {
        "same_passages": list(a.passages) == list(b.passages),
        "same_manifest_but_time": {k: v for k, v in a.manifest.to_json().items() if k != "created"}
        == {k: v for k, v in b.manifest.to_json().items() if k != "created"},
        "passage_vectors_max_difference": float(np.max(np.abs(a.dense.vectors(rows) - b.dense.vectors(rows)))),
        "sentence_vectors_max_difference": float(
            np.max(np.abs(a.sentence_vectors.astype(np.float32) - b.sentence_vectors.astype(np.float32)))
        ),
    }


def run(documents_wanted: int | None, workers: int, batch_size: int, workdir: Path) -> dict[str, Any]:
    import torch

    from qa.distributed import RayExecutor
    from qa.embedding import SentenceTransformerEncoder

    lines = data.SCIFACT.read_text(encoding="utf-8").splitlines()
    every = sum(1 for line in lines if line.strip() and json.loads(line)["text"].strip())
    documents = data.scifact(min(documents_wanted or every, every))  # never copies of the corpus
    encoder = SentenceTransformerEncoder()
    model = encoder.model  # loading the model is start-up, not build throughput
    model.encode(["a warm-up sentence"] * batch_size, batch_size=batch_size)
    threads = torch.get_num_threads()
    shutil.rmtree(workdir / "ray-build", ignore_errors=True)

    log(f"ray_build: local Index.build of {len(documents):,} SciFact documents ({threads} torch threads)")
    local_index, local = _build(documents, encoder, workdir / "ray-build" / "local", batch_size=batch_size)
    texts = _texts(local_index)
    log(f"ray_build: bare model.encode of the {len(texts):,} texts the build embedded")
    load = load_average()
    bare_s = _bare(model, texts, batch_size)
    bare = {"texts": len(texts), "seconds": round(bare_s, 2), "texts_per_s": round(len(texts) / bare_s, 2)}
    bare["load_average"] = [load, load_average()]

    log(f"ray_build: a local Ray of {workers} workers, each loading the model")
    started = time.perf_counter()
    executor = RayExecutor(workers=workers)
    ray_init_s = time.perf_counter() - started
    started = time.perf_counter()
    executor.start(encoder)
    workers_s = time.perf_counter() - started
    try:
        log("ray_build: Index.build on Ray")
        ray_index, on_ray = _build(
            documents, encoder, workdir / "ray-build" / "ray", batch_size=batch_size, executor=executor
        )
    finally:
        executor.close()
    log("ray_build: bare model.encode of the same texts again (the ratios use the mean of the two)")
    load = load_average()
    again_s = _bare(model, texts, batch_size)
    bare["seconds_again"] = round(again_s, 2)
    bare["load_average_again"] = [load, load_average()]
    bare["texts_per_s"] = round(len(texts) / ((bare_s + again_s) / 2), 2)
    on_ray["ray_init_s"] = round(ray_init_s, 2)
    on_ray["workers_start_s"] = round(workers_s, 2)
    on_ray["equal_to_local"] = _compare(ray_index, local_index)

    sample = sorted(texts, key=len)[:: max(1, len(texts) // SAMPLE)][:SAMPLE]
    log(f"ray_build: bare model.encode of {len(sample):,} of the texts on 1 thread (as a worker) and on {threads}")
    load = load_average()
    torch.set_num_threads(1)
    one_s = _bare(model, sample, batch_size)
    torch.set_num_threads(threads)
    many_s = _bare(model, sample, batch_size)
    one_thread = {
        "texts": len(sample),
        "seconds_1_thread": round(one_s, 2),
        f"seconds_{threads}_threads": round(many_s, 2),
        "texts_per_s_1_thread": round(len(sample) / one_s, 2),
        f"texts_per_s_{threads}_threads": round(len(sample) / many_s, 2),
        "load_average": [load, load_average()],
    }

    embedded = on_ray["embedded_texts"]
    per_worker = embedded / on_ray["stages_s"]["embed"] / workers
    serial = _serial(on_ray)
    return {
        "command": "python -m bench.ray_build " + " ".join(sys.argv[1:]),
        "commit": git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "versions": {**versions(), "ray": _version("ray")},
        "corpus": {"documents": len(documents), "passages": local["passages"], "distinct_texts": len(texts)},
        "batch_size": batch_size,
        "torch_threads": threads,
        "workers": workers,
        "local": local,
        "bare": bare,
        "ray": on_ray,
        "bare_sample": one_thread,
        "derived": {
            "local_vs_bare": round(local["embedded_texts"] / local["build_s"] / bare["texts_per_s"], 3),
            "ray_vs_bare": round(embedded / on_ray["build_s"] / bare["texts_per_s"], 3),
            "ray_build_vs_local_build": round(local["build_s"] / on_ray["build_s"], 3),
            "per_worker_texts_per_s": round(per_worker, 2),
            "per_worker_vs_bare_1_thread": round(per_worker / one_thread["texts_per_s_1_thread"], 3),
            "serial_s": serial,
            "start_s": round(ray_init_s + workers_s, 2),
            "workers_where_embedding_equals_serial": round(embedded / (per_worker * serial), 1),
        },
    }


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def markdown(r: dict[str, Any]) -> str:
    local, ray, bare, sample, d = r["local"], r["ray"], r["bare"], r["bare_sample"], r["derived"]
    threads, workers = r["torch_threads"], r["workers"]

    def stages(result: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in result["stages_s"].items()) + f"; save {result['save_s']:.1f}"

    def rate(result: dict[str, Any]) -> float:
        return float(result["embedded_texts"] / result["build_s"])

    lines = [
        "# Building on Ray",
        "",
        f"`{r['command']}` at commit {r['commit']}, {r['date']}, on {r['machine']['cpu']} "
        f"({r['machine']['cores']} cores, shared with other work), torch {r['versions']['torch']}, "
        f"ray {r['versions']['ray']}.",
        "",
        f"BEIR SciFact: {r['corpus']['documents']:,} abstracts → {r['corpus']['passages']:,} passages; "
        f"a build embeds {r['corpus']['distinct_texts']:,} distinct texts (passages and sentences), batch size "
        f"{r['batch_size']}. The Ray build ran on a local Ray of {workers} workers of 1 CPU (1 torch thread "
        f"each); the local build and bare encoding on this process's {threads} torch threads.",
        "",
        "| what | seconds | texts/s | vs bare | stages s | load average (1 min) before → after |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        f"| `Index.build` here | {local['build_s']:.1f} | {rate(local):.1f} | {d['local_vs_bare']:.2f}× | "
        f"{stages(local)} | {local['load_average'][0][0]} → {local['load_average'][1][0]} |",
        f"| bare `model.encode` of the same texts, {threads} threads (before, after the Ray build) | "
        f"{bare['seconds']:.1f}, {bare['seconds_again']:.1f} | {bare['texts_per_s']:.1f} (mean) | 1.00× |  | "
        f"{bare['load_average'][0][0]} → {bare['load_average'][1][0]}; "
        f"{bare['load_average_again'][0][0]} → {bare['load_average_again'][1][0]} |",
        f"| `Index.build` on Ray, {workers} workers | {ray['build_s']:.1f} | {rate(ray):.1f} | "
        f"{d['ray_vs_bare']:.2f}× | {stages(ray)} | {ray['load_average'][0][0]} → {ray['load_average'][1][0]} |",
        "",
        f"Ray's start-up, before the build and not in its time: {ray['ray_init_s']:.1f} s to start the local Ray, "
        f"{ray['workers_start_s']:.1f} s for its {workers} workers to load the model and embed a check sentence. "
        f"The Ray build ran at {d['ray_build_vs_local_build']:.2f}× the local build's rate "
        f"({local['build_s']:.1f} s against {ray['build_s']:.1f} s).",
        "",
        f"Per worker: {d['per_worker_texts_per_s']:.1f} texts/s while the Ray build embedded; bare `model.encode` "
        f"on 1 thread of {sample['texts']:,} of the texts (every k-th by length): "
        f"{sample['texts_per_s_1_thread']:.1f} texts/s ({sample[f'texts_per_s_{threads}_threads']:.1f} on "
        f"{threads} threads), so a worker ran at {d['per_worker_vs_bare_1_thread']:.2f}× a bare single thread.",
        "",
        *(
            [
                f"On this run torch on {threads} threads embedded {sample[f'texts_per_s_{threads}_threads']:.1f} "
                f"texts/s and on 1 thread {sample['texts_per_s_1_thread']:.1f}: the machine was oversubscribed "
                "(see the load averages), so a process's threads waited on each other whenever one was "
                "descheduled, which one-thread workers never do. The Ray build's lead over the local one is "
                "that, not Ray; this run does not compare the two on idle cores.",
                "",
            ]
            if sample["texts_per_s_1_thread"] > sample[f"texts_per_s_{threads}_threads"]
            else []
        ),
        f"The Ray build equals the local one: same passages {ray['equal_to_local']['same_passages']}, same manifest "
        f"but its time {ray['equal_to_local']['same_manifest_but_time']}, passage vectors within "
        f"{ray['equal_to_local']['passage_vectors_max_difference']:.1g}, sentence vectors (float16) within "
        f"{ray['equal_to_local']['sentence_vectors_max_difference']:.1g}.",
        "",
        "## What it says for N machines",
        "",
        f"Serial part of the Ray build, done by one machine whatever the cluster (split, reuse, FAISS, BM25, "
        f"save): **{d['serial_s']:.1f} s**; start-up {d['start_s']:.1f} s. With W workers of rate "
        f"r = {d['per_worker_texts_per_s']:.1f} texts/s:",
        "",
        "    T(W) ≈ start + serial + D / (W × r)",
        "",
        f"For this corpus (D = {r['corpus']['distinct_texts']:,}) embedding takes as long as the serial part at "
        f"W ≈ {d['workers_where_embedding_equals_serial']:.0f} workers; beyond that the single machine's "
        "part is the limit.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=None, help="SciFact abstracts to build (default all)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers of 1 CPU (default 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=default_workdir(), help="where the two indexes are saved")
    parser.add_argument("--out", type=Path, default=RESULTS / "ray-build", help="writes OUT.md and OUT.json")
    parser.add_argument("--render", type=Path, help="an earlier run's JSON: write its Markdown report only")
    args = parser.parse_args(argv)
    if args.render:
        report = markdown(json.loads(args.render.read_text()))
        args.render.with_suffix(".md").write_text(report)
        print(report)
        return 0
    result = run(args.documents, args.workers, args.batch_size, args.workdir)
    report = markdown(result)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
