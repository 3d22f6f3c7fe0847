"""Runs ``qa build`` in forked processes that start with qa's libraries already imported.

The crash test kills builds at many moments. Started as a new interpreter, every build would spend
most of its life importing torch and transformers, the same for every kill. This process imports
them once, then forks one child per request, and the child runs ``qa build ARGS`` through
``qa.cli.main``, what the ``qa`` command runs: the same lock, reading, embedding, saving and exit code.

One JSON object a line. Reads ``{"args": [...], "log": PATH}``; writes ``{"ready": PID}`` once,
``{"pid": N}`` when a child has started and ``{"pid": N, "status": S}`` when it has ended (its exit
code, or minus the signal that killed it). Ends when its input closes and its children have ended.
"""

from __future__ import annotations

import json
import os
import select
import sys
from typing import Any


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _child(request: dict[str, Any]) -> None:
    """Run one build with its output in the request's log file; never returns."""
    code = 70
    try:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        from qa import cli

        code = cli.main(request["args"])
    except BaseException as error:  # reported in the log; the exit code says it failed
        print(f"build_forker: {error!r}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    # What a build imports, most of it lazily; a child finds it all loaded. No thread is started here,
    # and no model is loaded: each child loads the model itself, as `qa build` does.
    import bm25s  # noqa: F401
    import faiss  # noqa: F401
    import sentence_transformers  # noqa: F401
    import Stemmer  # noqa: F401

    import qa.api
    import qa.cli
    import qa.index  # noqa: F401

    children: set[int] = set()
    pending = b""
    reading = True
    _send({"ready": os.getpid()})
    while reading or children:
        ready, _, _ = select.select([0] if reading else [], [], [], 0.005)
        if ready:
            chunk = os.read(0, 1 << 16)
            reading = bool(chunk)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                pid = os.fork()
                if pid == 0:
                    _child(json.loads(line))
                children.add(pid)
                _send({"pid": pid})
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            _send({"pid": pid, "status": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main()
