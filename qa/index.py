"""``Index``: passages, their vectors in FAISS and their words in BM25, built, saved, loaded and searched."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa import storage
from qa.documents import Document, fingerprint, iter_document_paths, load_folder, no_documents, read_document
from qa.embedding import DEFAULT_BATCH_SIZE, Encoder, model_name, release_freed_memory
from qa.errors import EmptyCorpus, IncompatibleIndex, IndexNotFound
from qa.lexical import BM25_PARAMS, TOKENIZATION, LexicalIndex, QueryTerms
from qa.passage import Hit, Passage, page_at
from qa.retrieval import (
    CANDIDATES,
    DEFAULT_WEIGHTS,
    best_sentence,
    check_k,
    check_mode,
    check_question,
    fuse,
    top_indices,
)
from qa.splitting import (
    DEFAULT_MAX_WORDS,
    DEFAULT_OVERLAP,
    SPLITTER_VERSION,
    acronym_definitions,
    passage_sentences,
    split_document,
)
from qa.vectorstore import VectorStore

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("format_version", "model", "dim", "count", "sentences", "chunking", "dense", "files")


PASSAGE_VECTORS = ("own", "sentence-mean")
"""How a passage's vector is made: ``own``, the model reads the passage with its title and section; or
``sentence-mean``, the mean of its sentences' vectors weighted by their length. Sentences are embedded
either way (hybrid ranking and highlights use them), so ``sentence-mean`` needs one model pass where
``own`` needs two: builds about twice as fast, for slightly worse ranking (README, "Building faster").
"""


def _version() -> str:
    from qa import __version__

    return __version__


def embedding_text(passage: Passage) -> str:
    """What the model reads for a passage: its title and section give it context the text may lack."""
    context = " — ".join(part for part in (passage.title, passage.section) if part and part != passage.text)
    return f"{context}\n{passage.text}" if context else passage.text


def lexical_text(text: str, acronyms: dict[str, str]) -> str:
    """What BM25 counts: the text, plus the long form of each acronym it uses ("NPT" also counts as "treaty")."""
    extra = [long for short, long in acronyms.items() if long not in text and re.search(rf"\b{short}\b", text)]
    return " ".join([text, *extra])


def _sentence_offsets(sentences: list[list[tuple[int, int]]]) -> np.ndarray:
    """Where each passage's sentences start in the sentence array, and (last) how many there are."""
    return np.concatenate([[0], np.cumsum([len(spans) for spans in sentences])]).astype(np.int64)


def _content_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class _Split:
    """What splitting a collection gives: passages, their sentences, and what identifies the corpus."""

    passages: list[Passage]
    sentences: list[list[tuple[int, int]]]
    documents: list[dict[str, Any]]
    fingerprint: str
    acronyms: list[dict[str, str]]
    """Per passage, the acronyms it uses that its document defines, with their long forms."""
    previous_rows: np.ndarray
    """Per passage, its row in the previous index when it is the same there (its document unchanged, or
    the passage itself: see ``Index._row_of``), else -1."""


_Entry = tuple[Passage, list[tuple[int, int]], dict[str, str]]
"""A passage with its sentences' offsets and the acronyms it uses."""


@dataclass(frozen=True)
class _KeptDocument:
    """Where an earlier build put a document's passages (rows), and what the document was."""

    title: str
    sha256: str
    rows: range


def _iter_source(source: str | os.PathLike[str] | Iterable[Document]) -> Iterator[Document]:
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        for path, doc_id in iter_document_paths(folder):
            if (document := read_document(path, doc_id)) is not None:
                yield document
        return
    for document in source:
        if not isinstance(document, Document):
            raise ValueError(f"Index.build takes a folder or qa.Document objects; got {type(document).__name__}")
        yield document


def _chunking(max_words: int, overlap: int, encoder: Encoder) -> dict[str, Any]:
    """How a collection is split, as the manifest records it: passages are kept only from an index
    split the same way, by the same splitting code."""
    return {"max_words": max_words, "overlap": overlap, "max_tokens": encoder.max_tokens, "splitter": SPLITTER_VERSION}


