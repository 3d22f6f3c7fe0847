"""Embedding a build's texts on a Ray cluster: ``qa build --ray [ADDRESS]``, ``Index.build(..., executor=...)``.

Only the model's work leaves this process: it is what a build spends its time on (6,492 of a real
113,629-passage build's 6,538 s). Reading, splitting, reusing an earlier index, FAISS, BM25 and saving stay
here, so a Ray build makes the index a local build makes. Each worker is a Ray actor that loads the model
once, by its name, and embeds the chunks of texts the local build would embed, in the same batches; a few
chunks per worker are in flight at a time, so this process holds their texts, never all of them.

Ray (``pip install 'qa[ray]'``) is imported here only, and only when a :class:`RayExecutor` is made: a
local build never imports it.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from qa.embedding import Encoder, load_encoder
from qa.errors import QAError

INSTALL = "pip install 'qa[ray]'"

IN_FLIGHT = 2
"""Chunks given to each worker at a time: one it embeds and one waiting, so it never waits for this process."""

START_TIMEOUT = 300.0
"""Seconds the workers may take to start and load the model before the build gives up."""

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a cluster's address to answer: Ray itself retries an unreachable one for minutes."""

LOCAL_OBJECT_STORE = 256 << 20
"""The object store of a local Ray: chunks of texts and their vectors take a few MB, and Ray's default
(30% of the memory) would reserve GBs of a machine shared with other work."""

PROBE = "Each worker embeds this sentence when it starts, to show that it runs the same model."
PROBE_TOLERANCE = 1e-4
"""How far a worker's vector of ``PROBE`` may be from this machine's: other thread counts move vectors by
about 1e-7, another model or version of it by far more."""


def _import_ray(*, local: bool) -> Any:
    """The ``ray`` module; for a local cluster, set first to stay on this machine's loopback and send nothing out."""
    # Read by Ray when it starts a cluster; a user's own setting wins.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local:
        # Ray binds a local cluster to the machine's network address unless told it is a one-machine cluster.
        # Ray reads this when it is first imported: a process that imported ray before keeps Ray's choice.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as error:
        raise QAError(f"Ray is not installed: {INSTALL}") from error
    return ray


