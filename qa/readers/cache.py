"""Extracted text of PDF and Word files, kept per user by the file's content hash.

Without it, every rebuild and every staleness check (which reads the whole corpus to hash its text) would
parse every PDF again. With it, an unchanged file costs reading and hashing its bytes.

- Where: ``$QA_CACHE_DIR``, else the user's cache folder (``platformdirs``: ``~/.cache/qa`` on Linux),
  under ``extracted/v{READER_VERSION}/``; never in the corpus or the installed package. Delete the folder
  to clear it; it is rebuilt as files are read.
- Key: the SHA-256 of the file's bytes and its type, so a renamed or moved file is not parsed again and a
  changed one always is. Files that cannot be read are remembered too (an encrypted PDF is not tried on
  every rebuild), except that one that ran over a time or memory limit is tried again under larger limits.
- Safe under concurrent use: each entry is written to a temporary file and renamed into place, so a
  reader sees a whole entry or none; an entry that does not parse or does not match its key is ignored.
- Bounded: past ``$QA_CACHE_MAX_MB`` (default 512) the least recently used entries are deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from qa.readers import READER_VERSION, Extracted, ReadError

logger = logging.getLogger(__name__)

DEFAULT_MAX_MB = 512
_PRUNE_EVERY = 30.0  # seconds between size checks in one process
_last_prune = 0.0
_prune_lock = threading.Lock()


def folder() -> Path:
    """Where extracted text is kept."""
    base = os.environ.get("QA_CACHE_DIR")
    if not base:
        import platformdirs

        base = platformdirs.user_cache_dir("qa", appauthor=False)
    return Path(base) / "extracted" / f"v{READER_VERSION}"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(key: str, suffix: str) -> Path:
    return folder() / key[:2] / f"{key}{suffix}.json"


def lookup(key: str, suffix: str, limits: dict[str, float]) -> Extracted | ReadError | None:
    """What reading the file with this hash gave before, or ``None`` when it must be parsed."""
    path = _entry(key, suffix)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("sha256") != key or record.get("suffix") != suffix:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept longest when the cache is pruned
        if "error" in record:
            kind = str(record.get("kind", "invalid"))
            before = record.get("limits", {})
            if kind != "invalid" and any(limits[k] > float(before.get(k, 0)) for k in limits):
                return None  # it ran over smaller limits than today's: try again
            return ReadError(str(record["error"]), kind)
        return Extracted(str(record["text"]), str(record["title"]), tuple(int(p) for p in record["pages"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(key: str, suffix: str, result: Extracted | ReadError, limits: dict[str, float]) -> None:
    """Remember what reading the file gave. A cache that cannot be written is skipped, never an error."""
    record: dict[str, Any] = {"sha256": key, "suffix": suffix, "reader": READER_VERSION}
    if isinstance(result, ReadError):
        record |= {"error": result.reason, "kind": result.kind, "limits": limits}
    else:
        record |= {"text": result.text, "title": result.title, "pages": list(result.pages)}
    path = _entry(key, suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(record, out)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as error:
        logger.debug("cannot cache the text of a file at %s: %s", path, error)
        return
    _maybe_prune()


def _maybe_prune() -> None:
    global _last_prune
    with _prune_lock:
        if time.monotonic() - _last_prune < _PRUNE_EVERY:
            return
        _last_prune = time.monotonic()
    prune()


def prune(max_bytes: int | None = None) -> int:
    """Delete the least recently used entries until the cache holds at most ``max_bytes``
    (default ``$QA_CACHE_MAX_MB``); return how many were deleted."""
    if max_bytes is None:
        max_bytes = int(float(os.environ.get("QA_CACHE_MAX_MB") or DEFAULT_MAX_MB) * 1024 * 1024)
    entries = []
    total = 0
    for path in folder().glob("*/*.json"):
        with contextlib.suppress(OSError):
            stat = path.stat()
            entries.append((stat.st_mtime, stat.st_size, path))
            total += stat.st_size
    deleted = 0
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            deleted += 1
        total -= size
    return deleted
