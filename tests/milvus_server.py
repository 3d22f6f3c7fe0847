"""A real Milvus server for the tests: the standalone server (v2.3.5) that the ``milvus`` pip package ships.

The package holds the server's binary (compressed) and a template of its configuration. This module
unpacks the binary once, renders a configuration per server with the package's own code, and runs the
binary itself, so that a test can stop it by PID, kill it and start it again on the same data folder and
ports (the package's ``stop`` gives a server one second before it kills it, and its port check refuses a
port that a killed server's connections still hold).

Every port is a free one chosen when the server is made, the embedded etcd's included (without its own
configuration file it listens on 2379 and 2380 whatever else does), so a test server never collides with
another Milvus or etcd on the machine. The server binds what 2.3.5 lets it bind to 127.0.0.1 (etcd) and
gives each of its roles 127.0.0.1 as the address the others reach it at; its gRPC and HTTP ports it opens
on every interface, which 2.3.5 offers no setting for.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import lzma
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
GRACE = 3
"""Seconds the server has to stop after SIGTERM (``common.gracefulStopTimeout``; 1,800 by default)."""
SESSION_TTL = 10
"""Seconds a stopped server's sessions outlive it (``common.session.ttl``; 30 by default). A restarted
server serves strong reads only once its previous sessions have expired: waiting time, in a test."""
ROOT_TOKEN = "root:Milvus"
"""The first user of a server with authorization enabled, and its password."""


class ServerFailed(RuntimeError):
    """The server exited, or did not answer its health check in time."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unpack_binaries(folder: Path) -> Path:
    """The server's binary and its libraries, unpacked from the ``milvus`` package into ``folder``."""
    import milvus

    folder.mkdir(parents=True, exist_ok=True)
    for packed in sorted((Path(milvus.__file__).parent / "data" / "bin").glob("*.lzma")):
        target = folder / packed.name.removesuffix(".lzma")
        if target.exists():
            continue
        partial = target.with_name(target.name + ".part")
        with lzma.open(packed) as source, open(partial, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        partial.chmod(0o755)
        partial.rename(target)
    return folder / "milvus"


def _die_with_parent() -> Any:
    """What the server's process runs before the server: be killed when the test process dies, however it
    dies (a test run killed by a CI timeout must not leave a server listening). Linux only."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class MilvusServer:
    """A Milvus standalone server on a data folder of its own.

    ``start`` waits on the health endpoint (the gRPC port opens before the server can serve), then,
    unless told not to, until it answers a strong read. ``stop`` sends SIGTERM and, should the server outlive its graceful
    stop by much, SIGKILL; ``kill`` sends SIGKILL at once. After either, ``start`` brings it back on
    the same folder and ports.
    """

    def __init__(self, folder: Path, binary: Path, *, authorization: bool = False) -> None:
        import milvus  # the configuration template, and the code that fills it in

        self.folder = Path(folder)
        self.binary = binary
        self.authorization = authorization
        self.process: subprocess.Popen[bytes] | None = None
        config = milvus.MilvusServerConfig(data_dir=str(self.folder))
        config.update(**{key: _free_port() for key in config.configurable_items if key.endswith("_port")})
        config.set("authorization_enabled", authorization)
        for role in ROLES:
            config.set(f"{role}.ip", "127.0.0.1")
        config.set("common.gracefulStopTimeout", GRACE)
        config.set("common.session.ttl", SESSION_TTL)
        config.resolve()  # checks the ports, writes configs/milvus.yaml
        self.port = int(config.get("proxy_port"))
        self.metrics_port = _free_port()
        client, peer = f"http://127.0.0.1:{config.get('etcd_port')}", f"http://127.0.0.1:{_free_port()}"
        self._etcd_config = self.folder / "configs" / "etcd.yaml"
        self._etcd_config.write_text(
            f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\ninitial-cluster: default={peer}\n",
            encoding="utf-8",
        )

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """What ``$QA_MILVUS_TOKEN`` must hold for this server."""
        return ROOT_TOKEN if self.authorization else ""

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 180, *, serving: bool = True) -> None:
        """Start the server, and return once it serves strong reads (with ``serving=False``: once its health
        check answers, as a user who restarts it sees it back; it may still take seconds to serve).

        Raises:
            ServerFailed: It exited, or did not serve within ``timeout`` seconds (then it is stopped).
        """
        if self.running:
            return
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.metrics_port),  # its HTTP port: health, metrics
            "MILVUS_RUN_DIR": str(self.folder / "run"),
            "MILVUSCONF": str(self.folder / "configs"),
            "ETCD_CONFIG_PATH": str(self._etcd_config),
            "LD_LIBRARY_PATH": ":".join(filter(None, [str(self.binary.parent), os.environ.get("LD_LIBRARY_PATH")])),
        }
        self.logs.mkdir(exist_ok=True)
        with open(self.logs / "stdout.log", "ab") as out, open(self.logs / "stderr.log", "ab") as err:
            self.process = subprocess.Popen(
                [str(self.binary), "run", "standalone"],
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # Ctrl-C reaches pytest alone, which then stops the server in order
                preexec_fn=_die_with_parent(),
            )
        deadline = time.monotonic() + timeout
        try:
            self._wait(self._healthy, deadline, "answer its health check")
            if serving:
                self._wait(self._serves, deadline, "serve a strong read")
        except BaseException:
            self.stop()
            raise

    def _wait(self, ready: Any, deadline: float, what: str) -> None:
        while not ready():
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ServerFailed(f"the Milvus server exited ({code}) before it could {what}; see {self.logs}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"the Milvus server did not {what} in time; see {self.logs}")
            time.sleep(0.25)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=2) as response:
                return b"OK" in response.read()
        except (OSError, urllib.error.URLError):
            return False

    def _serves(self) -> bool:
        """Whether a new collection of strong consistency answers a count at once."""
        import numpy as np
        import pymilvus

        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # the failures here are expected
        name = f"probe_{uuid.uuid4().hex[:8]}"
        try:
            client = pymilvus.MilvusClient(self.uri, token=self.token, timeout=5)
        except pymilvus.MilvusException:
            return False
        try:
            client.create_collection(name, dimension=4, consistency_level="Strong", timeout=5)
            client.insert(name, [{"id": 1, "vector": np.ones(4, dtype=np.float32)}], timeout=5)
            rows = client.query(name, filter="", output_fields=["count(*)"], timeout=3)
            return int(rows[0]["count(*)"]) == 1
        except Exception:  # grpc errors too: not ready yet
            return False
        finally:
            with contextlib.suppress(Exception):
                client.drop_collection(name, timeout=5)
            client.close()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it is still there well after its graceful stop; its exit status.

        2.3.5 exits with -6 (SIGABRT) even from a clean stop: its status says nothing, and is not checked.
        """
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=GRACE + 10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        return process.returncode

    def kill(self) -> None:
        """SIGKILL at once, as a crash or the out-of-memory killer would end it."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def listening(self) -> bool:
        """Whether anything accepts connections on the server's gRPC port."""
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0
