"""Helpers of the web app tests: constants about the bundled article, free ports, and serving an app.

The indexes come from conftest.py's fixtures (``article_index_path``, ``writable_article``): real indexes
built in temporary folders, never the repository's ``index/``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def serving(demo: Any) -> Iterator[str]:
    """Serve a ``create_app`` result on a free loopback port; yield its URL; stop it after."""
    from qa.ui.app import launch

    url = launch(demo, host="127.0.0.1", port=free_port())
    try:
        yield url
    finally:
        demo.close(verbose=False)
