"""The bundled article's reader questions, graded: ``python -m bench.article``.

Builds the bundled corpus as qa does (structure-aware passages) and, for comparison, with each of its
non-heading lines a document of its own (no sections, no paragraphs), then asks every reader question
of ``tests/article_questions.py`` in each mode. answer-sentence@1: the first hit's highlighted sentence
holds the answer's words; hit@k: one of the top k passages does; answered: the share of answerable
questions shown without "no answer here" (hybrid); and how many of the unanswerable and off-topic
questions are flagged. Writes ``bench/results/article.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, load_average, run_header, write_results
from qa.documents import Document
from qa.index import Index
from qa.retrieval import MODES
from tests.article_questions import ANSWERABLE, OFF_TOPIC, UNANSWERABLE, ReaderQuestion


def line_documents(corpus: Path) -> list[Document]:
    """Each non-heading line of the corpus's Markdown its own document."""
    lines = [
        line
        for path in sorted(corpus.glob("*.md"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return [Document(id=f"line{number}", text=line) for number, line in enumerate(lines)]


def graded(index: Index, mode: str) -> dict[str, float]:
    sentence = at1 = at3 = answered = 0
    for question, answers in ANSWERABLE:
        answer = index.ask(question, 5, mode=mode)
        first = answer.hits[0]
        sentence += any(a in first.highlighted_text for a in answers)
        at1 += any(a in first.text for a in answers)
        at3 += any(a in hit.text for hit in answer.hits[:3] for a in answers)
        answered += answer.answered
    n = len(ANSWERABLE)
    return {"answer_sentence_at_1": sentence / n, "hit_at_1": at1 / n, "hit_at_3": at3 / n, "answered": answered / n}


def flagged(index: Index, questions: list[ReaderQuestion]) -> int:
    return sum(not index.ask(question, 5).answered for question, _ in questions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.article", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "corpus")
    parser.add_argument("--runtime", help="the runtime to build on (default: qa's)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "article")
    args = parser.parse_args(argv)
    load_before = load_average()
    indexes = {
        "structure-aware": Index.build(args.corpus, progress=False, runtime=args.runtime),
        "one line each": Index.build(line_documents(args.corpus), progress=False, runtime=args.runtime),
    }
    rows: list[dict[str, Any]] = [
        {"passages": f"{name} ({len(index)})", "mode": mode, **graded(index, mode)}
        for name, index in indexes.items()
        for mode in MODES
    ]
    default = indexes["structure-aware"]
    flags = {"unanswerable": flagged(default, UNANSWERABLE), "off_topic": flagged(default, OFF_TOPIC)}
    command = "python -m bench.article" + (f" --runtime {args.runtime} --output {args.output}" if args.runtime else "")
    lines = [
        "# The bundled article's reader questions",
        "",
        run_header(command, load_before, load_average()),
        "",
        f"{len(ANSWERABLE)} answerable reader questions (`tests/article_questions.py`), in a reader's words, "
        f"asked of indexes built on the {default.encoder.runtime} runtime. "
        "answer-sentence@1: the first hit's highlighted sentence holds the answer; hit@k: a top-k passage does; "
        'answered: shown without "no answer here".',
        "",
        "| passages | mode | answer-sentence@1 | hit@1 | hit@3 | answered |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['passages']} | {r['mode']} | {r['answer_sentence_at_1']:.3f} | {r['hit_at_1']:.3f} "
            f"| {r['hit_at_3']:.3f} | {r['answered']:.3f} |"
            for r in rows
        ),
        "",
        f'"No answer here" on the structure-aware index: {flags["off_topic"]} of {len(OFF_TOPIC)} off-topic '
        f"questions flagged, {flags['unanswerable']} of {len(UNANSWERABLE)} questions on the article's topic "
        "that it does not answer.",
    ]
    report = {"command": command, "runtime": default.encoder.runtime, "rows": rows, "flagged": flags,
              "questions": len(ANSWERABLE),
              "load_average": [load_before, load_average()], "when": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    write_results(args.output, report, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
