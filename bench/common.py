"""What every section shares: running a measured child process, percentiles, and where things live."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"
"""The public evaluation data, beside the repository: read where it lies, never copied into it."""
SQUAD = Path(os.environ.get("QA_BENCH_SQUAD") or SHARED_DATA / "squad-v1.1-dev" / "dev-v1.1.json")
SCIFACT = Path(os.environ.get("QA_BENCH_SCIFACT") or SHARED_DATA / "beir-scifact" / "corpus.jsonl")
GIB = 1 << 30
MIB = 1 << 20


def default_workdir() -> Path:
    """Where built indexes and scratch files go: outside the repository, kept between runs."""
    return Path(os.environ.get("QA_BENCH_WORKDIR") or Path(tempfile.gettempdir()) / "qa-bench")


THREADS: int | None = None
"""Threads for torch, MKL and FAISS in every child (``--threads``); ``None`` leaves qa's defaults."""


def child_env() -> dict[str, str]:
    """The environment of every child: this checkout first on the path, offline, threads if chosen."""
    env = dict(os.environ)
    if THREADS is not None:
        # torch, MKL and FAISS all size their OpenMP pools from these at start-up.
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(THREADS)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


@dataclass(frozen=True)
class ChildRun:
    """One finished child process: exit code, wall seconds, peak resident memory and its output."""

    returncode: int
    seconds: float
    peak_rss: int
    stdout: str
    stderr: str


def run_measured(
    command: Sequence[str], *, capture_stderr: bool = True, timeout: float | None = None, cwd: Path | None = None
) -> ChildRun:
    """Run ``command`` and return its wall time and peak RSS.

    ``os.wait4`` gives the resource usage of exactly this child (``RUSAGE_CHILDREN`` would give the
    largest of all children so far), and the wall clock includes interpreter start-up, as a user sees it.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), stdout=out, stderr=err if capture_stderr else None, env=child_env(), cwd=cwd or REPO
        )
        timer = threading.Timer(timeout, process.kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            if timer:
                timer.cancel()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
        out.seek(0)
        err.seek(0)
        return ChildRun(
            returncode=process.returncode,
            seconds=seconds,
            peak_rss=int(usage.ru_maxrss) * 1024,  # Linux reports kilobytes
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


class ChildFailed(RuntimeError):
    """A measured child process exited with an error."""


def run_task(task: str, params: dict[str, Any], *, workdir: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run ``bench.worker`` task in a fresh interpreter; return its result with the child's peak RSS.

    A fresh process per task keeps each peak RSS its own: memory freed in Python is rarely returned to
    the system, so one process measuring several things would report the largest of them all.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    result_file = workdir / f".result-{task}-{os.getpid()}-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", "bench.worker", task, json.dumps(params), str(result_file)]
    run = run_measured(command, capture_stderr=False, timeout=timeout)
    if run.returncode != 0 or not result_file.exists():
        raise ChildFailed(f"bench task {task} failed with exit code {run.returncode}: {run.stdout[-2000:]}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    result_file.unlink()
    result["process"] = {"peak_rss_mib": round(run.peak_rss / MIB, 1), "wall_s": round(run.seconds, 2)}
    return result


def summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of a list of durations in seconds, as milliseconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p95_ms": round(float(np.percentile(values, 95)), 3),
        "mean_ms": round(float(values.mean()), 3),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was around a measurement."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / GIB, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    """Versions of the libraries whose speed is measured (read from metadata: nothing heavy is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "sentence-transformers", "transformers", "faiss-cpu", "numpy", "bm25s"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def git_revision() -> str:
    """The checkout's commit, marked ``+dirty`` when files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty.strip() else "")


def log(message: str) -> None:
    """Progress for the person running the benchmark, on stderr so results stay clean."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- small studies


def current_rss_mib() -> float:
    """This process's resident memory now (not its peak), from ``/proc``; Linux only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status: this measurement needs Linux")


def interleaved(
    sides: dict[str, Callable[[], object]], rounds: int, *, clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    """Seconds each side took in each round, the sides run back to back in an order that rotates.

    Other work shares the machine: timing the sides in turn, round after round, lets a busy spell
    slow them alike, so the ratio within a round holds where absolute times do not. ``clock``:
    wall time by default; ``time.process_time`` counts only this process's CPU, which for work on one
    thread is its wall time on an idle machine, and holds when other work takes the cores.
    """
    names = list(sides)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = clock()
            sides[name]()
            seconds[name].append(clock() - started)
    return seconds


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median over rounds of one side's time over another's in the same round."""
    return float(np.median(np.asarray(numerator) / np.asarray(denominator)))


def run_header(command: str, load_before: Sequence[float], load_after: Sequence[float]) -> str:
    """The line that opens a study's Markdown: what ran, on what, when, and how busy the machine was."""
    cpu = machine()
    return (
        f"`{command}` on {cpu['cpu']} ({cpu['cores']} cores), {time.strftime('%Y-%m-%d %H:%M')}; "
        f"load average before {list(load_before)}, after {list(load_after)} "
        f"(the machine is shared with other work)."
    )


def write_results(stem: Path, report: dict[str, Any], markdown: str) -> None:
    """Write ``STEM.json`` and ``STEM.md``, each via a temporary file and a rename."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n"),
        (stem.with_suffix(".md"), markdown),
    ):
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    log(f"results in {stem.with_suffix('.md')} and .json")
