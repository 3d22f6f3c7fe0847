"""Crash safety and serving under load, proven on real processes.

Builds killed with SIGKILL at every stage never change what the index answers; two builds of one
index at once: one fails clearly, one waits; loads during saves read one whole index; and many clients
search ``qa serve`` while it rebuilds, each answered by the old index or the new one.

Real model, real indexes, real ``qa build`` runs (see ``build_forker.py``) and a real ``qa serve``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import qa
from qa import storage
from qa.errors import IndexBusy
from tests.conftest_ui import REPO

DOCUMENTS, SECTIONS = 6, 50
"""The crash test's corpus: 300 one-sentence passages, quick to embed."""
REVISED = 100
"""Passages the second version of the corpus changes: what a build over the first version embeds."""
ANIMALS = ["zebra", "lion", "otter", "heron", "bison", "lynx", "moose", "gecko", "ibis", "tapir"]
PLACES = ["river", "valley", "desert", "forest", "lake", "glacier", "meadow", "canyon", "island", "marsh"]
QUESTIONS = [
    "Where was the heron seen on day 7?",
    "Which animal was counted again at dusk?",
    "What was seen near the glacier on trip 3?",
]
MODES = ("hybrid", "dense", "lexical")

Answers = list[list[tuple[str, str, float, tuple[tuple[int, int], ...]]]]


def write_corpus(folder: Path, revised: int) -> Path:
    """Six documents of 50 sightings each; the first ``revised`` sightings say a sentence more."""
    folder.mkdir(parents=True)
    rng = random.Random(7)
    count = 0
    for d in range(DOCUMENTS):
        parts = [f"# Field notes {d}\n"]
        for s in range(SECTIONS):
            animal, place = rng.choice(ANIMALS), rng.choice(PLACES)
            more = " It was counted again at dusk." if count < revised else ""
            parts.append(f"## Sighting {d}-{s}\n\nA {animal} was seen near the {place} on day {s} of trip {d}.{more}\n")
            count += 1
        (folder / f"notes-{d}.md").write_text("\n".join(parts), encoding="utf-8")
    return folder


def answers(path: Path) -> Answers:
    """What the index at ``path`` answers: every hit's passage, text, score and highlight, in order."""
    index = qa.Index.load(path)
    return [
        [(hit.passage.id, hit.passage.text, hit.score, hit.highlights) for hit in index.search(question, 5, mode=mode)]
        for question in QUESTIONS
        for mode in MODES
    ]


def build_env() -> dict[str, str]:
    # One thread per build: on a machine shared with other work, torch's thread pool mostly waits for CPUs.
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


# ---------------------------------------------------------------------------------- build processes


@dataclass
class Build:
    pid: int
    pidfd: int
    started: float


