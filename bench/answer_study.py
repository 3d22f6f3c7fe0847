"""The evidence of candidate sentences for SQuAD questions, dumped once so rankers can be compared in seconds.

``python -m bench.answer_study dump --articles 0:24 --setting per-article -o DUMP.npz`` builds the
indexes (each article its own, or all in one: ``pooled``), and for every question writes the evidence
(``qa.ranking.FEATURES``) of the sentences of its candidate passages, with labels: whether the sentence
covers a gold answer at its place, whether it holds the answer's words, whether its passage does.

``python -m bench.answer_study dump-beir --split train -o DUMP.npz`` does the same for a BEIR collection's
queries (SciFact's by default), labelled by whether the sentence's document is judged relevant, with what
nDCG@10 needs: each query's judgements and the documents the fusion ranks after the candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import SCIFACT, SQUAD
from qa.documents import Document
from qa.embedding import load_encoder
from qa.evaluation import load_beir_corpus, load_beir_queries, load_squad
from qa.fusion import CANDIDATES, fused_candidates
from qa.index import Index
from qa.ranking import FEATURES, candidates_with_neighbours, sentence_evidence


def _slice(text: str) -> slice:
    start, _, end = text.partition(":")
    return slice(int(start) if start else None, int(end) if end else None)


def _cached_index(
    cache: Path | None, name: str, documents: Callable[[], list[Document]], options: dict[str, Any]
) -> Index:
    """The index kept as ``cache/name`` from an earlier run, else built of ``documents()`` (and kept)."""
    folder = cache / name if cache is not None else None
    if folder is not None and (folder / "manifest.json").exists():
        return Index.load(folder, encoder=options["encoder"])
    index = Index.build(documents(), **options)
    if folder is not None:
        index.save(folder)
    return index


def dump(args: argparse.Namespace) -> None:
    documents, questions = load_squad(args.squad)
    chosen = set(range(len(documents))[_slice(args.articles)])
    documents = [d if i in chosen else None for i, d in enumerate(documents)]  # type: ignore[misc]
    asked = [q for q in questions if q.article in chosen]
    encoder = load_encoder()
    options = {"max_words": args.max_words, "overlap": args.overlap, "progress": False, "encoder": encoder}
    started = time.perf_counter()
    name = f"squad-{args.articles.replace(':', '-')}-{args.max_words}-{args.overlap}"
    pooled = _cached_index(args.cache, name, lambda: [d for d in documents if d is not None], options)
    encoder.warm_queries([q.question for q in asked])
    indexes = {}
    if args.setting == "per-article":
        indexes = {n: Index.build([documents[n]], previous=pooled, **options) for n in sorted(chosen)}
    print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows: dict[str, list[np.ndarray]] = {
        name: []
        for name in (
            "matrix",
            "question",
            "owner",
            "passage_row",
            "sentence_index",
            "sentence_exact",
            "sentence_words",
            "passage_words",
            "passage_exact",
        )
    }
    articles = []
    order = sorted(chosen)
    for number, q in enumerate(asked):
        index = indexes[q.article] if indexes else pooled
        if args.foreign:  # the next article's index: it cannot answer the question
            index = indexes[order[(order.index(q.article) + 1) % len(order)]]
        contents = index.contents
        query = encoder.encode_query(q.question)
        terms = contents.lexical.terms(q.question)
        candidates = fused_candidates(contents, query, terms, min(len(contents), CANDIDATES))
        ranked = candidates.rows[np.argsort(-candidates.fused, kind="stable")]
        passages = candidates_with_neighbours(contents, ranked, args.top, args.around)
        evidence = sentence_evidence(contents, q.question, query, terms, candidates, passages)
        exact, words = [], []
        for owner, sentence in zip(evidence.owner.tolist(), evidence.sentence.tolist(), strict=True):
            passage = contents.passages[int(passages[owner])]
            s, e = contents.sentences[int(passages[owner])][sentence]
            start, end = passage.start + s, passage.start + e
            exact.append(passage.doc_id == documents[q.article].id and any(start <= a and b <= end for a, b in q.spans))
            words.append(any(a in passage.text[s:e] for a in q.answers) and not args.foreign)
        passage_words = [
            any(a in contents.passages[int(r)].text for a in q.answers) and not args.foreign for r in passages
        ]
        passage_exact = [
            contents.passages[int(r)].doc_id == documents[q.article].id
            and any(contents.passages[int(r)].start <= a and b <= contents.passages[int(r)].end for a, b in q.spans)
            for r in passages
        ]
        rows["matrix"].append(evidence.matrix)
        rows["question"].append(np.full(len(evidence.owner), number, dtype=np.int32))
        rows["owner"].append(evidence.owner.astype(np.int32))
        rows["passage_row"].append(passages[evidence.owner].astype(np.int32))
        rows["sentence_index"].append(evidence.sentence.astype(np.int32))
        rows["sentence_exact"].append(np.asarray(exact, dtype=bool))
        rows["sentence_words"].append(np.asarray(words, dtype=bool))
        rows["passage_words"].append(np.asarray(passage_words, dtype=bool)[evidence.owner])
        rows["passage_exact"].append(np.asarray(passage_exact, dtype=bool)[evidence.owner])
        articles.append(q.article)
        if number % 500 == 0:
            print(f"{number:,} of {len(asked):,} questions, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    np.savez_compressed(
        args.output,
        features=np.array(FEATURES),
        articles=np.asarray(articles, dtype=np.int32),
        questions=np.array([q.question for q in asked]),
        **{name: np.concatenate(parts) for name, parts in rows.items()},
    )
    print(f"wrote {args.output}: {len(asked):,} questions in {time.perf_counter() - started:.0f} s", file=sys.stderr)


TAIL_DOCUMENTS = 30
"""Documents kept per query from the fusion's order after the candidates (nDCG@10 needs ten in all)."""


