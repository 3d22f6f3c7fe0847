"""Train the answer-sentence ranker and the confidence qa ships: ``python -m bench.train_ranker``.

Trained on the tuning half of SQuAD dev (articles 0-23; the other half is what ``qa eval`` reports):
each article its own index and all 24 in one, and for "no answer here", each question asked of another
article's index, which cannot answer it. ``--beir-weight W`` also fits the sentence model on SciFact's
train claims (a sentence of a relevant abstract is a right one); measured by ``bench.ranker_scifact``, it
did not help, so qa's ranker is SQuAD's alone. It writes ``qa/ranker.json`` and prints what it fitted.

1. The evidence of every question's candidate sentences (``bench.answer_study dump``, kept in ``--work``).
2. Sentences: a conditional logit (softmax over a question's candidate sentences, maximising the
   probability of the sentences that answer), so the sentence a reader is shown first is the target.
3. Confidence: logistic regression on each top-5 hit's evidence, whether its passage holds the answer,
   over answerable and unanswerable questions alike.
4. The "no answer here" threshold: the highest that keeps 99% of answerable questions' first hits shown
   without the flag. SQuAD's questions were written looking at their paragraph and share its words;
   questions people type share fewer (the bundled article's reader questions are paraphrases, and
   their confidences run lower), so the threshold leaves room below what SQuAD needs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from bench.common import REPO, SCIFACT, default_workdir
from qa.evaluation import ndcg_at_10
from qa.ranking import FEATURES, HIT_FEATURES, LinearModel, Ranker

SENTENCE_FEATURES = (
    "fused",
    "sentence_cosine",
    "sentence_bm25",
    "coverage",
    "window_coverage",
    "answer_type",
    "novelty",
    "length",
)
"""The evidence the sentence model weighs: of the candidates ``bench.ranker_ablation`` measures, those whose
removal cost the held-out half (the neighbours' cosines and the passage's own scores and rank did not)."""
CONFIDENCE_FEATURES = (
    "raw_sentence_cosine",
    "raw_window_cosine",
    "raw_passage_cosine",
    "coverage",
    "window_coverage",
    "answer_type",
    "score",
    "margin",
    "hit_rank",
)
HITS = 5
"""Hits per question the confidence learns from."""
BEIR_WEIGHT = 0.0
"""The BEIR train queries' share of the sentence model's loss, against SQuAD's 1. None: learning from SciFact's
train claims lowered their own nDCG@10 and SQuAD's held-out answer sentence (``python -m bench.ranker_scifact``)."""
KEEP_ANSWERED = 0.99
"""The threshold keeps this share of the tuning half's answerable questions' first hits shown."""