def _split_collection(
    source: str | os.PathLike[str] | Iterable[Document],
    encoder: Encoder,
    chunking: dict[str, Any],
    previous: Index | None = None,
) -> _Split:
    """Read and split every document; a document unchanged since ``previous`` keeps its passages.

    A passage of a changed document that ``previous`` has already (same text, title, section and
    acronyms) is new as a passage but gets its old row in ``previous_rows``: its vectors and word
    counts are those of that row.
    """
    reusable = previous._passages_by_document(chunking) if previous is not None else {}
    passages: list[Passage] = []
    sentences: list[list[tuple[int, int]]] = []
    acronyms: list[dict[str, str]] = []
    documents: list[dict[str, Any]] = []
    previous_rows = array("q")
    rows_by_text: dict[str, int] = {}  # of previous's passages, made when a changed document first needs it
    seen: dict[str, str] = {}
    indexed: dict[str, str] = {}  # passage text -> the document it was first found in
    for document in _iter_source(source):
        if document.id in seen:
            raise ValueError(f"two documents have the id {document.id!r}; give each document its own id")
        sha256 = seen[document.id] = document.content_hash  # hashed once: it reads the whole text
        kept = reusable.get(document.id)
        texts: list[str] = []
        if previous is not None and kept is not None and (kept.title, kept.sha256) == (document.title, sha256):
            texts = [p.text for p in previous.passages[kept.rows.start : kept.rows.stop]]
        if previous is not None and kept is not None and texts and indexed.keys().isdisjoint(texts):
            # Splitting is the slow part of reading (it counts tokens): an unchanged document skips it.
            span = slice(kept.rows.start, kept.rows.stop)
            passages += previous.passages[span]
            sentences += previous._sentences[span]
            acronyms += previous._acronyms[span]
            previous_rows.extend(kept.rows)
            indexed.update(dict.fromkeys(texts, document.id))
            count, repeats = len(texts), 0
        else:
            entries, repeats = _split_document(document, encoder, chunking, indexed)
            for passage, spans, used in entries:
                indexed[passage.text] = document.id
                passages.append(passage)
                sentences.append(spans)
                acronyms.append(used)
                if previous is not None and not rows_by_text:
                    rows_by_text = {p.text: i for i, p in enumerate(previous.passages)}
                previous_rows.append(
                    previous._row_of(passage, spans, used, rows_by_text) if previous is not None else -1
                )
            count = len(entries)
        documents.append(
            {
                "id": document.id,
                "title": document.title,
                "sha256": sha256,
                "passages": count,
                "repeats": repeats,
                # Where its pages start (PDF), for the page of a hit; indexes from before pages lack it.
                **({"pages": list(document.pages)} if document.pages else {}),
            }
        )
    if not documents and isinstance(source, (str, os.PathLike)):
        raise no_documents(Path(source))
    if not documents:
        raise EmptyCorpus(
            "no documents to index: give a folder of .txt, .md, .html, .pdf or .docx files, or a list of qa.Document"
        )
    if not passages:
        raise EmptyCorpus("the documents have no text to index; add text to them")
    digest = hashlib.sha256()
    for doc in sorted(documents, key=lambda d: d["id"]):
        digest.update(f"{doc['id']}\0{doc['title']}\0{doc['sha256']}\n".encode("utf-8", "surrogatepass"))
    # Each previous row goes to one passage at most: passage texts are distinct in an index, and a
    # kept document with a text that a document before it now has is split again, not kept.
    rows = np.frombuffer(previous_rows, dtype=np.int64) if previous_rows else np.zeros(0, dtype=np.int64)
    return _Split(passages, sentences, documents, digest.hexdigest(), acronyms, rows)


def _lexical_index(split: _Split, previous: Index | None) -> LexicalIndex:
    """BM25 of the split passages; from ``previous``'s word counts, when it kept them, for the passages kept."""
    # Generators: each text is made, tokenized and dropped in turn, never all held at once.
    if previous is not None and previous._lexical.has_term_counts:
        added = np.flatnonzero(split.previous_rows < 0).tolist()
        return previous._lexical.updated(
            split.previous_rows,
            (lexical_text(embedding_text(split.passages[i]), split.acronyms[i]) for i in added),
        )
    return LexicalIndex.build(
        lexical_text(embedding_text(p), a) for p, a in zip(split.passages, split.acronyms, strict=True)
    )


