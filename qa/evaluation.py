"""Measuring retrieval: SQuAD v1.1 (does the first highlighted sentence, or a top passage, hold the
answer?) and BEIR (nDCG@10, recall@100).

SQuAD articles are indexed as whole documents, split by qa's own splitter, not as the gold paragraphs:
what is measured is what a user of qa gets. What a person reads first is the highlighted sentence of
the first hit, so the lead metric is answer-sentence@1: that sentence covers a gold answer at the
answer's own place in the document (SQuAD's ``answer_start``), not merely the same words elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.documents import Document
from qa.index import Index
from qa.passage import Hit
from qa.ranking import default_ranker
from qa.retrieval import MODES

HIT_KS = (1, 3, 5, 10)


@dataclass(frozen=True)
class SquadQuestion:
    article: int
    question: str
    answers: tuple[str, ...]
    spans: tuple[tuple[int, int], ...] = ()
    """Where the gold answers are in the article's document text: ``(start, end)`` offsets."""


def load_squad(path: str | os.PathLike[str]) -> tuple[list[Document], list[SquadQuestion]]:
    """Each article as one document (paragraphs joined by blank lines) and every question with its answers."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{path} is not a SQuAD v1.1 JSON file ({error}); give dev-v1.1.json") from error
    documents, questions = [], []
    for number, article in enumerate(data):
        parts, offset = [], 0
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            stripped = context.strip()
            # answer_start counts from the paragraph as given; the document holds it stripped.
            shift = offset - (len(context) - len(context.lstrip()))
            for qa in paragraph["qas"]:
                answers = tuple(sorted({a["text"] for a in qa["answers"]}))
                spans = {(a["answer_start"] + shift, a["answer_start"] + shift + len(a["text"])) for a in qa["answers"]}
                questions.append(SquadQuestion(number, qa["question"], answers, tuple(sorted(spans))))
            parts.append(stripped)
            offset += len(stripped) + 2  # the blank line between paragraphs
        text = "\n\n".join(parts)
        documents.append(Document(id=article["title"], text=text, title=article["title"].replace("_", " ")))
    return documents, questions


def load_beir(
    folder: str | os.PathLike[str], split: str = "test"
) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    """A BEIR data set: documents, queries by id (those judged in ``split``), and relevance judgements."""
    queries, qrels = load_beir_queries(folder, split)
    return load_beir_corpus(folder), queries, qrels


def load_beir_queries(
    folder: str | os.PathLike[str], split: str = "test"
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """The queries judged in ``split``, by id, and their relevance judgements; checks the corpus is there."""
    folder = Path(folder)
    qrels_file = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_file):
        if not needed.is_file():
            raise ValueError(
                f"{needed} is missing: a BEIR folder has corpus.jsonl, queries.jsonl and qrels/{split}.tsv"
            )
    qrels: dict[str, dict[str, int]] = {}
    for row in qrels_file.read_text(encoding="utf-8").splitlines()[1:]:
        query_id, doc_id, score = row.split("\t")
        qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if str(record["_id"]) in qrels:
                queries[str(record["_id"])] = record["text"]
    return queries, qrels


def load_beir_corpus(folder: str | os.PathLike[str]) -> list[Document]:
    """A BEIR corpus (``corpus.jsonl``) as documents."""
    documents = []
    with open(Path(folder) / "corpus.jsonl", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            title = record.get("title") or ""
            documents.append(Document(id=str(record["_id"]), text=record.get("text") or title, title=title))
    return documents


def covers_answer(hit: Hit, spans: Sequence[tuple[int, int]]) -> bool:
    """Whether the hit's first highlighted sentence covers a gold answer at its place in the document."""
    if not hit.highlights:
        return False
    start, end = hit.highlights[0]
    return any(hit.start + start <= a and b <= hit.start + end for a, b in spans)


@dataclass
class _Ranks:
    """Where the first right answer was in each question's top 10: hit@k and MRR@10 of one criterion."""

    hits: dict[int, int] = field(default_factory=lambda: dict.fromkeys(HIT_KS, 0))
    reciprocal_ranks: float = 0.0

    def add(self, rank: int | None) -> None:
        if rank is not None:
            self.reciprocal_ranks += 1 / rank
            for k in HIT_KS:
                self.hits[k] += rank <= k


def _first(found: Sequence[bool]) -> int | None:
    return next((rank for rank, ok in enumerate(found[:10], 1) if ok), None)