def groups(question: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` of each question's rows (rows are grouped by question)."""
    starts = np.flatnonzero(np.r_[True, question[1:] != question[:-1]])
    return list(zip(starts.tolist(), np.r_[starts[1:], len(question)].tolist(), strict=True))


def fit_listwise(
    x: np.ndarray, question: np.ndarray, positive: np.ndarray, l2: float, weight: np.ndarray | None = None
) -> np.ndarray:
    """Weights maximising, summed over questions, log P(an answering sentence) under a softmax of ``x @ w``;
    ``weight`` (per row, the same within a question) weighs each question's term."""
    kept = [(a, b) for a, b in groups(question) if positive[a:b].any()]
    index = np.concatenate([np.arange(a, b) for a, b in kept])
    starts = np.r_[0, np.cumsum([b - a for a, b in kept])[:-1]]
    segment = np.repeat(np.arange(len(kept)), [b - a for a, b in kept])
    features, wanted = x[index].astype(np.float64), positive[index]
    share = np.ones(len(kept)) if weight is None else np.asarray([weight[a] for a, _ in kept], dtype=np.float64)
    mass = float(share.sum())

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = features @ w
        s -= np.maximum.reduceat(s, starts)[segment]
        e = np.exp(s)
        total, good = np.add.reduceat(e, starts), np.add.reduceat(np.where(wanted, e, 0.0), starts)
        value = -(share * (np.log(good) - np.log(total))).sum() + l2 * mass * (w @ w)
        gradient = features.T @ (share[segment] * (e / total[segment] - np.where(wanted, e, 0.0) / good[segment]))
        return float(value), gradient + 2 * l2 * mass * w

    return np.asarray(minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weights and bias of a logistic regression of ``y`` on ``x``."""
    design = np.column_stack([x.astype(np.float64), np.ones(len(x))])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ w
        p = 1 / (1 + np.exp(-z))
        value = np.logaddexp(0, z).sum() - (y * z).sum() + l2 * len(x) * (w[:-1] @ w[:-1])
        gradient = design.T @ (p - y)
        gradient[:-1] += 2 * l2 * len(x) * w[:-1]
        return float(value), gradient

    w = np.asarray(minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B").x)
    return w[:-1], float(w[-1])


def hits_of(dump: dict[str, np.ndarray], model: LinearModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per question, its first ``HITS`` hits as the model ranks them: their evidence (``HIT_FEATURES``), whether
    each holds the answer, and the question's number."""
    scores = model.apply(dump["matrix"])
    rows, labels, numbers = [], [], []
    for a, b in groups(dump["question"]):
        owner = dump["owner"][a:b]
        passages = np.unique(owner)
        best = {int(p): a + int(np.flatnonzero(owner == p)[np.argmax(scores[a:b][owner == p])]) for p in passages}
        ranked = sorted(best, key=lambda p: -scores[best[p]])[:HITS]  # as a search ranks them
        chosen = np.array([best[p] for p in ranked])
        hit_scores = scores[chosen]
        margin = np.where(
            np.arange(len(chosen)) == 0,
            hit_scores[0] - (hit_scores[1] if len(chosen) > 1 else hit_scores[0] - 1),
            hit_scores - hit_scores[0],
        )
        rows.append(np.column_stack([dump["matrix"][chosen], hit_scores, margin, 1.0 / np.arange(1, len(chosen) + 1)]))
        labels.append(dump["passage_words"][chosen])
        numbers.append(np.full(len(chosen), dump["question"][a]))
    return np.concatenate(rows), np.concatenate(labels), np.concatenate(numbers)


def beir_ndcg(dump: dict[str, np.ndarray], scores: np.ndarray) -> float:
    """Mean nDCG@10 of a BEIR dump's queries when the candidates rank by their best sentence's score (and a
    document where its best passage does), the fusion's order after them, as ``qa eval --beir`` ranks."""
    total = 0.0
    spans = groups(dump["question"])
    for number, (a, b) in enumerate(spans):
        owner, document = dump["owner"][a:b], dump["document"][a:b]
        best: dict[int, float] = {}
        for o, score in zip(owner.tolist(), scores[a:b].tolist(), strict=True):
            best[o] = max(best.get(o, -np.inf), score)
        doc_of = {int(o): int(d) for o, d in zip(owner.tolist(), document.tolist(), strict=True)}
        ranked = list(dict.fromkeys(doc_of[o] for o in sorted(best, key=lambda o: -best[o])))
        ranked += [int(d) for d in dump["tail"][int(dump["question"][a])] if d >= 0 and int(d) not in ranked]
        total += ndcg_at_10([str(dump["documents"][d]) for d in ranked], json.loads(str(dump["judged"][number])))
    return total / max(len(spans), 1)


def _beir_dump(work: Path, beir: Path, split: str) -> dict[str, np.ndarray]:
    path = work / f"beir-{beir.name}-{split}.npz"
    if not path.exists():
        command = [sys.executable, "-m", "bench.answer_study", "dump-beir", "--beir", str(beir), "--split", split,
                   "--cache", str(work / "indexes"), "-o", str(path)]  # fmt: skip
        print("running", " ".join(command[1:]), file=sys.stderr)
        subprocess.run(command, check=True, cwd=REPO)
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _dump(work: Path, setting: str, articles: str, foreign: bool) -> dict[str, np.ndarray]:
    name = f"{setting}{'-foreign' if foreign else ''}-{articles.replace(':', '-')}.npz"
    path = work / name
    if not path.exists():
        command = [sys.executable, "-m", "bench.answer_study", "dump", "--articles", articles, "--setting", setting,
                   "--cache", str(work / "indexes"), "-o", str(path), *(["--foreign"] if foreign else [])]  # fmt: skip
        print("running", " ".join(command[1:]), file=sys.stderr)
        subprocess.run(command, check=True, cwd=REPO)
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def fit_sentences(
    dumps: list[dict[str, np.ndarray]], beir: dict[str, np.ndarray] | None, beir_weight: float, l2: float
) -> LinearModel:
    """The sentence model, fitted on SQuAD dumps (their answering sentences), and, if given, a BEIR dump (the
    sentences of relevant documents) weighing ``beir_weight`` in all against SQuAD's questions' 1."""
    for dump in (*dumps, *([beir] if beir is not None else [])):
        assert tuple(dump["features"]) == FEATURES, "the dumps are of other evidence: delete them and run again"
    columns = [FEATURES.index(name) for name in SENTENCE_FEATURES]
    parts = [(d["matrix"][:, columns], d["question"], d["sentence_exact"]) for d in dumps]
    squad_questions = sum(int(d["question"].max()) + 1 for d in dumps)
    weight_of = [1.0] * len(dumps)
    if beir is not None and beir_weight > 0:
        parts.append((beir["matrix"][:, columns], beir["question"], beir["relevant"]))
        weight_of.append(beir_weight * squad_questions / (int(beir["question"].max()) + 1))
    offset, questions, weight = 0, [], []
    for (_, question, _), share in zip(parts, weight_of, strict=True):
        questions.append(question + offset)
        weight.append(np.full(len(question), share))
        offset += int(question.max()) + 1
    x = np.concatenate([p[0] for p in parts])
    positive = np.concatenate([p[2] for p in parts])
    return LinearModel(
        SENTENCE_FEATURES, fit_listwise(x, np.concatenate(questions), positive, l2, np.concatenate(weight))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_ranker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=default_workdir() / "ranker", help="for the dumps and indexes")
    parser.add_argument("--articles", default="0:24", help="the SQuAD dev articles to train on (the tuning half)")
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--beir", type=Path, default=SCIFACT.parent, help="a BEIR collection whose train queries "
                        "the sentence model also learns from (default SciFact)")  # fmt: skip
    parser.add_argument("--beir-weight", type=float, default=BEIR_WEIGHT,
                        help=f"their share of the sentence model's loss, against SQuAD's 1 (default {BEIR_WEIGHT}; 0: SQuAD only)")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, default=REPO / "qa" / "ranker.json")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    dumps = [_dump(args.work, setting, args.articles, False) for setting in ("per-article", "pooled")]
    beir = _beir_dump(args.work, args.beir, "train") if args.beir_weight > 0 else None
    sentences = fit_sentences(dumps, beir, args.beir_weight, args.l2)
    if beir is not None:
        print(
            f"{args.beir.name} train nDCG@10 (candidates as ranked): {beir_ndcg(beir, sentences.apply(beir['matrix'])):.4f}"
        )
    top = 20
    foreign = _dump(args.work, "per-article", args.articles, True)
    parts = [hits_of(d, sentences) for d in (*dumps, foreign)]
    hx = np.concatenate([p[0] for p in parts])
    hy = np.concatenate([p[1] for p in parts]).astype(np.float64)
    hit_columns = [HIT_FEATURES.index(name) for name in CONFIDENCE_FEATURES]
    cw, cb = fit_logistic(hx[:, hit_columns], hy, args.l2)
    confidence = LinearModel(CONFIDENCE_FEATURES, cw, cb)
    # The threshold: a low percentile of the confidence of answerable questions' first hits (per article).
    first = hits_of(dumps[0], sentences)
    firsts = first[0][np.r_[True, first[2][1:] != first[2][:-1]]]
    sure = 1 / (1 + np.exp(-confidence.apply(firsts, HIT_FEATURES)))
    threshold = float(np.quantile(sure, 1 - KEEP_ANSWERED))
    ranker = Ranker(sentences, confidence, top=top, around=5, no_answer_below=round(threshold, 4),
                    trained_on=f"SQuAD v1.1 dev articles {args.articles}, per article and pooled, and asked of other articles"
                    + (f"; sentences also on {args.beir.name} train queries (weight {args.beir_weight})" if beir else ""))  # fmt: skip
    args.output.write_text(json.dumps(ranker.to_json(), indent=1) + "\n", encoding="utf-8")
    for name, w in zip(SENTENCE_FEATURES, sentences.weights, strict=True):
        print(f"sentence  {name:20s} {w:+.4f}")
    for name, w in zip(CONFIDENCE_FEATURES, cw, strict=True):
        print(f"confidence {name:19s} {w:+.4f}")
    print(f"confidence bias {cb:+.4f}; no answer below {threshold:.4f}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
