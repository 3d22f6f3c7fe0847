"""Uploaded documents: checked (type, size, readable), safely named, and written only inside the corpus folder.

Text files (.txt, .md, .html) must be UTF-8; a PDF or Word file must be one qa's reader can read, which
is checked by parsing it in the sandboxed reader process (and so cached for the rebuild that follows).
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from qa.documents import SUFFIXES
from qa.readers import BINARY_SUFFIXES

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
"""The largest text file accepted: far more text than an article, small enough to embed in a minute."""
MAX_BINARY_UPLOAD_BYTES = 25 * 1024 * 1024
"""The largest PDF or Word file accepted (a common mail attachment limit): most of such a file is images
and layout, not text, so it holds about as much text as a 5 MB text file or less."""


def limit_for(name: str) -> int:
    """The largest upload accepted for a file of this name's type."""
    return MAX_BINARY_UPLOAD_BYTES if Path(name).suffix.lower() in BINARY_SUFFIXES else MAX_UPLOAD_BYTES


MAX_STEM_CHARS = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadRejected(ValueError):
    """A file that cannot be added to the corpus; the message names it and says what to do."""


def safe_name(name: str) -> str:
    """A file name that is safe to create in the corpus folder, keeping what it can of ``name``.

    Only the last path component is kept (``/`` and ``\\`` both count as separators), so ``../../etc/x.md``
    becomes ``x.md``. Letters are reduced to ASCII, other characters become ``_``, leading dots are dropped
    (the corpus reader skips hidden files) and the stem is shortened to 80 characters.

    Raises:
        UploadRejected: The name's suffix is not one the corpus reader indexes.
    """
    base = re.split(r"[\\/]", name)[-1].strip()
    dot = base.rfind(".")
    stem, suffix = (base[:dot], base[dot:].lower()) if dot >= 0 else (base, "")
    if suffix not in SUFFIXES:
        shown = suffix or "no suffix"
        raise UploadRejected(
            f"{base or name!r} is not a document type qa reads ({shown}); upload {', '.join(SUFFIXES)} files"
        )
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", ascii_stem).strip("._-")[:MAX_STEM_CHARS].rstrip("._-")
    return f"{cleaned or 'document'}{suffix}"


def check_content(name: str, data: bytes) -> None:
    """Refuse ``data`` unless it is within the size limit and readable: non-empty UTF-8 text, or a PDF or
    Word file with text that qa's reader reads.

    Raises:
        UploadRejected: Saying which file and why.
    """
    limit = limit_for(name)
    if len(data) > limit:
        raise UploadRejected(
            f"{name} is {len(data) / 2**20:.1f} MB; the limit is {limit // 2**20} MB per file: split it"
        )
    suffix = Path(name).suffix.lower()
    if suffix in BINARY_SUFFIXES:
        from qa.readers import ReadError, read_binary

        try:
            read_binary(data, suffix)  # in the sandboxed reader: a hostile upload cannot hang or kill the server
        except ReadError as error:
            raise UploadRejected(f"{name} cannot be read: {error.reason}") from None
        return
    if b"\x00" in data:
        raise UploadRejected(f"{name} is binary (it contains NUL bytes); upload plain text, Markdown or HTML")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UploadRejected(
            f"{name} is not UTF-8 text ({error.reason}); save it as UTF-8 and upload it again"
        ) from None
    if not text.strip():
        raise UploadRejected(f"{name} has no text; upload a document with text in it")


def read_limited(path: str | os.PathLike[str]) -> bytes:
    """Read an uploaded file, refusing it before reading when it is over its type's size limit."""
    size = os.stat(path).st_size
    limit = limit_for(str(path))
    if size > limit:
        raise UploadRejected(
            f"{Path(path).name} is {size / 2**20:.1f} MB; the limit is {limit // 2**20} MB per file: split it"
        )
    with open(path, "rb") as handle:
        return handle.read(limit + 1)


def store_upload(corpus: Path, name: str, data: bytes) -> Path | None:
    """Write ``data`` as a new file directly in ``corpus`` and return its path.

    Never overwrites: a name already taken gets ``-2``, ``-3``… before its suffix. Returns ``None`` when a file
    with the same name and the same bytes is already there (nothing to add).

    Raises:
        UploadRejected: A bad type, size or encoding, or no free name.
    """
    filename = safe_name(name)
    check_content(filename, data)
    folder = corpus.resolve()
    stem, suffix = filename[: -len(Path(filename).suffix)], Path(filename).suffix
    for attempt in range(1, 1000):
        candidate = folder / (filename if attempt == 1 else f"{stem}-{attempt}{suffix}")
        if candidate.parent != folder:  # cannot happen with a sanitised name; a last guard, not the defence
            raise UploadRejected(f"{name!r} would be written outside the corpus folder")
        if candidate.is_file() and not candidate.is_symlink() and candidate.read_bytes() == data:
            return None
        try:
            # O_EXCL: never replace a file; O_NOFOLLOW: never write through a link planted in the folder.
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate
    raise UploadRejected(f"too many files are named like {filename}; rename it and upload it again")
