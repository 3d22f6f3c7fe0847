"""Helpers of the web app tests: constants about the bundled article, free ports, and serving an app.

The indexes come from conftest.py's fixtures (``article_index_path``, ``writable_article``): real indexes
built in temporary folders, never the repository's ``index/``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
QUESTION = "Which treaty has Pakistan not joined?"
NPT = "not a signatory to the NPT"
NPT_SECTION = "The Global Impact"


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(demo: Any, **options: Any) -> Iterator[str]:
    """Serve a ``create_app`` result on a free loopback port (``launch`` takes ``options``); yield its URL; stop it."""
    from qa.ui.app import launch

    url = launch(demo, host="127.0.0.1", port=free_port(), **options)
    try:
        yield url
    finally:
        demo.close(verbose=False)


@contextlib.contextmanager
def qa_serve(index: Path, corpus: Path, log: Path, *options: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run the real ``qa serve`` on a free port with ``options``; yield its loopback URL once it answers; stop it."""
    port = free_port()
    command = [sys.executable, "-m", "qa", "serve", "-i", str(index), "--corpus", str(corpus), "--port", str(port)]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the server
        server = subprocess.Popen([*command, *options], cwd=REPO, env=environment, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"qa serve exited: {log.read_text(errors='replace')}"
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "qa serve did not start within 120 s"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
