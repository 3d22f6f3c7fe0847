"""``python -m bench.batch_size``: how fast a build embeds in batches of 16 texts (the default) and of other sizes.

    .venv/bin/python -m bench.batch_size [--articles 4] [--sizes 16,32,64,256] [--rounds 5]

Builds the first ``--articles`` SQuAD v1.1 dev articles (read where they lie) with ``Index.build(...,
batch_size=B)`` once per size per round, the sizes in an order that rotates from round to round, all
in one process, and times the build's embed stage (``build_report.stage_seconds["embed"]``): every
build embeds the same passages and sentences, so only the batch size differs. Reports each size's
median seconds and the median over rounds of its time over the default's in the same round, with the
machine's load, and writes ``bench/results/batch-size.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, SQUAD, interleaved, load_average, log, median_ratio, run_header, write_results
from qa import Index
from qa.embedding import DEFAULT_BATCH_SIZE, load_encoder
from qa.evaluation import load_squad

COMMAND = "python -m bench.batch_size"


def run(squad: Path, articles: int, sizes: list[int], rounds: int) -> dict[str, Any]:
    documents = load_squad(squad)[0][:articles]
    encoder = load_encoder()
    warm = Index.build(documents, encoder=encoder, progress=False)  # loads the model; not timed
    report = warm.build_report
    log(f"{report.passages:,} passages, {report.embedded_texts:,} texts embedded per build")
    embed: dict[str, list[float]] = {str(size): [] for size in sizes}
    cpu: dict[str, list[float]] = {str(size): [] for size in sizes}

    def build(size: int) -> None:
        marks: dict[str, float] = {}
        index = Index.build(
            documents,
            encoder=encoder,
            batch_size=size,
            progress=False,
            on_stage=lambda stage: marks.setdefault(stage, time.process_time()),
        )
        embed[str(size)].append(index.build_report.stage_seconds["embed"])
        cpu[str(size)].append(marks["faiss"] - marks["embed"])  # the stage after embedding is faiss
        index.close()

    before = load_average()
    # interleaved() times each whole build; the embed stage's own seconds are what is compared.
    interleaved({str(size): (lambda size=size: build(size)) for size in sizes}, rounds)
    after = load_average()
    default = str(DEFAULT_BATCH_SIZE if DEFAULT_BATCH_SIZE in sizes else sizes[0])
    return {
        "command": COMMAND,
        "data": f"SQuAD v1.1 dev, first {articles} articles",
        "passages": report.passages,
        "texts_embedded": report.embedded_texts,
        "rounds": rounds,
        "model": encoder.name,
        "default_batch_size": DEFAULT_BATCH_SIZE,
        "load_before": before,
        "load_after": after,
        "embed_seconds": embed,
        "embed_cpu_seconds": cpu,
        "sizes": [
            {
                "batch_size": int(size),
                "median_s": round(float(np.median(seconds)), 2),
                "min_s": round(min(seconds), 2),
                "ratio_to_default": round(median_ratio(seconds, embed[default]), 3),
                "median_cpu_s": round(float(np.median(cpu[size])), 2),
                "cpu_ratio_to_default": round(median_ratio(cpu[size], cpu[default]), 3),
            }
            for size, seconds in embed.items()
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Embedding batch size",
        "",
        run_header(result["command"], result["load_before"], result["load_after"]),
        "",
        f"{result['data']}: {result['passages']:,} passages, {result['texts_embedded']:,} passage and sentence "
        f"texts embedded by each `Index.build` ({result['model']}). The sizes were built in rotating order, "
        f"{result['rounds']} rounds in one process; timed: the build's embed stage. Ratio: the median over rounds "
        f"of a size's time over batch {result['default_batch_size']}'s (the default) in the same round.",
        "",
        "| batch size | embed median s | fastest s | time / default's |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in result["sizes"]:
        lines.append(
            f"| {row['batch_size']} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['ratio_to_default']:.2f}× |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0].strip("`: "))
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v1.1 dev JSON (read, never copied)")
    parser.add_argument("--articles", type=int, default=4, help="how many of its articles to build")
    parser.add_argument("--sizes", default="16,32,64,256", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="builds of each size")
    parser.add_argument("--output", type=Path, default=RESULTS / "batch-size", help="the results' stem")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result = run(args.squad, args.articles, sizes, args.rounds)
    text = markdown(result)
    print(text)
    write_results(args.output, result, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
