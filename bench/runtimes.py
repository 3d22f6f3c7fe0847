"""The ``runtimes`` section: each encoder runtime's speed beside the PyTorch floor, with its quality.

Every measurement runs in a process of its own (ONNX Runtime's threads and PyTorch's must never share
a process or be timed side by side) and the variants take turns, round after round, so that a change
in the machine's load falls on all of them alike:

- **queries**: warm single-question latency (hybrid search, the question embedded each time) on an
  index of the first SQuAD articles built on that runtime, beside the floor: bare PyTorch
  ``model.encode([question])`` and an exact FAISS search, in a process of its own;
- **builds**: ``Index.build`` of the same articles on each runtime beside bare PyTorch
  ``model.encode`` of the same texts (passages and sentences);
- **cold start**: ``qa ask`` as a new process on each runtime's index;
- **quality**: ``qa eval --runtime`` on SQuAD dev and SciFact test, read from ``bench/results``
  (``make eval-runtimes`` writes them, torch's included; an hour or more each on 2 cores, so they are not
  rerun here).

Variants: ``torch`` (PyTorch's own thread count), ``torch, 1 thread``, ``onnx``, ``onnx-int8`` (one
worker per core) and ``onnx-int8, 1 worker``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import MIB, RESULTS, ChildFailed, load_average, log, run_measured, run_task, summary

VARIANTS: dict[str, dict[str, Any]] = {
    "torch": {"runtime": "torch"},
    "torch, 1 thread": {"runtime": "torch", "torch_threads": 1},
    "onnx": {"runtime": "onnx"},
    "onnx-int8": {"runtime": "onnx-int8"},
    "onnx-int8, 1 worker": {"runtime": "onnx-int8", "onnx_workers": 1},
}
FLOORS: dict[str, dict[str, Any]] = {
    "floor": {"runtime": "torch"},
    "floor, 1 thread": {"runtime": "torch", "torch_threads": 1},
}
"""Bare PyTorch ``model.encode([question])`` + exact FAISS: with PyTorch's own thread count (the floor of
the targets), and on one thread, which on a busy machine is often faster."""
RUNTIMES = ("torch", "onnx", "onnx-int8")
K = 5
QUALITY = {runtime: (f"eval-squad-{runtime}", f"eval-scifact-{runtime}") for runtime in RUNTIMES}
"""Where ``qa eval`` wrote each runtime's quality, under ``bench/results``: ``make eval-runtimes`` runs every
runtime from one commit, so that only the runtime differs. Without its torch figures, ``make eval``'s
(``eval-squad``, ``eval-scifact``) stand in, which may come from another commit: the section says which."""
TORCH_STAND_IN = ("eval-squad", "eval-scifact")
MAX_HIT1_LOSS = 0.005
MAX_NDCG_LOSS = 0.005


# ----------------------------------------------------------------------------------- child tasks


def _configure(params: dict[str, Any]) -> None:
    """Thread settings of a variant, before anything starts its thread pools."""
    if params.get("onnx_workers"):
        os.environ["QA_ONNX_THREADS"] = str(params["onnx_workers"])
    if params.get("torch_threads"):
        import torch

        torch.set_num_threads(int(params["torch_threads"]))


def _questions(index: Any, count: int, seed: int) -> list[str]:
    from bench import data

    indexed = {d.id for d in index.documents}
    return [q.text for q in data.sample([q for q in data.squad()[1] if q.doc_id in indexed], count, seed=seed)]


def task_query(params: dict[str, Any]) -> dict[str, Any]:
    """Warm single-question latency on one runtime: embedding alone, and whole hybrid and dense searches."""
    _configure(params)
    from qa.embedding import load_encoder
    from qa.index import Index
    from qa.manifest import read_manifest

    manifest = read_manifest(params["index"])
    # No question vectors kept: every search embeds its question, as a new question does.
    encoder = load_encoder(manifest.model, runtime=manifest.runtime, query_cache_size=0)
    index = Index.load(params["index"], encoder=encoder)
    questions = _questions(index, params["warmup"] + params["questions"], params["seed"])
    times: dict[str, list[float]] = {"encode": [], "hybrid": [], "dense": []}
    for number, question in enumerate(questions):
        for name in times:
            started = time.perf_counter()
            if name == "encode":
                encoder.encode_query(question)
            else:
                index.search(question, K, mode=name)
            if number >= params["warmup"]:
                times[name].append(time.perf_counter() - started)
    return {name: summary(values) for name, values in times.items()} | {"runtime": manifest.runtime}


def task_floor(params: dict[str, Any]) -> dict[str, Any]:
    """The floor: bare PyTorch ``model.encode([question])`` and an exact FAISS search of the index's vectors."""
    _configure(params)
    import faiss

    from qa.embedding import SentenceTransformerEncoder
    from qa.index import Index

    index = Index.load(params["index"])
    vectors = index.contents.dense.vectors(np.arange(len(index)))
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    model = SentenceTransformerEncoder().model
    questions = _questions(index, params["warmup"] + params["questions"], params["seed"])
    times = []
    for number, question in enumerate(questions):
        started = time.perf_counter()
        vector = model.encode([question], normalize_embeddings=True, convert_to_numpy=True)
        flat.search(vector, K)
        if number >= params["warmup"]:
            times.append(time.perf_counter() - started)
    return {"floor": summary(times)}


