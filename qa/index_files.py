"""An index's files: written into a fresh folder that replaces the old one whole, read back and checked.

::

    manifest.json     what the index is, with the size and SHA-256 of every other file
    vectors.faiss     the passage vectors (with vector_rows.npy for an HNSW graph updated in place)
    passages.jsonl    one passage a line, with its sentences' offsets and the acronyms it uses
    documents.jsonl   one document a line: id, title, text hash, passage count
    sentences.npy     the sentences' vectors, float16
    bm25/             bm25s's score matrix and vocabulary, and each passage's word counts

A load checks every file against the manifest and the parts against each other (counts, dimension),
so a truncated, changed or mixed-up index is refused with what to rebuild, never half-read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from qa import storage
from qa.contents import DocumentRecord, IndexContents
from qa.errors import IncompatibleIndex
from qa.lexical import LexicalIndex
from qa.manifest import FileRecord, Manifest, read_manifest, rebuild_hint
from qa.passage import Passage
from qa.vectorstore import VectorStore

DOCUMENTS = "documents.jsonl"


def file_record(path: Path) -> FileRecord | None:
    """The size and SHA-256 of the file at ``path``, or ``None`` if there is none."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return FileRecord(path.stat().st_size, digest.hexdigest())


def write_index(contents: IndexContents, target: Path, corpus: Path | None) -> None:
    """Save ``contents`` as the index folder ``target``, replacing what is there only once all is written.

    ``corpus`` is the folder the index was built from (recorded relative to ``target``), if any.

    A Milvus collection that the replaced index used, and this one does not, is dropped once the new
    index is in place.
    """
    from qa import vectorstore

    dense = contents.dense.describe(target.absolute())  # raises before writing if the store cannot go there
    replaced: list[dict[str, Any]] = []

    def write(folder: Path) -> None:
        replaced.extend(_replaced_dense(target))  # read under the writer lock, before the swap
        contents.dense.save(folder)
        with open(folder / storage.PASSAGES, "w", encoding="utf-8") as out:
            for passage, sentences, acronyms in zip(
                contents.passages, contents.sentences, contents.acronyms, strict=True
            ):
                record = passage.to_dict() | {"sentences": [list(s) for s in sentences], "acronyms": dict(acronyms)}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        with open(folder / DOCUMENTS, "w", encoding="utf-8") as out:
            for document in contents.documents:
                out.write(json.dumps(document.to_json(), ensure_ascii=False) + "\n")
        np.save(folder / storage.SENTENCE_VECTORS, contents.sentence_vectors, allow_pickle=False)
        contents.lexical.save(folder / storage.LEXICAL)
        manifest = contents.manifest
        # Relative, so that a project folder can move with its index.
        where = os.path.relpath(corpus, target.absolute()) if corpus is not None else None
        corpus_record = dataclasses.replace(manifest.corpus, path=where)
        names = [*contents.dense.files, storage.PASSAGES, DOCUMENTS, storage.SENTENCE_VECTORS]
        names += sorted(p.relative_to(folder).as_posix() for p in (folder / storage.LEXICAL).rglob("*") if p.is_file())
        files = {name: found for name in names if (found := file_record(folder / name)) is not None}
        manifest = dataclasses.replace(
            manifest, dense=MappingProxyType(dense), corpus=corpus_record, files=MappingProxyType(files)
        )
        text = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n"
        (folder / storage.MANIFEST).write_text(text, encoding="utf-8")

    storage.write_atomically(target, write)
    for old in replaced:
        vectorstore.retire(old, dense, target)


def _replaced_dense(target: Path) -> list[dict[str, Any]]:
    """The ``dense`` block of the index that saving to ``target`` replaces, if there is one."""
    try:
        manifest = json.loads((storage.readable_path(target) / storage.MANIFEST).read_text(encoding="utf-8"))
        dense = manifest["dense"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [dense] if isinstance(dense, dict) else []


def read_index(path: str | os.PathLike[str]) -> IndexContents:
    """Read the index saved at ``path`` and check that its files are as saved and its parts agree.

    Call it under ``storage.reading(path)`` so that a save does not swap folders while it reads.

    Raises:
        IndexNotFound: There is no index at ``path``.
        IncompatibleIndex: The index is of another format, truncated or corrupted.
    """
    from qa.vectorstore import open_store

    manifest = read_manifest(path)
    folder = storage.readable_path(Path(path))
    rebuild = f"rebuild it: {rebuild_hint(path)}"
    for name, record in manifest.files.items():
        if file_record(folder / name) != record:
            raise IncompatibleIndex(f"{folder / name} is missing, truncated or changed since it was saved; {rebuild}")
    try:
        lexical = LexicalIndex.load(folder / storage.LEXICAL)
        # Mapped, not read: a search reads only its hits' sentences, and a large collection's array
        # is gigabytes (3 GB at a million passages) that a server need not hold.
        sentence_vectors = np.load(folder / storage.SENTENCE_VECTORS, mmap_mode="r", allow_pickle=False)
        passages, sentences, acronyms = _read_passages(folder / storage.PASSAGES)
        documents = [
            DocumentRecord.from_json(json.loads(line))
            for line in (folder / DOCUMENTS).read_text(encoding="utf-8").splitlines()
        ]
        dense = open_store(folder, dict(manifest.dense))
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
        raise IncompatibleIndex(f"cannot read the index at {path} ({error}); {rebuild}") from error
    try:
        _check_parts(path, manifest, dense, passages, lexical.count, rebuild)
        if sentence_vectors.ndim != 2 or sentence_vectors.shape[1] != manifest.dim:
            raise IncompatibleIndex(f"{path}: vectors are not of the manifest's dimension {manifest.dim}; {rebuild}")
        if sentence_vectors.shape[0] != manifest.sentences or sum(map(len, sentences)) != manifest.sentences:
            raise IncompatibleIndex(f"{path}: the sentence vectors do not match the passages; {rebuild}")
        if sum(d.passages for d in documents) != len(passages):
            raise IncompatibleIndex(f"{path}: the documents file does not match the passages; {rebuild}")
    except BaseException:
        dense.close()
        raise
    return IndexContents(
        manifest=manifest,
        passages=passages,
        sentences=sentences,
        acronyms=acronyms,
        sentence_vectors=sentence_vectors,
        dense=dense,
        lexical=lexical,
        documents=documents,
    )


def _check_parts(
    path: str | os.PathLike[str],
    manifest: Manifest,
    dense: VectorStore,
    passages: list[Passage],
    lexical_count: int,
    rebuild: str,
) -> None:
    """Raise ``IncompatibleIndex`` unless the vector store holds a vector of the manifest's dimension a passage."""
    count, stored = manifest.count, dense.count
    if not (stored == count == len(passages) == lexical_count):
        raise IncompatibleIndex(
            f"{path} is inconsistent: the manifest says {count} passages, {dense.label} holds {stored}, "
            f"the passages file {len(passages)}, the BM25 index {lexical_count}; {rebuild}"
        )
    if dense.dim != manifest.dim:
        raise IncompatibleIndex(f"{path}: vectors are not of the manifest's dimension {manifest.dim}; {rebuild}")


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
