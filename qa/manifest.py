"""The manifest: what an index is (model, sizes, how it was split, where its vectors are, which files it
holds), as ``manifest.json`` beside its files. Read and checked here, once, into frozen dataclasses.

Reading never trusts the file: every field is checked for its kind before use, and a field that is
missing or of the wrong kind is an ``IncompatibleIndex`` naming it and saying how to rebuild. Fields
this qa does not know (from a later qa) are ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from qa import storage
from qa.embedding import RUNTIMES
from qa.errors import IncompatibleIndex, IndexNotFound

FORMAT_VERSION = 2
"""The format a save writes. 2: an HNSW index updated in place numbers its vectors apart from the
passages (``vector_rows.npy``), which a reader of format 1 would take for passage rows."""
RUNTIME_FORMAT_VERSION = 3
"""The format of an index whose model ran on another runtime than torch (``runtime`` in the manifest): a
qa that reads only formats 1 and 2 would embed its questions with torch, so it must refuse it."""
READABLE_FORMATS = (1, 2, 3)
REQUIRED_FIELDS = ("format_version", "model", "dim", "count", "sentences", "chunking", "dense", "files")
PASSAGE_VECTORS = ("own", "sentence-mean")
"""How a passage's vector is made: ``own``, the model reads the passage with its title and section; or
``sentence-mean``, the mean of its sentences' vectors weighted by their length. Sentences are embedded
either way (hybrid ranking and highlights use them), so ``sentence-mean`` needs one model pass where
``own`` needs two: builds about twice as fast, for slightly worse ranking (README, "Building faster").
"""


@dataclass(frozen=True)
class Chunking:
    """How a collection was split: passages are kept from an earlier index only when this is equal."""

    max_words: int
    overlap: int
    max_tokens: int | None = None
    """The model's input length the passages were fitted to (``None``: an index from before it was kept)."""
    splitter: int | None = None
    """``qa.splitting.SPLITTER_VERSION`` of the code that split them (``None``: from before it was kept)."""

    def to_json(self) -> dict[str, Any]:
        return {"max_words": self.max_words, "overlap": self.overlap, "max_tokens": self.max_tokens,
                "splitter": self.splitter}  # fmt: skip


@dataclass(frozen=True)
class CorpusRecord:
    """The documents an index was built from."""

    path: str | None
    """The folder, relative to the index folder once saved (absolute in a build not yet saved; ``None``:
    built from documents given in Python)."""
    fingerprint: str
    """A hash of every document's id, title and text: equal exactly when the documents are."""
    documents: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "fingerprint": self.fingerprint, "documents": self.documents}


@dataclass(frozen=True)
class FileRecord:
    """A file of the index as it was saved: its size and SHA-256, checked on every load."""

    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "sha256": self.sha256}


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Manifest:
    """An index's ``manifest.json``."""

    model: str
    dim: int
    count: int
    """Passages."""
    sentences: int
    chunking: Chunking
    dense: Mapping[str, Any]
    """The vector store's own description: ``backend``, ``type`` and its parameters (see ``qa.vectorstore``)."""
    corpus: CorpusRecord
    files: Mapping[str, FileRecord] = field(default_factory=lambda: _frozen({}))
    lexical: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    passage_vectors: str = "own"
    """How passage vectors were made (``PASSAGE_VECTORS``); indexes from before the choice: ``own``."""
    runtime: str = "torch"
    """How the model ran (``qa.embedding.RUNTIMES``); questions are embedded by the same. Before: ``torch``."""
    format_version: int = FORMAT_VERSION
    qa_version: str | None = None
    created: str | None = None
    metric: str = "ip"
    normalized: bool = True

    @property
    def backend(self) -> str:
        """Where the passage vectors are: ``faiss`` (indexes from before backends existed) or ``milvus``."""
        return str(self.dense.get("backend", "faiss"))

    @property
    def dense_type(self) -> str:
        return str(self.dense["type"])

    def corpus_folder(self, index_path: str | os.PathLike[str]) -> Path | None:
        """The corpus folder the index at ``index_path`` was built from, if it was built from one."""
        if not self.corpus.path:
            return None
        return (Path(index_path).absolute() / self.corpus.path).resolve()

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "qa_version": self.qa_version,
            "created": self.created,
            "model": self.model,
            "runtime": self.runtime,
            "dim": self.dim,
            "metric": self.metric,
            "normalized": self.normalized,
            "count": self.count,
            "sentences": self.sentences,
            "chunking": self.chunking.to_json(),
            "embedding": {
                "passage_vectors": self.passage_vectors,
                "context": "title+section" if self.passage_vectors == "own" else "none",
            },
            "dense": dict(self.dense),
            "lexical": dict(self.lexical),
            "corpus": self.corpus.to_json(),
            "files": {name: record.to_json() for name, record in self.files.items()},
        }

    @classmethod
    def from_json(cls, data: object, path: str | os.PathLike[str]) -> Manifest:
        """The manifest ``data`` (parsed JSON) of the index at ``path`` describes, checked.

        Raises:
            IncompatibleIndex: Not an object, another format, a field missing or of the wrong kind; the
                message names the field and says how to rebuild.
        """
        source, rebuild = Path(path) / storage.MANIFEST, rebuild_hint(path)
        if not isinstance(data, dict):
            raise IncompatibleIndex(f"{source} is not a JSON object; rebuild: {rebuild}")
        found = data.get("format_version")
        if found not in READABLE_FORMATS:
            *earlier, last = map(str, READABLE_FORMATS)
            readable = f"{', '.join(earlier)} and {last}"
            raise IncompatibleIndex(
                f"{path} has index format {found!r}; this qa reads formats {readable}. Rebuild it: {rebuild}"
            )
        if missing := [name for name in REQUIRED_FIELDS if name not in data]:
            raise IncompatibleIndex(
                f"{source} lacks {', '.join(missing)}; it was not written by qa or is damaged. Rebuild it: {rebuild}"
            )
        if problems := _problems(data):
            raise IncompatibleIndex(f"{source} is damaged: {'; '.join(problems)}. Rebuild it: {rebuild}")
        chunking, corpus, embedding = data["chunking"], data["corpus"], data.get("embedding")
        return cls(
            format_version=int(found),
            model=data["model"],
            dim=data["dim"],
            count=data["count"],
            sentences=data["sentences"],
            chunking=Chunking(
                chunking["max_words"], chunking["overlap"], chunking.get("max_tokens"), chunking.get("splitter")
            ),
            dense=_frozen(data["dense"]),
            corpus=CorpusRecord(corpus["path"], corpus["fingerprint"], int(corpus.get("documents") or 0)),
            files=_frozen({name: FileRecord(r["bytes"], r["sha256"]) for name, r in data["files"].items()}),
            lexical=_frozen(data.get("lexical") or {}),
            passage_vectors=str((embedding or {}).get("passage_vectors", "own")),
            runtime=data.get("runtime", "torch"),
            qa_version=data.get("qa_version"),
            created=data.get("created"),
            metric=data.get("metric", "ip"),
            normalized=data.get("normalized", True),
        )


