"""Passage vectors in a Milvus collection: a local Milvus Lite file, or a Milvus server or cluster.

The URI says which: a file path ending in ``.db`` (e.g. ``./milvus.db``) runs Milvus Lite inside this
process; ``http://host:19530`` (or ``https://``) reaches a server. A server's user and password or API
key come from ``$QA_MILVUS_TOKEN`` (``user:password`` or the key), never from the manifest: the manifest
records the URI without credentials, and a local file's path relative to the index folder.

Each build creates a new collection (``qa_<time>_<random>``), of strong consistency; saving the index
drops the collection of the index it replaced, so a failed build or save leaves the previous index whole.

Every call to Milvus goes through :func:`_call`: it gives the call what is left of ``$QA_MILVUS_TIMEOUT``,
tries a call that failed on an unreachable or slow server again a few times within that time, and turns
whatever still fails (gRPC statuses that pymilvus passes on bare among them) into a one-line ``QAError``
that names the URI and what to do.

Requires the ``milvus`` extra: ``pip install 'qa[milvus]'`` (pymilvus and milvus-lite).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from qa.errors import IncompatibleIndex, QAError

logger = logging.getLogger(__name__)

TOKEN_ENV = "QA_MILVUS_TOKEN"
URI_ENV = "QA_MILVUS_URI"
TIMEOUT_ENV = "QA_MILVUS_TIMEOUT"
DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a server to answer a connection or a search."""

ID_FIELD = "id"
VECTOR_FIELD = "vector"
MAX_TOPK = 16_384
"""The most results a Milvus server returns for one query."""
INSERT_BATCH = 2_000
"""Rows a single insert sends: about 3 MB of 384-dimensional vectors, well under a server's 64 MB limit."""
GET_BATCH = 1_000
"""Ids a single read of stored vectors asks for."""

_MILVUS_INDEX = {"flat": "FLAT", "hnsw": "HNSW", "ivfpq": "IVF_PQ"}
_COLLECTION_GONE = 100  # Milvus's "collection not found"


class MilvusUnavailable(QAError):
    """Milvus cannot be reached at the given URI, or refuses the request."""


def _hint(public: str) -> str:
    if is_local(public):
        return (
            "check that the folder exists and is writable, and that no other process has the file open "
            "(Milvus Lite serves one process at a time: stop that process, or run a Milvus server and use "
            "--uri http://HOST:19530)"
        )
    return (
        "check that the Milvus server is running and listening at that host and port (--uri http://HOST:19530), "
        f"that ${TOKEN_ENV} holds its user:password or API key if it requires one, and that a firewall "
        "does not block the port; or use a local Milvus Lite file (--uri ./milvus.db)"
    )


# ------------------------------------------------------------------------------------------ URIs


def is_local(uri: str) -> bool:
    """Whether ``uri`` names a Milvus Lite file rather than a server."""
    return "://" not in uri and not uri.startswith("unix:")


def public_uri(uri: str) -> str:
    """``uri`` without a user name or password, for the manifest and for messages."""
    if is_local(uri):
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def resolve_uri(uri: str, base: Path | None = None) -> str:
    """A local file's absolute path (relative to ``base``, else the working folder); a server URI as is.

    Raises:
        ValueError: A local path that does not end in ``.db``.
    """
    if not is_local(uri):
        return uri
    if not uri.endswith(".db"):
        raise ValueError(
            f"a Milvus URI is a local file ending in .db (e.g. ./milvus.db) or a server's address "
            f"(e.g. http://localhost:19530); got {uri!r}"
        )
    path = Path(uri).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return str(Path(os.path.abspath(path)))


def default_uri() -> str | None:
    """``$QA_MILVUS_URI``, if set."""
    return os.environ.get(URI_ENV) or None


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV) or str(DEFAULT_TIMEOUT)
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"${TIMEOUT_ENV} must be a number of seconds above 0; got {text!r}")
    return seconds


