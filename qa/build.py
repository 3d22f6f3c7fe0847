"""Building an index: read and split the documents, embed what is new, index vectors and words.

A build may be given the contents of an earlier index of the same collection (``previous``). Then an
unchanged document keeps its passages without being split again, a passage whose text the earlier
index has keeps its row there (``RowMap``): its vectors are copied and its word counts reused, only new
text is embedded, and an HNSW graph grows in place instead of being built anew. Everything here is a
function of plain data (documents, the earlier index's ``IndexContents``), so each step can be read and
tested on its own.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import re
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

import numpy as np

from qa.contents import DocumentRecord, IndexContents, SentenceSpans, sentence_offsets
from qa.documents import Document, no_documents
from qa.embedding import Encoder, embedding_text, release_freed_memory
from qa.errors import EmptyCorpus, QAError
from qa.lexical import BM25_PARAMS, TOKENIZATION, LexicalIndex, lexical_text
from qa.manifest import PASSAGE_VECTORS, Chunking, CorpusRecord, Manifest, format_version_for
from qa.passage import Passage
from qa.rows import RowMap
from qa.splitting import SPLITTER_VERSION, acronym_definitions, passage_sentences, split_document
from qa.version import __version__

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
"""Told the fraction of a build done (0 to 1) and what is being done, e.g. by a web page."""

STAGES = ("split", "reuse", "embed", "faiss", "bm25")
"""A build's stages, in order: reading and splitting documents, finding and copying the vectors of text an
earlier index has, embedding the rest, indexing the vectors, indexing the words."""

Chunk = tuple[list[int], list[str]]
"""Texts to embed, with their positions in the build's list of texts."""


