"""``python -m bench.malloc_trim``: the memory a build hands back to the system after embedding.

    .venv/bin/python -m bench.malloc_trim [--passages 1555] [--repeats 3]

Each repeat is a fresh process that loads the model, embeds the first ``--passages`` SQuAD v1.1 dev
passages as a build does (longest first, 128 texts a call, batches of the default size, vectors into
one array), then calls ``qa.embedding.release_freed_memory`` (glibc's ``malloc_trim``), the call a
build makes between embedding and indexing. Resident memory (now, not the peak) is read after the
model is loaded, after embedding and after the call. Writes ``bench/results/malloc-trim.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO,
    RESULTS,
    SQUAD,
    child_env,
    current_rss_mib,
    load_average,
    log,
    run_header,
    write_results,
)

COMMAND = "python -m bench.malloc_trim"
CHUNK = 128  # texts per encode call, as a build sends them


def child(squad: Path, count: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    from qa.build import split_collection
    from qa.embedding import DEFAULT_BATCH_SIZE, embedding_text, load_encoder, release_freed_memory
    from qa.evaluation import load_squad
    from qa.manifest import Chunking
    from qa.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, SPLITTER_VERSION

    documents = load_squad(squad)[0]
    encoder = load_encoder()
    split = split_collection(
        documents, encoder, Chunking(DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, encoder.max_tokens, SPLITTER_VERSION)
    )
    texts = sorted((embedding_text(p) for p in split.passages[:count]), key=len, reverse=True)
    encoder.encode(["the model's first pass sets up what every later one reuses"])
    gc.collect()
    loaded = current_rss_mib()
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for begin in range(0, len(texts), CHUNK):
        vectors[begin : begin + CHUNK] = encoder.encode(texts[begin : begin + CHUNK], batch_size=DEFAULT_BATCH_SIZE)
    gc.collect()
    embedded = current_rss_mib()
    release_freed_memory()
    trimmed = current_rss_mib()
    return {
        "passages": len(texts),
        "batch_size": DEFAULT_BATCH_SIZE,
        "model_loaded_mib": round(loaded),
        "after_embedding_mib": round(embedded),
        "after_trim_mib": round(trimmed),
        "returned_mib": round(embedded - trimmed),
    }


def run(squad: Path, count: int, repeats: int) -> dict[str, Any]:
    before = load_average()
    runs = []
    for repeat in range(repeats):
        log(f"repeat {repeat + 1} of {repeats}: a fresh process embeds {count:,} passages")
        done = subprocess.run(
            [sys.executable, "-m", "bench.malloc_trim", "--child", "--squad", str(squad), "--passages", str(count)],
            cwd=REPO,
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(done.stdout))
        log(f"{runs[-1]}")
    return {
        "command": COMMAND,
        "data": "SQuAD v1.1 dev passages as qa splits them",
        "load_before": before,
        "load_after": load_average(),
        "runs": runs,
        "median_returned_mib": round(float(np.median([r["returned_mib"] for r in runs]))),
    }


def markdown(result: dict[str, Any]) -> str:
    first = result["runs"][0]
    lines = [
        "# Memory handed back after embedding (`malloc_trim`)",
        "",
        run_header(result["command"], result["load_before"], result["load_after"]),
        "",
        f"{result['data']}: each row a fresh process that embeds the first {first['passages']:,} passages "
        f"(batches of {first['batch_size']}), then calls `qa.embedding.release_freed_memory()`, as a build "
        "does before FAISS and BM25. Resident memory now, not the peak.",
        "",
        "| run | model loaded MiB | after embedding MiB | after `malloc_trim` MiB | handed back MiB |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for number, r in enumerate(result["runs"], 1):
        lines.append(
            f"| {number} | {r['model_loaded_mib']:,} | {r['after_embedding_mib']:,} | {r['after_trim_mib']:,} "
            f"| {r['returned_mib']:,} |"
        )
    lines += ["", f"Median handed back: {result['median_returned_mib']:,} MiB."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0].strip("`: "))
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v1.1 dev JSON (read, never copied)")
    parser.add_argument("--passages", type=int, default=1555, help="passages each process embeds")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes")
    parser.add_argument("--output", type=Path, default=RESULTS / "malloc-trim", help="the results' stem")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.squad, args.passages)))
        return 0
    result = run(args.squad, args.passages, args.repeats)
    text = markdown(result)
    print(text)
    write_results(args.output, result, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