def task_build(params: dict[str, Any]) -> dict[str, Any]:
    """``Index.build`` of the first SQuAD articles on one runtime (its model loaded and warm first), then save."""
    _configure(params)
    from bench import data
    from qa.embedding import load_encoder
    from qa.index import Index

    documents = data.squad()[0][: params["articles"]]
    encoder = load_encoder(runtime=params["runtime"])
    encoder.encode(["a warm-up sentence"] * 16)  # loading the model (or its export) is start-up, not building
    started = time.perf_counter()
    index = Index.build(documents, encoder=encoder, progress=False)
    build_s = time.perf_counter() - started
    index.save(params["output"])
    report = index.build_report
    return {
        "runtime": encoder.runtime,
        "articles": len(documents),
        "passages": len(index),
        "sentences": index.manifest.sentences,
        "embedded_texts": report.embedded_texts if report else None,
        "build_s": round(build_s, 3),
        "stages_s": dict(report.stage_seconds) if report else {},
        "passages_per_s": round(len(index) / build_s, 2),
    }


TASKS = {"runtime-query": task_query, "runtime-floor": task_floor, "runtime-build": task_build}


# -------------------------------------------------------------------------------------- the section


def _index_path(workdir: Path, runtime: str, articles: int) -> Path:
    return workdir / f"runtimes-squad{articles}-{runtime}"


