"""``python -m bench.tokenizer``: qa's BM25 tokenizer against ``bm25s.tokenize``, which gives the same tokens.

    .venv/bin/python -m bench.tokenizer [--questions 300] [--rounds 7]

Two workloads on the SQuAD v1.1 dev passages as qa splits them (read where they lie):

- a search's: the question, then each of 5 passages' sentences in one call per passage (what hybrid
  search tokenizes to score the highlight), for ``--questions`` sampled questions;
- a collection's: every passage's text in one call (what a build tokenizes), and, for what qa's
  stem cache gives, the same texts one call each.

Each round runs every variant once, in an order that rotates, all in one process; the report gives
each variant's median CPU seconds (tokenizing uses one thread; CPU time holds on a shared machine
where wall time does not) and the median over rounds of its time over qa's in the same round,
with the machine's load, and writes ``bench/results/tokenizer.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, SQUAD, interleaved, load_average, log, median_ratio, run_header, write_results
from qa.build import split_collection
from qa.embedding import embedding_text, load_encoder
from qa.evaluation import load_squad
from qa.lexical import TOKENIZATION, lexical_text, tokenize
from qa.manifest import Chunking
from qa.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, SPLITTER_VERSION

COMMAND = "python -m bench.tokenizer"
HITS = 5


def workloads(squad: Path, questions: int) -> tuple[list[str], list[tuple[str, list[list[str]]]]]:
    """The passages' BM25 texts, and per sampled question the sentence lists of ``HITS`` passages."""
    documents, asked = load_squad(squad)
    encoder = load_encoder()  # its tokenizer bounds passages by tokens, as a build does
    split = split_collection(
        documents, encoder, Chunking(DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, encoder.max_tokens, SPLITTER_VERSION)
    )
    passages = [
        lexical_text(embedding_text(p), acronyms) for p, acronyms in zip(split.passages, split.acronyms, strict=True)
    ]
    sentences = [
        [lexical_text(p.text[s:e], acronyms) for s, e in spans]
        for p, spans, acronyms in zip(split.passages, split.sentences, split.acronyms, strict=True)
    ]
    rng = np.random.default_rng(0)
    searches = [
        (asked[i].question, [sentences[j] for j in rng.choice(len(sentences), HITS, replace=False)])
        for i in rng.permutation(len(asked))[:questions]
    ]
    return passages, searches


def run(squad: Path, questions: int, rounds: int) -> dict[str, Any]:
    import bm25s
    import Stemmer

    passages, searches = workloads(squad, questions)
    stemmer = Stemmer.Stemmer(TOKENIZATION["stemmer"])  # made once, as a server would

    def with_bm25s(texts: list[str]) -> list[list[str]]:
        tokens = bm25s.tokenize(
            texts,
            lower=TOKENIZATION["lower"],
            token_pattern=TOKENIZATION["token_pattern"],
            stopwords=TOKENIZATION["stopwords"],
            stemmer=stemmer,
            return_ids=False,
            show_progress=False,
        )
        return [list(t) for t in tokens]

    def search_with(tokenizer: Callable[[list[str]], list[list[str]]]) -> Callable[[], None]:
        def run_all() -> None:
            for question, hits in searches:
                tokenizer([question])
                for sentences in hits:
                    tokenizer(sentences)

        return run_all

    same_tokens = with_bm25s(passages) == tokenize(passages) and all(
        with_bm25s(s) == tokenize(s) for _, hits in searches for s in hits
    )
    log(f"{len(passages):,} passages, {len(searches):,} searches; same tokens: {same_tokens}")
    before = load_average()
    # CPU seconds of this process: tokenizing runs on one thread, and other work takes the cores.
    search = interleaved(
        {"qa": search_with(tokenize), "bm25s": search_with(with_bm25s)}, rounds, clock=time.process_time
    )
    collection = interleaved(
        {
            "qa": lambda: tokenize(passages),
            "qa, one call per text": lambda: [tokenize([t]) for t in passages],
            "bm25s": lambda: with_bm25s(passages),
        },
        rounds,
        clock=time.process_time,
    )
    after = load_average()

    def rows(seconds: dict[str, list[float]]) -> list[dict[str, Any]]:
        return [
            {
                "tokenizer": name,
                "median_s": round(float(np.median(times)), 4),
                "ratio_to_qa": round(median_ratio(times, seconds["qa"]), 2),
            }
            for name, times in seconds.items()
        ]

    return {
        "command": COMMAND,
        "data": "SQuAD v1.1 dev passages as qa splits them",
        "passages": len(passages),
        "searches": len(searches),
        "hits_per_search": HITS,
        "rounds": rounds,
        "same_tokens": same_tokens,
        "load_before": before,
        "load_after": after,
        "search": rows(search),
        "collection": rows(collection),
        "seconds": {"search": search, "collection": collection},
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# BM25 tokenizer: qa's against bm25s's",
        "",
        run_header(result["command"], result["load_before"], result["load_after"]),
        "",
        f"{result['data']}: {result['passages']:,} passages. Same tokens from both, on every text here: "
        f"{'yes' if result['same_tokens'] else '**no**'}. {result['rounds']} rounds in one process, the "
        "variants in rotating order, timed in CPU seconds of the process (tokenizing runs on one thread; "
        "CPU time holds on a shared machine where wall time does not); ratio: the median over rounds of a variant's time over qa's in the same round.",
        "",
        f"**Searches**: {result['searches']:,} sampled questions, each tokenized alone, then the sentences of "
        f"{result['hits_per_search']} passages, one call per passage (as hybrid search scores its highlights).",
        "",
        "| tokenizer | median CPU s, all searches | time / qa's |",
        "| --- | ---: | ---: |",
        *(f"| {r['tokenizer']} | {r['median_s']:.3f} | {r['ratio_to_qa']:.2f}× |" for r in result["search"]),
        "",
        "**A collection**: every passage, in one call (as a build tokenizes them).",
        "",
        "| tokenizer | median CPU s | time / qa's |",
        "| --- | ---: | ---: |",
        *(f"| {r['tokenizer']} | {r['median_s']:.3f} | {r['ratio_to_qa']:.2f}× |" for r in result["collection"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0].strip("`: "))
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v1.1 dev JSON (read, never copied)")
    parser.add_argument("--questions", type=int, default=300, help="searches (questions sampled, seed 0)")
    parser.add_argument("--rounds", type=int, default=7, help="times each variant runs")
    parser.add_argument("--output", type=Path, default=RESULTS / "tokenizer", help="the results' stem")
    args = parser.parse_args(argv)
    result = run(args.squad, args.questions, args.rounds)
    text = markdown(result)
    print(text)
    write_results(args.output, result, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
