"""``python -m bench.bm25_memory``: the memory BM25 scoring takes, a million entries at a time against all at once.

    .venv/bin/python -m bench.bm25_memory [--passages 100000]

Splits about ``--passages`` SciFact passages (the abstracts, then copies with distinct sentences, as
the scaling benchmark grows them; read where they lie), counts each passage's words as a build does
(``qa.lexical.count_terms`` of the text BM25 counts), then computes the BM25 score matrix from the
counts with ``qa.lexical.bm25_matrix`` twice: in slices of ``SCORE_SLICE`` entries (what a build
does) and in one slice of every entry. Python's ``tracemalloc`` (which sees NumPy's and SciPy's
arrays) gives the most memory allocated at once during each call, above what was held before it.
Writes ``bench/results/bm25-memory.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path
from typing import Any

from bench import data
from bench.common import MIB, RESULTS, SCIFACT, load_average, log, run_header, write_results
from qa.build import split_collection
from qa.embedding import embedding_text, load_encoder
from qa.lexical import SCORE_SLICE, bm25_matrix, count_terms, lexical_text
from qa.manifest import Chunking
from qa.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, SPLITTER_VERSION, split_document

COMMAND = "python -m bench.bm25_memory"


def documents_for(passages: int, path: Path) -> int:
    """How many SciFact documents (with copies) give about ``passages`` passages, as the scaling benchmark counts."""
    sample = data.scifact(500, path)
    per_document = sum(len(split_document(d.text)) for d in sample) / len(sample)
    return max(1, round(passages / per_document))


def run(passages: int, path: Path) -> dict[str, Any]:
    before = load_average()
    documents = data.scifact(documents_for(passages, path), path)
    encoder = load_encoder()  # its tokenizer bounds passages by tokens, as a build does
    split = split_collection(
        documents, encoder, Chunking(DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, encoder.max_tokens, SPLITTER_VERSION)
    )
    vocabulary: dict[str, int] = {}
    terms = count_terms(
        (lexical_text(embedding_text(p), a) for p, a in zip(split.passages, split.acronyms, strict=True)), vocabulary
    )
    entries = len(terms.ids)
    log(f"{terms.passages:,} passages, {len(vocabulary):,} words, {entries:,} score entries")
    del documents, split
    peaks = {}
    for label, score_slice in (("sliced", SCORE_SLICE), ("all at once", entries)):
        tracemalloc.start()
        held = tracemalloc.get_traced_memory()[0]
        matrix = bm25_matrix(terms, len(vocabulary), score_slice=score_slice)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        result_bytes = sum(v.nbytes for v in matrix.values() if hasattr(v, "nbytes"))
        peaks[label] = {
            "score_slice": score_slice,
            "peak_mib": round((peak - held) / MIB),
            "result_mib": round(result_bytes / MIB),
        }
        log(f"{label}: {peaks[label]}")
        del matrix
    return {
        "command": COMMAND,
        "data": f"SciFact abstracts and copies: {terms.passages:,} passages",
        "passages": terms.passages,
        "words": len(vocabulary),
        "entries": entries,
        "load_before": before,
        "load_after": load_average(),
        "peaks": peaks,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# BM25 scoring memory: sliced against all at once",
        "",
        run_header(result["command"], result["load_before"], result["load_after"]),
        "",
        f"{result['data']}, {result['words']:,} distinct words, {result['entries']:,} (passage, word) entries. "
        "`qa.lexical.bm25_matrix` from the word counts; peak: the most memory allocated at once during the call "
        "(Python's `tracemalloc`, which sees NumPy's and SciPy's arrays), the score matrix it returns included.",
        "",
        "| scores computed | entries a slice | peak MiB | of which the returned matrix MiB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, peak in result["peaks"].items():
        lines.append(f"| {label} | {peak['score_slice']:,} | {peak['peak_mib']:,} | {peak['result_mib']:,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0].strip("`: "))
    parser.add_argument("--scifact", type=Path, default=SCIFACT, help="BEIR SciFact corpus.jsonl (read, never copied)")
    parser.add_argument("--passages", type=int, default=100_000, help="about how many passages")
    parser.add_argument("--output", type=Path, default=RESULTS / "bm25-memory", help="the results' stem")
    args = parser.parse_args(argv)
    result = run(args.passages, args.scifact)
    text = markdown(result)
    print(text)
    write_results(args.output, result, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