def runtimes(ctx: Any) -> dict[str, Any]:
    """Builds, queries and cold starts of every runtime, taking turns; quality from ``qa eval``'s results."""
    plan = ctx.plan
    articles, rounds = plan.runtime_articles, plan.runtime_rounds
    workdir: Path = ctx.workdir
    log(f"runtimes: exporting the ONNX models if needed, then {articles} SQuAD articles built on each runtime")
    for runtime in RUNTIMES[1:]:  # the export is made once per machine: never inside a timing
        _checked(run_measured([sys.executable, "-c", _EXPORT.format(runtime=runtime)]))

    builds: dict[str, list[dict[str, Any]]] = {name: [] for name in [*VARIANTS, "bare torch encode"]}
    order = [*VARIANTS, "bare torch encode"]
    for round_number in range(rounds):
        shift = round_number % len(order)
        for name in order[shift:] + order[:shift]:
            if name == "bare torch encode":
                if not (_index_path(workdir, "torch", articles) / "manifest.json").exists():
                    continue  # its texts come from the torch build: measured once that exists
                log(f"runtimes: round {round_number + 1}: bare PyTorch encode of the build's texts")
                params = {
                    "index": str(_index_path(workdir, "torch", articles)),
                    "batch_size": 16,
                    "with_sentences": True,
                }
                builds[name].append(run_task("bare-encode", params, workdir=workdir))
                continue
            variant = VARIANTS[name]
            log(f"runtimes: round {round_number + 1}: build on {name}")
            output = _index_path(workdir, variant["runtime"], articles)
            params = {**variant, "articles": articles, "output": str(output)}
            builds[name].append(run_task("runtime-build", params, workdir=workdir))

    queries: dict[str, list[dict[str, Any]]] = {name: [] for name in [*VARIANTS, *FLOORS]}
    query_order = [*VARIANTS, *FLOORS]
    per_round = max(10, plan.questions // rounds)
    for round_number in range(rounds):
        shift = round_number % len(query_order)
        for name in query_order[shift:] + query_order[:shift]:
            log(f"runtimes: round {round_number + 1}: {per_round} questions on {name}")
            variant = VARIANTS.get(name) or FLOORS[name]
            params = {
                **variant,
                "index": str(_index_path(workdir, variant["runtime"], articles)),
                "questions": per_round,
                "warmup": plan.warmup,
                "seed": round_number,
            }
            queries[name].append(
                run_task("runtime-floor" if name in FLOORS else "runtime-query", params, workdir=workdir)
            )

    cold = _cold_starts(workdir, articles, plan.cold_repeats)
    return _summarise(builds, queries, cold, articles, rounds)


_EXPORT = "from qa.embedding import load_encoder; load_encoder(runtime={runtime!r}).encode(['warm'])"


def _checked(run: Any) -> Any:
    if run.returncode != 0:
        raise ChildFailed(f"command failed ({run.returncode}): {run.stderr[-2000:]}")
    return run


def _cold_starts(workdir: Path, articles: int, repeats: int) -> dict[str, Any]:
    """``qa ask`` as a new process on each runtime's index, taking turns; and what each imports."""
    from bench.sections import imported_modules, qa_command

    qa, qa_importtime = qa_command()
    question = "What was the name of the stadium where Super Bowl 50 was played?"
    commands = {
        runtime: [*qa, "ask", question, "-i", str(_index_path(workdir, runtime, articles)), "-k", "5"]
        for runtime in RUNTIMES
    }
    log(f"runtimes: cold qa ask, {repeats} runs on each runtime's index, taking turns")
    for command in commands.values():  # once untimed: the files are then in the page cache for all
        _checked(run_measured(command))
    runs: dict[str, list[Any]] = {runtime: [] for runtime in commands}
    for repeat in range(repeats):
        names = list(commands)
        for runtime in names[repeat % len(names) :] + names[: repeat % len(names)]:
            runs[runtime].append(_checked(run_measured(commands[runtime])))
    result: dict[str, Any] = {"question": question, "load_average": load_average()}
    for runtime, measured in runs.items():
        traced = _checked(run_measured([*qa_importtime, *commands[runtime][len(qa) :]]))
        modules = imported_modules(traced.stderr)
        result[runtime] = {
            "median_s": round(statistics.median(r.seconds for r in measured), 3),
            "min_s": round(min(r.seconds for r in measured), 3),
            "peak_rss_mib": round(max(r.peak_rss for r in measured) / MIB, 1),
            "runs": len(measured),
            "imports_torch": "torch" in modules,
        }
    return result


def _median(values: list[float]) -> float:
    return round(float(statistics.median(values)), 3)


def _summarise(
    builds: dict[str, list[dict[str, Any]]],
    queries: dict[str, list[dict[str, Any]]],
    cold: dict[str, Any],
    articles: int,
    rounds: int,
) -> dict[str, Any]:
    bare = builds.pop("bare torch encode")
    bare_rate = _median([b["all_passages_per_s"] for b in bare]) if bare else float("nan")
    floor_p50 = _median([q["floor"]["p50_ms"] for q in queries.pop("floor")])
    floor_one_thread_p50 = _median([q["floor"]["p50_ms"] for q in queries.pop("floor, 1 thread")])
    rows: dict[str, Any] = {}
    for name, measured in builds.items():
        build_rate = _median([b["passages_per_s"] for b in measured])
        hybrid = _median([q["hybrid"]["p50_ms"] for q in queries[name]])
        rows[name] = {
            "runtime": VARIANTS[name]["runtime"],
            "build_s": _median([b["build_s"] for b in measured]),
            "build_passages_per_s": build_rate,
            "build_vs_bare_torch": round(build_rate / bare_rate, 3) if bare else None,
            "encode_p50_ms": _median([q["encode"]["p50_ms"] for q in queries[name]]),
            "hybrid_p50_ms": hybrid,
            "dense_p50_ms": _median([q["dense"]["p50_ms"] for q in queries[name]]),
            "hybrid_p95_ms": _median([q["hybrid"]["p95_ms"] for q in queries[name]]),
            "hybrid_vs_floor": round(hybrid / floor_p50, 3),
            "hybrid_vs_floor_one_thread": round(hybrid / floor_one_thread_p50, 3),
        }
    first = builds["torch"][0]
    return {
        "articles": articles,
        "passages": first["passages"],
        "sentences": first["sentences"],
        "embedded_texts": first["embedded_texts"],
        "rounds": rounds,
        "bare_torch_passages_per_s": bare_rate,
        "bare_torch_all_texts_s": _median([b["all_s"] for b in bare]) if bare else None,
        "floor_p50_ms": floor_p50,
        "floor_one_thread_p50_ms": floor_one_thread_p50,
        "variants": rows,
        "cold_start": cold,
        "quality": quality(),
        "raw": {"builds": builds, "queries": queries},
    }


def quality() -> dict[str, Any]:
    """Each runtime's quality as ``qa eval`` measured it (missing: not measured yet)."""
    found: dict[str, Any] = {}
    for runtime, (squad, scifact) in QUALITY.items():
        if runtime == "torch" and not (RESULTS / squad / "eval.json").exists():
            squad, scifact = TORCH_STAND_IN
        row: dict[str, Any] = {"from": [squad, scifact]}
        squad_file, scifact_file = RESULTS / squad / "eval.json", RESULTS / scifact / "eval.json"
        if squad_file.exists():
            results = json.loads(squad_file.read_text())["squad"]["results"]
            for setting in ("per-article", "pooled"):
                row[f"{setting} hybrid hit@1"] = round(results[setting]["hybrid"]["hit@1"], 4)
                row[f"{setting} dense hit@1"] = round(results[setting]["dense"]["hit@1"], 4)
                row[f"{setting} highlight"] = round(results[setting]["hybrid"]["highlight"], 4)
        if scifact_file.exists():
            test = json.loads(scifact_file.read_text())["beir"]["splits"]["test"]
            row["scifact test hybrid nDCG@10"] = round(test["hybrid"]["ndcg@10"], 4)
        found[runtime] = row
    return found


def choice(section: dict[str, Any]) -> dict[str, Any]:
    """The fastest runtime (build rate, then query p50) whose quality loss is within the bounds."""
    scores = section["quality"]
    base = scores.get("torch", {})
    eligible: list[tuple[float, float, str]] = []
    reasons: dict[str, str] = {}
    for runtime in RUNTIMES:
        row = scores.get(runtime, {})
        keys = ["per-article hybrid hit@1", "pooled hybrid hit@1", "scifact test hybrid nDCG@10"]
        if not all(key in row and key in base for key in keys):
            reasons[runtime] = "quality not measured"
            continue
        losses = {key: base[key] - row[key] for key in keys}
        over = [
            f"{key} {row[key]:.3f} vs {base[key]:.3f}"
            for key, loss in losses.items()
            if loss > (MAX_NDCG_LOSS if "nDCG" in key else MAX_HIT1_LOSS) + 1e-9
        ]
        if over:
            reasons[runtime] = "loses too much: " + "; ".join(over)
            continue
        variant = section["variants"][runtime]
        eligible.append((-variant["build_passages_per_s"], variant["hybrid_p50_ms"], runtime))
        reasons[runtime] = "within the quality bounds"
    best = min(eligible)[2] if eligible else "torch"
    return {"chosen": best, "reasons": reasons}


def markdown(section: dict[str, Any]) -> list[str]:
    """The section as Markdown lines."""
    quality_rows = section["quality"]
    rows = []
    for name, v in section["variants"].items():
        q = quality_rows.get(v["runtime"], {}) if name in RUNTIMES else {}

        def cell(key: str, q: dict[str, Any] = q) -> str:
            return f"{q[key]:.3f}" if key in q else "–"

        rows.append(
            [
                name,
                f"{v['build_s']:.1f}",
                f"{v['build_passages_per_s']:.1f}",
                f"{v['build_vs_bare_torch']:.2f}×" if v["build_vs_bare_torch"] is not None else "–",
                f"{v['encode_p50_ms']:.1f}",
                f"{v['hybrid_p50_ms']:.1f}",
                f"{v['hybrid_vs_floor']:.2f}× ({v['hybrid_vs_floor_one_thread']:.2f}×)",
                cell("per-article hybrid hit@1"),
                cell("pooled hybrid hit@1"),
                cell("per-article highlight"),
                cell("scifact test hybrid nDCG@10"),
            ]
        )
    cold = section["cold_start"]
    headers = [
        "runtime",
        "build s",
        "passages/s",
        "vs bare torch encode",
        "question encode p50 ms",
        "hybrid p50 ms",
        "vs floor (1-thread floor)",
        "SQuAD hit@1 per article",
        "pooled",
        "answer sentence@1",
        "SciFact nDCG@10",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    decided = choice(section)
    out = [
        f"The first {section['articles']} SQuAD dev articles ({section['passages']:,} passages, "
        f"{section['sentences']:,} sentences, {section['embedded_texts']:,} distinct texts embedded), built on each "
        f"runtime; {section['rounds']} rounds, the variants taking turns, each in its own process; medians of "
        f"the rounds. Bare PyTorch `model.encode` of the same texts (batches of 16): "
        f"{section['bare_torch_all_texts_s']} s, {section['bare_torch_passages_per_s']} passages/s. "
        f"Floor: bare PyTorch `model.encode([question])` + exact FAISS search, p50 {section['floor_p50_ms']} ms "
        f"({section['floor_one_thread_p50_ms']} ms with PyTorch on one thread). "
        "Quality: `qa eval --runtime RUNTIME` on the whole SQuAD v1.1 dev (hybrid hit@1, and how often the "
        "highlighted sentence holds the answer) and SciFact test (hybrid nDCG@10); `–`: not measured.",
        "",
        *lines,
        "",
        "Quality read from `bench/results/`: "
        + "; ".join(
            f"{runtime} `{'`, `'.join(row['from'])}`"
            for runtime, row in quality_rows.items()
            if len(row) > 1  # measured, not only where it would be
        )
        + ".",
        "",
        "Cold `qa ask` (a new process; median of "
        f"{cold['torch']['runs']} runs each, taking turns): "
        + ", ".join(
            f"{runtime} {cold[runtime]['median_s']:.2f} s"
            f" ({'imports torch' if cold[runtime]['imports_torch'] else 'no torch'})"
            for runtime in RUNTIMES
        )
        + ".",
        "",
        f"Chosen by the rule (fastest build within 0.5 points of hybrid hit@1 and 0.005 nDCG@10 of torch): "
        f"**{decided['chosen']}**. "
        + "; ".join(f"{runtime}: {reason}" for runtime, reason in decided["reasons"].items())
        + ".",
        "",
    ]
    return out