# ------------------------------------------------------------------------------------ connections

_lite_users: dict[str, int] = {}
"""Open clients per Milvus Lite file in this process: the file is released when the last one closes."""
_lite_guard = threading.Lock()


def _check_lite_file(path: Path) -> None:
    """Fail clearly, before Milvus Lite does obscurely, on a missing folder or a file another process holds."""
    if not path.parent.is_dir():
        raise MilvusUnavailable(
            f"cannot open the Milvus Lite file {path}: the folder {path.parent} does not exist; "
            "create it or give another --uri"
        )
    lock = path / "LOCK"
    if not (path.is_dir() and lock.is_file()):
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        raise MilvusUnavailable(
            f"the Milvus Lite file {path} is open in another process (e.g. `qa serve` or another build). "
            "Milvus Lite serves one process at a time: stop that process and try again, or run a Milvus "
            "server and use --uri http://HOST:19530"
        ) from None
    finally:
        os.close(fd)


def _import_pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as error:
        raise MilvusUnavailable(
            f"the Milvus backend needs pymilvus and milvus-lite ({error}); install them: pip install 'qa[milvus]'"
        ) from error
    # pymilvus logs every failed call with a traceback; qa raises a clear error instead.
    logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
    return pymilvus


def connect(uri: str) -> Any:
    """A ``MilvusClient`` for ``uri`` (resolved: see :func:`resolve_uri`); release it with :func:`disconnect`.

    Raises:
        MilvusUnavailable: Nothing answers at ``uri``, or it refuses the credentials.
    """
    pymilvus = _import_pymilvus()
    local = is_local(uri)
    token = os.environ.get(TOKEN_ENV) or ""

    def client(timeout: float) -> Any:
        return pymilvus.MilvusClient(uri, token=token, timeout=timeout)

    with _lite_guard:
        if local and not _lite_users.get(uri):
            _check_lite_file(Path(uri))
        opened = _call(public_uri(uri), None, "", client)
        if local:
            _lite_users[uri] = _lite_users.get(uri, 0) + 1
    return opened


def disconnect(client: Any, uri: str) -> None:
    """Close ``client``; a Milvus Lite file no client of this process uses any more is released for others."""
    with contextlib.suppress(Exception):
        client.close()
    if not is_local(uri):
        return
    with _lite_guard:
        users = _lite_users.get(uri, 0) - 1
        if users > 0:
            _lite_users[uri] = users
            return
        _lite_users.pop(uri, None)
        with contextlib.suppress(Exception):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)


# ---------------------------------------------------------------------------------------- failures

RETRY_ATTEMPTS = 4
"""Calls made at most, for a failure that may pass (the server unreachable or slow) ..."""
FIRST_BACKOFF = 0.25
"""... waiting this many seconds after the first, twice as long after each next; all within the timeout."""
_TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
_CONNECT_FAILED = 2  # pymilvus's "Fail connecting to server", which hides the gRPC status it got, if any
_NOT_LOADED = 101  # Milvus's "collection not loaded": after a restart, until the server has loaded it again
_RETRY_TIMEOUT = "Retry timeout"  # how pymilvus says its own retries of a call ran out of time

T = TypeVar("T")


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _status(error: BaseException) -> tuple[str | None, BaseException]:
    """The gRPC status behind a pymilvus or gRPC error (``UNAVAILABLE``, ``UNAUTHENTICATED``, …), if any,
    and the error that tells it.

    pymilvus passes some statuses on as a bare ``grpc.RpcError``, wraps others in a ``MilvusException``
    whose code is the status or whose cause is the ``RpcError``, and reports a connection that failed
    as its own code 2 whatever the reason: the whole chain of causes is searched.
    """
    import grpc

    connect_failed = None
    for current in _chain(error):
        code = getattr(current, "code", None)
        if isinstance(current, grpc.RpcError) and callable(code):
            code = code()
        if isinstance(code, grpc.StatusCode):
            return str(code.name), current
        if code == _CONNECT_FAILED and connect_failed is None:
            connect_failed = current
        if _RETRY_TIMEOUT in str(getattr(current, "message", "")):
            return "DEADLINE_EXCEEDED", current
    return ("UNAVAILABLE", connect_failed) if connect_failed is not None else (None, error)