def format_version_for(runtime: str) -> int:
    """The format an index built with ``runtime`` is saved in: 3 when it is not torch, so that an older qa,
    which would embed its questions with torch, refuses it instead."""
    return FORMAT_VERSION if runtime == "torch" else RUNTIME_FORMAT_VERSION


def _problems(manifest: dict[str, Any]) -> list[str]:
    """What is wrong with the kinds of a manifest's fields, as phrases."""
    problems: list[str] = []

    def whole(name: str, value: object, minimum: int) -> None:
        if not _is_whole(value) or value < minimum:  # type: ignore[operator]
            problems.append(f"{name} is {value!r}, not a whole number of at least {minimum}")

    whole("dim", manifest.get("dim"), 1)
    whole("count", manifest.get("count"), 0)
    whole("sentences", manifest.get("sentences"), 0)
    if not isinstance(manifest.get("model"), str) or not manifest["model"].strip():
        problems.append(f"model is {manifest.get('model')!r}, not a model name")
    if manifest.get("runtime", "torch") not in RUNTIMES:
        problems.append(f"runtime is {manifest.get('runtime')!r}, not one of {', '.join(RUNTIMES)}")
    chunking = manifest.get("chunking")
    if not isinstance(chunking, dict):
        problems.append(f"chunking is {chunking!r}, not an object")
    else:
        whole("chunking.max_words", chunking.get("max_words"), 1)
        whole("chunking.overlap", chunking.get("overlap"), 0)
        for name in ("max_tokens", "splitter"):
            if chunking.get(name) is not None:
                whole(f"chunking.{name}", chunking.get(name), 1)
    dense = manifest.get("dense")
    if not isinstance(dense, dict) or not isinstance(dense.get("type"), str):
        problems.append(f"dense is {dense!r}, not an object with a type")
    corpus = manifest.get("corpus")
    if not (
        isinstance(corpus, dict)
        and isinstance(corpus.get("path"), (str, type(None)))
        and isinstance(corpus.get("fingerprint"), str)
    ):
        problems.append(f"corpus is {corpus!r}, not an object with a path and a fingerprint")
    for name in ("embedding", "lexical"):
        if manifest.get(name) is not None and not isinstance(manifest.get(name), dict):
            problems.append(f"{name} is {manifest.get(name)!r}, not an object")
    files = manifest.get("files")
    if not isinstance(files, dict):
        problems.append(f"files is {files!r}, not an object")
        return problems
    for name, record in files.items():
        parts = Path(name).parts
        if not name or Path(name).is_absolute() or ".." in parts or name.startswith("."):
            problems.append(f"files names {name!r}, not a file inside the index folder")
        elif not (
            isinstance(record, dict) and isinstance(record.get("sha256"), str) and _is_whole(record.get("bytes"))
        ):
            problems.append(f"files[{name!r}] is {record!r}, not {{bytes, sha256}}")
    return problems


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def rebuild_hint(path: str | os.PathLike[str]) -> str:
    return f"qa build CORPUS -o {path}"


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """The manifest of the index at ``path``, checked; no model, FAISS or other file is read.

    Raises:
        IndexNotFound: There is no index at ``path``.
        IncompatibleIndex: The manifest is unreadable, of another format, or lacks fields.
    """
    folder = storage.readable_path(Path(path))
    manifest_file = folder / storage.MANIFEST
    if not manifest_file.exists():
        raise IndexNotFound(f"no index at {path}: build one with `qa build CORPUS -o {path}`")
    try:
        data = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IncompatibleIndex(f"{manifest_file} is unreadable ({error}); rebuild: {rebuild_hint(path)}") from error
    return Manifest.from_json(data, path)
