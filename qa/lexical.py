"""The BM25 index beside the dense one: bm25s with English stemming and stop words.

Besides bm25s's score matrix, the index keeps how often each word occurs in each passage. BM25 scores
depend on the whole collection (word rarity, mean passage length), so changing one document changes
every score; from the kept counts a rebuild recomputes them all in well under a second, tokenizing only
the new passages, where bm25s would tokenize and count the whole collection again.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.rows import RowMap

# The tokenisation is part of the index format: a query must be cut as the passages were.
TOKEN_PATTERN = r"(?u)\b\w+\b"
TOKENIZATION = {"lower": True, "stopwords": "en_plus", "stemmer": "english", "token_pattern": TOKEN_PATTERN}
BM25_K1 = 1.2
BM25_B = 0.75
BM25_PARAMS = {"k1": BM25_K1, "b": BM25_B, "method": "lucene"}


_WORD = re.compile(TOKEN_PATTERN)
SCORE_SLICE = 1 << 20
"""Entries of the score matrix computed at once: 8 MB per float64 temporary, where all at once had made
BM25 the peak of a large build's memory."""


def lexical_text(text: str, acronyms: Mapping[str, str]) -> str:
    """What BM25 counts: the text, plus the long form of each acronym it uses ("NPT" also counts as "treaty")."""
    extra = [long for short, long in acronyms.items() if long not in text and re.search(rf"\b{short}\b", text)]
    return " ".join([text, *extra])


_stemmers = threading.local()  # a PyStemmer stemmer keeps state: one per thread


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


def _stem_words(words: list[str]) -> list[str]:
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        import Stemmer

        stemmer = _stemmers.english = Stemmer.Stemmer("english")
    stemmed: list[str] = stemmer.stemWords(words)
    return stemmed


def tokenize(texts: Iterable[str]) -> list[list[str]]:
    """Lower-case, split into words, drop English stop words, stem: what BM25 counts.

    The same tokens as ``bm25s.tokenize`` with ``TOKENIZATION`` (a test holds them equal), without its
    per-call vocabulary: a search tokenizes the question and each hit's sentences, and this is about
    three times faster there. Each distinct word is stemmed once per call, which makes a collection's
    tokens half again as fast as stemming text by text.
    """
    return list(_token_lists(texts))


def _token_lists(texts: Iterable[str]) -> Iterator[list[str]]:
    stopwords = _stopwords()
    stems: dict[str, str] = {}
    for text in texts:
        words = [w for w in _WORD.findall(text.lower()) if w not in stopwords]
        if new := [w for w in dict.fromkeys(words) if w not in stems]:
            stems.update(zip(new, _stem_words(new), strict=True))
        yield [stems[w] for w in words]


@dataclass(frozen=True)
class TermCounts:
    """How often each word occurs in each passage: a sparse passages × vocabulary matrix, row by row.

    Passage ``i``'s words are ``ids[indptr[i]:indptr[i + 1]]`` (positions in the vocabulary), each
    occurring ``counts[...]`` times.
    """

    indptr: np.ndarray  # int64, one more than there are passages
    ids: np.ndarray  # int32
    counts: np.ndarray  # int32

    @property
    def passages(self) -> int:
        return len(self.indptr) - 1


def count_terms(texts: Iterable[str], vocabulary: dict[str, int]) -> TermCounts:
    """Count the words of each text; a word new to ``vocabulary`` is added to it, at the end."""
    from array import array
    from collections import Counter

    indptr, ids, counts = array("q", [0]), array("i"), array("i")
    for tokens in _token_lists(texts):  # one text's tokens at a time: a generator of texts stays one
        for word, count in Counter(tokens).items():
            ids.append(vocabulary.setdefault(word, len(vocabulary)))
            counts.append(count)
        indptr.append(len(ids))
    return TermCounts(np.frombuffer(indptr, np.int64), np.frombuffer(ids, np.int32), np.frombuffer(counts, np.int32))


