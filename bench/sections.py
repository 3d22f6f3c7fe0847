"""The benchmark's sections: each runs its measurements in child processes and returns plain data.

Sizes come from a ``Plan``: the full run (the default) or ``--quick``, a small run for checking the
benchmark itself in a minute or two.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import MIB, REPO, ChildFailed, load_average, log, run_measured, run_task
from qa.embedding import DEFAULT_BATCH_SIZE


@dataclass(frozen=True)
class Plan:
    """How big each measurement is."""

    quick: bool
    squad_documents: int | None  # None: the whole SQuAD v1.1 dev set
    questions: int
    warmup: int
    cold_repeats: int
    ann_sizes: tuple[int, ...]
    ann_queries: int
    ann_latency_queries: int
    flat_scan_sizes: tuple[int, ...]
    scaling_real: tuple[int, ...]
    scaling_stub: tuple[int, ...]
    incremental_repeats: int
    runtime_articles: int = 12
    """SQuAD articles the runtimes section builds on each runtime (the peers' comparison used 12)."""
    runtime_rounds: int = 3
    """Turns the runtimes section's variants take."""
    hnsw_ef_search: tuple[int, ...] = (16, 32, 64, 128, 256)
    ivfpq_nprobe: tuple[int, ...] = (8, 16, 32, 64, 128)
    ivfpq_pq_m: tuple[int, ...] = (48,)
    """Other code sizes measured beside qa's default IVF-PQ (with its other settings)."""


FULL = Plan(
    quick=False,
    squad_documents=None,
    questions=300,
    warmup=20,
    cold_repeats=5,
    ann_sizes=(100_000, 1_000_000),
    ann_queries=1_000,
    ann_latency_queries=300,
    flat_scan_sizes=(5_000, 10_000, 25_000, 50_000, 100_000, 200_000),
    scaling_real=(10_000,),
    scaling_stub=(10_000, 50_000, 100_000),
    incremental_repeats=3,
)
QUICK = Plan(
    quick=True,
    squad_documents=4,
    questions=30,
    warmup=5,
    cold_repeats=2,
    ann_sizes=(20_000,),
    ann_queries=200,
    ann_latency_queries=100,
    flat_scan_sizes=(5_000, 20_000),
    scaling_real=(500,),
    scaling_stub=(500, 2_000),
    incremental_repeats=1,
    runtime_articles=2,
    runtime_rounds=1,
    hnsw_ef_search=(32, 128),
    ivfpq_nprobe=(8, 32),
    ivfpq_pq_m=(),
)


@dataclass
class Context:
    """What the sections share: the plan and a work folder for indexes, kept between runs."""

    plan: Plan
    workdir: Path
    previous: dict[str, Any] = field(default_factory=dict)
    """Earlier results of each section, from the output file."""

    def squad_source(self) -> dict[str, Any]:
        """What a worker builds the SQuAD collection from: all of it, or its first articles."""
        source: dict[str, Any] = {"name": "squad"}
        if self.plan.squad_documents is not None:
            source["documents"] = self.plan.squad_documents
        return source

    @property
    def squad_index(self) -> Path:
        """Where the SQuAD index of this plan's size is kept."""
        return self.workdir / f"squad-{self.plan.squad_documents or 'all'}"

    def squad_index_is_current(self) -> bool:
        """Whether the SQuAD index exists and is newer than every qa source file (so qa built it as it is)."""
        manifest = self.squad_index / "manifest.json"
        if not manifest.exists():
            return False
        newest_source = max(path.stat().st_mtime for path in (REPO / "qa").glob("*.py"))
        return manifest.stat().st_mtime > newest_source

    def ensure_squad_index(self) -> Path:
        """The SQuAD index the build section writes; built here when missing or older than qa's code."""
        if not self.squad_index_is_current():
            log(f"building the SQuAD index at {self.squad_index} (none yet, or qa changed since)")
            run_task("build", self._build_params(), workdir=self.workdir)
        return self.squad_index

    def _build_params(self) -> dict[str, Any]:
        return {"source": self.squad_source(), "batch_size": DEFAULT_BATCH_SIZE, "output": str(self.squad_index)}


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` to three decimals (NaN when there is nothing to divide by)."""
    return round(numerator / denominator, 3) if denominator else float("nan")


# ----------------------------------------------------------------------------------------- latency


def latency(ctx: Context) -> dict[str, Any]:
    """Warm in-process latency of each mode beside the floor (model.encode + flat FAISS search)."""
    index = ctx.ensure_squad_index()
    log(f"latency: {ctx.plan.questions} questions, every mode and the floor, interleaved")
    params = {
        "index": str(index),
        "questions": ctx.plan.questions,
        "warmup": ctx.plan.warmup,
    }
    return run_task("latency", params, workdir=ctx.workdir)


# ------------------------------------------------------------------------------------------- build


def build(ctx: Context) -> dict[str, Any]:
    """Index.build throughput on SQuAD beside bare model.encode of the same passages.

    The bare encoding runs twice, before and after the build when an index built by the current code
    is there to read the passages from (else both after), and the two rates are averaged, so a change
    in the machine's load during the run does not fall on one side only.
    """
    bare_params = {"index": str(ctx.squad_index), "batch_size": DEFAULT_BATCH_SIZE, "with_sentences": True}
    bare = None
    if ctx.squad_index_is_current():
        log("build: bare model.encode of the passages (and of passages + sentences)")
        bare = run_task("bare-encode", bare_params, workdir=ctx.workdir)
    log("build: Index.build of SQuAD (passages and sentences embedded, BM25, FAISS), then save")
    built = run_task("build", ctx._build_params(), workdir=ctx.workdir)
    if bare is None:
        log("build: bare model.encode of the passages (and of passages + sentences)")
        bare = run_task("bare-encode", bare_params, workdir=ctx.workdir)
    bare_params["with_sentences"] = False
    log("build: Index.build with sentence-mean passage vectors (one model pass), then save")
    fast = run_task(
        "build",
        ctx._build_params()
        | {"output": str(ctx.workdir / "squad-sentence-mean"), "passage_vectors_from": "sentence-mean"},
        workdir=ctx.workdir,
    )
    log("build: bare model.encode of the passages again")
    bare_again = run_task("bare-encode", bare_params, workdir=ctx.workdir)
    build_rate = built["passages_per_s"]
    bare_rate = (bare["passages_per_s"] + bare_again["passages_per_s"]) / 2
    return {
        "build": built,
        "bare": bare,
        "bare_again": bare_again,
        "build_passages_per_s": round(build_rate, 2),
        "bare_passages_per_s": round(bare_rate, 2),
        "sentence_mean": fast,
        "sentence_mean_vs_bare_passages": ratio(fast["passages_per_s"], bare_rate),
        "build_vs_bare_passages": ratio(build_rate, bare_rate),
        "build_vs_bare_all_texts": ratio(built["passages_per_s"], bare["all_passages_per_s"]),
    }


# -------------------------------------------------------------------------------------- cold start

HEAVY_MODULES = ("torch", "sentence_transformers", "transformers", "faiss", "bm25s", "scipy", "numpy")


def qa_command() -> tuple[list[str], list[str]]:
    """How to start ``qa``: the installed script when there is one, else ``python -m qa`` (same code)."""
    script = Path(sys.executable).parent / "qa"
    if script.exists():
        return [str(script)], [sys.executable, "-X", "importtime", str(script)]
    return [sys.executable, "-m", "qa"], [sys.executable, "-X", "importtime", "-m", "qa"]


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level modules named in ``python -X importtime`` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", line)
        if match:
            names.add(match.group(1).split(".")[0])
    return names


def cold_start(ctx: Context) -> dict[str, Any]:
    """``qa ask`` as a new process beside a bare script; and what ``qa --help`` and ``qa info`` import."""
    from bench import data

    index = ctx.ensure_squad_index()
    qa, qa_importtime = qa_command()
    documents, questions = data.squad()
    indexed = {d.id for d in documents[: ctx.plan.squad_documents]}
    question = data.sample([q for q in questions if q.doc_id in indexed], 1, seed=7)[0].text
    commands = {
        "qa_ask": [*qa, "ask", question, "-i", str(index), "-k", "5"],
        "floor": [sys.executable, str(REPO / "bench" / "cold_floor.py"), str(index), question],
    }
    log(f"cold start: {ctx.plan.cold_repeats} runs each of `qa ask` and the bare script, alternating")
    for command in commands.values():  # once untimed: the files are then in the page cache for both
        _checked(run_measured(command))
    runs: dict[str, list[Any]] = {name: [] for name in commands}
    for repeat in range(ctx.plan.cold_repeats):
        order = list(commands) if repeat % 2 == 0 else list(reversed(commands))
        for name in order:
            runs[name].append(_checked(run_measured(commands[name])))
    result: dict[str, Any] = {
        "question": question,
        "command": " ".join(Path(part).name for part in qa),
        "load_average": load_average(),
    }
    for name, measured in runs.items():
        result[name] = {
            "median_s": round(statistics.median(r.seconds for r in measured), 3),
            "min_s": round(min(r.seconds for r in measured), 3),
            "peak_rss_mib": round(max(r.peak_rss for r in measured) / MIB, 1),
            "runs": len(measured),
        }
    result["ratio"] = ratio(result["qa_ask"]["median_s"], result["floor"]["median_s"])
    result["light_commands"] = {}
    for name, args in {"qa --help": ["--help"], "qa info": ["info", "-i", str(index)]}.items():
        timed = _checked(run_measured([*qa, *args]))
        traced = _checked(run_measured([*qa_importtime, *args]))
        modules = imported_modules(traced.stderr)
        result["light_commands"][name] = {
            "seconds": round(timed.seconds, 3),
            "peak_rss_mib": round(timed.peak_rss / MIB, 1),
            "imports_torch": "torch" in modules,
            "heavy_imports": sorted(m for m in HEAVY_MODULES if m in modules),
        }
    return result


def _checked(run: Any) -> Any:
    if run.returncode != 0:
        raise ChildFailed(f"command failed ({run.returncode}): {run.stderr[-2000:]}")
    return run


# ------------------------------------------------------------------------------------- index types


def index_types(ctx: Context) -> dict[str, Any]:
    """Flat, HNSW and IVF-PQ on seeded clustered vectors at each size; and the flat-scan curve."""
    from qa.dense import HNSWConfig, IVFPQConfig

    plan = ctx.plan
    hnsw_sweep = [{"ef_search": ef} for ef in plan.hnsw_ef_search]
    ivf_sweep = [{"nprobe": n} for n in plan.ivfpq_nprobe]
    default_hnsw = HNSWConfig()
    default_ivf = IVFPQConfig()
    configs: list[dict[str, Any]] = [
        {"type": "flat"},
        {"type": "hnsw", "build": _fields(default_hnsw), "sweep": hnsw_sweep},
    ]
    # qa's default, then each variant changing one setting: what each part of the default buys.
    variants = [{}] + [{"pq_m": m} for m in plan.ivfpq_pq_m if m != default_ivf.pq_m] + [{"opq": False}]
    configs += [{"type": "ivfpq", "build": _fields(default_ivf) | v, "sweep": ivf_sweep} for v in variants]
    if not plan.quick:  # not a qa type: shown for what it would gain (see bench.ann.ivfpqr)
        configs.append({"type": "ivfpqr", "build": {"pq_m": 32, "refine_m": 32}, "sweep": ivf_sweep})
    earlier = {s["count"]: s for s in ctx.previous.get("index-types", {}).get("sizes", [])}
    sizes = []
    for count in plan.ann_sizes:
        log(f"index types: {count:,} vectors: flat, HNSW and IVF-PQ (the 1M HNSW build takes minutes)")
        params = {
            "count": count,
            "queries": plan.ann_queries,
            "latency_queries": plan.ann_latency_queries,
            "configs": configs,
        }
        sizes.append(run_task("ann-sizes", params, workdir=ctx.workdir) | {"measured": time.strftime("%Y-%m-%d %H:%M")})
        earlier.pop(count, None)
    # Sizes measured by an earlier run and not now are kept, so 100k and 1M can be run apart.
    sizes = sorted([*sizes, *earlier.values()], key=lambda s: s["count"])
    scan = ctx.previous.get("index-types", {}).get("flat_scan")
    if plan.flat_scan_sizes:  # with --set flat_scan_sizes= (none) an earlier curve is kept
        log("index types: flat-scan latency by size, beside encoding a question")
        scan = run_task(
            "ann-flat-scan",
            {"sizes": list(plan.flat_scan_sizes), "latency_queries": plan.ann_latency_queries},
            workdir=ctx.workdir,
        ) | {"measured": time.strftime("%Y-%m-%d %H:%M")}
    return {
        "sizes": sizes,
        "flat_scan": scan,
        "auto_exact_limit": exact_limit(scan) if scan else None,
        "real_profile": _real_profile(ctx),
    }


NEGLIGIBLE_SHARE = 0.2
"""Exact search counts as negligible while it costs at most this share of encoding the question."""


def exact_limit(scan: dict[str, Any]) -> dict[str, Any]:
    """The collection size where a flat scan stops being negligible, interpolated between measured sizes.

    Each side takes the better of default threads and one thread, as qa could choose either.
    """
    from qa import dense

    encode = min(scan["encode_question"]["p50_ms"], scan.get("encode_question_one_thread", {}).get("p50_ms", 1e9))
    budget = NEGLIGIBLE_SHARE * encode
    points = [(row["count"], min(row["p50_ms"], row.get("one_thread", {}).get("p50_ms", 1e9))) for row in scan["flat"]]
    all_below = all(p50 <= budget for _, p50 in points)
    crossing: int | None = None
    if points and not all_below and points[0][1] <= budget:
        for (size, p50), (next_size, next_p50) in itertools.pairwise(points):
            if next_p50 > budget:  # the first size over budget: interpolate from the one before
                crossing = int(size + (budget - p50) / (next_p50 - p50) * (next_size - size))
                break
    return {
        "current": dense.AUTO_EXACT_LIMIT,
        "encode_p50_ms": round(encode, 2),
        "budget_ms": round(budget, 2),
        "crossing": crossing,
        "all_below": all_below,
        "rule": f"flat p50 ≤ {NEGLIGIBLE_SHARE:.0%} of encoding a question (p50); each the better of 2 threads and 1",
    }


def _fields(config: Any) -> dict[str, Any]:
    return dict(config.__dict__)


def _real_profile(ctx: Context) -> list[dict[str, Any]] | None:
    """Neighbour figures of real passage vectors (the SQuAD index) beside synthetic ones, by size.

    Shows how closely the synthetic set resembles real embeddings, and how both change with size.
    """
    if not (ctx.squad_index / "manifest.json").exists():
        return None
    import numpy as np

    from bench.ann import exact_neighbours, neighbour_profile
    from bench.data import clustered_vectors
    from qa.index import Index

    index = Index.load(ctx.squad_index)
    vectors = index.contents.dense.vectors(np.arange(len(index)))
    order = np.random.default_rng(0).permutation(len(vectors))
    queries, database = vectors[order[:200]], vectors[order[200:]]
    rows = []
    for size in sorted({s for s in (400, 800, 1_600, len(database)) if s <= len(database)}):
        real = neighbour_profile(database[:size], queries, exact_neighbours(database[:size], queries))
        synthetic_db, synthetic_q = clustered_vectors(size, 200)
        synthetic = neighbour_profile(synthetic_db, synthetic_q, exact_neighbours(synthetic_db, synthetic_q))
        rows.append({"count": size, "real": real, "synthetic": synthetic})
    return rows


# ------------------------------------------------------------------------------------------ scaling


def _documents_for(passages: int) -> int:
    """How many SciFact documents (with copies) give about ``passages`` passages."""
    from bench import data
    from qa.splitting import split_document

    documents = data.scifact(500)
    per_document = sum(len(split_document(d.text)) for d in documents) / len(documents)
    return max(1, round(passages / per_document))


def scaling_index(ctx: Context, passages: int, stub: bool) -> Path:
    return ctx.workdir / f"scifact-{passages}-{'stub' if stub else 'model'}"


def scaling(ctx: Context) -> dict[str, Any]:
    """Build time and peak RSS by collection size, each build in its own process."""
    rows = []
    for stub, sizes in ((False, ctx.plan.scaling_real), (True, ctx.plan.scaling_stub)):
        for passages in sizes:
            encoder = "stub encoder" if stub else "real model"
            log(f"scaling: build of ~{passages:,} SciFact passages with the {encoder}")
            params = {
                "source": {"name": "scifact", "documents": _documents_for(passages)},
                "batch_size": DEFAULT_BATCH_SIZE,
                "output": str(scaling_index(ctx, passages, stub)),
                "stub": stub,
            }
            result = run_task("build", params, workdir=ctx.workdir)
            rows.append(
                {
                    "target_passages": passages,
                    "encoder": "stub" if stub else "model",
                    "measured": time.strftime("%Y-%m-%d %H:%M"),
                    **result,
                }
            )
    # Builds of an earlier run at other sizes are kept, so the long real-model build can run on its own.
    done = {(r["encoder"], r["target_passages"]) for r in rows}
    earlier = [
        r for r in ctx.previous.get("scaling", {}).get("builds", []) if (r["encoder"], r["target_passages"]) not in done
    ]
    rows = sorted([*rows, *earlier], key=lambda r: (r["encoder"], r["target_passages"]))
    return {"builds": rows, "estimates": _scaling_estimates(rows)}


def _scaling_estimates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Labelled estimates for the real model at sizes measured only with the stub encoder.

    Time: the stub build's time plus the distinct texts at the real model's measured rate. Memory, stage
    by stage: the stub build's peak in that stage plus what the real model added to that stage at the
    size measured with both; the estimate is the highest stage.
    """
    real = {r["target_passages"]: r for r in rows if r["encoder"] == "model"}
    stub = {r["target_passages"]: r for r in rows if r["encoder"] == "stub"}
    common = sorted(set(real) & set(stub))
    if not common:
        return []
    base = common[-1]
    embed_s = real[base]["stages_s"].get("embed", real[base]["build_s"])
    texts_per_s = real[base]["distinct_texts"] / embed_s
    real_stages, stub_stages = real[base]["peak_rss_by_stage_mib"], stub[base]["peak_rss_by_stage_mib"]
    extra_by_stage = {k: max(0.0, v - stub_stages[k]) for k, v in real_stages.items() if k in stub_stages}
    estimates = []
    for size, row in sorted(stub.items()):
        if size in real:
            continue  # measured: nothing to estimate
        estimates.append(
            {
                "target_passages": size,
                "passages": row["passages"],
                "estimated_build_s": round(
                    row["build_s"] - row["stages_s"].get("embed", 0) + row["distinct_texts"] / texts_per_s, 1
                ),
                "estimated_peak_rss_mib": round(
                    max(peak + extra_by_stage.get(stage, 0.0) for stage, peak in row["peak_rss_by_stage_mib"].items()),
                    1,
                ),
                "basis": f"stub build at this size + real model rate and memory (by stage) measured at {base:,}",
            }
        )
    return estimates


# -------------------------------------------------------------------------------------- incremental


def incremental(ctx: Context) -> dict[str, Any]:
    """Updating one document with previous= against embedding it alone plus saving, on each large index."""
    results = []
    squad = ctx.ensure_squad_index()
    log("incremental: one SQuAD article rewritten, Index.build(previous=old) + save vs encode it + save")
    results.append(
        {
            "index": "SQuAD dev (real model)",
            **run_task(
                "incremental",
                {
                    "source": ctx.squad_source(),
                    "index": str(squad),
                    "repeats": ctx.plan.incremental_repeats,
                    "scratch": str(ctx.workdir / "incremental-scratch"),
                },
                workdir=ctx.workdir,
            ),
        }
    )
    if ctx.plan.scaling_stub:
        largest = max(ctx.plan.scaling_stub)
        path = scaling_index(ctx, largest, stub=True)
        if (path / "manifest.json").exists() and not _keeps_word_counts(path):
            log(f"incremental: the ~{largest:,}-passage index is from a qa without BM25 word counts; building it again")
            run_task(
                "build",
                {
                    "source": {"name": "scifact", "documents": _documents_for(largest)},
                    "batch_size": DEFAULT_BATCH_SIZE,
                    "output": str(path),
                    "stub": True,
                },
                workdir=ctx.workdir,
            )
        if (path / "manifest.json").exists():
            log(f"incremental: the same on the ~{largest:,}-passage SciFact index")
            results.append(
                {
                    "index": f"SciFact ~{largest:,} passages (previous built with the stub encoder)",
                    **run_task(
                        "incremental",
                        {
                            "source": {"name": "scifact", "documents": _documents_for(largest)},
                            "index": str(path),
                            "repeats": ctx.plan.incremental_repeats,
                            "scratch": str(ctx.workdir / "incremental-scratch"),
                        },
                        workdir=ctx.workdir,
                    ),
                }
            )
    return {"updates": results}


def _keeps_word_counts(path: Path) -> bool:
    """Whether the index at ``path`` can update BM25 in place (qa has kept word counts since it could)."""
    from qa.lexical import TERM_COUNT_FILES
    from qa.storage import LEXICAL

    return all((path / LEXICAL / f"{name}.npy").exists() for name in TERM_COUNT_FILES)


def runtimes(ctx: Context) -> dict[str, Any]:
    """Each encoder runtime's build rate, query latency and cold start, with its quality (``bench.runtimes``)."""
    from bench.runtimes import runtimes as measure

    return measure(ctx)


SECTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "build": build,
    "latency": latency,
    "cold-start": cold_start,
    "index-types": index_types,
    "scaling": scaling,
    "incremental": incremental,
    "runtimes": runtimes,
}


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
