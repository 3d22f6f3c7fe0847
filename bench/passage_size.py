"""Passage size and overlap chosen by the answer sentence: ``python -m bench.passage_size``.

For each setting (the most words in a passage, the sentences a passage repeats from the one before),
``qa eval --squad``'s hybrid figures on the tuning half (SQuAD dev articles 0-23, each article its own
index, and all 24 in one): the setting with the best answer-sentence@1 there (per article and pooled
averaged) is chosen, and only then is it graded on the held-out half (articles 24-47), beside the
shipped default's. The ranker was trained on the default's passages, which favours the default a
little; a setting has to beat it anyway. Writes ``bench/results/passage-size.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, SQUAD, load_average, log, run_header, write_results
from qa.evaluation import evaluate_squad
from qa.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP

GRID = ((100, 0), (100, 1), (150, 0), (150, 1), (200, 0), (200, 1))
"""(most words, sentences repeated): the default, and a third smaller and larger, with and without overlap."""
METRICS = ("sentence@1", "sentence_mrr@10", "hit@1", "mrr@10", "questions")


def graded(max_words: int, overlap: int, articles: slice) -> dict[str, dict[str, float]]:
    """The hybrid figures, per article and pooled, of one setting on SQuAD dev ``articles``."""
    evaluation = evaluate_squad(
        SQUAD, modes=("hybrid",), articles=articles, build_options={"max_words": max_words, "overlap": overlap}
    )
    return {setting: {m: evaluation.results[setting]["hybrid"][m] for m in METRICS} for setting in evaluation.results}


def choice(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """The setting whose tuning-half answer-sentence@1, per article and pooled averaged, is best."""
    return max(rows, key=lambda name: sum(rows[name][s]["sentence@1"] for s in ("per-article", "pooled")))


def _name(max_words: int, overlap: int) -> str:
    return f"{max_words} words, overlap {overlap}"


def markdown(command: str, report: dict[str, Any]) -> str:
    lines = [
        "# Passage size and overlap, chosen by answer-sentence@1",
        "",
        run_header(command, report["load_before"], report["load_after"]),
        "",
        f"Hybrid mode; {report['questions']['tuning']} tuning questions (articles 0-23),"
        f" {report['questions']['held_out']} held out (24-47). Chosen: **{report['chosen']}**"
        f" (the default: {report['default']}). Pooled: the half's 24 articles in one index (`qa eval`'s pooled rows"
        " put all 48 in one).",
        "",
        "| half | passages | per-article answer-sentence@1 | sentence MRR@10 | hit@1 | pooled answer-sentence@1 |"
        " sentence MRR@10 | hit@1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for half, rows in (("tuning", report["tuning"]), ("held out", report["held_out"])):
        for name, row in rows.items():
            cells = [
                f"{row[s][m]:.3f}"
                for s in ("per-article", "pooled")
                for m in ("sentence@1", "sentence_mrr@10", "hit@1")
            ]
            bold = "**" if name == report["chosen"] else ""
            lines.append(f"| {half} | {bold}{name}{bold} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.passage_size", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "passage-size")
    args = parser.parse_args(argv)
    load_before, started = load_average(), time.perf_counter()
    tuning: dict[str, dict[str, dict[str, float]]] = {}
    for max_words, overlap in GRID:
        log(f"tuning half: {_name(max_words, overlap)}")
        tuning[_name(max_words, overlap)] = graded(max_words, overlap, slice(0, 24))
    chosen = choice(tuning)
    default = _name(DEFAULT_MAX_WORDS, DEFAULT_OVERLAP)
    held_out: dict[str, dict[str, dict[str, float]]] = {}
    for name in dict.fromkeys((chosen, default)):
        max_words, overlap = next(setting for setting in GRID if _name(*setting) == name)
        log(f"held-out half: {name}")
        held_out[name] = graded(max_words, overlap, slice(24, 48))
    report = {
        "grid": [list(setting) for setting in GRID],
        "chosen": chosen,
        "default": default,
        "questions": {
            "tuning": int(tuning[default]["per-article"]["questions"]),
            "held_out": int(held_out[default]["per-article"]["questions"]),
        },
        "tuning": tuning,
        "held_out": held_out,
        "seconds": round(time.perf_counter() - started, 1),
        "load_before": load_before,
        "load_after": load_average(),
    }
    write_results(args.output, report, markdown("python -m bench.passage_size", report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
