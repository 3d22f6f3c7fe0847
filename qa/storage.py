"""Where an index lives on disk: fixed file names, atomic replacement, and one writer at a time.

A save writes a hidden sibling folder and renames it into place, so a reader sees the old index or the
new one, never a mix. If a crash falls between the two renames, the old index waits in its backup
folder; ``readable_path`` reads it from there and the next save puts it back first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from qa.errors import IndexBusy

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
PASSAGES = "passages.jsonl"
SENTENCE_VECTORS = "sentences.npy"
LEXICAL = "bm25"


def _backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.old-*"))


def _temporaries(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


def readable_path(path: Path) -> Path:
    """The folder to read the index at ``path`` from: itself, or its backup if a save was cut short."""
    if (path / MANIFEST).exists():
        return path
    for backup in _backups(path):
        if (backup / MANIFEST).exists():
            return backup
    return path


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _recover(path: Path) -> None:
    """Undo what a killed save left: restore a lone backup, delete half-written folders."""
    backups = _backups(path)
    if not path.exists() and backups:
        os.rename(backups[-1], path)
        backups = backups[:-1]
    for leftover in backups + _temporaries(path):
        shutil.rmtree(leftover, ignore_errors=True)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(folder)`` on a fresh hidden folder, then swap it in for ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; an index is saved as a folder. Choose another path")
    with writer_lock(path):
        _recover(path)
        temporary = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temporary.mkdir()
        try:
            write(temporary)
            _fsync_tree(temporary)
            backup = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            if path.exists():
                os.rename(path, backup)
            os.rename(temporary, path)
            _fsync_dir(path.parent)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        shutil.rmtree(backup, ignore_errors=True)


_held: dict[str, int] = {}
_held_guard = threading.Lock()


@contextlib.contextmanager
def writer_lock(path: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the lock that lets one process at a time write the index at ``path``.

    Re-entrant within a process (a build that holds it may save). With ``wait=False`` a lock held by
    another process raises ``IndexBusy`` at once.
    """
    path = Path(path).absolute()
    key = str(path)
    with _held_guard:
        if key in _held:
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = path.parent / f".{path.name}.lock"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise IndexBusy(
                f"{path} is being written by process {holder}; wait for that build to finish and try again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        with _held_guard:
            _held[key] = 1
        try:
            yield
        finally:
            with _held_guard:
                del _held[key]
    finally:
        os.close(fd)  # closing releases the lock
