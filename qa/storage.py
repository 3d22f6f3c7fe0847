"""Where an index lives on disk: fixed file names, atomic replacement, and one writer at a time.

A save writes a hidden sibling folder and renames it into place, so a reader sees the old index or the
new one, never a mix. If a crash falls between the two renames, the old index waits in its backup
folder; ``readable_path`` reads it from there and the next save puts it back first. Folders left by a
killed save are never read, and the next save deletes them.

Two locks, each a file beside the index that the kernel releases when its holder dies:

- ``.NAME.lock``: held by a writer (a build and its save) from start to end; one writer at a time.
- ``.NAME.swap.lock``: shared by readers while they load the index, taken alone by a save only for the
  instant of the renames; so a load never reads half of one index and half of the next.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from qa.errors import IndexBusy

MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
VECTOR_ROWS = "vector_rows.npy"
PASSAGES = "passages.jsonl"
SENTENCE_VECTORS = "sentences.npy"
LEXICAL = "bm25"


def _backups(path: Path) -> list[Path]:
    """Backup folders of ``path``, oldest first."""
    return sorted(path.parent.glob(f".{path.name}.old-*"), key=_modified)


def _temporaries(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


def _modified(path: Path) -> int:
    try:
        return path.lstat().st_mtime_ns
    except OSError:
        return 0


def readable_path(path: Path) -> Path:
    """The folder to read the index at ``path`` from: itself, or its backup if a save was cut short."""
    if (path / MANIFEST).exists():
        return path
    for backup in reversed(_backups(path)):
        if (backup / MANIFEST).exists():
            return backup
    return path


def generation(path: Path) -> tuple[int, int] | None:
    """What changes each time an index is saved at ``path`` (its manifest's inode and time), or ``None``.

    Cheap to ask often: a server can poll it to notice that another process (``qa build``) saved the index.
    """
    try:
        stat = (readable_path(Path(path)) / MANIFEST).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    for sub in [*(d for d in folder.rglob("*") if d.is_dir()), folder]:
        _fsync_dir(sub)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _recover(path: Path) -> None:
    """Undo what a killed save left: restore a lone backup, delete half-written folders.

    Called with the writer lock held, so no temporary folder found here belongs to a live save.
    """
    if _backups(path):  # a load may be reading a backup: wait for it, as for a swap
        with _swap(path):
            backups = _backups(path)
            if not path.exists() and backups:
                os.rename(backups[-1], path)
                _fsync_dir(path.parent)
                backups = backups[:-1]
            for backup in backups:
                _remove(backup)
    for temporary in _temporaries(path):  # never read by anyone
        _remove(temporary)


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
        backup = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        try:
            write(temporary)
            _fsync_tree(temporary)
            with _swap(path):
                if path.exists() or path.is_symlink():
                    os.rename(path, backup)
                os.rename(temporary, path)
                _fsync_dir(path.parent)
        except BaseException:
            _remove(temporary)
            raise
        _remove(backup)


# ------------------------------------------------------------------------------------------ locks


def _lock_file(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}"


_local = threading.local()


def _held() -> dict[tuple[str, str], int]:
    """Locks the current thread holds, with how many times it entered each."""
    held: dict[tuple[str, str], int] | None = getattr(_local, "held", None)
    if held is None:
        held = _local.held = {}
    return held


@contextlib.contextmanager
def _reentrant(key: tuple[str, str]) -> Iterator[bool]:
    """Yield whether the current thread already holds ``key``; count the nesting."""
    held = _held()
    nested = key in held
    held[key] = held.get(key, 0) + 1
    try:
        yield nested
    finally:
        held[key] -= 1
        if not held[key]:
            del held[key]


@contextlib.contextmanager
def writer_lock(path: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the lock that lets one writer at a time build and save the index at ``path``.

    Re-entrant within a thread (a build that holds it may save); another thread or process waits
    (``wait=True``) or gets ``IndexBusy`` at once. The kernel releases it when its holder dies, so a
    killed build never blocks the next one.
    """
    path = Path(path).absolute()
    with _reentrant((str(path), "write")) as nested:
        if nested:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(_lock_file(path, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
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
            yield
        finally:
            os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _swap(path: Path) -> Iterator[None]:
    """Taken alone by a save while it renames folders: waits for loads in progress to finish."""
    fd = os.open(_lock_file(path, "swap.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def reading(path: str | os.PathLike[str]) -> Iterator[None]:
    """Keep the index at ``path`` from being swapped while it is read: a save waits until this ends.

    Re-entrant within a thread. Where the lock file cannot be created (a read-only folder, where no
    save can happen either), the read goes ahead without it.
    """
    path = Path(path).absolute()
    with _reentrant((str(path), "read")) as nested:
        if nested:
            yield
            return
        try:
            fd = os.open(_lock_file(path, "swap.lock"), os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)


Reader = TypeVar("Reader", bound=Callable[..., Any])


def reads_index(read: Reader) -> Reader:
    """Decorate a function whose first argument after ``cls`` is an index path: it runs under ``reading``."""

    @functools.wraps(read)
    def wrapper(owner: Any, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        with reading(path):
            return read(owner, path, *args, **kwargs)

    return cast(Reader, wrapper)