def _split_document(
    document: Document, encoder: Encoder, chunking: dict[str, Any], indexed: dict[str, str]
) -> tuple[list[_Entry], int]:
    """A document's passages, and how many it repeats of passages ``indexed`` already (or of its own)."""
    spans = split_document(
        document.text,
        max_words=chunking["max_words"],
        overlap=chunking["overlap"],
        max_tokens=chunking["max_tokens"] - 2,  # the model adds [CLS] and [SEP]
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


class Index:
    """A searchable collection of passages.

    Example:
        >>> index = Index.build("corpus/")
        >>> index.save("index/")
        >>> index = Index.load("index/")
        >>> hits = index.search("Which treaty has Pakistan not joined?", k=3)
        >>> hits[0].section
        'The Global Impact'
    """

    def __init__(
        self,
        *,
        passages: list[Passage],
        sentences: list[list[tuple[int, int]]],
        acronyms: list[dict[str, str]],
        sentence_vectors: np.ndarray,
        dense: VectorStore,
        lexical: LexicalIndex,
        documents: list[dict[str, Any]],
        manifest: dict[str, Any],
        encoder: Encoder,
        corpus: Path | None,
    ) -> None:
        self.passages = passages
        self._sentences = sentences
        self._acronyms = acronyms
        self._sentence_offsets = _sentence_offsets(sentences)
        self._sentence_vectors = sentence_vectors
        self._dense = dense
        self._lexical = lexical
        self.documents = documents
        self._pages = {d["id"]: d["pages"] for d in documents if d.get("pages")}  # of documents with pages
        self.manifest = manifest
        self._encoder = encoder
        self.corpus = corpus

    # ----------------------------------------------------------------------------------------- build

    @classmethod
    def build(
        cls,
        source: str | os.PathLike[str] | Iterable[Document],
        *,
        model: str | None = None,
        max_words: int = DEFAULT_MAX_WORDS,
        overlap: int = DEFAULT_OVERLAP,
        index_type: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        previous: Index | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        backend: str | None = None,
        uri: str | None = None,
        passage_vectors_from: str | None = None,
    ) -> Index:
        """Split, embed and index a collection.

        Args:
            source: A folder of ``.txt``/``.md``/``.html``/``.pdf``/``.docx`` files (read recursively), or ``qa.Document`` objects.
            model: A sentence-transformers name or folder; default ``$QA_MODEL``, else all-MiniLM-L6-v2.
            max_words: The most words in a passage.
            overlap: Sentences each passage repeats from the one before it.
            index_type: ``flat`` (exact), ``hnsw`` or ``ivfpq`` (approximate, for large collections), or
                ``auto``: exact below 25,000 passages, HNSW above.
            batch_size: Passages the model embeds at once.
            progress: Show a progress bar on stderr; default: when stderr is a terminal.
            previous: An index of an earlier version of the collection: passages whose text is unchanged
                reuse its vectors and BM25 word counts instead of being embedded and tokenized again,
                and an HNSW graph is updated rather than built anew (see ``FaissStore``).
            on_progress: Called with the fraction done (0 to 1) and what is being done, e.g. by a web page.
            backend: Where the passage vectors go: ``faiss`` (a file in the index folder) or ``milvus`` (a
                collection, new for each build); default: ``previous``'s backend, else ``faiss``.
            uri: For ``milvus``: a local Milvus Lite file (``./milvus.db``) or a server
                (``http://host:19530``, credentials in ``$QA_MILVUS_TOKEN``); default: ``previous``'s URI,
                else ``$QA_MILVUS_URI``.
            passage_vectors_from: ``own`` (the model reads each passage) or ``sentence-mean`` (the mean of
                its sentences' vectors: one model pass instead of two, about twice as fast to build,
                slightly worse ranking; see ``PASSAGE_VECTORS``); default: ``previous``'s, else ``own``.

        Raises:
            EmptyCorpus: No readable document, or no text in them.
            ValueError: A bad argument.
            MilvusUnavailable: The Milvus URI cannot be reached (checked before any embedding).
        """
        from qa import vectorstore

        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number; got {batch_size!r}")
        if passage_vectors_from is None:
            passage_vectors_from = manifest_passage_vectors(previous.manifest) if previous else "own"
        if passage_vectors_from not in PASSAGE_VECTORS:
            raise ValueError(
                f"passage_vectors_from must be one of {', '.join(PASSAGE_VECTORS)}; got {passage_vectors_from!r}"
            )
        backend, uri = _backend_and_uri(backend, uri, previous)
        # Rejects an unknown index type or backend, and connects to Milvus, before any work.
        store_vectors = vectorstore.prepare(backend, uri, index_type)
        if isinstance(source, (str, os.PathLike)) and not Path(source).is_dir():
            load_folder(source)  # raises EmptyCorpus naming the missing folder
        encoder = Encoder(model)
        if previous is not None and previous.manifest["model"] != encoder.name:
            previous = None  # vectors of another model cannot be reused
        report = on_progress or (lambda fraction, stage: None)
        report(0.0, "reading and splitting documents")
        chunking = _chunking(max_words, overlap, encoder)
        split = _split_collection(source, encoder, chunking, previous)
        show = sys.stderr.isatty() if progress is None else progress
        passage_vectors, sentence_vectors = _embed(
            split, encoder, batch_size, show, previous, report, sentence_mean=passage_vectors_from == "sentence-mean"
        )
        release_freed_memory()
        report(0.95, "indexing vectors and words")
        dense = None
        if previous is not None and manifest_passage_vectors(previous.manifest) == passage_vectors_from:
            dense = vectorstore.updated(previous._dense, split.previous_rows, passage_vectors, backend, index_type)
        dense = dense or store_vectors(passage_vectors)
        dim = int(passage_vectors.shape[1])
        del passage_vectors  # the store holds its own copy: at 100,000 passages this frees 150 MB for BM25
        try:
            lexical = _lexical_index(split, previous)
        except BaseException:
            dense.discard()  # a Milvus collection no index will ever name
            raise
        corpus = Path(source).resolve() if isinstance(source, (str, os.PathLike)) else None
        manifest: dict[str, Any] = {
            "format_version": storage.FORMAT_VERSION,
            "qa_version": _version(),
            "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model": encoder.name,
            "dim": dim,
            "metric": "ip",
            "normalized": True,
            "count": len(split.passages),
            "sentences": int(sentence_vectors.shape[0]),
            "chunking": chunking,
            "embedding": {
                "passage_vectors": passage_vectors_from,
                "context": "title+section" if passage_vectors_from == "own" else "none",
            },
            "dense": dense.describe(),
            "lexical": {"tokenization": TOKENIZATION, **BM25_PARAMS},
            "corpus": {
                "path": str(corpus) if corpus else None,
                "fingerprint": split.fingerprint,
                "documents": len(split.documents),
            },
            "files": {},
        }
        return cls(
            passages=split.passages,
            sentences=split.sentences,
            acronyms=split.acronyms,
            sentence_vectors=sentence_vectors,
            dense=dense,
            lexical=lexical,
            documents=split.documents,
            manifest=manifest,
            encoder=encoder,
            corpus=corpus,
        )

    # --------------------------------------------------------------------------------- save and load

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the folder ``path``, replacing what is there only once all is written.

        A Milvus collection that the replaced index used, and this one does not, is dropped once the new
        index is in place.
        """
        from qa import vectorstore

        target = Path(path)
        dense = self._dense.describe(target.absolute())  # raises before writing if the store cannot go there
        replaced: list[dict[str, Any]] = []

        def write(folder: Path) -> None:
            replaced.extend(_replaced_dense(target))  # read under the writer lock, before the swap
            self._dense.save(folder)
            with open(folder / storage.PASSAGES, "w", encoding="utf-8") as out:
                for passage, sentences, acronyms in zip(self.passages, self._sentences, self._acronyms, strict=True):
                    record = passage.to_dict() | {"sentences": [list(s) for s in sentences], "acronyms": acronyms}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
            with open(folder / "documents.jsonl", "w", encoding="utf-8") as out:
                for document in self.documents:
                    out.write(json.dumps(document, ensure_ascii=False) + "\n")
            np.save(folder / storage.SENTENCE_VECTORS, self._sentence_vectors, allow_pickle=False)
            self._lexical.save(folder / storage.LEXICAL)
            manifest = dict(self.manifest, dense=dense)
            if self.corpus is not None:
                # Relative, so that a project folder can move with its index.
                corpus = {**manifest["corpus"], "path": os.path.relpath(self.corpus, target.absolute())}
                manifest["corpus"] = corpus
            manifest["files"] = {
                name: _file_record(folder / name)
                for name in (*self._dense.files, storage.PASSAGES, "documents.jsonl", storage.SENTENCE_VECTORS)
            }
            (folder / storage.MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")

        storage.write_atomically(target, write)
        for old in replaced:
            vectorstore.retire(old, dense, target)

    def close(self) -> None:
        """Let go of the vector store's connections (a Milvus Lite file becomes free for other processes)."""
        self._dense.close()

    @staticmethod
    def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The manifest of the index at ``path``, checked; no model or FAISS is loaded.

        Raises:
            IndexNotFound: There is no index at ``path``.
            IncompatibleIndex: The manifest is unreadable, of another format, or lacks fields.
        """
        folder = storage.readable_path(Path(path))
        manifest_file = folder / storage.MANIFEST
        if not manifest_file.exists():
            raise IndexNotFound(f"no index at {path}: build one with `qa build CORPUS -o {path}`")
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise IncompatibleIndex(
                f"{manifest_file} is unreadable ({error}); rebuild: qa build CORPUS -o {path}"
            ) from error
        if not isinstance(manifest, dict):
            raise IncompatibleIndex(f"{manifest_file} is not a JSON object; rebuild: qa build CORPUS -o {path}")
        found = manifest.get("format_version")
        if found not in storage.READABLE_FORMATS:
            readable = " and ".join(map(str, storage.READABLE_FORMATS))
            raise IncompatibleIndex(
                f"{path} has index format {found!r}; this qa reads formats {readable}. "
                f"Rebuild it: qa build CORPUS -o {path}"
            )
        missing = [field for field in REQUIRED_FIELDS if field not in manifest]
        if missing:
            raise IncompatibleIndex(
                f"{manifest_file} lacks {', '.join(missing)}; it was not written by qa or is damaged. "
                f"Rebuild it: qa build CORPUS -o {path}"
            )
        if problems := storage.manifest_problems(manifest):
            raise IncompatibleIndex(
                f"{manifest_file} is damaged: {'; '.join(problems)}. Rebuild it: qa build CORPUS -o {path}"
            )
        return manifest

    @classmethod
    @storage.reads_index  # a save waits to swap folders until the load is done
    def load(cls, path: str | os.PathLike[str]) -> Index:
        """Load the index saved at ``path`` and check that its parts agree.

        Logs a warning when the corpus it was built from has changed since (see :meth:`stale_reason`).

        Raises:
            IndexNotFound: There is no index at ``path``.
            IncompatibleIndex: The index is of another format, truncated or corrupted.
        """
        from qa.vectorstore import open_store

        manifest = cls.read_manifest(path)
        folder = storage.readable_path(Path(path))
        rebuild = f"rebuild it: qa build CORPUS -o {path}"
        for name, record in manifest["files"].items():
            if _file_record(folder / name) != record:
                raise IncompatibleIndex(
                    f"{folder / name} is missing, truncated or changed since it was saved; {rebuild}"
                )
        try:
            lexical = LexicalIndex.load(folder / storage.LEXICAL)
            # Mapped, not read: a search reads only its hits' sentences, and a large collection's array
            # is gigabytes (3 GB at a million passages) that a server need not hold.
            sentence_vectors = np.load(folder / storage.SENTENCE_VECTORS, mmap_mode="r", allow_pickle=False)
            passages, sentences, acronyms = _read_passages(folder / storage.PASSAGES)
            documents = [
                json.loads(line) for line in (folder / "documents.jsonl").read_text(encoding="utf-8").splitlines()
            ]
            dense = open_store(folder, manifest["dense"])
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
            raise IncompatibleIndex(f"cannot read the index at {path} ({error}); {rebuild}") from error
        try:
            _check_store(path, manifest, dense, passages, lexical.count, rebuild)
            if sentence_vectors.ndim != 2 or sentence_vectors.shape[1] != manifest["dim"]:
                raise IncompatibleIndex(
                    f"{path}: vectors are not of the manifest's dimension {manifest['dim']}; {rebuild}"
                )
            if sentence_vectors.shape[0] != manifest["sentences"] or sum(map(len, sentences)) != manifest["sentences"]:
                raise IncompatibleIndex(f"{path}: the sentence vectors do not match the passages; {rebuild}")
        except BaseException:
            dense.close()
            raise
        corpus = manifest_corpus(path, manifest)
        index = cls(
            passages=passages,
            sentences=sentences,
            acronyms=acronyms,
            sentence_vectors=sentence_vectors,
            dense=dense,
            lexical=lexical,
            documents=documents,
            manifest=manifest,
            encoder=Encoder(manifest["model"]),
            corpus=corpus,
        )
        if corpus is not None and corpus.is_dir() and (reason := index.stale_reason()):
            logger.warning("the index at %s is stale: %s", path, reason)
        return index

    # ----------------------------------------------------------------------------------------- state

    def __len__(self) -> int:
        return len(self.passages)

    def __repr__(self) -> str:
        return f"Index({len(self.passages)} passages from {len(self.documents)} documents, model={self.manifest['model']!r})"

    def stale_reason(
        self,
        corpus: str | os.PathLike[str] | None = None,
        *,
        model: str | None = None,
        max_words: int | None = None,
        overlap: int | None = None,
    ) -> str | None:
        """Why the index no longer matches its corpus or the wanted settings, or ``None`` if it does.

        Args:
            corpus: The folder to compare with; default, the one it was built from (if any).
            model, max_words, overlap: Settings to compare with the manifest; ``None`` skips a setting.
        """
        chunking = self.manifest["chunking"]
        if model is not None and model_name(model) != self.manifest["model"]:
            return f"it was built with the model {self.manifest['model']!r}, not {model_name(model)!r}"
        if max_words is not None and max_words != chunking["max_words"]:
            return f"it was built with max_words={chunking['max_words']}, not {max_words}"
        if overlap is not None and overlap != chunking["overlap"]:
            return f"it was built with overlap={chunking['overlap']}, not {overlap}"
        folder = Path(corpus) if corpus is not None else self.corpus
        return corpus_change(self.manifest, folder) if folder is not None else None

    # ---------------------------------------------------------------------------------------- search

    def search(self, question: str, k: int = 5, *, mode: str = "hybrid") -> list[Hit]:
        """The ``k`` passages that best answer ``question``, best first.

        Args:
            question: A question or keywords (at most 2,000 characters).
            k: How many passages; all of them when the index holds fewer.
            mode: ``hybrid`` (default: meaning and words together), ``dense`` (meaning) or ``lexical`` (BM25).

        Raises:
            ValueError: An empty or too long question, ``k < 1``, or an unknown mode.
        """
        question = check_question(question)
        k = check_k(k)
        mode = check_mode(mode)
        query = self._encoder.encode_query(question)
        terms = self._lexical.terms(question)  # once: ranking and every hit's highlight use them
        count = len(self.passages)
        pool = min(count, max(k, CANDIDATES))
        if mode == "dense":
            scores, ids = self._dense.search(query[None, :], min(count, k))
            found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        elif mode == "lexical":
            lexical = self._lexical.scores(terms)
            found = [(int(i), float(lexical[i])) for i in top_indices(lexical, k)]
        else:
            found = self._hybrid(terms, query, k, pool)
        hits = [
            Hit(self.passages[i], score, rank, self._highlights(i, query, terms))
            for rank, (i, score) in enumerate(found, start=1)
        ]
        return [self._with_page(hit) for hit in hits] if self._pages else hits

    def _with_page(self, hit: Hit) -> Hit:
        """``hit`` with the page its highlighted sentence (else its passage) starts on, if its document has pages."""
        pages = self._pages.get(hit.doc_id)
        start = hit.start + (hit.highlights[0][0] if hit.highlights else 0)
        return dataclasses.replace(hit, page=page_at(pages, start)) if pages else hit

    def _hybrid(self, terms: QueryTerms, query: np.ndarray, k: int, pool: int) -> list[tuple[int, float]]:
        _, dense_ids = self._dense.search(query[None, :], pool)
        lexical = self._lexical.scores(terms)
        candidates = np.union1d(dense_ids[0][dense_ids[0] >= 0], top_indices(lexical, pool))
        passage_scores = self._passage_vectors(candidates) @ query
        sentence_scores = self._best_sentence_scores(candidates, query, passage_scores)
        fused = fuse(passage_scores, sentence_scores, lexical[candidates], DEFAULT_WEIGHTS)
        order = top_indices(fused, k)
        return [(int(candidates[j]), float(fused[j])) for j in order]

    def _passage_vectors(self, ids: np.ndarray) -> np.ndarray:
        return self._dense.vectors(ids.astype(np.int64))

    def _best_sentence_scores(self, passages: np.ndarray, query: np.ndarray, passage_scores: np.ndarray) -> np.ndarray:
        """The cosine of each passage's best sentence (one product over all their sentences).

        A passage without sentences (whitespace only; never from qa's splitter) counts as its own best sentence.
        """
        starts = self._sentence_offsets[passages]
        counts = self._sentence_offsets[passages + 1] - starts
        rows = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        scores = self._sentence_vectors[rows].astype(np.float32) @ query
        best = np.asarray(passage_scores, dtype=np.float32).copy()
        has = counts > 0
        best[has] = np.maximum.reduceat(scores, (np.cumsum(counts) - counts)[has]) if has.any() else []
        return best

    def _sentence_scores(self, passage: int, query: np.ndarray) -> np.ndarray:
        rows = self._sentence_vectors[self._sentence_offsets[passage] : self._sentence_offsets[passage + 1]]
        scores: np.ndarray = rows.astype(np.float32) @ query
        return scores

    def _passages_by_document(self, chunking: dict[str, Any]) -> dict[str, _KeptDocument]:
        """Where each document's passages are, for a rebuild with the same ``chunking`` to keep where unchanged.

        Only documents that lost no passage as a copy of another's: those are split again, since what
        they repeat may have changed.
        """
        if {key: self.manifest["chunking"].get(key) for key in chunking} != chunking:
            return {}
        kept: dict[str, _KeptDocument] = {}
        row = 0
        for record in self.documents:
            count = int(record["passages"])
            if record.get("repeats") == 0 and count:
                kept[record["id"]] = _KeptDocument(record["title"], record["sha256"], range(row, row + count))
            row += count
        return kept

    def _row_of(
        self, passage: Passage, sentences: list[tuple[int, int]], acronyms: dict[str, str], rows: dict[str, int]
    ) -> int:
        """The row of a passage of this index that embeds and counts as ``passage`` does (same text, title,
        section, sentences and acronyms), else -1; ``rows``: this index's rows by passage text."""
        row = rows.get(passage.text, -1)
        if row >= 0:
            old = self.passages[row]
            same = (old.title, old.section) == (passage.title, passage.section) and self._acronyms[row] == acronyms
            if not same or self._sentences[row] != sentences:
                return -1
        return row

    def _copy_vectors(
        self, split: _Split, passage_vectors: np.ndarray, sentence_vectors: np.ndarray, sentence_mean: bool
    ) -> np.ndarray:
        """Copy the vectors of the passages ``split`` takes from this index (``previous_rows``), and of
        their sentences, into a new build's arrays; return which passages' vectors were copied.

        A passage vector is copied when it is the kind wanted (the model's, or the mean of the
        sentences') and stored exactly (not as IVF-PQ codes).
        """
        kept = np.flatnonzero(split.previous_rows >= 0)
        old = split.previous_rows[kept]
        new_offsets = _sentence_offsets(split.sentences)
        wanted = "sentence-mean" if sentence_mean else "own"
        copy_passages = manifest_passage_vectors(self.manifest) == wanted and self._dense.exact
        done = np.zeros(len(split.passages), dtype=bool)
        stored = self._passage_vectors(old) if copy_passages else None  # one request, should it go to Milvus
        # Copied run by run: passages that follow each other here and there (nearly all of them, when
        # a few documents changed) go as one block of memory.
        breaks = np.flatnonzero((np.diff(kept) != 1) | (np.diff(old) != 1)) + 1
        for first, last in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(kept)].tolist(), strict=True):
            if first == last:
                continue
            here, there = int(kept[first]), int(old[first])
            count = last - first
            sentence_vectors[new_offsets[here] : new_offsets[here + count]] = self._sentence_vectors[
                self._sentence_offsets[there] : self._sentence_offsets[there + count]
            ]
            if stored is not None:
                passage_vectors[here : here + count] = stored[first:last]
                done[here : here + count] = True
        return done

    def _known_vectors(self, rows: np.ndarray) -> dict[bytes, tuple[np.ndarray, int]]:
        """Where the vectors of these passages and their sentences are, as (array, row), by the hash of
        the text embedded: for a rebuild to reuse.

        Rows, not copies: at 100,000 passages, float32 copies of the sentence vectors alone take 700 MB.
        """
        sentences = self._sentence_vectors
        known = {
            _content_key(self.passages[i].text[s:e]): (sentences, row)
            for i in rows.tolist()
            for row, (s, e) in enumerate(self._sentences[i], start=int(self._sentence_offsets[i]))
        }
        # A sentence-mean passage vector is not the model's vector of the passage text: not reusable as one.
        if (
            len(rows) and manifest_passage_vectors(self.manifest) == "own" and self._dense.exact
        ):  # FAISS flat and HNSW, and Milvus, keep exact copies; IVF-PQ only codes
            vectors = self._passage_vectors(rows)
            known.update(
                {_content_key(embedding_text(self.passages[i])): (vectors, j) for j, i in enumerate(rows.tolist())}
            )
        return known

    def _highlights(self, passage: int, query: np.ndarray, terms: QueryTerms) -> tuple[tuple[int, int], ...]:
        sentences = self._sentences[passage]
        if not sentences:
            return ()
        text = self.passages[passage].text
        acronyms = self._acronyms[passage]
        lexical = self._lexical.text_scores(terms, [lexical_text(text[s:e], acronyms) for s, e in sentences])
        return (sentences[best_sentence(self._sentence_scores(passage, query), lexical)],)