class Forker:
    """Starts ``qa build`` runs through ``build_forker.py`` and learns how each ended."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "build_forker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=build_env(),
            cwd=REPO,
        )
        self._changed = threading.Condition()
        self._started: list[int] = []
        self._ended: dict[int, int] = {}
        self._ready = False
        threading.Thread(target=self._read, daemon=True).start()
        self._until(lambda: self._ready, 300, "the build forker did not start")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            with self._changed:
                if "ready" in message:
                    self._ready = True
                elif "status" in message:
                    self._ended[message["pid"]] = message["status"]
                else:
                    self._started.append(message["pid"])
                self._changed.notify_all()

    def _until(self, condition: Callable[[], bool], timeout: float, failure: str) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise AssertionError(f"{failure}; log: {self.log.read_text(errors='replace')[-2000:]}")

    def start(self, *args: str, log: Path | None = None) -> Build:
        """Start ``qa build ARGS`` and return once it runs; its output goes to ``log`` (default: the shared log)."""
        assert self.process.stdin is not None
        with self._changed:
            known = len(self._started)
        self.process.stdin.write(json.dumps({"args": ["build", *args], "log": str(log or self.log)}) + "\n")
        self.process.stdin.flush()
        self._until(lambda: len(self._started) > known, 60, "no build started")
        pid = self._started[known]
        return Build(pid, os.pidfd_open(pid), time.perf_counter())

    def ended(self, build: Build) -> bool:
        with self._changed:
            return build.pid in self._ended

    def wait(self, build: Build, timeout: float = 300) -> int:
        """The exit code of ``build``, or minus the signal that ended it."""
        self._until(lambda: build.pid in self._ended, timeout, f"build {build.pid} did not end")
        os.close(build.pidfd)
        return self._ended[build.pid]

    @staticmethod
    def kill(build: Build) -> None:
        # Through a pidfd: never a process that took the number of one that has ended.
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(build.pidfd, signal.SIGKILL)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Watch:
    """What can be seen from outside of a build writing the index at ``index``."""

    index: Path

    def lock_holder(self) -> str:
        try:
            return (self.index.parent / f".{self.index.name}.lock").read_text()
        except OSError:
            return ""

    def temporaries(self, pid: int | None = None) -> list[str]:
        prefix = f".{self.index.name}.tmp-" + (f"{pid}-" if pid else "")
        return sorted(name for name in os.listdir(self.index.parent) if name.startswith(prefix))

    def leftovers(self) -> list[str]:
        names = (f".{self.index.name}.tmp-", f".{self.index.name}.old-")
        return sorted(name for name in os.listdir(self.index.parent) if name.startswith(names))

    @staticmethod
    def model_loaded(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/maps") as maps:
                # torch maps the model's weights; ONNX Runtime's library is mapped as its export loads.
                mapped = maps.read()
                return "model.safetensors" in mapped or "onnxruntime_pybind11_state" in mapped
        except OSError:
            return False

    def manifest_id(self) -> tuple[int, int] | None:
        try:
            stat = (self.index / storage.MANIFEST).stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns


@dataclass
class Versions:
    """Two versions of a corpus, the first indexed, and what each version's index answers."""

    old_corpus: Path
    new_corpus: Path
    pristine: Path
    old: Answers
    new: Answers
    phases: dict[str, float]
    """Seconds from its start at which a build of the new version over the old index reached each stage."""


@pytest.fixture(scope="module")
def forker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forker]:
    forker = Forker(tmp_path_factory.mktemp("forker") / "builds.log")
    yield forker
    forker.close()


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory, forker: Forker, encoder: Any) -> Versions:
    base = tmp_path_factory.mktemp("versions")
    old_corpus = write_corpus(base / "old", revised=0)
    new_corpus = write_corpus(base / "new", revised=REVISED)
    pristine = base / "pristine" / "index"
    assert forker.wait(forker.start(str(old_corpus), "-o", str(pristine), "-q")) == 0
    # Calibration: a whole build of the new version over a copy, watched, gives the stages' times.
    trial = base / "trial" / "index"
    shutil.copytree(pristine, trial)
    watch = Watch(trial)
    first_manifest = watch.manifest_id()
    build = forker.start(str(new_corpus), "-o", str(trial), "-q")
    phases: dict[str, float] = {}
    while not forker.ended(build):
        now = time.perf_counter() - build.started
        if "lock" not in phases and watch.lock_holder() == str(build.pid):
            phases["lock"] = now
        if "model" not in phases and watch.model_loaded(build.pid):
            phases["model"] = now
        if "save" not in phases and watch.temporaries(build.pid):
            phases["save"] = now
        if "swap" not in phases and watch.manifest_id() != first_manifest:
            phases["swap"] = now
        time.sleep(0.0002)
    phases["exit"] = time.perf_counter() - build.started
    assert forker.wait(build) == 0
    assert set(phases) == {"lock", "model", "save", "swap", "exit"}, phases
    versions = Versions(old_corpus, new_corpus, pristine, answers(pristine), answers(trial), phases)
    assert versions.old != versions.new
    return versions


# ------------------------------------------------------------------------------------------ kills


def _spin_until(moment: float) -> None:
    while time.perf_counter() < moment:
        pass


def _await(condition: Callable[[Build], bool], forker: Forker, build: Build, pause: float) -> bool:
    """Wait until ``condition(build)`` holds (True) or the build ends first (False)."""
    while not forker.ended(build):
        if condition(build):
            return True
        time.sleep(pause)
    return False


