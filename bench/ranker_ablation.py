"""What each signal of the answer-sentence ranker adds, on the held-out half: ``python -m bench.ranker_ablation``.

Each row trains the sentence model (``bench.train_ranker``'s listwise fit) on a set of evidence columns
over the tuning half's dumps (SQuAD dev articles 0-23, per article and pooled) and grades it on the
held-out half's (24-47): the first hit's highlighted sentence is the best-scoring candidate sentence,
so answer-sentence@1 is whether that sentence covers a gold answer at its place, and passage hit@1
whether its passage holds a gold answer's words (``qa eval``'s passage hit). Two rows need no training:
"before the ranker" (the fusion's first passage, its sentence by the old highlight rule: z-scored
sentence cosine plus twice z-scored sentence BM25), and the shipped ``qa/ranker.json``. (``qa eval --squad`` grades the shipped ranker's
confidence and "no answer here".)

The dumps (``bench.answer_study dump``) are made on first use in ``--work`` and kept. Writes
``bench/results/ranker-ablation.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, default_workdir, load_average, run_header, write_results
from bench.train_ranker import _dump, fit_listwise, groups
from qa.ranking import LinearModel, default_ranker

TODAY = ("fused", "sentence_cosine", "sentence_bm25")
"""The three signals hybrid ranking weighed before the ranker: fusion, and the best sentence's cosine and BM25."""
GROUPS: dict[str, tuple[str, ...]] = {
    "sentence words (coverage, window coverage)": ("coverage", "window_coverage"),
    "across the passage boundary (neighbour, window cosine)": ("neighbour_cosine", "window_cosine"),
    "expected answer type": ("answer_type",),
    "passage evidence (cosine, BM25, rank)": ("passage_cosine", "passage_bm25", "passage_rank"),
    "novelty, length": ("novelty", "length"),
}
"""Signals added to today's three, one group at a time, and left out of all, one group at a time."""
ALL = (*TODAY, *(column for columns in GROUPS.values() for column in columns))
"""Every candidate signal."""


def graded(dump: dict[str, np.ndarray], scores: np.ndarray) -> dict[str, float]:
    """answer-sentence@1 and passage hit@1 when each question's best-scoring sentence is shown first."""
    sentence = passage = 0
    spans = groups(dump["question"])
    for a, b in spans:
        best = a + int(np.argmax(scores[a:b]))
        sentence += bool(dump["sentence_exact"][best])
        passage += bool(dump["passage_words"][best])
    return {"answer_sentence_at_1": sentence / len(spans), "passage_hit_at_1": passage / len(spans)}


def before_ranker(dump: dict[str, np.ndarray]) -> np.ndarray:
    """The old choice: the fusion's first passage, and in it the sentence of best z(cosine) + 2 z(BM25)."""
    names = list(dump["features"])
    cosine = dump["matrix"][:, names.index("raw_sentence_cosine")].astype(np.float64)
    bm25 = dump["matrix"][:, names.index("raw_sentence_bm25")].astype(np.float64)
    scores = np.full(len(cosine), -np.inf)
    for a, b in groups(dump["question"]):
        rows = a + np.flatnonzero(dump["owner"][a:b] == 0)  # owner 0: the fusion's first passage
        if len(rows):
            scores[rows] = _z(cosine[rows]) + 2 * _z(bm25[rows])
    return scores


def _z(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 1e-9 else np.zeros_like(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ranker_ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=default_workdir() / "ranker", help="for the dumps and indexes")
    parser.add_argument("--train", default="0:24", help="the tuning half's SQuAD dev articles")
    parser.add_argument("--test", default="24:48", help="the held-out half's")
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "ranker-ablation")
    args = parser.parse_args(argv)
    load_before, started = load_average(), time.perf_counter()
    settings = ("per-article", "pooled")
    train = [_dump(args.work, setting, args.train, False) for setting in settings]
    test = {setting: _dump(args.work, setting, args.test, False) for setting in settings}
    offset, numbers = 0, []
    for dump in train:
        numbers.append(dump["question"] + offset)
        offset += int(dump["question"].max()) + 1
    question, positive = np.concatenate(numbers), np.concatenate([d["sentence_exact"] for d in train])

    def trained(columns: tuple[str, ...]) -> dict[str, dict[str, float]]:
        x = np.concatenate([d["matrix"][:, [list(d["features"]).index(c) for c in columns]] for d in train])
        model = LinearModel(columns, fit_listwise(x, question, positive, args.l2))
        return {
            setting: graded(dump, model.apply(dump["matrix"], tuple(dump["features"])))
            for setting, dump in test.items()
        }

    rows: list[dict[str, Any]] = [
        {"ranker": "before the ranker (fusion's first passage, old highlight rule)",
         "results": {s: graded(d, before_ranker(d)) for s, d in test.items()}},
        {"ranker": "today's three signals, learned (fusion, sentence cosine, sentence BM25)", "results": trained(TODAY)},
    ]  # fmt: skip
    for name, columns in GROUPS.items():
        rows.append({"ranker": f"today's three + {name}", "results": trained((*TODAY, *columns))})
    rows.append({"ranker": "all signals", "results": trained(ALL)})
    for name, columns in GROUPS.items():
        kept = tuple(c for c in ALL if c not in columns)
        rows.append({"ranker": f"all signals but {name}", "results": trained(kept)})
    shipped = default_ranker()
    rows.append({"ranker": "shipped qa/ranker.json",
                 "results": {s: graded(d, shipped.sentences.apply(d["matrix"], tuple(d["features"]))) for s, d in test.items()}})  # fmt: skip
    oracle = {
        s: float(np.mean([d["sentence_exact"][a:b].any() for a, b in groups(d["question"])])) for s, d in test.items()
    }
    command = "python -m bench.ranker_ablation"
    report = {"command": command, "train": args.train, "test": args.test, "rows": rows,
              "oracle_answer_sentence_at_1": oracle, "seconds": time.perf_counter() - started,
              "load_average": [load_before, load_average()]}  # fmt: skip
    lines = [
        "# What each signal adds to the answer sentence, on the held-out half",
        "",
        run_header(command, load_before, load_average()),
        "",
        f"Trained on SQuAD v1.1 dev articles {args.train} (each article its own index, and all in one), graded "
        f"on articles {args.test}: {len(groups(test['per-article']['question'])):,} questions. answer-sentence@1: the first hit's "
        "highlighted sentence covers a gold answer at its place; passage hit@1: the first hit's passage holds "
        "a gold answer's words. The best any ranking of these candidates could do (a candidate sentence "
        f"covers the answer): {oracle['per-article']:.3f} per article, {oracle['pooled']:.3f} pooled.",
        "",
        "| ranker | per-article answer-sentence@1 | per-article passage hit@1 | pooled answer-sentence@1 | pooled passage hit@1 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        a, p = row["results"]["per-article"], row["results"]["pooled"]
        lines.append(
            f"| {row['ranker']} | {a['answer_sentence_at_1']:.3f} | {a['passage_hit_at_1']:.3f} "
            f"| {p['answer_sentence_at_1']:.3f} | {p['passage_hit_at_1']:.3f} |"
        )
    write_results(args.output, report, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
