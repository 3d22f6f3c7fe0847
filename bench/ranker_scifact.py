"""Does the sentence ranker gain from SciFact's train claims? ``python -m bench.ranker_scifact``.

The sentence model fitted as ``bench.train_ranker`` fits it (SQuAD dev articles 0-23, per article and
pooled), with SciFact's train claims added at several weights (their share of the loss against SQuAD's
1; a sentence of a relevant abstract counts as a right one). Each is graded on SciFact train (what a
weight would be chosen on) and test (held out), by nDCG@10 with the candidate passages ranked by their
best sentence and the fusion's order after them, as ``qa eval --beir`` ranks; and on SQuAD's held-out
half (24-47) by answer-sentence@1 and passage hit@1, as ``bench.ranker_ablation`` grades. "fusion
only" ranks by the hybrid fusion's score alone, as qa did before the ranker. Uses ``bench.train_ranker``'s
dumps (made on first use in ``--work``). Writes ``bench/results/ranker-scifact.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, SCIFACT, default_workdir, load_average, run_header, write_results
from bench.ranker_ablation import graded
from bench.train_ranker import _beir_dump, _dump, beir_ndcg, fit_sentences
from qa.ranking import FEATURES, default_ranker

WEIGHTS = (0.0, 1.0, 4.0, 16.0)
"""SciFact's share of the sentence model's loss: none (what qa ships), as much as SQuAD's, and more."""


def scores(dump: dict[str, np.ndarray], model: Any) -> np.ndarray:
    fused: np.ndarray = dump["matrix"][:, FEATURES.index("fused")]
    return fused if model is None else np.asarray(model.apply(dump["matrix"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ranker_scifact", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=default_workdir() / "ranker", help="for the dumps and indexes")
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "ranker-scifact")
    args = parser.parse_args(argv)
    load_before, started = load_average(), time.perf_counter()
    tuning = [_dump(args.work, setting, "0:24", False) for setting in ("per-article", "pooled")]
    held_out = {setting: _dump(args.work, setting, "24:48", False) for setting in ("per-article", "pooled")}
    scifact = {split: _beir_dump(args.work, SCIFACT.parent, split) for split in ("train", "test")}
    models: dict[str, Any] = {"fusion only": None, "shipped (qa/ranker.json)": default_ranker().sentences}
    for weight in WEIGHTS:
        models[f"SQuAD + SciFact train x{weight:g}" if weight else "SQuAD only, refitted"] = fit_sentences(
            tuning, scifact["train"], weight, args.l2
        )
    rows = []
    for name, model in models.items():
        row: dict[str, Any] = {"model": name}
        for split, dump in scifact.items():
            row[f"scifact_{split}_ndcg@10"] = beir_ndcg(dump, scores(dump, model))
        for setting, dump in held_out.items():
            if model is None:
                continue  # the fusion's first passage has no highlight rule here: see bench.ranker_ablation
            figures = graded(dump, scores(dump, model))
            row[f"{setting}_answer_sentence@1"] = figures["answer_sentence_at_1"]
            row[f"{setting}_hit@1"] = figures["passage_hit_at_1"]
        rows.append(row)
    command = "python -m bench.ranker_scifact"
    lines = [
        "# The sentence ranker and SciFact's train claims",
        "",
        run_header(command, load_before, load_average()),
        "",
        f"{int(scifact['train']['question'].max()) + 1} train and {int(scifact['test']['question'].max()) + 1} test "
        "claims; SQuAD held-out half: articles 24-47. nDCG@10 ranks the candidates of each claim (the 20 best "
        "passages by the fusion and the neighbours of the 5 best) by their best sentence, then the fusion's order.",
        "",
        "| sentence model | SciFact train nDCG@10 | SciFact test nDCG@10 | SQuAD per-article answer-sentence@1 "
        "| hit@1 | SQuAD pooled answer-sentence@1 | hit@1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        squad = [
            f"{row[key]:.4f}" if key in row else "—"
            for key in (
                "per-article_answer_sentence@1",
                "per-article_hit@1",
                "pooled_answer_sentence@1",
                "pooled_hit@1",
            )
        ]
        cells = [f"{row['scifact_train_ndcg@10']:.4f}", f"{row['scifact_test_ndcg@10']:.4f}", *squad]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    report = {
        "command": command,
        "weights": list(WEIGHTS),
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": [load_before, load_average()],
    }
    write_results(args.output, report, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