@dataclass
class SquadScores:
    """Accumulates, over questions, the ranks at which answers were found, by four criteria.

    - passage (hit@k, MRR@10): a top-k passage contains a gold answer's words;
    - answer sentence (answer-sentence@k, sentence MRR@10): the first highlight of one of the top k hits
      covers a gold answer at its place in the document;
    - the same by containment: the highlighted sentence contains a gold answer's words;
    - highlight: of the first hits that contain the answer, how often their highlight does too.
    """

    passage: _Ranks = field(default_factory=_Ranks)
    sentence: _Ranks = field(default_factory=_Ranks)
    sentence_words: _Ranks = field(default_factory=_Ranks)
    highlight_hits: int = 0
    highlight_cases: int = 0
    questions: int = 0

    def add(self, hits: Sequence[Hit], question: SquadQuestion) -> None:
        self.questions += 1
        answers = question.answers
        self.passage.add(_first([any(a in hit.text for a in answers) for hit in hits]))
        self.sentence.add(_first([covers_answer(hit, question.spans) for hit in hits]))
        self.sentence_words.add(_first([any(a in hit.highlighted_text for a in answers) for hit in hits]))
        if hits and any(a in hits[0].text for a in answers):
            self.highlight_cases += 1
            self.highlight_hits += any(a in hits[0].highlighted_text for a in answers)

    def summary(self) -> dict[str, float]:
        n = max(self.questions, 1)
        return {
            **{f"hit@{k}": self.passage.hits[k] / n for k in HIT_KS},
            "mrr@10": self.passage.reciprocal_ranks / n,
            **{f"sentence@{k}": self.sentence.hits[k] / n for k in HIT_KS},
            "sentence_mrr@10": self.sentence.reciprocal_ranks / n,
            **{f"sentence_words@{k}": self.sentence_words.hits[k] / n for k in HIT_KS},
            "sentence_words_mrr@10": self.sentence_words.reciprocal_ranks / n,
            "highlight": self.highlight_hits / max(self.highlight_cases, 1),
            "questions": self.questions,
        }


CONFIDENCE_HITS = 5
"""The hits whose confidence is checked for calibration: those a reader sees by default."""


@dataclass
class ConfidenceRecord:
    """What calibration and "no answer here" are measured from, for one group of questions."""

    hits: list[tuple[float, bool]] = field(default_factory=list)
    """Each of the first hits' confidence, and whether it holds the answer's words."""
    answerable: list[float] = field(default_factory=list)
    """The first hit's confidence of each question asked of its own article."""
    unanswerable: list[float] = field(default_factory=list)
    """The first hit's confidence of each question asked of another article, which cannot answer it."""

    def summary(self, threshold: float) -> dict[str, Any]:
        return {
            **calibration(self.hits),
            "auroc": auroc(self.answerable, self.unanswerable),
            "threshold": threshold,
            "answerable_kept": float(np.mean([c >= threshold for c in self.answerable])) if self.answerable else 0.0,
            "unanswerable_flagged": float(np.mean([c < threshold for c in self.unanswerable]))
            if self.unanswerable
            else 0.0,
            "answerable": len(self.answerable),
            "unanswerable": len(self.unanswerable),
        }