def corpus_change(manifest: dict[str, Any], folder: Path) -> str | None:
    """Why the documents in ``folder`` differ from those the manifest's index was built from, or ``None``."""
    try:
        documents = load_folder(folder)
    except EmptyCorpus as error:
        return str(error)
    if fingerprint(documents) != manifest["corpus"]["fingerprint"]:
        return f"the documents in {folder} have changed since it was built"
    return None


def _backend_and_uri(backend: str | None, uri: str | None, previous: Index | None) -> tuple[str, str | None]:
    """The vector store a build uses: as asked, else as ``previous`` used, else FAISS."""
    from qa.milvus import default_uri
    from qa.vectorstore import backend_of

    before = backend_of(previous.manifest["dense"]) if previous is not None else None
    backend = backend or ("milvus" if uri else None) or before or "faiss"
    if backend == "milvus" and uri is None:
        previous_uri = getattr(previous._dense, "uri", None) if previous is not None and before == "milvus" else None
        uri = previous_uri or default_uri()
    return backend, uri


def _replaced_dense(target: Path) -> list[dict[str, Any]]:
    """The ``dense`` block of the index that saving to ``target`` replaces, if there is one."""
    try:
        manifest = json.loads((storage.readable_path(target) / storage.MANIFEST).read_text(encoding="utf-8"))
        dense = manifest["dense"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [dense] if isinstance(dense, dict) else []


def _check_store(
    path: str | os.PathLike[str],
    manifest: dict[str, Any],
    dense: VectorStore,
    passages: list[Passage],
    lexical_count: int,
    rebuild: str,
) -> None:
    """Raise ``IncompatibleIndex`` unless the vector store holds a vector of the manifest's dimension a passage."""
    count, stored = manifest["count"], dense.count
    if not (stored == count == len(passages) == lexical_count):
        raise IncompatibleIndex(
            f"{path} is inconsistent: the manifest says {count} passages, {dense.label} holds {stored}, "
            f"the passages file {len(passages)}, the BM25 index {lexical_count}; {rebuild}"
        )
    if dense.dim != manifest["dim"]:
        raise IncompatibleIndex(f"{path}: vectors are not of the manifest's dimension {manifest['dim']}; {rebuild}")


def manifest_passage_vectors(manifest: dict[str, Any]) -> str:
    """How the index's passage vectors were made (``PASSAGE_VECTORS``); indexes from before the choice: ``own``."""
    return str(manifest.get("embedding", {}).get("passage_vectors", "own"))


def manifest_corpus(path: str | os.PathLike[str], manifest: dict[str, Any]) -> Path | None:
    """The corpus folder an index was built from, if it was built from one."""
    corpus_path = manifest.get("corpus", {}).get("path")
    return (Path(path).absolute() / corpus_path).resolve() if corpus_path else None


def _file_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _read_passages(path: Path) -> tuple[list[Passage], list[list[tuple[int, int]]], list[dict[str, str]]]:
    passages: list[Passage] = []
    sentences: list[list[tuple[int, int]]] = []
    acronyms: list[dict[str, str]] = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            sentences.append([(int(s), int(e)) for s, e in record.pop("sentences")])
            acronyms.append({str(k): str(v) for k, v in record.pop("acronyms").items()})
            passages.append(Passage(**record))
    return passages, sentences, acronyms


def _embed(
    split: _Split,
    encoder: Encoder,
    batch_size: int,
    progress: bool,
    previous: Index | None,
    report: Callable[[float, str], None],
    *,
    sentence_mean: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the passages (float32) and of their sentences (float16).

    With ``sentence_mean``, a passage's vector is the length-weighted mean of its sentences' vectors,
    so only the sentences go through the model. The passages of documents kept unchanged from
    ``previous`` take their vectors from it row by row; other texts it embedded are found by their
    hash; each other distinct text is embedded once. New vectors go straight into the two result
    arrays, so a build holds each vector once (no full intermediate array): memory grows with the
    collection, not with a multiple of it.
    """
    dim = encoder.dim
    passage_vectors = np.zeros((len(split.passages), dim), dtype=np.float32)
    sentence_vectors = np.zeros((sum(map(len, split.sentences)), dim), dtype=np.float16)
    kept = split.previous_rows >= 0
    passage_done = np.zeros(len(split.passages), dtype=bool)
    known: dict[bytes, tuple[np.ndarray, int]] = {}
    if previous is not None:
        passage_done = previous._copy_vectors(split, passage_vectors, sentence_vectors, sentence_mean)
        known = previous._known_vectors(np.setdiff1d(np.arange(len(previous)), split.previous_rows[kept]))
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
    sentence_rows = _sentence_offsets(split.sentences)
    for index in np.flatnonzero(~kept).tolist():  # a kept passage's sentences were copied
        passage = split.passages[index]
        for row, (start, end) in enumerate(split.sentences[index], start=int(sentence_rows[index])):
            visit(-1 - row, index, start, end, passage.text[start:end])
    known.clear()  # the reused vectors are placed: drop the references (and the copy of the passage vectors)
    todo.clear()

    def text_of(position: int) -> str:
        passage, start, end = sources[3 * position : 3 * position + 3]
        return embedding_text(split.passages[passage]) if start < 0 else split.passages[passage].text[start:end]

    for positions, vectors in _encode_in_chunks(encoder, text_of, lengths, batch_size, progress, report):
        for position, vector in zip(positions, vectors, strict=True):
            put(first[position], vector)
    for position, place in repeats:  # the same text again: the vector its first place got
        source = first[position]
        put(place, passage_vectors[source] if source >= 0 else sentence_vectors[-1 - source])
    if sentence_mean:
        _mean_of_sentences(split, sentence_vectors, passage_vectors, skip=passage_done)
    return passage_vectors, sentence_vectors


def _mean_of_sentences(
    split: _Split, sentence_vectors: np.ndarray, passage_vectors: np.ndarray, *, skip: np.ndarray
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
    report: Callable[[float, str], None],
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield ``(positions, vectors)`` of the texts ``text_of(0 .. len(lengths) - 1)``, a few batches at a time."""
    from tqdm import tqdm

    # Long texts first, so each batch pads little.
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").tolist()
    # A few batches per call (a second or two): the model is free between calls for a server's searches.
    chunk = max(batch_size, 128)
    with tqdm(total=len(order), desc="embedding", unit="text", disable=not progress, file=sys.stderr) as bar:
        for begin in range(0, len(order), chunk):
            rows = order[begin : begin + chunk]
            yield rows, encoder.encode([text_of(i) for i in rows], batch_size=batch_size)
            bar.update(len(rows))
            report(
                0.05 + 0.9 * (begin + len(rows)) / len(order),
                f"embedding {begin + len(rows):,} of {len(order):,} texts",
            )