def dump_beir(args: argparse.Namespace) -> None:
    queries, qrels = load_beir_queries(args.beir, args.split)
    encoder = load_encoder()
    started = time.perf_counter()
    options = {"max_words": args.max_words, "overlap": args.overlap, "progress": False, "encoder": encoder}
    name = f"beir-{args.beir.name}-{args.max_words}-{args.overlap}"
    index = _cached_index(args.cache, name, lambda: load_beir_corpus(args.beir), options)
    contents = index.contents
    encoder.warm_queries(list(queries.values()))
    print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    documents = sorted({p.doc_id for p in contents.passages})
    number_of = {doc: i for i, doc in enumerate(documents)}
    rows: dict[str, list[np.ndarray]] = {n: [] for n in ("matrix", "question", "owner", "document", "relevant")}
    tails = np.full((len(queries), TAIL_DOCUMENTS), -1, dtype=np.int32)
    judged = []
    for number, (query_id, text) in enumerate(queries.items()):
        query = encoder.encode_query(text)
        terms = contents.lexical.terms(text)
        candidates = fused_candidates(contents, query, terms, min(len(contents), CANDIDATES))
        ranked = candidates.rows[np.argsort(-candidates.fused, kind="stable")]
        passages = candidates_with_neighbours(contents, ranked, args.top, args.around)
        evidence = sentence_evidence(contents, text, query, terms, candidates, passages)
        relevant = {doc for doc, grade in qrels[query_id].items() if grade > 0}
        document = np.array([number_of[contents.passages[int(r)].doc_id] for r in passages], dtype=np.int32)
        taken = set(passages.tolist())
        tail = list(dict.fromkeys(number_of[contents.passages[int(r)].doc_id] for r in ranked if int(r) not in taken))
        tails[number, : min(len(tail), TAIL_DOCUMENTS)] = tail[:TAIL_DOCUMENTS]
        rows["matrix"].append(evidence.matrix)
        rows["question"].append(np.full(len(evidence.owner), number, dtype=np.int32))
        rows["owner"].append(evidence.owner.astype(np.int32))
        rows["document"].append(document[evidence.owner])
        rows["relevant"].append(np.array([documents[d] in relevant for d in document[evidence.owner]], dtype=bool))
        judged.append(json.dumps(qrels[query_id]))
    np.savez_compressed(
        args.output,
        features=np.array(FEATURES),
        documents=np.array(documents),
        judged=np.array(judged),
        tail=tails,
        **{name: np.concatenate(parts) for name, parts in rows.items()},
    )
    print(f"wrote {args.output}: {len(queries):,} queries in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.answer_study")
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("dump", help="write the evidence and labels of every question's candidate sentences")
    d.add_argument("--squad", type=Path, default=SQUAD)
    d.add_argument("--articles", default="0:24")
    d.add_argument("--setting", choices=["per-article", "pooled"], default="per-article")
    d.add_argument("--max-words", type=int, default=150)
    d.add_argument("--overlap", type=int, default=0)
    d.add_argument("--top", type=int, default=20, help="candidate passages whose sentences are described")
    d.add_argument("--around", type=int, default=5, help="of the best, how many bring their neighbours")
    d.add_argument("-o", "--output", type=Path, required=True)
    d.add_argument("--foreign", action="store_true", help="ask each question of the next article's index (per article)")
    d.add_argument("--cache", type=Path, help="a folder to keep the built index in, and take it from next time")
    d.set_defaults(handler=dump)
    b = commands.add_parser("dump-beir", help="the same for a BEIR collection's queries")
    b.add_argument("--beir", type=Path, default=SCIFACT.parent)
    b.add_argument("--split", default="train")
    b.add_argument("--max-words", type=int, default=150)
    b.add_argument("--overlap", type=int, default=0)
    b.add_argument("--top", type=int, default=20, help="candidate passages whose sentences are described")
    b.add_argument("--around", type=int, default=5, help="of the best, how many bring their neighbours")
    b.add_argument("-o", "--output", type=Path, required=True)
    b.add_argument("--cache", type=Path, help="a folder to keep the built index in, and take it from next time")
    b.set_defaults(handler=dump_beir)
    args = parser.parse_args(argv)
    args.handler(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
