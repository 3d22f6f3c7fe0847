"""``Index``: the face of qa. It builds, saves, loads and searches; the work is done by the modules below.

- :mod:`qa.build`: reading and splitting documents, embedding what is new, indexing vectors and words;
- :mod:`qa.index_files`: the files of a saved index, written atomically and checked when read;
- :mod:`qa.retrieval`: from a question to ranked passages and their answering sentences;
- :mod:`qa.manifest`: what an index is, as ``manifest.json`` records it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from qa import build, retrieval, storage
from qa.build import BuildReport, Executor, Progress
from qa.contents import DocumentRecord, IndexContents
from qa.documents import Corpus, Document, iter_documents, read_corpus
from qa.embedding import DEFAULT_BATCH_SIZE, Encoder, asked_runtime, load_encoder, model_name, runtime_name
from qa.errors import EmptyCorpus
from qa.index_files import read_index, write_index
from qa.manifest import Manifest, read_manifest
from qa.passage import Answer, Hit, Passage
from qa.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP

logger = logging.getLogger(__name__)

Source = str | os.PathLike[str] | Corpus | Iterable[Document]
"""What an index is built from: a folder of documents, a folder read already, or ``qa.Document`` objects."""


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
        contents: IndexContents,
        encoder: Encoder,
        corpus: Path | None = None,
        build_report: BuildReport | None = None,
    ) -> None:
        manifest = contents.manifest
        if encoder.name != manifest.model:
            raise ValueError(
                f"the index was built with the model {manifest.model!r}; its questions must be embedded "
                f"by that model too, not by {encoder.name!r}"
            )
        if encoder.runtime != manifest.runtime:
            raise ValueError(
                f"the index was built with {manifest.model!r} on the {manifest.runtime} runtime; its questions must "
                f"be embedded on that runtime too, not on {encoder.runtime}. Load it without an encoder (qa makes "
                f"the right one), or rebuild it with --runtime {encoder.runtime}"
            )
        self.contents = contents
        self.encoder = encoder
        self.corpus = corpus
        """The folder the index was built from (absolute), if it was built from one."""
        self.build_report = build_report
        """What the build that made this index did (``None`` for a loaded index)."""

    @property
    def manifest(self) -> Manifest:
        return self.contents.manifest

    @property
    def passages(self) -> list[Passage]:
        return list(self.contents.passages)

    @property
    def documents(self) -> list[DocumentRecord]:
        return list(self.contents.documents)

    @classmethod
    def build(
        cls,
        source: Source,
        *,
        model: str | None = None,
        encoder: Encoder | None = None,
        runtime: str | None = None,
        max_words: int = DEFAULT_MAX_WORDS,
        overlap: int = DEFAULT_OVERLAP,
        index_type: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        previous: Index | None = None,
        on_progress: Progress | None = None,
        on_stage: Callable[[str], None] | None = None,
        backend: str | None = None,
        uri: str | None = None,
        passage_vectors_from: str | None = None,
        executor: Executor | None = None,
    ) -> Index:
        """Split, embed and index a collection.

        Args:
            source: A folder of ``.txt``/``.md``/``.html``/``.pdf``/``.docx`` files (read recursively), a ``qa.Corpus`` (a folder
                read already), or ``qa.Document`` objects.
            model: A sentence-transformers name or folder; default ``$QA_MODEL``, else all-MiniLM-L6-v2.
            encoder: The encoder itself (see ``qa.embedding``), instead of ``model``.
            runtime: How the model runs: ``torch``, ``onnx`` (its ONNX export, the same vectors, faster
                questions) or ``onnx-int8`` (int8 weights: fastest, vectors at cosine 0.99 to torch's);
                default ``$QA_RUNTIME``, else ``previous``'s, else ``qa.embedding.DEFAULT_RUNTIME``.
                Questions to the index are embedded on the same runtime.
            max_words: The most words in a passage.
            overlap: Sentences each passage repeats from the one before it.
            index_type: ``flat`` (exact), ``hnsw`` or ``ivfpq`` (approximate, for large collections), or
                ``auto``: exact below 25,000 passages, HNSW above.
            batch_size: Texts the model embeds at once.
            progress: Show a progress bar on stderr; default: when stderr is a terminal.
            previous: An index of an earlier version of the collection: passages whose text is unchanged
                reuse its vectors and BM25 word counts instead of being embedded and tokenized again,
                and an HNSW graph is updated rather than built anew.
            on_progress: Called with the fraction done (0 to 1) and what is being done, e.g. by a web page.
            on_stage: Called with the name of each stage (``qa.build.STAGES``) as it begins.
            backend: Where the passage vectors go: ``faiss`` (a file in the index folder) or ``milvus`` (a
                collection, new for each build); default: ``previous``'s backend, else ``faiss``.
            uri: For ``milvus``: a local Milvus Lite file (``./milvus.db``) or a server
                (``http://host:19530``, credentials in ``$QA_MILVUS_TOKEN``); default: ``previous``'s URI,
                else ``$QA_MILVUS_URI``.
            passage_vectors_from: ``own`` (the model reads each passage) or ``sentence-mean`` (the mean of
                its sentences' vectors: one model pass instead of two, about twice as fast to build,
                slightly worse ranking); default: ``previous``'s, else ``own``.
            executor: Where the texts are embedded: by default in this process; a
                ``qa.distributed.RayExecutor`` embeds them on a Ray cluster (``pip install 'qa[ray]'``), for the
                same index.

        Raises:
            EmptyCorpus: No readable document, or no text in them.
            ValueError: A bad argument.
            MilvusUnavailable: The Milvus URI cannot be reached (checked before any embedding).
        """
        if asked_runtime(runtime) is None and encoder is None and previous is not None:
            runtime = previous.manifest.runtime  # a rebuild keeps its runtime, as it keeps how passage vectors are made
        encoder = _encoder(model, encoder, runtime)
        corpus, documents = _documents_of(source)
        contents, report = build.build_contents(
            documents,
            encoder=encoder,
            corpus=corpus,
            max_words=max_words,
            overlap=overlap,
            index_type=index_type,
            batch_size=batch_size,
            progress=_stderr_is_terminal() if progress is None else progress,
            previous=previous.contents if previous is not None else None,
            on_progress=on_progress,
            on_stage=on_stage,
            backend=backend,
            uri=uri,
            passage_vectors_from=passage_vectors_from,
            executor=executor,
        )
        return cls(contents, encoder, corpus, report)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the folder ``path``, replacing what is there only once all is written."""
        write_index(self.contents, Path(path), self.corpus)

    @classmethod
    @storage.reads_index  # a save waits to swap folders until the load is done
    def load(cls, path: str | os.PathLike[str], *, encoder: Encoder | None = None, warn_if_stale: bool = True) -> Index:
        """Load the index saved at ``path`` and check that its parts agree.

        Args:
            encoder: The encoder of the index's model, e.g. one already loaded; default: made from its name.
            warn_if_stale: Log a warning when the corpus it was built from has changed since (this reads
                the corpus; see :meth:`stale_reason`).

        Raises:
            IndexNotFound: There is no index at ``path``.
            IncompatibleIndex: The index is of another format, truncated or corrupted.
            ValueError: ``encoder`` is not of the index's model and runtime.
            QAError: The index's runtime is an ONNX one and the model cannot be exported (``ExportFailed``).
        """
        contents = read_index(path)
        manifest = contents.manifest
        try:
            index = cls(
                contents,
                encoder or load_encoder(manifest.model, runtime=manifest.runtime),
                manifest.corpus_folder(path),
            )
        except BaseException:
            contents.dense.close()
            raise
        if warn_if_stale and index.corpus is not None and index.corpus.is_dir() and (reason := index.stale_reason()):
            logger.warning("the index at %s is stale: %s", path, reason)
        return index

    read_manifest = staticmethod(read_manifest)

    def close(self) -> None:
        """Let go of the vector store's connections (a Milvus Lite file becomes free for other processes)."""
        self.contents.dense.close()

    def __len__(self) -> int:
        return len(self.contents)

    def __repr__(self) -> str:
        return (
            f"Index({len(self)} passages from {len(self.contents.documents)} documents, model={self.manifest.model!r}, "
            f"runtime={self.manifest.runtime!r})"
        )

    def stale_reason(
        self,
        corpus: str | os.PathLike[str] | Corpus | None = None,
        *,
        model: str | None = None,
        max_words: int | None = None,
        overlap: int | None = None,
        runtime: str | None = None,
    ) -> str | None:
        """Why the index no longer matches its corpus or the wanted settings, or ``None`` if it does.

        Args:
            corpus: The folder to compare with (or a ``Corpus`` read from it); default, the one it was
                built from (if any).
            model, max_words, overlap, runtime: Settings to compare with the manifest; ``None`` skips a setting.
        """
        if reason := build.settings_change(
            self.manifest, model=model, max_words=max_words, overlap=overlap, encoder=self.encoder, runtime=runtime
        ):
            return reason
        if corpus is None and self.corpus is None:
            return None
        if not isinstance(corpus, Corpus):
            try:
                corpus = read_corpus(corpus if corpus is not None else self.corpus)  # type: ignore[arg-type]
            except EmptyCorpus as error:
                return str(error)
        return build.corpus_change(self.manifest, corpus.folder, corpus.documents)

    def search(self, question: str, k: int = 5, *, mode: str = "hybrid") -> list[Hit]:
        """The ``k`` passages that best answer ``question``, best first.

        Args:
            question: A question or keywords (at most 2,000 characters).
            k: How many passages; all of them when the index holds fewer.
            mode: ``hybrid`` (default: meaning and words together), ``dense`` (meaning) or ``lexical`` (BM25).

        Raises:
            ValueError: An empty or too long question, ``k < 1``, or an unknown mode.
        """
        return retrieval.search(self.contents, self.encoder, question, k, mode=mode)

    def ask(self, question: str, k: int = 5, *, mode: str = "hybrid") -> Answer:
        """:meth:`search`'s hits, with whether they are likely to hold the answer at all.

        Example:
            >>> answer = index.ask("How many warheads does Pakistan have?")
            >>> answer.answered, answer.hits[0].confidence
            (False, 0.12)
        """
        return retrieval.answer(self.contents, self.encoder, question, k, mode=mode)


def _encoder(model: str | None, encoder: Encoder | None, runtime: str | None) -> Encoder:
    if encoder is None:
        return load_encoder(model, runtime=runtime)
    if model is not None and model_name(model) != encoder.name:
        raise ValueError(f"model={model!r} and an encoder of {encoder.name!r} were both given; give one")
    if runtime is not None and runtime_name(runtime) != encoder.runtime:
        raise ValueError(
            f"runtime={runtime!r} and an encoder on the {encoder.runtime} runtime were both given; give one"
        )
    return encoder


def _documents_of(source: Source) -> tuple[Path | None, Iterable[Document]]:
    """The corpus folder of ``source`` (if it is one) and its documents, read as the build goes."""
    if isinstance(source, Corpus):
        return source.folder, source.documents
    if isinstance(source, (str, os.PathLike)):
        return Path(source).resolve(), iter_documents(source)  # raises EmptyCorpus naming a missing folder

    def checked() -> Iterable[Document]:
        for document in source:
            if not isinstance(document, Document):
                raise ValueError(f"Index.build takes a folder or qa.Document objects; got {type(document).__name__}")
            yield document

    return None, checked()


def _stderr_is_terminal() -> bool:
    import sys

    return sys.stderr.isatty()
