"""Passage vectors in a Milvus collection: a local Milvus Lite file, or a Milvus server or cluster.

The URI says which: a file path ending in ``.db`` (e.g. ``./milvus.db``) runs Milvus Lite inside this
process; ``http://host:19530`` (or ``https://``) reaches a server. A server's user and password or API
key come from ``$QA_MILVUS_TOKEN`` (``user:password`` or the key), never from the manifest: the manifest
records the URI without credentials, and a local file's path relative to the index folder.

Each build creates a new collection (``qa_<time>_<random>``); saving the index drops the collection of
the index it replaced, so a failed build or save leaves the previous index whole.

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
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
    try:
        return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)
    except ValueError:
        raise ValueError(f"${TIMEOUT_ENV} must be a number of seconds; got {os.environ[TIMEOUT_ENV]!r}") from None


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
    public = public_uri(uri)
    local = is_local(uri)
    with _lite_guard:
        if local and not _lite_users.get(uri):
            _check_lite_file(Path(uri))
        try:
            client = pymilvus.MilvusClient(uri, token=os.environ.get(TOKEN_ENV) or "", timeout=_timeout())
        except pymilvus.MilvusException as error:
            reason = getattr(error, "message", None) or str(error)
            raise MilvusUnavailable(f"cannot reach Milvus at {public} ({reason}); {_hint(public)}") from error
        if local:
            _lite_users[uri] = _lite_users.get(uri, 0) + 1
    return client


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


@contextlib.contextmanager
def _errors(public: str, collection: str, doing: str) -> Iterator[None]:
    """Turn pymilvus's exceptions into qa's, saying what failed and what to check."""
    pymilvus = _import_pymilvus()
    try:
        yield
    except pymilvus.MilvusException as error:
        reason = getattr(error, "message", None) or str(error)
        gone = "collection" in reason and ("not exist" in reason or "not found" in reason)
        if getattr(error, "code", None) == _COLLECTION_GONE or gone:
            raise IncompatibleIndex(
                f"the Milvus collection {collection} at {public} no longer exists (the index was rebuilt, or the "
                "collection was dropped); load the index again, or rebuild it: qa build CORPUS -o INDEX"
            ) from error
        raise MilvusUnavailable(f"Milvus at {public} failed while {doing} ({reason}); {_hint(public)}") from error


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
        with _errors(public, name, "creating a collection"):
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
            schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
            index_params = client.prepare_index_params()
            index_params.add_index(
                field_name=VECTOR_FIELD, index_type=_MILVUS_INDEX[kind], metric_type="IP", params=build
            )
            client.create_collection(name, schema=schema, consistency_level="Strong")
            # Without waiting: the index is built as data arrives (the wait polls a call Milvus Lite lacks).
            client.create_index(name, index_params, sync=False)
            client.load_collection(name)
        store = cls(client, uri, name, dim, {"type": kind, **recorded, "index_type": _MILVUS_INDEX[kind]})
        try:
            store.add(np.arange(count, dtype=np.int64), vectors)
            with _errors(public, name, "flushing the collection"):
                client.flush(name)
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
            with _errors(public, name, "opening the collection"):
                if not client.has_collection(name, timeout=_timeout()):
                    raise IncompatibleIndex(
                        f"the Milvus collection {name} at {public} does not exist (dropped, or another database "
                        f"or file); rebuild the index: qa build CORPUS -o {folder}"
                    )
                client.load_collection(name, timeout=_timeout() * 6)
                fields = client.describe_collection(name, timeout=_timeout())["fields"]
            dim = next(int(f["params"]["dim"]) for f in fields if f["name"] == VECTOR_FIELD)
        except BaseException:
            disconnect(client, uri)
            raise
        recorded = {k: v for k, v in params.items() if k not in ("backend", "uri", "collection")}
        return cls(client, uri, name, dim, recorded)

    # -------------------------------------------------------------------------------------- state

    @property
    def count(self) -> int:
        with _errors(self.public_uri, self.collection, "counting vectors"):
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"], timeout=_timeout())
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
        with _errors(self.public_uri, self.collection, "inserting vectors"):
            for begin in range(0, len(ids), INSERT_BATCH):
                rows = [
                    {ID_FIELD: int(i), VECTOR_FIELD: v}
                    for i, v in zip(
                        ids[begin : begin + INSERT_BATCH], vectors[begin : begin + INSERT_BATCH], strict=True
                    )
                ]
                self._client.insert(self.collection, rows)

    def delete(self, ids: np.ndarray) -> None:
        with _errors(self.public_uri, self.collection, "deleting vectors"):
            for begin in range(0, len(ids), GET_BATCH):
                chunk = [int(i) for i in ids[begin : begin + GET_BATCH]]
                self._client.delete(self.collection, ids=chunk)

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
        with _errors(self.public_uri, self.collection, "searching"):
            results = self._client.search(
                self.collection,
                data=list(queries),
                limit=limit,
                search_params={"metric_type": "IP", "params": self._search_params(limit)},
                output_fields=[ID_FIELD],
                timeout=_timeout(),
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
        with _errors(self.public_uri, self.collection, "reading vectors"):
            for begin in range(0, len(ids), GET_BATCH):
                chunk = [int(i) for i in ids[begin : begin + GET_BATCH]]
                for row in self._client.get(
                    self.collection, ids=chunk, output_fields=[VECTOR_FIELD], timeout=_timeout()
                ):
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
        with contextlib.suppress(Exception):
            self._client.drop_collection(self.collection)
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
    try:
        with _errors(public_uri(uri), name, "dropping the replaced collection"):
            if client.has_collection(name, timeout=_timeout()):
                client.drop_collection(name)
    except QAError as error:
        logger.warning("could not drop the replaced Milvus collection %s: %s", name, error)
    finally:
        disconnect(client, uri)