def bm25_matrix(terms: TermCounts, vocabulary_size: int, *, score_slice: int = SCORE_SLICE) -> dict[str, Any]:
    """bm25s's score matrix (``BM25.scores``: words × passages, compressed by word) for these counts.

    Lucene's BM25, as ``bm25s.BM25(method="lucene")`` computes it (a test holds them equal), in a few
    vectorised passes instead of a Python loop over passages.
    """
    import scipy.sparse

    passages = terms.passages
    per_passage = np.diff(terms.indptr)
    lengths = np.zeros(passages, dtype=np.float64)
    if len(terms.counts):
        lengths[per_passage > 0] = np.add.reduceat(terms.counts, terms.indptr[:-1][per_passage > 0])
    average = float(lengths.mean()) if passages else 0.0
    average = average or 1.0  # no word anywhere: there is no score to normalise
    frequency = np.bincount(terms.ids, minlength=vocabulary_size)
    # The same precision as bm25s: idf rounded to float32, the rest in float64, scores rounded at the end.
    idf = np.log(1 + (passages - frequency + 0.5) / (frequency + 0.5)).astype(np.float32)
    passage_norms = BM25_K1 * ((1 - BM25_B) + BM25_B * lengths / average)
    scores = np.empty(len(terms.ids), dtype=np.float32)
    # In slices: float64 temporaries of every entry at once would be the peak of a large build.
    for start in range(0, len(scores), score_slice):
        stop = min(start + score_slice, len(scores))
        rows = np.searchsorted(terms.indptr, np.arange(start, stop), side="right") - 1
        counts = terms.counts[start:stop].astype(np.float32)
        scores[start:stop] = idf[terms.ids[start:stop]] * (counts / (passage_norms[rows] + counts))
    by_word = scipy.sparse.csr_matrix((scores, terms.ids, terms.indptr), shape=(passages, vocabulary_size)).tocsc()
    by_word.sort_indices()
    return {
        "data": by_word.data.astype(np.float32, copy=False),
        "indices": by_word.indices.astype(np.int32, copy=False),
        "indptr": by_word.indptr,
        "num_docs": passages,
    }


@dataclass(frozen=True)
class QueryTerms:
    """A question's words that the index knows, stemmed, and their idf.

    ``words`` keeps repeats: ranking counts a repeated word again (as Lucene does); a sentence's
    score for the highlight counts each word once.
    """

    words: tuple[str, ...]
    idf: dict[str, float]