class Executor(Protocol):
    """Where a build's texts are embedded; by default (no executor) in this process, chunk by chunk.

    ``qa.distributed.RayExecutor`` embeds them on a Ray cluster. Whatever runs the model must be the
    model of ``encoder.name``: the build checks nothing but the vectors' shape.
    """

    def encode(
        self, encoder: Encoder, chunks: Iterable[Chunk], *, batch_size: int
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Embed every chunk's texts as ``encoder`` would; yield each chunk's positions with their vectors
        (a float32 row per text), in any order."""
        ...


@dataclass(frozen=True)
class BuildReport:
    """What a build did, for a person (``qa build`` prints it) or a benchmark (stage times)."""

    documents: int
    passages: int
    split_documents: tuple[str, ...]
    """Ids of the documents read and split; the others kept their passages from the earlier index."""
    kept_passages: int
    """Passages the earlier index had already, with their vectors and word counts."""
    embedded_texts: int
    """Distinct passage and sentence texts the encoder embedded (the rest were reused)."""
    stage_seconds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


class _Stages:
    """Times a build's stages and tells ``on_stage`` as each begins."""

    def __init__(self, on_stage: Callable[[str], None] | None) -> None:
        self._on_stage = on_stage
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def begin(self, stage: str) -> None:
        self.end()
        if self._on_stage is not None:
            self._on_stage(stage)
        self._current = (stage, time.perf_counter())

    def end(self) -> None:
        if self._current is not None:
            stage, started = self._current
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started
            self._current = None


# ------------------------------------------------------------------------------------------ splitting


@dataclass(frozen=True)
class Split:
    """What splitting a collection gives: passages, their sentences, and what identifies the corpus."""

    passages: list[Passage]
    sentences: list[SentenceSpans]
    acronyms: list[dict[str, str]]
    """Per passage, the acronyms it uses that its document defines, with their long forms."""
    documents: list[DocumentRecord]
    fingerprint: str
    rows: RowMap
    """The passages the earlier index has (their document unchanged, or the passage itself: ``row_of``)."""
    split_documents: tuple[str, ...]


def fingerprint(documents: Iterable[tuple[str, str, str]]) -> str:
    """A hash of ``(id, title, sha256 of text)`` of every document: equal exactly when the corpus is unchanged."""
    digest = hashlib.sha256()
    for doc_id, title, sha256 in sorted(documents):
        digest.update(f"{doc_id}\0{title}\0{sha256}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


@dataclass(frozen=True)
class _KeptDocument:
    """Where an earlier build put a document's passages (rows), and what the document was."""

    title: str
    sha256: str
    rows: range


def kept_documents(previous: IndexContents, chunking: Chunking) -> dict[str, _KeptDocument]:
    """Where each document's passages are in ``previous``, for a build split by ``chunking`` to keep them
    while the document is unchanged; nothing when ``previous`` was split otherwise.

    Only documents that lost no passage as a copy of another's: those are split again, since what they
    repeat may have changed.
    """
    if previous.manifest.chunking != chunking:
        return {}
    kept: dict[str, _KeptDocument] = {}
    row = 0
    for record in previous.documents:
        if record.repeats == 0 and record.passages:
            kept[record.id] = _KeptDocument(record.title, record.sha256, range(row, row + record.passages))
        row += record.passages
    return kept


def row_of(
    previous: IndexContents,
    passage: Passage,
    sentences: SentenceSpans,
    acronyms: Mapping[str, str],
    rows_by_text: Mapping[str, int],
) -> int | None:
    """The row of ``previous`` that embeds and counts as ``passage`` does (same text, title, section,
    sentences and acronyms), if there is one; ``rows_by_text``: ``previous``'s rows by passage text."""
    row = rows_by_text.get(passage.text)
    if row is None:
        return None
    old = previous.passages[row]
    same = (old.title, old.section) == (passage.title, passage.section) and previous.acronyms[row] == acronyms
    return row if same and list(previous.sentences[row]) == list(sentences) else None


def split_collection(
    documents: Iterable[Document],
    encoder: Encoder,
    chunking: Chunking,
    previous: IndexContents | None = None,
    *,
    corpus: Path | None = None,
) -> Split:
    """Split every document; a document unchanged since ``previous`` keeps its passages unsplit.

    A passage of a changed document that ``previous`` has already (same text, title, section and
    acronyms) is new as a passage but keeps its old row in ``rows``: its vectors and word counts are
    those of that row.

    Raises:
        ValueError: Two documents share an id.
        EmptyCorpus: No document (in the folder ``corpus``, if they were read from one), or no text in them.
    """
    reusable = kept_documents(previous, chunking) if previous is not None else {}
    passages: list[Passage] = []
    sentences: list[SentenceSpans] = []
    acronyms: list[dict[str, str]] = []
    records: list[DocumentRecord] = []
    new_rows, old_rows = array("q"), array("q")
    rows_by_text: dict[str, int] = {}  # of previous's passages, made when a changed document first needs it
    split_ids: list[str] = []
    seen: set[str] = set()
    indexed: dict[str, str] = {}  # passage text -> the document it was first found in
    for document in documents:
        if document.id in seen:
            raise ValueError(f"two documents have the id {document.id!r}; give each document its own id")
        seen.add(document.id)
        sha256 = document.content_hash  # hashed once: it reads the whole text
        kept = reusable.get(document.id)
        texts: list[str] = []
        if previous is not None and kept is not None and (kept.title, kept.sha256) == (document.title, sha256):
            texts = [p.text for p in previous.passages[kept.rows.start : kept.rows.stop]]
        if previous is not None and kept is not None and texts and indexed.keys().isdisjoint(texts):
            # Splitting is the slow part of reading (it counts tokens): an unchanged document skips it.
            span = slice(kept.rows.start, kept.rows.stop)
            new_rows.extend(range(len(passages), len(passages) + len(texts)))
            old_rows.extend(kept.rows)
            passages += previous.passages[span]
            sentences += previous.sentences[span]
            acronyms += [dict(a) for a in previous.acronyms[span]]
            indexed.update(dict.fromkeys(texts, document.id))
            count, repeats = len(texts), 0
        else:
            split_ids.append(document.id)
            entries, repeats = split_into_passages(document, encoder, chunking, indexed)
            for passage, spans, used in entries:
                indexed[passage.text] = document.id
                if previous is not None:
                    if not rows_by_text:
                        rows_by_text = {p.text: i for i, p in enumerate(previous.passages)}
                    if (row := row_of(previous, passage, spans, used, rows_by_text)) is not None:
                        new_rows.append(len(passages))
                        old_rows.append(row)
                passages.append(passage)
                sentences.append(spans)
                acronyms.append(used)
            count = len(entries)
        records.append(DocumentRecord(document.id, document.title, sha256, count, repeats, document.pages))
    if not records and corpus is not None:
        raise no_documents(corpus)
    if not records:
        raise EmptyCorpus(
            "no documents to index: give a folder of .txt, .md, .html, .pdf or .docx files, or a list of qa.Document"
        )
    if not passages:
        raise EmptyCorpus("the documents have no text to index; add text to them")
    # Each previous row goes to one passage at most: passage texts are distinct in an index, and a kept
    # document with a text that a document before it now has is split again, not kept.
    rows = RowMap(len(passages), np.frombuffer(new_rows, np.int64), np.frombuffer(old_rows, np.int64))
    return Split(
        passages,
        sentences,
        acronyms,
        records,
        fingerprint((r.id, r.title, r.sha256) for r in records),
        rows if len(new_rows) else RowMap.nothing_kept(len(passages)),
        tuple(split_ids),
    )


_Entry = tuple[Passage, list[tuple[int, int]], dict[str, str]]
"""A passage with its sentences' offsets and the acronyms it uses."""


def split_into_passages(
    document: Document, encoder: Encoder, chunking: Chunking, indexed: Mapping[str, str]
) -> tuple[list[_Entry], int]:
    """A document's passages, and how many it repeats of passages ``indexed`` already (or of its own)."""
    max_tokens = chunking.max_tokens or encoder.max_tokens
    spans = split_document(
        document.text,
        max_words=chunking.max_words,
        overlap=chunking.overlap,
        max_tokens=max_tokens - 2,  # the model adds [CLS] and [SEP]
        count_tokens=lambda text: encoder.count_tokens(text) - 2,
    )
    defined = acronym_definitions(document.text)
    entries: list[_Entry] = []
    own: set[str] = set()
    repeated: set[str] = set()
    for ordinal, span in enumerate(spans):
        text = document.text[span.start : span.end]
        if text in indexed or text in own:  # a copy of a passage indexed already: once is enough
            repeated.add(indexed.get(text, document.id))
            continue
        own.add(text)
        passage = Passage(
            f"{document.id}#{ordinal}", document.id, document.title, span.section, span.start, span.end, text
        )
        used = {short: long for short, long in defined.items() if re.search(rf"\b{short}\b", text)}
        entries.append((passage, passage_sentences(text), used))
    if not spans:
        logger.warning("%s has no text to index: headings alone are not passages", document.id)
    elif not entries:
        logger.warning("%s repeats %s, indexed already: it adds no passage", document.id, ", ".join(sorted(repeated)))
    return entries, len(spans) - len(entries)


# ------------------------------------------------------------------------------------------ vectors


def _content_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


def copy_vectors(
    previous: IndexContents,
    split: Split,
    passage_vectors: np.ndarray,
    sentence_vectors: np.ndarray,
    *,
    sentence_mean: bool,
) -> np.ndarray:
    """Copy the vectors of the passages ``split`` takes from ``previous`` (``split.rows``), and of their
    sentences, into a new build's arrays; return which passages' vectors were copied.

    A passage vector is copied when it is of the kind wanted (the model's, or the mean of the
    sentences') and stored exactly (not as IVF-PQ codes).
    """
    wanted = "sentence-mean" if sentence_mean else "own"
    copy_passages = previous.manifest.passage_vectors == wanted and previous.dense.exact
    done = np.zeros(len(split.passages), dtype=bool)
    stored = previous.dense.vectors(split.rows.old) if copy_passages else None  # one request, for Milvus
    new_offsets = sentence_offsets(split.sentences)
    old_offsets = previous.sentence_offsets
    copied = 0
    for here, there, count in split.rows.runs():
        sentence_vectors[new_offsets[here] : new_offsets[here + count]] = previous.sentence_vectors[
            old_offsets[there] : old_offsets[there + count]
        ]
        if stored is not None:
            passage_vectors[here : here + count] = stored[copied : copied + count]
            done[here : here + count] = True
        copied += count
    return done


def known_vectors(previous: IndexContents, rows: np.ndarray) -> dict[bytes, tuple[np.ndarray, int]]:
    """Where the vectors of these passages of ``previous`` and of their sentences are, as (array, row), by
    the hash of the text embedded: for a build to reuse.

    Rows, not copies: at 100,000 passages, float32 copies of the sentence vectors alone take 700 MB.
    """
    vectors = previous.sentence_vectors
    known = {
        _content_key(previous.passages[i].text[s:e]): (vectors, row)
        for i in rows.tolist()
        for row, (s, e) in enumerate(previous.sentences[i], start=int(previous.sentence_offsets[i]))
    }
    # A sentence-mean passage vector is not the model's vector of the passage text: not reusable as one.
    # FAISS flat and HNSW, and Milvus, keep exact copies; IVF-PQ only codes.
    if len(rows) and previous.manifest.passage_vectors == "own" and previous.dense.exact:
        passage_vectors = previous.dense.vectors(rows)
        known.update(
            {
                _content_key(embedding_text(previous.passages[i])): (passage_vectors, j)
                for j, i in enumerate(rows.tolist())
            }
        )
    return known


def embed(
    split: Split,
    encoder: Encoder,
    *,
    batch_size: int,
    progress: bool,
    previous: IndexContents | None,
    report: Progress,
    sentence_mean: bool = False,
    stages: _Stages | None = None,
    executor: Executor | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Vectors of the passages (float32) and of their sentences (float16), and how many texts were embedded.

    With ``sentence_mean``, a passage's vector is the length-weighted mean of its sentences' vectors,
    so only the sentences go through the model. The passages ``previous`` has take their vectors from
    it row by row; other texts it embedded are found by their hash; each other distinct text is
    embedded once. New vectors go straight into the two result arrays, so a build holds each vector
    once (no full intermediate array): memory grows with the collection, not with a multiple of it.
    """
    stages = stages or _Stages(None)
    stages.begin("reuse")
    dim = encoder.dim
    passage_vectors = np.zeros((len(split.passages), dim), dtype=np.float32)
    sentence_vectors = np.zeros((sum(map(len, split.sentences)), dim), dtype=np.float16)
    kept = split.rows.kept
    passage_done = np.zeros(len(split.passages), dtype=bool)
    known: dict[bytes, tuple[np.ndarray, int]] = {}
    if previous is not None:
        passage_done = copy_vectors(previous, split, passage_vectors, sentence_vectors, sentence_mean=sentence_mean)
        known = known_vectors(previous, np.setdiff1d(np.arange(len(previous.passages)), split.rows.old))
    # The distinct texts still to embed, kept as where they are rather than as strings (at 100,000
    # passages the strings alone would take 300 MB): per text, its passage, start and end (start -1:
    # the passage's embedding text), its length, and the first place its vector goes.
    todo: dict[bytes, int] = {}
    sources, lengths, first = array("q"), array("q"), array("q")
    repeats: list[tuple[int, int]] = []  # (text, place) of every further place a text's vector goes

    def put(place: int, vector: np.ndarray) -> None:  # place: a passage row, or -1 - row for a sentence
        if place >= 0:
            passage_vectors[place] = vector
        else:
            sentence_vectors[-1 - place] = vector

    def visit(place: int, passage: int, start: int, end: int, text: str) -> None:
        key = _content_key(text)
        if (found := known.get(key)) is not None:
            put(place, found[0][found[1]])
        elif (position := todo.get(key)) is not None:
            repeats.append((position, place))
        else:
            todo[key] = len(first)
            sources.extend((passage, start, end))
            lengths.append(len(text))
            first.append(place)

    for row, (passage, spans) in enumerate(zip(split.passages, split.sentences, strict=True)):
        if not passage_done[row] and (not sentence_mean or not spans):
            visit(row, row, -1, -1, embedding_text(passage))
    sentence_rows = sentence_offsets(split.sentences)
    for index in np.flatnonzero(~kept).tolist():  # a kept passage's sentences were copied
        passage = split.passages[index]
        for row, (start, end) in enumerate(split.sentences[index], start=int(sentence_rows[index])):
            visit(-1 - row, index, start, end, passage.text[start:end])
    known.clear()  # the reused vectors are placed: drop the references (and the copy of the passage vectors)
    todo.clear()
    stages.begin("embed")

    def text_of(position: int) -> str:
        passage, start, end = sources[3 * position : 3 * position + 3]
        return embedding_text(split.passages[passage]) if start < 0 else split.passages[passage].text[start:end]

    for positions, vectors in _encode_in_chunks(encoder, text_of, lengths, batch_size, progress, report, executor):
        for position, vector in zip(positions, vectors, strict=True):
            put(first[position], vector)
    for position, place in repeats:  # the same text again: the vector its first place got
        source = first[position]
        put(place, passage_vectors[source] if source >= 0 else sentence_vectors[-1 - source])
    if sentence_mean:
        _mean_of_sentences(split, sentence_vectors, passage_vectors, skip=passage_done)
    return passage_vectors, sentence_vectors, len(lengths)


def _mean_of_sentences(
    split: Split, sentence_vectors: np.ndarray, passage_vectors: np.ndarray, *, skip: np.ndarray
) -> None:
    """Set each passage's vector, but those ``skip`` marks, to the mean of its sentences' vectors,
    weighted by their length, normalised."""
    row = 0
    for i, spans in enumerate(split.sentences):
        if spans and not skip[i]:  # a passage without sentences was embedded itself
            lengths = np.array([end - start for start, end in spans], dtype=np.float32)
            mean = lengths @ sentence_vectors[row : row + len(spans)].astype(np.float32)
            passage_vectors[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        row += len(spans)


def _encode_in_chunks(
    encoder: Encoder,
    text_of: Callable[[int], str],
    lengths: Sequence[int],
    batch_size: int,
    progress: bool,
    report: Progress,
    executor: Executor | None = None,
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield ``(positions, vectors)`` of the texts ``text_of(0 .. len(lengths) - 1)``, a few batches at a time,
    embedded here or by ``executor``."""
    from tqdm import tqdm

    # Long texts first, so each batch pads little.
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").tolist()
    # A few batches per call (a second or two): the model is free between calls for a server's searches.
    chunk = max(batch_size, 128)
    # Each chunk's strings are made only when it is taken, so an executor holds those in flight, not all.
    chunks = (
        (rows, [text_of(i) for i in rows]) for rows in (order[b : b + chunk] for b in range(0, len(order), chunk))
    )
    if executor is not None:
        embedded = executor.encode(encoder, chunks, batch_size=batch_size)
    else:
        embedded = ((rows, encoder.encode(texts, batch_size=batch_size)) for rows, texts in chunks)
    done, dim = 0, encoder.dim
    with tqdm(total=len(order), desc="embedding", unit="text", disable=not progress, file=sys.stderr) as bar:
        for rows, vectors in embedded:
            if vectors.shape != (len(rows), dim):  # an executor's worker may run another model
                raise QAError(
                    f"{len(rows)} texts came back embedded as an array of shape {vectors.shape}, not "
                    f"{(len(rows), dim)}: the executor ran another model than {encoder.name!r}"
                )
            yield rows, vectors
            done += len(rows)
            bar.update(len(rows))
            report(0.05 + 0.9 * done / len(order), f"embedding {done:,} of {len(order):,} texts")


# -------------------------------------------------------------------------------------------- words


def _sentence_texts(split: Split, passages: Iterable[int]) -> Iterator[str]:
    """What BM25 counts of each sentence of these passages, passage by passage."""
    for i in passages:
        text, acronyms = split.passages[i].text, split.acronyms[i]
        for start, end in split.sentences[i]:
            yield lexical_text(text[start:end], acronyms)


def sentence_rows(rows: RowMap, new_offsets: np.ndarray, old_offsets: np.ndarray) -> RowMap:
    """The sentences a build keeps from the previous index: those of the passages ``rows`` keeps (a kept
    passage has the very same sentences), given where each index's passages' sentences start."""
    counts = (new_offsets[rows.new + 1] - new_offsets[rows.new]).astype(np.int64)
    ramp = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    new = np.repeat(new_offsets[rows.new], counts) + ramp
    old = np.repeat(old_offsets[rows.old], counts) + ramp
    return RowMap(int(new_offsets[-1]), new.astype(np.int64), old.astype(np.int64))


def lexical_index(split: Split, previous: IndexContents | None) -> LexicalIndex:
    """BM25 of the split passages, and their sentences' word counts; from ``previous``'s word counts, when
    it kept them, for the passages kept."""
    # Generators: each text is made, tokenized and dropped in turn, never all held at once.
    if previous is not None and previous.lexical.has_term_counts:
        added = split.rows.added.tolist()
        return previous.lexical.updated(
            split.rows,
            (lexical_text(embedding_text(split.passages[i]), split.acronyms[i]) for i in added),
            sentence_rows=sentence_rows(split.rows, sentence_offsets(split.sentences), previous.sentence_offsets)
            if previous.lexical.has_sentence_counts
            else RowMap.nothing_kept(int(sentence_offsets(split.sentences)[-1])),
            new_sentence_texts=_sentence_texts(
                split, added if previous.lexical.has_sentence_counts else range(len(split.passages))
            ),
        )
    return LexicalIndex.build(
        (lexical_text(embedding_text(p), a) for p, a in zip(split.passages, split.acronyms, strict=True)),
        sentence_texts=_sentence_texts(split, range(len(split.passages))),
    )


# -------------------------------------------------------------------------------------------- build


def backend_and_uri(backend: str | None, uri: str | None, previous: IndexContents | None) -> tuple[str, str | None]:
    """The vector store a build uses: as asked, else as ``previous`` used, else FAISS."""
    from qa.milvus import default_uri

    before = previous.manifest.backend if previous is not None else None
    backend = backend or ("milvus" if uri else None) or before or "faiss"
    if backend == "milvus" and uri is None:
        previous_uri = getattr(previous.dense, "uri", None) if previous is not None and before == "milvus" else None
        uri = previous_uri or default_uri()
    return backend, uri


def build_contents(
    documents: Iterable[Document],
    *,
    encoder: Encoder,
    corpus: Path | None = None,
    max_words: int,
    overlap: int,
    index_type: str = "auto",
    batch_size: int,
    progress: bool,
    previous: IndexContents | None = None,
    on_progress: Progress | None = None,
    on_stage: Callable[[str], None] | None = None,
    backend: str | None = None,
    uri: str | None = None,
    passage_vectors_from: str | None = None,
    executor: Executor | None = None,
) -> tuple[IndexContents, BuildReport]:
    """Split, embed and index ``documents`` (read from the folder ``corpus``, if from one); see ``Index.build``."""
    from qa import vectorstore

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number; got {batch_size!r}")
    if passage_vectors_from is None:
        passage_vectors_from = previous.manifest.passage_vectors if previous is not None else "own"
    if passage_vectors_from not in PASSAGE_VECTORS:
        raise ValueError(
            f"passage_vectors_from must be one of {', '.join(PASSAGE_VECTORS)}; got {passage_vectors_from!r}"
        )
    backend, uri = backend_and_uri(backend, uri, previous)
    # Rejects an unknown index type or backend, and connects to Milvus, before any work.
    store_vectors = vectorstore.prepare(backend, uri, index_type)
    if previous is not None and (previous.manifest.model, previous.manifest.runtime) != (encoder.name, encoder.runtime):
        previous = None  # vectors of another model, or of the same model run otherwise, cannot be reused
    report = on_progress or (lambda fraction, stage: None)
    stages = _Stages(on_stage)
    stages.begin("split")
    report(0.0, "reading and splitting documents")
    chunking = Chunking(max_words, overlap, encoder.max_tokens, SPLITTER_VERSION)
    split = split_collection(documents, encoder, chunking, previous, corpus=corpus)
    passage_vectors, sentence_vectors, embedded = embed(
        split,
        encoder,
        batch_size=batch_size,
        progress=progress,
        previous=previous,
        report=report,
        sentence_mean=passage_vectors_from == "sentence-mean",
        stages=stages,
        executor=executor,
    )
    release_freed_memory()
    stages.begin("faiss")
    report(0.95, "indexing vectors and words")
    dense = None
    if previous is not None and previous.manifest.passage_vectors == passage_vectors_from:
        dense = vectorstore.updated(previous.dense, split.rows, passage_vectors, backend, index_type)
    dense = dense or store_vectors(passage_vectors)
    dim = int(passage_vectors.shape[1])
    del passage_vectors  # the store holds its own copy: at 100,000 passages this frees 150 MB for BM25
    try:
        stages.begin("bm25")
        lexical = lexical_index(split, previous)
    except BaseException:
        dense.discard()  # a Milvus collection no index will ever name
        raise
    stages.end()
    manifest = Manifest(
        format_version=format_version_for(encoder.runtime),
        qa_version=__version__,
        created=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model=encoder.name,
        runtime=encoder.runtime,
        dim=dim,
        count=len(split.passages),
        sentences=int(sentence_vectors.shape[0]),
        chunking=chunking,
        passage_vectors=passage_vectors_from,
        dense=MappingProxyType(dense.describe()),
        lexical=MappingProxyType({"tokenization": TOKENIZATION, **BM25_PARAMS}),
        # The absolute folder until the index is saved, then relative to the index folder.
        corpus=CorpusRecord(str(corpus) if corpus else None, split.fingerprint, len(split.documents)),
    )
    contents = IndexContents(
        manifest=manifest,
        passages=split.passages,
        sentences=split.sentences,
        acronyms=split.acronyms,
        sentence_vectors=sentence_vectors,
        dense=dense,
        lexical=lexical,
        documents=split.documents,
    )
    build_report = BuildReport(
        documents=len(split.documents),
        passages=len(split.passages),
        split_documents=split.split_documents,
        kept_passages=len(split.rows.new),
        embedded_texts=embedded,
        stage_seconds=MappingProxyType({name: round(s, 6) for name, s in stages.seconds.items()}),
    )
    return contents, build_report


# ---------------------------------------------------------------------------------------- staleness


def settings_change(
    manifest: Manifest,
    *,
    model: str | None = None,
    max_words: int | None = None,
    overlap: int | None = None,
    encoder: Encoder | None = None,
    runtime: str | None = None,
) -> str | None:
    """Why an index of ``manifest`` differs from one built now with these settings, or ``None``.

    A setting left ``None`` is not compared. The splitter's version always is, and with ``encoder``
    (the index's own), the input length the passages were fitted to.
    """
    from qa.embedding import model_name, runtime_name

    chunking = manifest.chunking
    if model is not None and model_name(model) != manifest.model:
        return f"it was built with the model {manifest.model!r}, not {model_name(model)!r}"
    if runtime is not None and runtime_name(runtime) != manifest.runtime:
        return f"it was built with the {manifest.runtime} runtime, not {runtime_name(runtime)}"
    if max_words is not None and max_words != chunking.max_words:
        return f"it was built with max_words={chunking.max_words}, not {max_words}"
    if overlap is not None and overlap != chunking.overlap:
        return f"it was built with overlap={chunking.overlap}, not {overlap}"
    if chunking.splitter != SPLITTER_VERSION:
        return f"it was split by another version of qa's splitter ({chunking.splitter}, now {SPLITTER_VERSION})"
    if encoder is not None and chunking.max_tokens is not None and chunking.max_tokens != encoder.max_tokens:
        return (
            f"its passages were fitted to {chunking.max_tokens} tokens; the model {encoder.name!r} now reads "
            f"{encoder.max_tokens}"
        )
    return None


def corpus_change(manifest: Manifest, folder: Path, documents: Iterable[Document]) -> str | None:
    """Why ``documents`` (read from ``folder``) differ from those the index was built from, or ``None``."""
    found = fingerprint((d.id, d.title, d.content_hash) for d in documents)
    if found != manifest.corpus.fingerprint:
        return f"the documents in {folder} have changed since it was built"
    return None