def test_builds_killed_at_any_stage_leave_the_index_answering_as_before(
    versions: Versions, forker: Forker, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(versions.pristine, index)
    watch = Watch(index)
    new_corpus = str(versions.new_corpus)
    p = versions.phases
    # Kills spread over the whole build, then kills aimed at each stage as it is seen to begin.
    plan: list[tuple[str, float]] = [("start", 0.2 + (p["exit"] - 0.2) * i / 9) for i in range(10)]
    plan += [("lock", (p["model"] - p["lock"]) * f) for f in (0.0, 0.5)]
    plan += [("model", (p["save"] - p["model"]) * f) for f in (0.15, 0.35, 0.55, 0.75, 0.95)]
    plan += [("save", delay) for delay in (0.0, 0.0005, 0.001, 0.002, (p["swap"] - p["save"]) / 2)]
    anchors: dict[str, tuple[Callable[[Build], bool], float]] = {
        "start": (lambda build: True, 0.0),
        "lock": (lambda build: watch.lock_holder() == str(build.pid), 0.0002),
        "model": (lambda build: watch.model_loaded(build.pid), 0.002),
        "save": (lambda build: bool(watch.temporaries(build.pid)), 0.0002),
    }
    stages: list[str] = []
    left_behind = 0

    def kill(anchor: str, delay: float) -> str:
        """Start a build, kill it ``delay`` seconds after ``anchor``; return the stage it was killed in."""
        nonlocal left_behind
        before = storage.generation(index)
        build = forker.start(new_corpus, "-o", str(index), "-q")
        condition, pause = anchors[anchor]
        if not _await(condition, forker, build, pause):
            pytest.fail(f"the build ended before its {anchor} stage: {forker.log.read_text()[-2000:]}")
        origin = build.started if anchor == "start" else time.perf_counter()
        _spin_until(origin + delay)
        # What the build was doing, as far as can be seen from outside, at the moment it is killed.
        if watch.temporaries(build.pid):
            stage = "saving"
        elif watch.model_loaded(build.pid):
            stage = "loading the model, splitting and embedding"
        elif watch.lock_holder() == str(build.pid):
            stage = "reading the old index and the corpus"
        else:
            stage = "starting"
        forker.kill(build)
        status = forker.wait(build)
        if status == 0:
            stage = "finished before the kill"
        else:
            assert status == -signal.SIGKILL, (status, forker.log.read_text()[-2000:])
        if watch.temporaries(build.pid):
            stage = "saving"  # its half-written folder is still there
            left_behind += 1
        now = answers(index)  # loads the index: a half-written one would fail its checks here
        if now == versions.new:
            assert storage.generation(index) != before
            stage = "after the swap" if status else stage
            shutil.rmtree(index)  # back to the old index for the next kill; leftovers stay
            shutil.copytree(versions.pristine, index)
        else:
            assert now == versions.old, f"killed while {stage}: the index answers neither as before nor as after"
            assert storage.generation(index) == before  # a server watching it has nothing to reload
        return stage

    for anchor, delay in plan:
        # A build that ends before its kill (the machine ran faster than when the phases were timed) is
        # started again with a shorter delay, so that each planned kill lands.
        for retry in range(3):
            stages.append(kill(anchor, delay * 0.6**retry))
            if stages[-1] != "finished before the kill":
                break

    killed = [s for s in stages if s != "finished before the kill"]
    assert len(killed) >= 20, stages
    counts = {stage: stages.count(stage) for stage in set(stages)}
    print(f"{len(killed)} builds killed: {counts}")
    assert counts.get("reading the old index and the corpus", 0) >= 1, counts
    assert counts.get("loading the model, splitting and embedding", 0) >= 4, counts
    assert counts.get("saving", 0) >= 3 and left_behind >= 3, counts
    # The next whole build cleans up what the killed ones left, and saves the new version.
    assert forker.wait(forker.start(new_corpus, "-o", str(index), "-q")) == 0
    assert watch.leftovers() == []
    assert answers(index) == versions.new


def test_the_qa_command_killed_while_embedding_leaves_the_index_as_it_was(
    versions: Versions, forker: Forker, tmp_path: Path
) -> None:
    """The same, once, with ``qa build`` started as its own interpreter, as a user starts it."""
    index = tmp_path / "index"
    shutil.copytree(versions.pristine, index)
    watch = Watch(index)
    command = [sys.executable, "-m", "qa", "build", str(versions.new_corpus), "-o", str(index), "-q"]
    with open(tmp_path / "build.log", "wb") as out:
        build = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=build_env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not watch.model_loaded(build.pid):
            assert build.poll() is None and time.monotonic() < deadline, (tmp_path / "build.log").read_text()
            time.sleep(0.005)
        time.sleep((versions.phases["save"] - versions.phases["model"]) / 2)
        assert watch.temporaries() == [] and watch.lock_holder() == str(build.pid)
        build.kill()
        assert build.wait(timeout=60) == -signal.SIGKILL
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
    assert answers(index) == versions.old
    # The kernel let go of its lock with it: the next build goes ahead.
    assert forker.wait(forker.start(str(versions.new_corpus), "-o", str(index), "-q")) == 0
    assert answers(index) == versions.new and watch.leftovers() == []


def test_two_builds_of_one_index_at_once_one_fails_clearly_and_one_waits(
    versions: Versions, forker: Forker, tmp_path: Path
) -> None:
    index = tmp_path / "index"  # new: the first build embeds every passage, which takes a while
    watch = Watch(index)
    first = forker.start(str(versions.new_corpus), "-o", str(index), "-q")
    assert _await(lambda build: watch.lock_holder() == str(build.pid), forker, first, 0.001)
    # A second: refused at once, saying who holds the index.
    busy = forker.start(str(versions.new_corpus), "-o", str(index), "-q", log=tmp_path / "busy.log")
    assert forker.wait(busy) == 1
    assert (tmp_path / "busy.log").read_text() == (
        f"qa: error: {index} is being written by process {first.pid}; wait for that build to finish and try again\n"
    )
    assert not index.exists(), "the first build ended too soon to test others against it"
    # A third with --wait: it takes the lock only once the first has saved the index.
    waiting = forker.start(str(versions.new_corpus), "-o", str(index), "-q", "--wait")
    assert _await(lambda build: watch.lock_holder() == str(build.pid), forker, waiting, 0.001)
    assert (index / storage.MANIFEST).exists()
    assert forker.wait(first) == 0 and forker.wait(waiting) == 0
    assert watch.leftovers() == []
    whole = answers(index)
    assert [[hit[:2] for hit in hits] for hits in whole] == [[hit[:2] for hit in hits] for hits in versions.new]
    scores = [hit[2] for hits in whole for hit in hits]
    assert scores == pytest.approx([hit[2] for hits in versions.new for hit in hits], abs=1e-4)


def test_loads_during_saves_read_one_whole_index(versions: Versions, forker: Forker, tmp_path: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(versions.pristine, index)
    generations = [versions.old]
    seen: list[Answers] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def load_again_and_again() -> None:
        while not stop.is_set():
            try:
                seen.append(answers(index))
            except BaseException as error:  # reported by the assertion below
                failures.append(error)
            time.sleep(0.005)  # a moment without readers, in which a save may swap

    reader = threading.Thread(target=load_again_and_again)
    reader.start()
    try:
        for corpus in (versions.new_corpus, versions.old_corpus):
            assert forker.wait(forker.start(str(corpus), "-o", str(index), "-q")) == 0
            generations.append(answers(index))
    finally:
        stop.set()
        reader.join()
    assert failures == []
    assert len(seen) >= 10
    assert all(answer in generations for answer in seen)
    assert len({json.dumps(answer) for answer in seen}) >= 2  # loads saw more than one version


# ----------------------------------------------------------------------- crash points and locks


def test_a_crash_between_the_two_renames_reads_the_backup_and_the_next_save_restores_it(
    writable_article: tuple[Path, Path],
) -> None:
    _, index = writable_article
    expected, manifest, generation = answers(index), qa.Index.read_manifest(index), storage.generation(index)
    # What a save killed between its two renames leaves: the old index in its backup folder, and a
    # half-written temporary folder of another killed save.
    backup = index.parent / f".{index.name}.old-0badc0de"
    index.rename(backup)
    half = index.parent / f".{index.name}.tmp-99999-deadbeef"
    half.mkdir()
    (half / storage.MANIFEST).write_text('{"format_version": 1, "count": 3')
    assert not index.exists()
    assert qa.Index.read_manifest(index) == manifest and storage.generation(index) == generation
    assert answers(index) == expected  # read from the backup, never from the half-written folder

    qa.Index.load(index).save(index)  # the next save puts the backup back first, then replaces it
    assert index.is_dir() and not backup.exists() and not half.exists()
    assert storage.generation(index) not in (None, generation)
    assert Watch(index).leftovers() == []
    assert answers(index) == expected


def test_a_save_waits_for_a_load_in_progress(writable_article: tuple[Path, Path]) -> None:
    _, index = writable_article
    loaded = qa.Index.load(index)
    manifest = Watch(index).manifest_id()
    with storage.reading(index):  # as Index.load does while it reads the files
        saver = threading.Thread(target=loaded.save, args=(index,))
        saver.start()
        saver.join(timeout=1.0)
        assert saver.is_alive(), "the save swapped folders under a load in progress"
        assert Watch(index).manifest_id() == manifest
        assert Watch(index).temporaries(), "the new index should be written, waiting to be swapped in"
    saver.join(timeout=60)
    assert not saver.is_alive()
    assert Watch(index).manifest_id() != manifest and Watch(index).leftovers() == []


def test_the_writer_lock_admits_one_thread_and_reenters_in_it(tmp_path: Path) -> None:
    index = tmp_path / "index"
    refused: list[BaseException] = []

    def second_writer() -> None:
        try:
            with storage.writer_lock(index):
                pass
        except IndexBusy as error:
            refused.append(error)

    with storage.writer_lock(index), storage.writer_lock(index):  # a build may save under its own lock
        other = threading.Thread(target=second_writer)
        other.start()
        other.join()
    assert len(refused) == 1
    assert str(refused[0]) == (
        f"{index} is being written by process {os.getpid()}; wait for that build to finish and try again"
    )
    with storage.writer_lock(index, wait=False):  # released: free again
        pass


# ------------------------------------------------------------------------------- serving under load


def test_serving_under_load_while_rebuilding(writable_article: tuple[Path, Path], tmp_path: Path) -> None:
    """The bounded form of ``python -m bench.load``: 32 clients, 1,000 searches, one rebuild in the middle."""
    from bench.load import run

    corpus, index = writable_article
    result = run(
        clients=32, searches=1000, paragraphs=60, corpus=corpus, index=index, workdir=tmp_path, timeout=240, log=print
    )
    assert result["errors"] == []
    assert result["searches"] >= 1000 and result["answered"] == result["searches"]
    rebuild = result["rebuild"]
    assert rebuild["answers_from_old_index"] > 0 and rebuild["answers_from_new_index"] >= 3 * 32
    assert rebuild["searches_during_rebuild"] > 0
    faults = ("failed_searches", "answers_from_neither", "old_answers_after_rebuild", "new_answers_before_rebuild")
    assert [rebuild[name] for name in faults] == [0, 0, 0, 0]
    print(json.dumps(result, indent=2))


def test_load_report_says_what_the_run_found() -> None:
    """The report's sentence about the answers comes from the run's counts, not from a fixed text."""
    from bench.load import markdown

    counts = {"failed_searches": 0, "answers_from_neither": 0, "old_answers_after_rebuild": 0}
    rebuild = {"seconds": 8.0, "added_paragraphs": 120, "answers_from_old_index": 900, "answers_from_new_index": 111}
    rebuild |= counts | {
        "new_answers_before_rebuild": 0,
        "searches_during_rebuild": 600,
        "latency_during_rebuild_ms": {},
    }
    result = {"machine": {"cpus": 2}, "created": "now", "clients": 32, "client": "http", "k": 5, "questions": 16}
    result |= {"searches": 1011, "errors": [], "seconds": 15.0, "throughput_per_s": 67.0, "latency_ms": {}}
    clean = markdown(result | {"rebuild": rebuild}, "python -m bench.load")
    assert "none was an error or a mix" in clean and "every search sent after the rebuild returned" in clean
    faulty = rebuild | {"failed_searches": 2, "answers_from_neither": 1, "old_answers_after_rebuild": 3}
    shown = markdown(result | {"rebuild": faulty}, "python -m bench.load")
    assert "none was" not in shown and "every search sent after" not in shown
    assert "2 searches failed and 1 answered from neither index" in shown
    assert "3 sent after the rebuild returned got the old index's answer and 0 received before it" in shown