class LexicalIndex:
    """BM25 scores of every passage for a question, and the words of every sentence.

    The sentences' word counts (in the passages' vocabulary) let a search weigh a candidate sentence's
    words without tokenizing it again; an index saved before qa kept them has none.
    """

    def __init__(self, bm25: Any, term_counts: TermCounts | None, sentence_counts: TermCounts | None = None) -> None:
        self._bm25 = bm25
        self._term_counts = term_counts  # None in an index saved before qa kept them
        self._sentence_counts = sentence_counts
        self._sentence_mean_length: float | None = None

    @classmethod
    def build(
        cls, texts: Iterable[str], *, sentence_texts: Iterable[str] | None = None, score_slice: int = SCORE_SLICE
    ) -> LexicalIndex:
        """Index ``texts``, one passage each (a generator stays one: each text is counted and dropped).

        Args:
            sentence_texts: Every passage's sentences, passage by passage, to keep their word counts.
            score_slice: How many entries of the score matrix are computed at once (memory, not results).
        """
        vocabulary: dict[str, int] = {}
        counts = count_terms(texts, vocabulary)
        sentences = count_terms(sentence_texts, vocabulary) if sentence_texts is not None else None
        return cls._from_counts(counts, vocabulary, sentences, score_slice)

    def updated(
        self,
        rows: RowMap,
        new_texts: Iterable[str],
        *,
        sentence_rows: RowMap | None = None,
        new_sentence_texts: Iterable[str] = (),
    ) -> LexicalIndex:
        """A new index of the same collection changed: the passages ``rows`` keeps are this index's, and
        the others, in order, are ``new_texts``. Only those are tokenized. Likewise the sentences: those
        ``sentence_rows`` keeps, and ``new_sentence_texts`` (sentence counts are kept only when both this
        index has them and ``sentence_rows`` is given).

        Raises:
            ValueError: This index was saved without its word counts (by an earlier qa); build anew.
        """
        if self._term_counts is None:
            raise ValueError("this BM25 index keeps no word counts to update from; build it anew")
        vocabulary = dict(self._bm25.vocab_dict)
        counts = _rearranged(self._term_counts, count_terms(new_texts, vocabulary), rows, len(vocabulary), "passages")
        sentences = None
        if sentence_rows is not None:
            new_sentences = count_terms(new_sentence_texts, vocabulary)
            if self._sentence_counts is not None:
                sentences = _rearranged(
                    self._sentence_counts, new_sentences, sentence_rows, len(vocabulary), "sentences"
                )
            elif not len(sentence_rows.new):  # none kept: every sentence was counted anew
                sentences = new_sentences
        return self._from_counts(*_without_unused_words(counts, vocabulary, sentences))

    @classmethod
    def _from_counts(
        cls,
        terms: TermCounts,
        vocabulary: dict[str, int],
        sentences: TermCounts | None = None,
        score_slice: int = SCORE_SLICE,
    ) -> LexicalIndex:
        import bm25s

        bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
        bm25.scores = bm25_matrix(terms, len(vocabulary), score_slice=score_slice)
        bm25.vocab_dict = vocabulary
        bm25.unique_token_ids_set = set(vocabulary.values())
        bm25.nonoccurrence_array = None  # what bm25s sets for Lucene scoring
        return cls(bm25, terms, sentences)

    @property
    def has_sentence_counts(self) -> bool:
        return self._sentence_counts is not None

    def sentence_words(self, rows: np.ndarray) -> TermCounts:
        """The word counts of these sentences (rows of the index's sentences), in the order given.

        Raises:
            ValueError: The index keeps no sentence counts (saved by an earlier qa).
        """
        if self._sentence_counts is None:
            raise ValueError("this BM25 index keeps no sentence word counts; rebuild it")
        counts = self._sentence_counts
        starts, ends = counts.indptr[rows], counts.indptr[rows + 1]
        lengths = (ends - starts).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        take = np.repeat(starts - indptr[:-1], lengths) + np.arange(int(indptr[-1]))
        return TermCounts(indptr, np.asarray(counts.ids[take]), np.asarray(counts.counts[take]))

    @property
    def sentence_mean_length(self) -> float:
        """The mean number of counted words in a sentence (BM25's length normalisation for sentences)."""
        if self._sentence_mean_length is None:
            counts = self._sentence_counts
            if counts is None or counts.passages == 0:
                self._sentence_mean_length = 1.0
            else:
                self._sentence_mean_length = max(float(np.sum(counts.counts, dtype=np.int64)) / counts.passages, 1.0)
        return self._sentence_mean_length

    @property
    def has_term_counts(self) -> bool:
        """Whether :meth:`updated` can work: the index keeps its word counts (those saved by qa before it did not)."""
        return self._term_counts is not None

    @property
    def count(self) -> int:
        return int(self._bm25.scores["num_docs"])

    @property
    def vocabulary(self) -> Mapping[str, int]:
        """The words (stemmed, as counted) the passages hold, each with its column in the score matrix."""
        vocabulary: Mapping[str, int] = self._bm25.vocab_dict
        return vocabulary

    def terms(self, question: str) -> QueryTerms:
        """The question's words as BM25 counts them: those the index knows, with their weights (idf)."""
        vocab = self._bm25.vocab_dict
        indptr = self._bm25.scores["indptr"]
        words = tuple(w for w in tokenize([question])[0] if w in vocab)
        idf = {}
        for word in words:
            frequency = int(indptr[vocab[word] + 1] - indptr[vocab[word]])
            idf[word] = float(np.log(1 + (self.count - frequency + 0.5) / (frequency + 0.5)))
        return QueryTerms(words, idf)

    def scores(self, terms: QueryTerms) -> np.ndarray:
        """BM25 score of each passage, in passage order (zeros when no word of the question is known)."""
        if not terms.words:
            return np.zeros(self.count, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(list(terms.words)), dtype=np.float32)

    def text_scores(self, terms: QueryTerms, texts: Sequence[str]) -> np.ndarray:
        """BM25 of a few short texts (a passage's sentences), with the index's word weights."""
        scores = np.zeros(len(texts), dtype=np.float32)
        if not terms.words or not texts:
            return scores
        tokenized = tokenize(texts)
        average = max(sum(map(len, tokenized)) / len(tokenized), 1.0)
        k1, b = BM25_K1, BM25_B
        for i, tokens in enumerate(tokenized):
            norm = k1 * (1 - b + b * len(tokens) / average)
            for word, idf in terms.idf.items():
                if tf := tokens.count(word):
                    scores[i] += idf * tf * (k1 + 1) / (tf + norm)
        return scores

    def save(self, folder: Path) -> None:
        self._bm25.save(str(folder), show_progress=False)
        for prefix, counts in (("", self._term_counts), (SENTENCE_PREFIX, self._sentence_counts)):
            if counts is not None:
                for name in TERM_COUNT_FILES:
                    np.save(folder / f"{prefix}{name}.npy", getattr(counts, name), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        import bm25s

        bm25 = bm25s.BM25.load(str(folder), mmap=False, allow_pickle=False, show_progress=False)
        term_counts = _load_counts(folder, "")
        if term_counts is not None and term_counts.passages != int(bm25.scores["num_docs"]):
            raise ValueError(f"the word counts in {folder} are of another collection than its BM25 scores")
        return cls(bm25, term_counts, _load_counts(folder, SENTENCE_PREFIX))


TERM_COUNT_FILES = ("indptr", "ids", "counts")
SENTENCE_PREFIX = "sentence_"
"""The sentences' word counts are saved as ``sentence_indptr.npy`` and so on."""


def _load_counts(folder: Path, prefix: str) -> TermCounts | None:
    """Word counts saved in ``folder`` (mapped, not read: a search reads only its candidates')."""
    if not all((folder / f"{prefix}{name}.npy").is_file() for name in TERM_COUNT_FILES):
        return None
    arrays = {
        name: np.load(folder / f"{prefix}{name}.npy", mmap_mode="r", allow_pickle=False) for name in TERM_COUNT_FILES
    }
    counts = TermCounts(**arrays)
    if not (len(counts.ids) == len(counts.counts) == int(counts.indptr[-1])):
        raise ValueError(f"the word counts in {folder} are damaged")
    return counts


def _rearranged(old: TermCounts, new: TermCounts, rows: RowMap, vocabulary_size: int, what: str) -> TermCounts:
    """Counts of a changed collection: the rows ``rows`` keeps from ``old``, the others from ``new``, in order."""
    import scipy.sparse

    added = rows.added
    if len(added) != new.passages:
        raise ValueError(f"{len(added)} {what} are new but {new.passages} texts were given")
    order = np.empty(rows.count, dtype=np.int64)  # the row of each one among old and new counts
    order[rows.new] = rows.old
    order[added] = old.passages + np.arange(new.passages)
    both = scipy.sparse.csr_matrix(
        (
            np.concatenate([old.counts, new.counts]),
            np.concatenate([old.ids, new.ids]),
            np.concatenate([old.indptr, new.indptr[1:] + old.indptr[-1]]),
        ),
        shape=(old.passages + new.passages, vocabulary_size),
    )[order]
    return TermCounts(both.indptr.astype(np.int64), both.indices.astype(np.int32), both.data.astype(np.int32))


def _without_unused_words(
    terms: TermCounts, vocabulary: dict[str, int], sentences: TermCounts | None = None
) -> tuple[TermCounts, dict[str, int], TermCounts | None]:
    """Drop the words no passage has any more, as a build of the same passages would not know them.

    A sentence's words are its passage's, so the sentences' counts are renumbered alike.
    """
    used = np.bincount(terms.ids, minlength=len(vocabulary)) > 0
    if used.all():
        return terms, vocabulary, sentences
    new_ids = np.cumsum(used) - 1
    words = [word for word, _ in sorted(vocabulary.items(), key=lambda item: item[1])]
    kept = {word: int(new_ids[i]) for i, word in enumerate(words) if used[i]}
    renumbered = TermCounts(terms.indptr, new_ids[terms.ids].astype(np.int32), terms.counts)
    if sentences is not None:
        sentences = TermCounts(sentences.indptr, new_ids[sentences.ids].astype(np.int32), sentences.counts)
    return renumbered, kept, sentences
