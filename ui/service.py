"""What the web app serves: one index at a time, replaced whole by a rebuild, and the corpus it comes from.

Searches read the current index through a lock-guarded reference; a rebuild builds, saves and loads a new
index on the side and swaps the reference only when all of that succeeded. So searches during a rebuild
answer from the old index, searches after it from the new one, and a failed rebuild changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qa.api import refresh
from qa.errors import IndexBusy, QAError
from qa.index import Index
from qa.passage import Answer, Hit
from qa.storage import generation

from .render import IndexStatus
from .uploads import UploadRejected, store_upload

logger = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0
"""How often a search may look whether another process (``qa build``) saved a new index."""

Step = Callable[[float, str], None]
"""Reports progress: a fraction done and what is being done."""


def _no_progress(fraction: float, description: str) -> None:
    pass


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


class UploadsDisabled(PermissionError):
    """Uploading and rebuilding were not enabled when the server started."""

    def __init__(self) -> None:
        super().__init__(
            "uploading and rebuilding are off on this server; restart it with `qa serve --allow-uploads` to enable them"
        )


@dataclass
class UploadReport:
    """What an upload did: files added, files refused (with why), and the rebuild's error if it failed."""

    added: list[Path] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    rebuild_error: str | None = None


def _path_names(corpus: Path, index_path: Path) -> list[tuple[str, str]]:
    """``(path, shown as)`` pairs for :meth:`Service.for_visitors`, the longest path first."""
    names: dict[str, str] = {}
    for folder in (index_path, corpus):
        for form in (folder.resolve(), folder.absolute(), folder):
            if form.is_absolute() or len(form.parts) > 1:  # a bare relative name says nothing of the machine
                names[str(form)] = folder.resolve().name or str(folder)
    for form in (corpus.resolve(), corpus.absolute()):
        if form.parent != Path(form.anchor):  # the file system's root is no secret, and would match everything
            names[str(form.parent) + os.sep] = ""
    return sorted(names.items(), key=lambda pair: -len(pair[0]))


class Service:
    """The served index, its corpus folder, and the operations the app offers on them."""

    def __init__(
        self, index_path: Path, corpus: Path, index: Index, *, allow_uploads: bool = False, public: bool = False
    ) -> None:
        self.index_path = Path(index_path)
        self.corpus = Path(corpus)
        self.allow_uploads = allow_uploads
        self.public = public
        self._index = index
        self._swap_lock = threading.Lock()
        self._rebuild_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None
        self._generation = generation(self.index_path)
        self._checked = time.monotonic()

    @property
    def index(self) -> Index:
        self._pick_up_external_save()
        with self._swap_lock:
            return self._index

    def _pick_up_external_save(self) -> None:
        """Serve the index another process saved (``qa build`` on the same folder), without a restart.

        At most once a second, and by one thread: the others keep answering from the current index.
        """
        if time.monotonic() - self._checked < RELOAD_CHECK_SECONDS or self._rebuild_lock.locked():
            return
        if not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._checked = time.monotonic()
            current = generation(self.index_path)
            if current is None or current == self._generation:
                return
            try:
                loaded = Index.load(self.index_path)
            except (QAError, OSError) as error:
                self.last_error = f"a new index was saved at {self.index_path} but cannot be read: {error}"
                logger.warning("%s", self.last_error)
                self._generation = current  # do not retry a broken save on every search
                return
            with self._swap_lock:
                self._index = loaded
            self._generation = current
            logger.warning("serving the index saved at %s by another process", self.index_path)
        finally:
            self._reload_lock.release()

    def search(self, question: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
        """Search the current index; raises ``ValueError`` for a bad question, ``k`` or mode."""
        return self.index.search(question, k, mode=mode)

    def ask(self, question: str, k: int = 5, mode: str = "hybrid") -> Answer:
        """Ask the current index: the hits, and whether they seem to answer; ``ValueError`` as ``search``."""
        return self.index.ask(question, k, mode=mode)

    def status(self) -> IndexStatus:
        """What the Index tab shows; on a public address, with folder names instead of the machine's paths."""
        index = self.index
        stale_reason = index.stale_reason(self.corpus)
        return IndexStatus(
            index_path=self.for_visitors(str(self.index_path)),
            corpus=self.for_visitors(str(self.corpus)),
            manifest=index.manifest,
            documents=index.documents,
            passages=len(index),
            stale_reason=None if stale_reason is None else self.for_visitors(stale_reason),
            uploads_allowed=self.allow_uploads,
            rebuilding=self._rebuild_lock.locked(),
            last_error=None if self.last_error is None else self.for_visitors(self.last_error),
        )

    def for_visitors(self, text: str) -> str:
        """``text`` as the page may show it: on a public address, the server's paths become names.

        A path inside the folder that holds the corpus is shown relative to that folder (``corpus``,
        ``corpus/notes/a.md``, ``index`` beside it); the index folder elsewhere by its name. On loopback,
        whoever sees the page is on this machine, and the full paths help.
        """
        if not self.public:
            return text
        for path, name in _path_names(self.corpus, self.index_path):
            text = text.replace(path, name)
        return text

    # ------------------------------------------------------------------------------------- rebuild

    def _require_uploads(self) -> None:
        if not self.allow_uploads:
            raise UploadsDisabled()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        # One rebuild at a time in this process; writer_lock (inside) keeps out other processes.
        if not self._rebuild_lock.acquire(blocking=False):
            raise IndexBusy("a rebuild is already running; wait for it to finish and try again")
        try:
            yield
        finally:
            self._rebuild_lock.release()

    def rebuild(self, step: Step = _no_progress) -> Index:
        """Rebuild the index from the corpus folder and serve it.

        Raises:
            UploadsDisabled: The server was started without ``--allow-uploads``.
            QAError, ValueError, OSError: The build failed; the previous index keeps serving and
                ``last_error`` says why.
        """
        self._require_uploads()
        with self._exclusive():
            return self._rebuild(step)

    def _rebuild(self, step: Step) -> Index:
        served = self.index
        try:
            step(0.0, "Reading and splitting the documents")
            # The served index's encoder, so that a rebuild never silently switches models.
            loaded = refresh(
                self.index_path,
                self.corpus,
                wait=False,
                rebuild=True,
                encoder=served.encoder,
                progress=True,
                on_progress=lambda fraction, stage: step(fraction, _first_upper(stage)),
            )
        except (QAError, ValueError, OSError) as error:
            self.last_error = str(error)
            raise
        with self._swap_lock:
            self._index = loaded
            self._generation = generation(self.index_path)
        self.last_error = None
        step(1.0, "Done")
        return loaded

    def add_documents(self, uploads: Sequence[tuple[str, bytes]], step: Step = _no_progress) -> UploadReport:
        """Write uploaded files into the corpus folder, then rebuild if any was added.

        Each upload is ``(file name, contents)``; bad files are refused one by one, the others added.

        Raises:
            UploadsDisabled: The server was started without ``--allow-uploads``.
            IndexBusy: A rebuild is running.
        """
        self._require_uploads()
        report = UploadReport()
        with self._exclusive():
            for name, data in uploads:
                try:
                    stored = store_upload(self.corpus, name, data)
                except UploadRejected as error:
                    report.rejected.append(str(error))
                    continue
                if stored is None:
                    report.unchanged.append(name)
                else:
                    report.added.append(stored)
            if report.added:
                try:
                    self._rebuild(step)
                except (QAError, ValueError, OSError) as error:
                    report.rebuild_error = str(error)
        return report