def _check_reachable(address: str) -> None:
    """Fail at once when ``address`` (``host:port`` or ``ray://host:port``) does not answer."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise QAError(
            f"cannot reach the Ray cluster at {address} ({reason}): check the address, and that the cluster "
            "runs (`ray start --head` on its head node); or give no address to start Ray on this machine"
        ) from error


class _EmbeddingWorker:
    """A Ray actor: the model named ``model`` loaded once on ``runtime``, embedding chunks of texts as a local
    build does (on the build's runtime: the index's questions are embedded on it too)."""

    def __init__(self, model: str, runtime: str) -> None:
        self.encoder = load_encoder(model, runtime=runtime)
        self.encoder.dim  # noqa: B018 - loads the model: a worker without it fails now, not in the middle of a build

    def hello(self, probe: str) -> tuple[str, np.ndarray]:
        """Where this worker runs, and its vector of ``probe``."""
        import ray

        return ray.util.get_node_ip_address(), self.encoder.encode([probe], batch_size=1)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.encoder.encode(texts, batch_size=batch_size)


def _reason(error: BaseException) -> str:
    """What went wrong on a worker, in one line: the worker's own exception when Ray carries one."""
    cause = getattr(error, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class RayExecutor:
    """Embeds a build's texts on a Ray cluster: pass it to ``Index.build(..., executor=...)``.

    Example:
        >>> with RayExecutor() as executor:                 # a local Ray on this machine
        ...     index = Index.build("corpus/", executor=executor)

    Each worker loads the build's model by its name (``encoder.name``), so every machine of a cluster needs qa
    and that model installed (the packaged all-MiniLM-L6-v2 is, with qa), or a model folder at the same path.
    Before it embeds, each worker's vector of one sentence is compared with this machine's.

    Args:
        address: The cluster: ``host:port`` of its head (joins as a driver), ``ray://host:10001`` (Ray
            Client), or ``auto`` (``$RAY_ADDRESS``, else the cluster started last on this machine). ``None``
            starts a local Ray on this machine, on loopback only, with its dashboard and usage stats off;
            it is stopped by :meth:`close`. If this process is connected to Ray already, that cluster is used.
        workers: How many workers; default: one per ``cpus_per_worker`` CPUs of the cluster.
        cpus_per_worker: CPUs each worker takes (its model's threads).

    Raises:
        QAError: Ray is not installed, or the cluster cannot be reached.
        ValueError: A bad ``workers`` or ``cpus_per_worker``.
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None, cpus_per_worker: int = 1) -> None:
        for name, value in (("workers", workers), ("cpus_per_worker", cpus_per_worker)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive whole number; got {value!r}")
        if address is not None and not address.strip():
            raise ValueError("address must name a Ray cluster (host:port, ray://host:port or auto), or be None")
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.texts_embedded = 0
        """Texts the workers have embedded, over every build this executor ran."""
        self._actors: list[Any] = []
        self._model: tuple[str, str] | None = None  # the workers' model and runtime
        self._ray = _import_ray(local=address is None)
        self._started_ray = False
        if self._ray.is_initialized():
            return
        if address is not None:
            _check_reachable(address)
        try:
            if address is None:
                self._ray.init(
                    address="local",
                    num_cpus=(workers or 0) * cpus_per_worker or os.cpu_count() or 1,
                    object_store_memory=LOCAL_OBJECT_STORE,
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
            else:
                self._ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError... all of them mean one thing
            if address is None:
                raise QAError(f"cannot start Ray on this machine: {_reason(error)}") from error
            token = (
                ""
                if os.environ.get("RAY_AUTH_MODE") == "token"
                else (
                    "; if the cluster requires a token (newer Rays do by default), set RAY_AUTH_MODE=token and its token "
                    "in $RAY_AUTH_TOKEN or ~/.ray/auth_token"
                )
            )
            raise QAError(f"cannot connect to the Ray cluster at {address}: {_reason(error)}{token}") from error
        self._started_ray = True

    def __repr__(self) -> str:
        return f"RayExecutor({self.address or 'local'!r}, workers={len(self._actors) or self.workers})"

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, encoder: Encoder) -> int:
        """Start the workers for ``encoder``'s model, unless they run already, and check that each embeds as this
        machine does (each build does so when it first has text to embed); return how many there are.

        Raises:
            QAError: A worker cannot start or load the model, the cluster has too few CPUs free, or a worker
                embeds differently from this machine.
        """
        ray = self._ray
        if not self._actors or self._model != (encoder.name, encoder.runtime):
            self._stop_workers()
            count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // self.cpus_per_worker)
            # A worker whose process dies is started again and its chunk embedded again, twice at most.
            actor = ray.remote(num_cpus=self.cpus_per_worker, max_restarts=2, max_task_retries=2)(_EmbeddingWorker)
            self._actors = [actor.remote(encoder.name, encoder.runtime) for _ in range(count)]
            self._model = (encoder.name, encoder.runtime)
        expected = encoder.encode([PROBE], batch_size=1)
        try:
            answers = ray.get([a.hello.remote(PROBE) for a in self._actors], timeout=START_TIMEOUT)
        except ray.exceptions.GetTimeoutError as error:
            count = len(self._actors)
            self._stop_workers()
            raise QAError(
                f"{count} Ray workers of {self.cpus_per_worker} CPU did not start within {START_TIMEOUT:.0f} s: "
                f"the cluster has {ray.available_resources().get('CPU', 0):g} CPUs free; ask for fewer workers"
            ) from error
        except ray.exceptions.RayError as error:
            self._stop_workers()
            raise QAError(
                f"a Ray worker could not start: {_reason(error)}. Every machine of the cluster needs qa and the "
                f"model {encoder.name!r} installed"
            ) from error
        for node, vector in answers:
            same_shape = np.shape(vector) == np.shape(expected)
            difference = (
                float(np.max(np.abs(np.asarray(vector, dtype=np.float32) - expected))) if same_shape else np.inf
            )
            if difference > PROBE_TOLERANCE:
                raise QAError(
                    f"the Ray worker on {node} embeds text differently from this machine (by up to "
                    f"{difference:.2g}): install the same model {encoder.name!r} and qa version on every machine"
                )
        return len(self._actors)

    def encode(
        self, encoder: Encoder, chunks: Iterable[tuple[list[int], list[str]]], *, batch_size: int
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Embed each chunk on a worker; yield its positions and vectors as each chunk is done.

        Workers start on the first chunk: a build with nothing new to embed starts none.
        """
        pending = iter(chunks)
        first = next(pending, None)
        if first is None:
            return
        self.start(encoder)
        ray, actors = self._ray, self._actors
        load = [0] * len(actors)
        in_flight: dict[Any, tuple[list[int], int]] = {}

        def submit(chunk: tuple[list[int], list[str]]) -> None:
            worker = load.index(min(load))
            in_flight[actors[worker].encode.remote(chunk[1], batch_size)] = (chunk[0], worker)
            load[worker] += 1

        pending = itertools.chain([first], pending)
        for chunk in itertools.islice(pending, IN_FLIGHT * len(actors)):
            submit(chunk)
        while in_flight:
            [ready], _ = ray.wait(list(in_flight), num_returns=1)
            rows, worker = in_flight.pop(ready)
            load[worker] -= 1
            try:
                vectors = np.asarray(ray.get(ready), dtype=np.float32)
            except ray.exceptions.RayError as error:
                raise QAError(
                    f"a Ray worker failed while embedding: {_reason(error)}. Build again: the texts embedded "
                    "before are not kept"
                ) from error
            if (following := next(pending, None)) is not None:
                submit(following)  # before handing the vectors on, so the worker never idles meanwhile
            self.texts_embedded += len(rows)
            yield rows, vectors

    def _stop_workers(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors, self._model = [], None

    def close(self) -> None:
        """Stop the workers, and the local Ray if this executor started it."""
        if self._ray.is_initialized():
            self._stop_workers()
        self._actors = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