def _reason(error: BaseException, status: str | None) -> str:
    """What ``error`` says, on one line, with its gRPC status, and without the token should it appear."""
    details = getattr(error, "details", None)
    text = details() if callable(details) else getattr(error, "message", None) or str(error)
    text = " ".join(str(text).split()) or type(error).__name__
    if status and status not in text:
        text = f"{status}: {text}"
    token = os.environ.get(TOKEN_ENV)
    return text.replace(token, "***") if token else text


def _qa_error(error: BaseException, public: str, collection: str | None, doing: str, waited: float) -> QAError:
    """The ``QAError`` that says what failed at ``public``, and what to do about it."""
    status, telling = _status(error)
    reason = _reason(telling, status)
    code = getattr(error, "code", None)
    message = str(getattr(error, "message", ""))
    during = f" while {doing}" if doing else ""
    gone = "collection" in message and ("not exist" in message or "not found" in message)
    if collection and (code == _COLLECTION_GONE or gone):
        return IncompatibleIndex(
            f"the Milvus collection {collection} at {public} no longer exists (the index was rebuilt, or the "
            "collection was dropped); load the index again, or rebuild it: qa build CORPUS -o INDEX"
        )
    if status == "UNAUTHENTICATED":
        given = "the one it holds is wrong" if os.environ.get(TOKEN_ENV) else "it is not set"
        return MilvusUnavailable(
            f"Milvus at {public} refused the credentials{during} ({reason}); set ${TOKEN_ENV} to the server's "
            f"user:password or API key ({given})"
        )
    if status == "PERMISSION_DENIED":
        return MilvusUnavailable(
            f"Milvus at {public} denied permission{during} ({reason}); the user in ${TOKEN_ENV} lacks that "
            f"privilege: grant it, or set ${TOKEN_ENV} to a user who has it"
        )
    if status == "DEADLINE_EXCEEDED":
        return MilvusUnavailable(
            f"Milvus at {public} did not answer within {waited:.3g} s{during} ({reason}); a server that is starting, "
            f"loading collections or overloaded answers late: try again in a moment, or allow it longer with "
            f"${TIMEOUT_ENV} (seconds)"
        )
    if code == _NOT_LOADED:
        return MilvusUnavailable(
            f"Milvus at {public} has not loaded the collection {collection}{during} ({reason}); a restarted server "
            "loads its collections again within a minute or so: try again in a moment"
        )
    if status == "UNAVAILABLE":
        return MilvusUnavailable(f"cannot reach Milvus at {public}{during} ({reason}); {_hint(public)}")
    return MilvusUnavailable(f"Milvus at {public} failed{during} ({reason}); {_hint(public)}")


def _call(
    public: str,
    collection: str | None,
    doing: str,
    method: Callable[..., T],
    *args: Any,
    retry: bool = True,
    budget: float | None = None,
    **kwargs: Any,
) -> T:
    """``method(*args, timeout=…, **kwargs)``, a pymilvus call, with every failure a ``QAError``.

    All attempts share one deadline, ``$QA_MILVUS_TIMEOUT`` seconds (or ``budget``) from now: each is given
    the time left. A failure that may pass (UNAVAILABLE, DEADLINE_EXCEEDED) is tried again after a pause
    (``FIRST_BACKOFF``, doubling) while time is left, at most ``RETRY_ATTEMPTS`` times in all; not with
    ``retry=False``, for calls that must not run twice (an insert that may have been applied).
    """
    pymilvus = _import_pymilvus()
    import grpc  # pymilvus's own dependency

    total = _timeout() if budget is None else budget
    started = time.monotonic()
    deadline = started + total
    pause, attempt = FIRST_BACKOFF, 1
    while True:
        try:
            return method(*args, timeout=max(deadline - time.monotonic(), 1e-6), **kwargs)  # never 0: no limit
        except (pymilvus.MilvusException, grpc.RpcError) as error:
            status, telling = _status(error)
            if (
                not retry
                or status not in _TRANSIENT
                or attempt >= RETRY_ATTEMPTS
                or time.monotonic() + pause >= deadline
            ):
                raise _qa_error(error, public, collection, doing, time.monotonic() - started) from error
            logger.info(
                "Milvus at %s failed %s (%s); trying again", public, doing or "connecting", _reason(telling, status)
            )
        time.sleep(pause)
        pause *= 2
        attempt += 1


