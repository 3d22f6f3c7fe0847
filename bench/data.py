"""The measured collections: SQuAD v1.1 dev, SciFact grown to a size, and seeded synthetic vectors."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import SCIFACT, SQUAD
from qa.documents import Document


@dataclass(frozen=True)
class Question:
    """A SQuAD question, with where in its article (document) its first answer starts."""

    text: str
    doc_id: str
    answer_offset: int


def squad(path: Path = SQUAD) -> tuple[list[Document], list[Question]]:
    """Each SQuAD article as one document (paragraphs joined by a blank line) and every question."""
    articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    documents: list[Document] = []
    questions: list[Question] = []
    for article in articles:
        doc_id = article["title"]
        offset = 0
        contexts = []
        for paragraph in article["paragraphs"]:
            contexts.append(paragraph["context"])
            for qa in paragraph["qas"]:
                start = int(qa["answers"][0]["answer_start"]) if qa["answers"] else 0
                questions.append(Question(qa["question"], doc_id, offset + start))
            offset += len(paragraph["context"]) + 2  # the "\n\n" that joins paragraphs
        documents.append(Document(doc_id, "\n\n".join(contexts), doc_id.replace("_", " ")))
    return documents, questions


def sample(questions: list[Question], count: int, seed: int = 0) -> list[Question]:
    """``count`` questions drawn without replacement, the same ones every run."""
    order = np.random.default_rng(seed).permutation(len(questions))[:count]
    return [questions[i] for i in order]


_SENTENCE_START = re.compile(r"(?:^|(?<=[.!?]\s))(\S+)")


def variant(text: str, copy: int) -> str:
    """``text`` with a marker word after the first word of each sentence, unique to ``copy``.

    Copies of a corpus must not repeat any sentence: a build embeds each distinct text once, so
    verbatim copies would cost one copy's embedding and memory, not that of a corpus their size.
    The marker adds about one token per sentence; the sentences keep their lengths and words.
    """
    if copy == 0:
        return text
    return _SENTENCE_START.sub(lambda m: f"{m.group(1)} v{copy}", text)


def scifact(documents: int, path: Path = SCIFACT) -> list[Document]:
    """``documents`` SciFact abstracts: the corpus, then copies of it with distinct sentences and ids."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [r for r in records if r["text"].strip()]
    chosen: list[Document] = []
    copy = 0
    while len(chosen) < documents:
        for record in records[: documents - len(chosen)]:
            chosen.append(Document(f"{record['_id']}~{copy}", variant(record["text"], copy), record["title"]))
        copy += 1
    return chosen


# ----------------------------------------------------------------------------------------- synthetic

# The generator is calibrated on real all-MiniLM-L6-v2 passage vectors (the 3,560 passages of SQuAD
# dev): their principal components' variances fall off about as 1/rank, and a held-out passage's
# cosine to its 1st / 10th nearest neighbour and to a random passage averages 0.70 / 0.55 / 0.02; these
# settings give 0.72 / 0.55 / 0.02 at that size (the index-types section prints both). Uniform random
# unit vectors would make every neighbour nearly equidistant, which no embedding model produces.
SPECTRUM_EXPONENT = 0.5  # standard deviation of the k-th direction ~ k^-0.5, so variance ~ 1/k
CALIBRATION_SIZE = 3_560
TOPICS = 51  # at the calibration size: about SQuAD's 48 articles
SUBTOPICS = 445  # close paraphrases within a topic: what makes the nearest neighbour stand out
GROWTH = 0.5
"""Topics and subtopics grow as ``count ** GROWTH``. Real neighbours get closer as a collection grows
(on SQuAD, whose topics are fixed, the nearest neighbour's cosine rises from 0.59 at 400 passages to
0.71 at 3,260); a corpus that grows by new documents also gains topics. The square root sits between
fixed topics (0) and fixed density (1); the section prints the synthetic profile at each size."""
SUBTOPIC_SPREAD = 0.9
NOISE = 0.8
COMMON_DIRECTION = 0.15  # embeddings share a mean direction; it sets the cosine of unrelated texts
SUBTOPIC_SKEW = 0.3  # Zipf exponent of subtopic sizes


def clustered_vectors(count: int, queries: int, dim: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` database and ``queries`` query unit vectors from one seeded clustered distribution.

    Topics hold subtopics hold points; every offset is drawn from the same anisotropic Gaussian (a
    decaying spectrum in a random orientation), as real text embeddings spread. Queries are fresh draws
    from the same distribution, not copies of database points.
    """
    rng = np.random.default_rng(seed)
    scales = np.arange(1, dim + 1, dtype=np.float64) ** -SPECTRUM_EXPONENT
    scales = (scales / np.linalg.norm(scales)).astype(np.float32)  # offsets of unit length on average
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)

    def offsets(n: int) -> np.ndarray:
        return np.asarray((rng.standard_normal((n, dim), dtype=np.float32) * scales) @ rotation)

    def unit(x: np.ndarray) -> np.ndarray:
        return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)

    common = unit(rng.standard_normal((1, dim)).astype(np.float32))[0] * COMMON_DIRECTION
    growth = (count / CALIBRATION_SIZE) ** GROWTH
    topics = unit(offsets(max(8, round(TOPICS * growth))))
    subtopic_count = max(len(topics), round(SUBTOPICS * growth))
    subtopics = unit(topics[rng.integers(0, len(topics), subtopic_count)] + SUBTOPIC_SPREAD * offsets(subtopic_count))
    weights = 1.0 / np.arange(1, subtopic_count + 1) ** SUBTOPIC_SKEW
    weights = rng.permutation(weights / weights.sum())

    def draw(n: int) -> np.ndarray:
        out = np.empty((n, dim), dtype=np.float32)
        for begin in range(0, n, 65_536):  # in blocks: 1M points need no 1M-row temporaries
            size = min(65_536, n - begin)
            chosen = rng.choice(subtopic_count, size=size, p=weights)
            out[begin : begin + size] = unit(common + subtopics[chosen] + NOISE * offsets(size))
        return out

    return draw(count), draw(queries)
