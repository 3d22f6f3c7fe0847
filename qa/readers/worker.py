"""Parsing PDF and Word files in a worker process with a time and a memory limit.

A parser fed a hostile file can loop, allocate without end, or crash in native code (PDFium is C++). So
files are parsed in a child process: its address space is capped (``RLIMIT_AS``), so a memory bomb gets
a ``MemoryError`` or dies there; the parent waits at most the time limit for each answer and kills the
child when it is over; a child that dies costs only the file it was reading. The child is long-lived
(started once, replaced only when it dies or is killed), so a folder of many files pays the start of an
interpreter once, not per file (``python -m bench.formats`` measures the overhead per file).

Messages are JSON, never pickle: the parent does not trust what a child that read a hostile file says.
A request is a JSON line ``{"suffix": ".pdf", "bytes": N}`` followed by the file's N bytes; the answer
is one JSON line, ``{"text", "title", "pages"}`` or ``{"error", "kind"}``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from qa.readers import Extracted, ReadError

DEFAULT_TIMEOUT = 60.0
"""Seconds a file may take to parse (``$QA_READ_TIMEOUT``): a 1,000-page PDF takes about 3 s here."""
DEFAULT_MEMORY_MB = 1024
"""The worker's address space in MiB (``$QA_READ_MEMORY_MB``): it uses about 60 MiB reading ordinary files."""


def current_limits() -> dict[str, float]:
    """The time (seconds) and memory (MiB) limits a parse runs under, from the environment or the defaults."""
    limits = {"timeout": DEFAULT_TIMEOUT, "memory_mb": float(DEFAULT_MEMORY_MB)}
    for key, variable in (("timeout", "QA_READ_TIMEOUT"), ("memory_mb", "QA_READ_MEMORY_MB")):
        value = os.environ.get(variable)
        if value:
            try:
                limits[key] = float(value)
            except ValueError:
                raise ValueError(f"${variable} must be a number; got {value!r}") from None
            if limits[key] <= 0:
                raise ValueError(f"${variable} must be positive; got {value!r}")
    return limits


def extract_here(suffix: str, data: bytes) -> Extracted:
    """Parse in this process, with no limit: what the worker runs."""
    if suffix == ".pdf":
        from qa.readers.pdf import extract_pdf

        return extract_pdf(data)
    if suffix == ".docx":
        from qa.readers.docx import extract_docx

        return extract_docx(data)
    raise ValueError(f"no reader for {suffix!r} files; qa reads .pdf and .docx in the worker")