def calibration(hits: Sequence[tuple[float, bool]], bins: int = 10) -> dict[str, Any]:
    """Expected calibration error, and the reliability diagram's bins: ``[low, high, hits, mean confidence,
    share holding the answer]``."""
    if not hits:
        return {"ece": 0.0, "bins": [], "hits": 0}
    confidence = np.array([c for c, _ in hits])
    right = np.array([r for _, r in hits], dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.minimum(np.digitize(confidence, edges[1:-1]), bins - 1)
    table, error = [], 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            mean, accuracy = float(confidence[inside].mean()), float(right[inside].mean())
            error += abs(mean - accuracy) * inside.sum() / len(hits)
            table.append([float(edges[b]), float(edges[b + 1]), int(inside.sum()), mean, accuracy])
    return {"ece": float(error), "bins": table, "hits": len(hits)}


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The probability that a random positive scores above a random negative (ties count half)."""
    if not positives or not negatives:
        return 0.0
    values = np.concatenate([positives, negatives])
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    wins = ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2
    return float(wins / (len(positives) * len(negatives)))


@dataclass(frozen=True)
class SquadEvaluation:
    """``qa eval --squad``'s results.

    Attributes:
        results: ``{setting: {mode: {metric: value}}}``; with ``split_at``, also ``"{setting}, articles A-B"``.
        confidence: Per group of questions (``""`` for all, and the halves with ``split_at``): calibration of
            hybrid hits' confidence, and how well the first hit's confidence tells questions an article
            answers from those it cannot (each question also asked of the next article's index).
    """

    results: dict[str, dict[str, dict[str, float]]]
    confidence: dict[str, dict[str, Any]]


def evaluate_squad(
    path: str | os.PathLike[str],
    *,
    modes: Sequence[str] = MODES,
    articles: slice = slice(None),
    max_questions: int | None = None,
    settings: Sequence[str] = ("per-article", "pooled"),
    split_at: int | None = None,
    build_options: dict[str, Any] | None = None,
    progress: bool | None = False,
) -> SquadEvaluation:
    """Answer-sentence@k, hit@k, MRR@10 and highlight rate per mode, with each article its own index and all
    in one; and, in hybrid mode, the calibration of confidence and the "no answer here" figures.

    Args:
        split_at: Also report the questions of articles before and from this article apart, e.g.
            24: tuning on the first half and reporting on the second keeps the figures honest.
    """
    documents, questions = load_squad(path)
    chosen = set(range(len(documents))[articles])
    documents = [d for i, d in enumerate(documents) if i in chosen]
    numbers = {number: position for position, number in enumerate(sorted(chosen))}
    questions = [q for q in questions if q.article in chosen][:max_questions]
    options = build_options or {}
    pooled = Index.build(documents, progress=progress, **options)
    pooled.encoder.warm_queries([q.question for q in questions])
    results: dict[str, dict[str, dict[str, float]]] = {}
    groups: dict[str, Any] = {"": lambda q: True}
    if split_at is not None:
        last = max(chosen)
        groups[f", articles {min(chosen)}-{split_at - 1}"] = lambda q: q.article < split_at
        groups[f", articles {split_at}-{last}"] = lambda q: q.article >= split_at
    runs: dict[str, Any] = {}
    if "per-article" in settings:
        per_article = {
            number: Index.build([documents[position]], previous=pooled, progress=False, **options)
            for number, position in numbers.items()
        }
        runs["per-article"] = lambda q: per_article[q.article]
    if "pooled" in settings:
        runs["pooled"] = lambda q: pooled
    records = {suffix: ConfidenceRecord() for suffix in groups}
    order = sorted(numbers)
    for setting, index_of in runs.items():
        scores = {(suffix, mode): SquadScores() for suffix in groups for mode in modes}
        seconds = dict.fromkeys(modes, 0.0)
        for question in questions:
            index: Index = index_of(question)
            for mode in modes:
                started = time.perf_counter()
                hits = index.search(question.question, 10, mode=mode)
                seconds[mode] += time.perf_counter() - started
                for suffix, belongs in groups.items():
                    if belongs(question):
                        scores[suffix, mode].add(hits, question)
                if setting == "per-article" and mode == "hybrid" and len(order) > 1:
                    other = per_article[order[(order.index(question.article) + 1) % len(order)]]
                    elsewhere = other.search(question.question, 1, mode=mode)[0].confidence or 0.0
                    for suffix, belongs in groups.items():
                        if belongs(question):
                            record = records[suffix]
                            record.hits += [
                                (hit.confidence or 0.0, any(a in hit.text for a in question.answers))
                                for hit in hits[:CONFIDENCE_HITS]
                            ]
                            record.answerable.append(hits[0].confidence or 0.0)
                            record.unanswerable.append(elsewhere)
        for suffix in groups:
            results[setting + suffix] = {
                mode: {**scores[suffix, mode].summary(), "ms_per_query": 1000 * seconds[mode] / max(len(questions), 1)}
                for mode in modes
            }
    threshold = default_ranker().no_answer_below
    confidence = {suffix: record.summary(threshold) for suffix, record in records.items() if record.answerable}
    return SquadEvaluation(results, confidence)


def ndcg_at_10(ranked: Sequence[str], relevant: dict[str, int]) -> float:
    gains = sum((2 ** relevant.get(doc, 0) - 1) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    best = sum((2**grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return gains / best if best else 0.0


def evaluate_beir(
    folder: str | os.PathLike[str],
    *,
    split: str = "test",
    modes: Sequence[str] = MODES,
    max_queries: int | None = None,
    max_documents: int | None = None,
    build_options: dict[str, Any] | None = None,
    progress: bool | None = False,
    index: Index | None = None,
) -> dict[str, dict[str, float]]:
    """nDCG@10 and recall@100 per mode; a document ranks where its best passage does.

    ``max_documents`` keeps a smaller corpus for a quick check: the documents judged for the chosen
    queries, then the first others up to that number. ``index``: one built already of the corpus
    (``build_beir_index``), e.g. to evaluate the train and the test queries on one build;
    ``max_documents`` and ``build_options`` then do nothing.
    """
    queries, qrels = load_beir_queries(folder, split)
    chosen = list(queries.items())[:max_queries]
    if index is None:
        documents = load_beir_corpus(folder)
        if max_documents is not None:
            judged = {doc for query_id, _ in chosen for doc in qrels[query_id]}
            others = [d for d in documents if d.id not in judged][: max(0, max_documents - len(judged))]
            documents = [d for d in documents if d.id in judged] + others
        index = Index.build(documents, progress=progress, **(build_options or {}))
    index.encoder.warm_queries([text for _, text in chosen])
    results = {}
    for mode in modes:
        ndcg = recall = 0.0
        for query_id, text in chosen:
            ranked: list[str] = []
            for hit in index.search(text, min(len(index), 300), mode=mode):
                if hit.doc_id not in ranked:
                    ranked.append(hit.doc_id)
            relevant = qrels[query_id]
            ndcg += ndcg_at_10(ranked, relevant)
            wanted = {d for d, grade in relevant.items() if grade > 0}
            recall += len(wanted & set(ranked[:100])) / max(len(wanted), 1)
        n = max(len(chosen), 1)
        results[mode] = {"ndcg@10": ndcg / n, "recall@100": recall / n, "queries": len(chosen)}
    return results


def build_beir_index(
    folder: str | os.PathLike[str], *, build_options: dict[str, Any] | None = None, progress: bool | None = False
) -> Index:
    """An index of a BEIR corpus, to evaluate several query splits on."""
    return Index.build(load_beir_corpus(folder), progress=progress, **(build_options or {}))


SQUAD_COLUMNS = (
    ("answer-sentence@1", "sentence@1"),
    ("@5", "sentence@5"),
    ("sentence MRR@10", "sentence_mrr@10"),
    ("by words@1", "sentence_words@1"),
    ("by words MRR@10", "sentence_words_mrr@10"),
    ("hit@1", "hit@1"),
    ("hit@5", "hit@5"),
    ("hit@10", "hit@10"),
    ("MRR@10", "mrr@10"),
    ("highlight", "highlight"),
)


def squad_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: answer-sentence@k exactly and by words, passage hit@k, MRR@10 and highlight rate."""
    header = ["setting", "mode", *(name for name, _ in SQUAD_COLUMNS), "questions"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for setting, by_mode in results.items():
        for mode, m in by_mode.items():
            cells = [f"{m[key]:.3f}" for _, key in SQUAD_COLUMNS]
            lines.append(f"| {setting} | {mode} | " + " | ".join(cells) + f" | {int(m['questions'])} |")
    return "\n".join(lines)


def beir_table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| mode | nDCG@10 | recall@100 | queries |", "|---|---|---|---|"]
    lines += [
        f"| {mode} | {m['ndcg@10']:.3f} | {m['recall@100']:.3f} | {int(m['queries'])} |" for mode, m in results.items()
    ]
    return "\n".join(lines)


REQA = (
    "ReQA (Ahmad et al. 2019), answer-sentence retrieval over SQuAD with USE-QA: R@1 0.439, MRR 0.539 on "
    "SQuAD train; the official evaluation script's example run on dev: R@1 0.515, MRR 0.625."
)


def reqa_comparison(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """qa's pooled answer-sentence figures (the ReQA setting: every article's sentences are candidates) beside ReQA's."""
    pooled = results.get("pooled", {})
    lines = [REQA]
    for mode, m in pooled.items():
        lines.append(
            f"qa, all articles in one index, {mode}: answer-sentence@1 {m['sentence@1']:.3f}, "
            f"sentence MRR@10 {m['sentence_mrr@10']:.3f}."
        )
    return "\n".join(lines)


def confidence_table(confidence: dict[str, dict[str, Any]]) -> str:
    """Markdown: calibration (ECE) of hybrid hits' confidence and the "no answer here" figures, per group."""
    lines = [
        "| questions | ECE (top 5 hits) | AUROC answerable vs not | threshold | answerable kept | unanswerable flagged |",
        "|---|---|---|---|---|---|",
    ]
    for suffix, c in confidence.items():
        lines.append(
            f"| {suffix.lstrip(', ') or 'all'} ({c['answerable']}) | {c['ece']:.3f} | {c['auroc']:.3f} | "
            f"{c['threshold']:.3f} | {c['answerable_kept']:.3f} | {c['unanswerable_flagged']:.3f} |"
        )
    return "\n".join(lines)


def plot_reliability(confidence: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """A PNG reliability diagram: per confidence bin, the share of hits that hold the answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    bins = confidence["bins"]
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    axis.plot([b[3] for b in bins], [b[4] for b in bins], "o-", label=f"qa hybrid (ECE {confidence['ece']:.3f})")
    axis.set_xlabel("confidence")
    axis.set_ylabel("share of hits holding the answer")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_hits(results: dict[str, dict[str, dict[str, float]]], path: str | os.PathLike[str]) -> None:
    """A PNG of hit@k against k, one line per mode and setting."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ValueError("plotting needs matplotlib: pip install matplotlib (or qa[eval])") from error
    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for setting, by_mode in results.items():
        for mode, metrics in by_mode.items():
            if ", articles" in setting:
                continue
            style = "-" if setting == "per-article" else "--"
            axis.plot(HIT_KS, [metrics[f"hit@{k}"] for k in HIT_KS], style, marker="o", label=f"{mode} ({setting})")
    axis.set_xlabel("k")
    axis.set_ylabel("hit@k (a top-k passage holds the answer)")
    axis.set_xticks(HIT_KS)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