# ---------------------------------------------------------------------------------------- the store


def _index_params(kind: str, count: int, dim: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Milvus build parameters, and what the manifest records, for qa's index type ``kind``."""
    from qa.dense import HNSWConfig, IVFPQConfig

    if kind == "hnsw":
        hnsw = HNSWConfig()
        return {"M": hnsw.m, "efConstruction": hnsw.ef_construction}, {
            "M": hnsw.m,
            "ef_construction": hnsw.ef_construction,
            "ef_search": hnsw.ef_search,
        }
    if kind == "ivfpq":
        ivfpq = IVFPQConfig()
        pq_m = max(m for m in range(1, min(ivfpq.pq_m, dim) + 1) if dim % m == 0)
        nlist = max(1, int(min(ivfpq.lists_per_sqrt * np.sqrt(max(count, 1)), max(count // 39, 1))))
        return {"nlist": nlist, "m": pq_m, "nbits": 8}, {
            "nlist": nlist,
            "pq_m": pq_m,
            "nbits": 8,
            "nprobe": min(ivfpq.nprobe, nlist),
        }
    return {}, {}


def new_collection_name() -> str:
    """A name no earlier build used: ``qa_<UTC time>_<random>``."""
    return f"qa_{time.strftime('%Y%m%d_%H%M%S', time.gmtime())}_{uuid.uuid4().hex[:6]}"


class MilvusStore:
    """Passage vectors in one Milvus collection: an INT64 primary key (the passage's position) and the vector."""

    backend = "milvus"
    exact = True  # Milvus keeps the raw vectors beside any index
    files: tuple[str, ...] = ()

    def __init__(self, client: Any, uri: str, collection: str, dim: int, params: dict[str, Any]) -> None:
        self.client = client
        self.uri = uri
        """The resolved URI this store connected with (a server's may carry credentials; never recorded)."""
        self.public_uri = public_uri(uri)
        self.collection = collection
        self.label = f"the Milvus collection {collection}"
        self._dim = dim
        self.params = params
        """qa's description of the index: ``type`` (flat, hnsw, ivfpq) and its parameters."""
        self._closed = False

    @property
    def _client(self) -> Any:
        if self._closed:
            raise ValueError(f"{self.label} was closed (Index.close); load the index again to search it")
        return self.client

    # ------------------------------------------------------------------------------ create and open

    @classmethod
    def prepare(cls, uri: str, index_type: str) -> Callable[[np.ndarray], MilvusStore]:
        """Connect now (failing fast on a bad URI); the returned function creates and fills the collection."""
        uri = resolve_uri(uri)
        client = connect(uri)
        return lambda vectors: cls.create(client, uri, vectors, index_type)

    @classmethod
    def create(cls, client: Any, uri: str, vectors: np.ndarray, index_type: str) -> MilvusStore:
        """A new collection holding ``vectors`` under ids 0, 1, …; dropped again if filling it fails."""
        from pymilvus import DataType

        from qa.dense import resolve_index_type

        count, dim = vectors.shape
        kind = resolve_index_type(index_type, count)
        build, recorded = _index_params(kind, count, dim)
        name = new_collection_name()
        public = public_uri(uri)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        index_params = client.prepare_index_params()
        index_params.add_index(field_name=VECTOR_FIELD, index_type=_MILVUS_INDEX[kind], metric_type="IP", params=build)
        # Strong: a search right after a delete must not find the deleted vectors (the default,
        # Bounded, lets a server answer from a view some seconds old). Not retried: a retry after a
        # lost answer would find the collection there already.
        _call(
            public,
            name,
            "creating a collection",
            client.create_collection,
            name,
            schema=schema,
            consistency_level="Strong",
            retry=False,
        )
        store = cls(client, uri, name, dim, {"type": kind, **recorded, "index_type": _MILVUS_INDEX[kind]})
        try:
            # Without waiting: the index is built as data arrives (the wait polls a call Milvus Lite lacks).
            _call(public, name, "indexing the collection", client.create_index, name, index_params, sync=False)
            _call(public, name, "loading the collection", client.load_collection, name, budget=_timeout() * 6)
            store.add(np.arange(count, dtype=np.int64), vectors)
            _call(public, name, "flushing the collection", client.flush, name, budget=_timeout() * 6)
        except BaseException:
            store.discard()
            raise
        return store

    @classmethod
    def open(cls, folder: Path, params: dict[str, Any]) -> MilvusStore:
        """The collection an index's manifest names; a local file's path is relative to the index ``folder``.

        Raises:
            IncompatibleIndex: The manifest lacks the collection, or the collection is gone.
            MilvusUnavailable: The server cannot be reached.
        """
        try:
            uri = resolve_uri(str(params["uri"]), Path(folder).absolute())
            name = str(params["collection"])
        except (KeyError, ValueError) as error:
            raise IncompatibleIndex(
                f"the manifest in {folder} names no usable Milvus collection ({error}); rebuild: qa build CORPUS -o INDEX"
            ) from error
        client = connect(uri)
        public = public_uri(uri)
        try:
            if not _call(public, name, "opening the collection", client.has_collection, name):
                raise IncompatibleIndex(
                    f"the Milvus collection {name} at {public} does not exist (dropped, or another database "
                    f"or file); rebuild the index: qa build CORPUS -o {folder}"
                )
            # Longer: after a restart the server loads the collection's segments again before it answers.
            _call(public, name, "loading the collection", client.load_collection, name, budget=_timeout() * 6)
            fields = _call(public, name, "opening the collection", client.describe_collection, name)["fields"]
            dim = next(int(f["params"]["dim"]) for f in fields if f["name"] == VECTOR_FIELD)
        except BaseException:
            disconnect(client, uri)
            raise
        recorded = {k: v for k, v in params.items() if k not in ("backend", "uri", "collection")}
        return cls(client, uri, name, dim, recorded)

    # -------------------------------------------------------------------------------------- state

    def _call(self, doing: str, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return _call(self.public_uri, self.collection, doing, method, *args, **kwargs)

    @property
    def count(self) -> int:
        rows = self._call(
            "counting vectors", self._client.query, self.collection, filter="", output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"])

    @property
    def dim(self) -> int:
        return self._dim

    def describe(self, folder: Path | None = None) -> dict[str, Any]:
        """The manifest's ``dense`` block. Saved to ``folder``, a local file is recorded relative to it.

        Raises:
            ValueError: The Milvus Lite file lies inside ``folder``, which a save replaces whole.
        """
        uri = self.public_uri
        if is_local(uri) and folder is not None:
            folder = Path(os.path.abspath(folder))
            if Path(uri) == folder or folder in Path(uri).parents:
                raise ValueError(
                    f"the Milvus Lite file {uri} is inside the index folder {folder}, which each save replaces; "
                    "put it beside the index instead (e.g. --uri milvus.db next to the index folder)"
                )
            uri = os.path.relpath(uri, folder)
        return {"backend": self.backend, **self.params, "uri": uri, "collection": self.collection}

    # ---------------------------------------------------------------------------------- operations

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        for begin in range(0, len(ids), INSERT_BATCH):
            batch = zip(ids[begin : begin + INSERT_BATCH], vectors[begin : begin + INSERT_BATCH], strict=True)
            rows = [{ID_FIELD: int(i), VECTOR_FIELD: v} for i, v in batch]
            # Not retried: an insert whose answer was lost may have been applied, and a second would repeat its rows.
            self._call("inserting vectors", self._client.insert, self.collection, rows, retry=False)

    def delete(self, ids: np.ndarray) -> None:
        for begin in range(0, len(ids), GET_BATCH):
            chunk = [int(i) for i in ids[begin : begin + GET_BATCH]]
            self._call("deleting vectors", self._client.delete, self.collection, ids=chunk)

    def _search_params(self, k: int) -> dict[str, Any]:
        kind = self.params.get("type")
        if kind == "hnsw":
            return {"ef": max(int(self.params.get("ef_search", 128)), k)}  # Milvus wants ef >= k
        if kind == "ivfpq":
            return {"nprobe": int(self.params.get("nprobe", 32))}
        return {}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32)
        limit = max(1, min(k, MAX_TOPK))
        results = self._call(
            "searching",
            self._client.search,
            self.collection,
            data=list(queries),
            limit=limit,
            search_params={"metric_type": "IP", "params": self._search_params(limit)},
            output_fields=[ID_FIELD],
        )
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, hits in enumerate(results):
            for column, hit in enumerate(hits):
                ids[row, column] = int(hit["id"])
                scores[row, column] = float(hit["distance"])
        return scores, ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        found: dict[int, Any] = {}
        for begin in range(0, len(ids), GET_BATCH):
            chunk = [int(i) for i in ids[begin : begin + GET_BATCH]]
            rows = self._call(
                "reading vectors", self._client.get, self.collection, ids=chunk, output_fields=[VECTOR_FIELD]
            )
            for row in rows:
                found[int(row[ID_FIELD])] = row[VECTOR_FIELD]
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise IncompatibleIndex(
                f"{self.label} at {self.public_uri} lacks the vectors of {len(missing)} passages "
                f"(e.g. {missing[:3]}); rebuild the index: qa build CORPUS -o INDEX"
            )
        out = np.zeros((len(ids), self._dim), dtype=np.float32)
        for row, i in enumerate(ids):
            out[row] = np.asarray(found[int(i)], dtype=np.float32)
        return out

    def save(self, folder: Path) -> None:
        """Nothing to write: the collection is the store. Flushed, so a server keeps what was inserted."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            disconnect(self.client, self.uri)

    def discard(self) -> None:
        """Drop the collection (e.g. of a build that failed), then close."""
        if self._closed:
            return
        with contextlib.suppress(Exception):  # best effort: it may be what failed
            self._call("dropping the collection", self._client.drop_collection, self.collection)
        self.close()


def retire_collection(replaced: dict[str, Any], current: dict[str, Any], folder: Path) -> None:
    """Drop the collection the manifest ``replaced`` named, unless ``current`` names the same one."""
    base = Path(folder).absolute()
    try:
        uri = resolve_uri(str(replaced["uri"]), base)
        name = str(replaced["collection"])
    except (KeyError, ValueError):
        return
    if current.get("backend") == "milvus" and current.get("collection") == name:
        with contextlib.suppress(KeyError, ValueError):
            if public_uri(resolve_uri(str(current["uri"]), base)) == public_uri(uri):
                return
    try:
        client = connect(uri)
    except QAError as error:
        logger.warning("could not drop the replaced Milvus collection %s at %s: %s", name, public_uri(uri), error)
        return
    public = public_uri(uri)
    try:
        if _call(public, name, "looking for the replaced collection", client.has_collection, name):
            _call(public, name, "dropping the replaced collection", client.drop_collection, name)
    except QAError as error:
        logger.warning("could not drop the replaced Milvus collection %s: %s", name, error)
    finally:
        disconnect(client, uri)