class Worker:
    """A child process that parses files one at a time; replaced when it dies or runs over its time."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        self.timeout = timeout
        self.memory_mb = memory_mb
        self._process: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        root = str(Path(__file__).resolve().parent.parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "qa.readers.worker", str(int(self.memory_mb * 1024 * 1024)), str(self.timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # PDFium's complaints about a broken file are not the user's business
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal goes to qa, which then ends the worker
        )
        return self._process

    def extract(self, suffix: str, data: bytes) -> Extracted:
        """Parse ``data`` (a ``suffix`` file) in the child.

        Raises:
            ReadError: The file cannot be read, or it ran over the time or memory limit, or crashed the parser.
        """
        for attempt in range(2):
            process = self._start()
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps({"suffix": suffix, "bytes": len(data)}).encode() + b"\n")
                process.stdin.write(data)
                process.stdin.flush()
                break
            except (BrokenPipeError, OSError):
                self._stop()  # it died since the last file: start another and send this file again
                if attempt:
                    raise ReadError(
                        "the reader process could not be started; check that qa is installed", "crash"
                    ) from None
        answer = self._answer(process)
        if "error" in answer:
            if answer.get("kind") == "memory":
                self._stop()  # after a MemoryError its heap may be in any state
            raise ReadError(str(answer["error"]), str(answer.get("kind", "invalid")))
        return Extracted(str(answer["text"]), str(answer["title"]), tuple(int(p) for p in answer["pages"]))

    def _answer(self, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        assert process.stdout is not None
        deadline = time.monotonic() + self.timeout
        fd = process.stdout.fileno()
        received = bytearray()
        while not received.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self._stop()
                raise ReadError(
                    f"it took longer than {self.timeout:g} s to parse (a damaged or hostile file, or a very large "
                    "one): split it, or raise $QA_READ_TIMEOUT",
                    "timeout",
                )
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                code = process.wait()
                self._stop()
                if code == -signal.SIGXCPU:
                    raise ReadError(
                        f"it took more than {self.timeout:g} s of processor time to parse: split it, or raise "
                        "$QA_READ_TIMEOUT",
                        "timeout",
                    )
                raise ReadError(
                    f"the parser crashed on it ({_describe(code)}): the file is damaged, or needs more than the "
                    f"{self.memory_mb:g} MiB a parse may use: save it again, or raise $QA_READ_MEMORY_MB",
                    "crash",
                )
            received += chunk
        try:
            answer = json.loads(received)
        except ValueError:
            self._stop()
            raise ReadError("the parser gave an unreadable answer for it", "crash") from None
        if not isinstance(answer, dict):
            raise ReadError("the parser gave an unreadable answer for it", "crash")
        return answer

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def close(self) -> None:
        """End the child (it would end by itself when this process does: its input closes)."""
        self._stop()


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


_shared: Worker | None = None
_shared_lock = threading.Lock()


def extract_sandboxed(suffix: str, data: bytes, limits: dict[str, float] | None = None) -> Extracted:
    """Parse ``data`` in this process's worker (one at a time; a server's threads take turns).

    Raises:
        ReadError: As ``Worker.extract``.
    """
    global _shared
    limits = limits or current_limits()
    with _shared_lock:
        if _shared is None or (_shared.timeout, _shared.memory_mb) != (limits["timeout"], limits["memory_mb"]):
            if _shared is not None:
                _shared.close()
            else:
                atexit.register(_close_shared)
            _shared = Worker(limits["timeout"], limits["memory_mb"])
        return _shared.extract(suffix, data)


def _close_shared() -> None:
    if _shared is not None:
        _shared.close()


# ------------------------------------------------------------------------------------------ child


def _serve(memory_bytes: int, timeout: float) -> None:
    """The child's loop: read a request, parse, answer, until the parent closes the pipe."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    requests = sys.stdin.buffer
    # Answers go to a private copy of stdout; what a library prints goes to stderr, never into an answer.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    import docx  # noqa: F401 - the libraries are loaded once here, not per file
    import pypdfium2  # noqa: F401

    while True:
        header = requests.readline()
        if not header:
            return
        request = json.loads(header)
        data = requests.read(int(request["bytes"]))
        # A CPU-time limit per file as well: if the parent is gone, a looping parse still ends.
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = int(used.ru_utime + used.ru_stime)
        resource.setrlimit(resource.RLIMIT_CPU, (spent + int(timeout) + 5, resource.RLIM_INFINITY))
        answer: dict[str, Any]
        stop = False
        try:
            extracted = extract_here(str(request["suffix"]), data)
            answer = {"text": extracted.text, "title": extracted.title, "pages": list(extracted.pages)}
        except ReadError as error:
            answer = {"error": error.reason, "kind": error.kind}
        except MemoryError:
            answer = {
                "error": f"it needs more than the {memory_bytes // (1 << 20)} MiB of memory qa allows a parse: "
                "split it, or raise $QA_READ_MEMORY_MB",
                "kind": "memory",
            }
            stop = True
        except RecursionError:
            answer = {
                "error": "it is nested too deeply to parse (damaged or hostile): save it again",
                "kind": "invalid",
            }
        except Exception as error:  # any other failure of a parser on a file is that file's problem
            answer = {"error": f"it is damaged ({type(error).__name__}: {error}): save it again", "kind": "invalid"}
        del data
        answers.write(json.dumps(answer).encode("ascii") + b"\n")  # ASCII: a lone surrogate survives as an escape
        answers.flush()
        if stop:
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]), float(sys.argv[2]))
