"""``python -m bench.milvus_bm25``: qa's BM25 (bm25s) against Milvus Lite's full-text search, on SQuAD.

    .venv/bin/python -m bench.milvus_bm25 [--articles 4]

The first ``--articles`` SQuAD v1.1 dev articles (read where they lie), split by qa, each article its
own index ("per-article") and all in one ("pooled"), as ``qa eval`` does. qa answers every question
in lexical mode (bm25s: Lucene's BM25, English stop words and stemming). Milvus Lite gets the same
passages, each as the very text qa's BM25 counts, in a collection whose BM25 function makes the
sparse vectors (an analyzer on the text field; a ``SPARSE_INVERTED_INDEX`` with metric BM25 and qa's
k1 and b), once with its standard analyzer alone and once with bm25s's English stop words added to
it; Milvus Lite offers no English stemmer (the analyzers it knows are listed in the report).

hit@k: a top-k passage holds a gold answer's words (``qa eval``'s passage hit). Writes
``bench/results/milvus-bm25.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import RESULTS, SQUAD, load_average, log, run_header, write_results
from qa import Index
from qa.embedding import embedding_text
from qa.evaluation import load_squad
from qa.lexical import BM25_B, BM25_K1, lexical_text

COMMAND = "python -m bench.milvus_bm25"
KS = (1, 5, 10)
MAX_TEXT = 65_535  # the longest VARCHAR Milvus takes


def bm25_texts(index: Index) -> list[str]:
    """Each passage's text as qa's BM25 counts it: title and section, text, acronyms' long forms."""
    return [
        lexical_text(embedding_text(p), acronyms)
        for p, acronyms in zip(index.passages, index.contents.acronyms, strict=True)
    ]


def milvus_search(uri: str, name: str, texts: list[str], analyzer: dict[str, Any]) -> Callable[[str, int], list[int]]:
    """A Milvus Lite collection of ``texts`` with a BM25 function; returns a search of it by question."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    client = MilvusClient(uri)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True, analyzer_params=analyzer)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]
        )
    )
    index_params = client.prepare_index_params()
    index_params.add_index(
        field_name="sparse",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
        params={"bm25_k1": BM25_K1, "bm25_b": BM25_B},
    )
    client.create_collection(name, schema=schema, index_params=index_params)
    client.insert(name, [{"id": i, "text": text} for i, text in enumerate(texts)])
    client.flush(name)
    client.load_collection(name)

    def search(question: str, k: int) -> list[int]:
        found = client.search(
            name, data=[question], anns_field="sparse", limit=k, search_params={"metric_type": "BM25"}
        )
        return [int(hit["id"]) for hit in found[0]]

    return search


def first_hit(passages: Sequence[str], answers: Sequence[str]) -> int | None:
    return next((rank for rank, text in enumerate(passages, 1) if any(a in text for a in answers)), None)


def analyzers() -> dict[str, dict[str, Any]]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return {
        "Milvus Lite BM25, standard analyzer": {"tokenizer": "standard"},
        "Milvus Lite BM25, standard analyzer + bm25s's English stop words": {
            "tokenizer": "standard",
            "filter": [{"type": "stop", "stop_words": sorted(STOPWORDS_EN_PLUS)}],
        },
    }


def english_analyzer_error(uri: str) -> str:
    """What Milvus Lite says when asked for Milvus's built-in English analyzer (stemming and stop words)."""
    try:
        milvus_search(uri, "english", ["a text"], {"type": "english"})
    except Exception as error:  # whatever it raises is what the report shows
        return f"{type(error).__name__}: {error}"
    return ""


def run(squad: Path, articles: int) -> dict[str, Any]:
    import milvus_lite
    import pymilvus

    documents, questions = load_squad(squad)
    documents = documents[:articles]
    questions = [q for q in questions if q.article < articles]
    before = load_average()
    pooled = Index.build(documents, progress=False)
    indexes = {
        "pooled": {number: pooled for number in range(articles)},
        "per-article": {
            number: Index.build([document], previous=pooled, progress=False)
            for number, document in enumerate(documents)
        },
    }
    log(f"{len(pooled):,} passages, {len(questions):,} questions")
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="milvus-bm25-") as scratch:
        uri = str(Path(scratch) / "bm25.db")
        english = english_analyzer_error(uri)
        for setting, index_of in indexes.items():
            systems: dict[str, dict[int, Callable[[str, int], list[str]]]] = {
                "qa lexical (bm25s, stemmed)": {
                    n: (lambda q, k, index=index: [h.text for h in index.search(q, k, mode="lexical")])
                    for n, index in index_of.items()
                }
            }
            for label, analyzer in analyzers().items():
                searches: dict[int, Callable[[str, int], list[str]]] = {}
                made: dict[int, Callable[[str, int], list[str]]] = {}
                for n, index in index_of.items():
                    key = id(index)  # the pooled index is one collection for every article
                    if key not in made:
                        search = milvus_search(uri, f"c{len(results)}_{len(systems)}_{n}", bm25_texts(index), analyzer)
                        texts = [p.text for p in index.passages]
                        made[key] = lambda q, k, search=search, texts=texts: [texts[i] for i in search(q, k)]
                    searches[n] = made[key]
                systems[label] = searches
            results[setting] = {}
            for label, searches in systems.items():
                ranks = [first_hit(searches[q.article](q.question, max(KS)), q.answers) for q in questions]
                results[setting][label] = {
                    **{f"hit@{k}": round(sum(r is not None and r <= k for r in ranks) / len(ranks), 3) for k in KS},
                    "mrr@10": round(sum(1 / r for r in ranks if r is not None) / len(ranks), 3),
                }
                log(f"{setting}, {label}: {results[setting][label]}")
    return {
        "command": COMMAND,
        "data": f"SQuAD v1.1 dev, first {articles} articles: {len(pooled):,} passages, {len(questions):,} questions",
        "versions": {"milvus-lite": milvus_lite.__version__, "pymilvus": pymilvus.__version__},
        "bm25": {"k1": BM25_K1, "b": BM25_B},
        "english_analyzer": english,
        "load_before": before,
        "load_after": load_average(),
        "results": results,
    }


def markdown(result: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in result["versions"].items())
    lines = [
        "# BM25: bm25s (qa) against Milvus Lite's full-text search",
        "",
        run_header(result["command"], result["load_before"], result["load_after"]),
        "",
        f"{result['data']}; {versions}. Both count the same text for each passage, with BM25 k1="
        f"{result['bm25']['k1']}, b={result['bm25']['b']}. hit@k: a top-k passage holds a gold answer's words.",
        "",
        "| setting | BM25 | hit@1 | hit@5 | hit@10 | MRR@10 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for setting, systems in result["results"].items():
        for label, scores in systems.items():
            lines.append(
                f"| {setting} | {label} | {scores['hit@1']:.3f} | {scores['hit@5']:.3f} | {scores['hit@10']:.3f} "
                f"| {scores['mrr@10']:.3f} |"
            )
    if result["english_analyzer"]:
        lines += ["", f"Milvus's English analyzer (stemming), asked of Milvus Lite: `{result['english_analyzer']}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0].strip("`: "))
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v1.1 dev JSON (read, never copied)")
    parser.add_argument("--articles", type=int, default=4, help="how many of its articles")
    parser.add_argument("--output", type=Path, default=RESULTS / "milvus-bm25", help="the results' stem")
    args = parser.parse_args(argv)
    result = run(args.squad, args.articles)
    text = markdown(result)
    print(text)
    write_results(args.output, result, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
