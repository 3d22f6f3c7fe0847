"""``python -m bench.load``: many clients searching one ``qa serve`` at once, with a rebuild in the middle.

Starts ``qa serve --allow-uploads`` on 127.0.0.1 over a private copy of a corpus and its index (by
default the first 12 SQuAD dev articles, one document each, indexed first with ``qa build``), then runs
``--clients`` threads, each with its own connection, that call the ``/search`` API until ``--searches``
searches are done. Each search asks a question not asked before (the SQuAD questions of the served
articles, in a seeded order), so the server embeds every question under load, as it would for new
users; nothing is asked before the load. When a quarter of the searches are done, a document is added
to the corpus and the ``/rebuild`` endpoint called; the load goes on until the rebuild has finished and
every client has searched the new index a few times. Then every answer is checked against the answers
this process computes itself with ``qa.Index`` on a copy of the index as it was before the load and on
the index the rebuild saved: each must equal the old index's answer or the new index's (same passages,
order and highlights, scores to 4 decimals), never an error or anything else; an answer to a search
sent after the rebuild returned must be the new index's, one received before the rebuild began the old
index's.

Clients call the API over plain HTTP by default (``POST /gradio_api/call/search``, then read the
answer's event stream: what ``curl`` would do, about 1 ms of client CPU a search), or through
gradio_client with ``--client gradio`` (about 40 ms of client CPU a search, which on a small machine
measures the client more than the server).

Reports throughput and latency percentiles, and writes ``bench/results/load.json`` and ``load.md``
(or ``--output STEM.json``/``.md``). ``tests/test_reliability.py`` runs a bounded form of it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"

QUESTIONS = [
    "Which treaty has Pakistan not joined?",
    "Who were the two presidents that talked privately about Pakistan?",
    "What was Putin worried could happen with Pakistan's nuclear materials?",
    "Which country was Pakistan's weapons program a response to?",
    "What terrorist attack happened shortly before the talks?",
    "How were relations between Washington and Moscow at that time?",
    "Why has America backed Pakistan in the past?",
    "What does Russia want in the region?",
    "How did the world respond when the talks happened?",
    "What do specialists recommend doing about the problem?",
    "Which groups does Pakistan have ties with that worry other countries?",
    "What makes the danger of weapons spreading worse today?",
    "Was the exchange between the leaders public?",
    "Which river did the zebras cross?",
    "What were the lions doing while the zebras crossed?",
    "When do zebra herds cross rivers?",
]
ZEBRA_QUESTIONS = QUESTIONS[-3:]
"""About the document the rebuild adds: their answers must change, or the rebuild did not take."""
K = 5
NEW_DOCUMENT = "zebras.md"
SQUAD_ARTICLES = 12
"""The served collection by default: the first SQuAD dev articles, as the issue's figures were measured."""
SHARED_DATA = REPO.parent / "shared" / "data"
SQUAD = SHARED_DATA / "squad-v1.1-dev" / "dev-v1.1.json"


def squad_collection(articles: int, folder: Path) -> list[str]:
    """Write the first ``articles`` SQuAD dev articles into ``folder`` (one Markdown document each) and
    return their questions, each once, in a seeded order."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][:articles]
    folder.mkdir(parents=True, exist_ok=True)
    questions: list[str] = []
    for article in data:
        title = article["title"].replace("_", " ")
        text = "\n\n".join(paragraph["context"].strip() for paragraph in article["paragraphs"])
        (folder / f"{article['title']}.md").write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
        questions += [qa["question"].strip() for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    distinct = list(dict.fromkeys(q for q in questions if q))
    random.Random(0).shuffle(distinct)
    return distinct


def _new_document(paragraphs: int) -> str:
    """The document the rebuild adds: enough text that embedding it takes a few seconds."""
    body = "\n\n".join(
        f"Zebra herd {i} crossed the {['Mara', 'Grumeti', 'Talek', 'Sand'][i % 4]} river at dawn while the lions "
        f"slept in the tall grass, and {i % 7 + 2} foals stayed close to their mothers."
        for i in range(paragraphs)
    )
    return f"# Zebras\n\n{body}\n"


# ----------------------------------------------------------------------------------------- server


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used so far, all its threads: ``/proc`` for another
    process, ``os.times`` for this one. Unlike wall time, it says what a search costs on a busy machine."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


SERVER_PIDS: dict[str, int] = {}
"""The process of each server ``qa_serve`` started, by URL: its CPU time is read around the load."""


@contextlib.contextmanager
def qa_serve(
    index: Path, corpus: Path, log: Path, *, timeout: float = 300, concurrency: int | None = None
) -> Iterator[tuple[str, float]]:
    """Run ``qa serve --allow-uploads`` on a free loopback port; yield its URL and start-up seconds; stop it."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "qa", "serve", "-i", str(index), "--corpus", str(corpus)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--allow-uploads"]
    env = child_env()
    env.pop("QA_AUTH", None)
    if concurrency is not None:
        env["QA_SEARCH_CONCURRENCY"] = str(concurrency)
    started = time.perf_counter()
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the server
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"qa serve exited with {server.returncode}: {log.read_text(errors='replace')}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"qa serve did not answer within {timeout:.0f} s: {log.read_text(errors='replace')}")
            time.sleep(0.25)
        SERVER_PIDS[url] = server.pid
        yield url, time.perf_counter() - started
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _client(url: str) -> Any:
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


class HttpSearcher:
    """Calls ``/search`` over the app's HTTP API: start the call, then read its result from an event stream."""

    def __init__(self, url: str) -> None:
        import httpx

        self._http = httpx.Client(base_url=url, timeout=120)

    def search(self, question: str, k: int) -> list[dict[str, Any]]:
        started = self._http.post("gradio_api/call/search", json={"data": [question, k, "hybrid"]})
        started.raise_for_status()
        stream = self._http.get(f"gradio_api/call/search/{started.json()['event_id']}")
        stream.raise_for_status()
        event = data = None
        for line in stream.text.splitlines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                data = line.removeprefix("data:").strip()
        if event != "complete" or data is None:
            raise RuntimeError(f"the server answered {event}: {data}")
        hits: list[dict[str, Any]] = json.loads(data)[0]
        return hits

    def close(self) -> None:
        self._http.close()


class GradioSearcher:
    """Calls ``/search`` through gradio_client, as the README shows."""

    def __init__(self, url: str) -> None:
        self._client = _client(url)

    def search(self, question: str, k: int) -> list[dict[str, Any]]:
        hits: list[dict[str, Any]] = self._client.predict(question, k, api_name="/search")
        return hits

    def close(self) -> None:
        self._client.close()


SEARCHERS = {"http": HttpSearcher, "gradio": GradioSearcher}


Answer = tuple[tuple[str, float, tuple[tuple[int, int], ...]], ...]
"""A search's answer as compared: each hit's passage id, score and highlights, in rank order."""


def answer_of(hits: Sequence[dict[str, Any]]) -> Answer:
    """Scores to 4 decimals: with the torch runtime a question embedded in a batch of others moves by float
    rounding (2e-7), which the 5th or 6th decimal of a score can show; ONNX runtimes give the same bits."""
    return tuple(
        (str(hit["id"]), round(float(hit["score"]), 4), tuple((int(s), int(e)) for s, e in hit["highlights"]))
        for hit in hits
    )


def local_answers(index_path: Path, questions: Sequence[str]) -> dict[str, Answer]:
    """Each question's answer from the index at ``index_path``, computed in this process with ``qa.Index``
    (the model and runtime the index was built with), as the server computes it."""
    from qa.index import Index

    index = Index.load(index_path, warn_if_stale=False)
    try:
        return {q: answer_of([hit.to_dict() for hit in index.search(q, K, mode="hybrid")]) for q in questions}
    finally:
        index.close()


# ------------------------------------------------------------------------------------------- load


@dataclass
class Search:
    question: str
    started: float
    ended: float
    answer: Answer | None = None
    error: str | None = None


@dataclass
class _Shared:
    """What the client threads and the rebuild thread share, under one lock."""

    target: int
    clients: int
    rebuild: bool
    deadline: float
    questions: list[str]
    """Asked in turn, each once while there are enough; then again from the first (and then cached)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    claimed: int = 0
    done: int = 0
    searches: list[Search] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rebuild_started: float | None = None
    rebuild_ended: float | None = None
    after_rebuild: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def claim(self) -> str | None:
        """The question of one more search, or ``None`` when the client should stop."""
        with self.lock:
            if self.stop.is_set() or time.perf_counter() > self.deadline:
                return None
            rebuilt = not self.rebuild or (self.rebuild_ended is not None and self.after_rebuild >= 3 * self.clients)
            if self.claimed >= self.target and rebuilt:
                return None
            question = self.questions[self.claimed % len(self.questions)]
            self.claimed += 1
            if self.rebuild_ended is not None:
                self.after_rebuild += 1
            return question

    def record(self, search: Search) -> None:
        with self.lock:
            self.searches.append(search)
            self.done += 1
            if search.error:
                self.errors.append(f"{search.question!r}: {search.error}")


def _search_loop(url: str, shared: _Shared, seed: int, ready: threading.Barrier, kind: str) -> None:
    try:
        client = SEARCHERS[kind](url)
    except Exception as error:  # reported as an error of the run
        with shared.lock:
            shared.errors.append(f"client {seed} could not connect: {error!r}")
        ready.abort()
        return
    try:
        ready.wait()
        while (question := shared.claim()) is not None:
            started = time.perf_counter()
            try:
                hits = client.search(question, K)
                search = Search(question, started, time.perf_counter(), answer=answer_of(hits))
            except Exception as error:  # every failure is counted, none stops the load
                search = Search(question, started, time.perf_counter(), error=repr(error))
            shared.record(search)
    except threading.BrokenBarrierError:
        pass
    finally:
        client.close()


def _rebuild(url: str, corpus: Path, shared: _Shared, paragraphs: int, outcome: dict[str, Any]) -> None:
    """When a quarter of the searches are done, add a document and rebuild through the app's API."""
    while not shared.stop.is_set():
        with shared.lock:
            if shared.done >= shared.target // 4:
                break
        time.sleep(0.01)
    if shared.stop.is_set():
        return
    (corpus / NEW_DOCUMENT).write_text(_new_document(paragraphs), encoding="utf-8")
    client = _client(url)
    try:
        with shared.lock:
            shared.rebuild_started = time.perf_counter()
        status, _ = client.predict(api_name="/rebuild")
        outcome["status"] = str(status)
    except Exception as error:  # the run reports it
        outcome["error"] = repr(error)
    finally:
        with shared.lock:
            shared.rebuild_ended = time.perf_counter()
        client.close()


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    return {
        "p50": round(at(0.50) * 1000, 1),
        "p95": round(at(0.95) * 1000, 1),
        "p99": round(at(0.99) * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
        "mean": round(sum(ordered) / len(ordered) * 1000, 1),
    }


def run_load(
    url: str | Sequence[str],
    corpus: Path,
    index: Path,
    *,
    questions: Sequence[str] = QUESTIONS,
    clients: int = 32,
    searches: int = 1000,
    rebuild: bool = True,
    paragraphs: int = 120,
    timeout: float = 600,
    kind: str = "http",
    scratch: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Load the server at ``url`` (serving ``index``, built from ``corpus``) and check every answer. Several
    URLs: replicas serving the same index, each client calling one of them in turn (as a load balancer
    would spread connections); the rebuild goes to the first.

    ``errors`` in the result lists every failed search, every answer that is neither index's, every
    order violation and a failed rebuild: empty when all went right.
    """
    urls = [url] if isinstance(url, str) else list(url)
    old_index = scratch / "index-before-the-load"
    shutil.rmtree(old_index, ignore_errors=True)
    shutil.copytree(index, old_index)  # what the old index answers, checked after the load
    asked = list(dict.fromkeys([*questions, *(ZEBRA_QUESTIONS if rebuild else [])]))
    shared = _Shared(
        target=searches,
        clients=clients,
        rebuild=rebuild,
        deadline=time.perf_counter() + timeout,
        questions=list(questions),
    )
    ready = threading.Barrier(clients + 1)
    threads = [
        threading.Thread(target=_search_loop, args=(urls[seed % len(urls)], shared, seed, ready, kind), daemon=True)
        for seed in range(clients)
    ]
    for thread in threads:
        thread.start()
    outcome: dict[str, Any] = {}
    try:
        ready.wait(timeout=120)  # every client connected: the load starts at once for all
    except threading.BrokenBarrierError:
        shared.stop.set()
    started = time.perf_counter()
    server_pids = [SERVER_PIDS[u] for u in urls if u in SERVER_PIDS]
    cpu_before = (sum(cpu_seconds(pid) for pid in server_pids) if server_pids else None, cpu_seconds())
    log(f"{clients} clients searching{' with a rebuild after a quarter of the searches' if rebuild else ''}")
    rebuilder = threading.Thread(target=_rebuild, args=(urls[0], corpus, shared, paragraphs, outcome), daemon=True)
    if rebuild:
        rebuilder.start()
    for thread in threads:
        thread.join(timeout=max(0.0, shared.deadline - time.perf_counter()) + 60)
    shared.stop.set()
    if rebuild:
        rebuilder.join(timeout=60)
    ended = time.perf_counter()
    cpu_after = (sum(cpu_seconds(pid) for pid in server_pids) if server_pids else None, cpu_seconds())

    errors = list(shared.errors)
    if any(thread.is_alive() for thread in threads):
        errors.append("some clients did not finish within the time allowed")
    if time.perf_counter() > shared.deadline:
        errors.append(f"the load did not finish within {timeout:.0f} s")
    if len(shared.searches) < searches:
        errors.append(f"only {len(shared.searches)} of {searches} searches were made")
    log("checking every answer against the old and the new index, computed here")
    used = [q for q in asked if q in {s.question for s in shared.searches} or q in ZEBRA_QUESTIONS]
    old = local_answers(old_index, used)
    new = old
    counts = {"old": 0, "new": 0, "failed": 0, "mixed": 0, "old_after": 0, "new_before": 0}
    if rebuild:
        if "error" in outcome or "Rebuilt:" not in outcome.get("status", ""):
            errors.append(f"the rebuild failed: {outcome.get('error') or outcome.get('status')}")
        new = local_answers(index, used)
        errors += [f"{q!r}: the rebuild did not change its answer" for q in ZEBRA_QUESTIONS if new[q] == old[q]]
    begun, finished = shared.rebuild_started or float("inf"), shared.rebuild_ended or float("inf")
    during: list[float] = []
    for search in shared.searches:
        if search.answer is None:
            counts["failed"] += 1
            continue
        if search.answer == old[search.question]:
            which = "old"
        elif search.answer == new[search.question]:
            which = "new"
        else:
            counts["mixed"] += 1
            errors.append(f"{search.question!r}: an answer that is neither the old index's nor the new one's")
            continue
        counts[which] += 1
        changed = old[search.question] != new[search.question]  # else either index's answer is right
        if rebuild and which == "old" and changed and search.started > finished:
            counts["old_after"] += 1
            errors.append(f"{search.question!r}: the old index answered a search sent after the rebuild")
        if rebuild and which == "new" and changed and search.ended < begun:
            counts["new_before"] += 1
            errors.append(f"{search.question!r}: the new index answered before the rebuild began")
        if search.ended > begun and search.started < finished:
            during.append(search.ended - search.started)
    answered = [s for s in shared.searches if s.error is None]
    first = min((s.started for s in shared.searches), default=started)
    last = max((s.ended for s in shared.searches), default=ended)
    seconds = max(last - first, 1e-9)
    result: dict[str, Any] = {
        "clients": clients,
        "searches": len(shared.searches),
        "answered": len(answered),
        "errors": errors,
        "seconds": round(seconds, 2),
        "throughput_per_s": round(len(answered) / seconds, 1),
        "latency_ms": _percentiles([s.ended - s.started for s in answered]),
        "k": K,
        "questions": len(questions),
        "repeated_questions": max(0, len(shared.searches) - len(questions)),
        "client": kind,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if cpu_before[0] is not None and cpu_after[0] is not None and answered:
        server_ms = 1000 * (cpu_after[0] - cpu_before[0]) / len(shared.searches)
        client_ms = 1000 * (cpu_after[1] - cpu_before[1]) / len(shared.searches)
        result["cpu_ms_per_search"] = {"server": round(server_ms, 2), "clients": round(client_ms, 2)}
        # What 2 cores could serve if nothing else ran: the server's and the clients' CPU per search.
        result["searches_per_s_on_2_free_cores"] = round(2000 / (server_ms + client_ms), 1)
    if rebuild:
        result["rebuild"] = {
            "seconds": round(finished - begun, 2) if finished < float("inf") else None,
            "added_paragraphs": paragraphs,
            "answers_from_old_index": counts["old"],
            "answers_from_new_index": counts["new"],
            "failed_searches": counts["failed"],
            "answers_from_neither": counts["mixed"],
            "old_answers_after_rebuild": counts["old_after"],
            "new_answers_before_rebuild": counts["new_before"],
            "searches_during_rebuild": len(during),
            "latency_during_rebuild_ms": _percentiles(during),
        }
    return result


# ------------------------------------------------------------------------------------------ setup


def prepare(
    workdir: Path,
    corpus: Path | None,
    index: Path | None,
    log: Callable[[str], None],
    *,
    squad_articles: int = 0,
    runtime: str | None = None,
) -> tuple[Path, Path, list[str]]:
    """A private corpus and index to serve, and the questions to ask: copies of the ones given (asking
    ``QUESTIONS``), the first ``squad_articles`` SQuAD articles (asking their questions), or the bundled
    article, indexed now."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    own_corpus, own_index = workdir / "corpus", workdir / "index"
    questions = list(QUESTIONS)
    if corpus is None and squad_articles:
        questions = squad_collection(squad_articles, own_corpus)
    else:
        shutil.copytree(corpus or REPO / "corpus", own_corpus)
    (own_corpus / NEW_DOCUMENT).unlink(missing_ok=True)
    if index is not None:
        shutil.copytree(index, own_index)
        return own_corpus, own_index, questions
    log(f"indexing {own_corpus}")
    command = [sys.executable, "-m", "qa", "build", str(own_corpus), "-o", str(own_index), "-q"]
    built = subprocess.run(
        [*command, *(["--runtime", runtime] if runtime else [])],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if built.returncode != 0:
        raise RuntimeError(f"qa build failed: {built.stderr}")
    return own_corpus, own_index, questions


def run(
    *,
    clients: int = 32,
    searches: int = 1000,
    rebuild: bool = True,
    paragraphs: int = 120,
    corpus: Path | None = None,
    index: Path | None = None,
    squad_articles: int = 0,
    runtime: str | None = None,
    concurrency: int | None = None,
    replicas: int = 1,
    workdir: Path | None = None,
    timeout: float = 600,
    kind: str = "http",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Set up, serve, load and check; the figures and the errors found (an empty list when all went right)."""
    scratch = workdir or Path(tempfile.mkdtemp(prefix="qa-load-"))
    try:
        own_corpus, own_index, questions = prepare(
            scratch / "load", corpus, index, log, squad_articles=squad_articles, runtime=runtime
        )
        with contextlib.ExitStack() as servers:
            started = [
                servers.enter_context(
                    qa_serve(own_index, own_corpus, scratch / f"serve-{n}.log", concurrency=concurrency)
                )
                for n in range(replicas)
            ]
            urls, startup = [url for url, _ in started], max(seconds for _, seconds in started)
            log(f"qa serve answered after {startup:.1f} s at {', '.join(urls)}")
            result = run_load(
                urls,
                own_corpus,
                own_index,
                questions=questions,
                clients=clients,
                searches=searches,
                rebuild=rebuild,
                paragraphs=paragraphs,
                timeout=timeout,
                kind=kind,
                scratch=scratch,
                log=log,
            )
        result["server_start_seconds"] = round(startup, 1)
        result["served"] = (
            f"the first {squad_articles} SQuAD dev articles"
            if squad_articles and corpus is None
            else ("the given corpus" if corpus is not None else "the bundled article")
        )
        result["concurrency"] = concurrency
        result["replicas"] = replicas
        result["runtime"] = json.loads((own_index / "manifest.json").read_text()).get("runtime", "torch")
        return result
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------- reports


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(), "system": platform.system()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


CLIENT_TEXT = {
    "http": "each its own HTTP connection: `POST /gradio_api/call/search`, then the answer's event stream",
    "gradio": "one gradio_client `Client` each",
}


def _faults(rebuild: dict[str, Any]) -> str:
    """What went wrong with the answers around the rebuild, from the counts the run made: "none ..." only if so."""
    failed, mixed = rebuild["failed_searches"], rebuild["answers_from_neither"]
    late, early = rebuild["old_answers_after_rebuild"], rebuild["new_answers_before_rebuild"]
    if failed or mixed:
        errors = (
            f"{failed:,} {'search' if failed == 1 else 'searches'} failed and {mixed:,} answered from neither index"
        )
    else:
        errors = "none was an error or a mix"
    if late or early:
        order = (
            f"{late:,} sent after the rebuild returned got the old index's answer and {early:,} received before "
            "it began got the new index's"
        )
    else:
        order = "every search sent after the rebuild returned was answered by the new index, without a restart"
    return f"{errors}, and {order}"


def markdown(result: dict[str, Any], command: str) -> str:
    latency = result["latency_ms"]
    lines = [
        "# Serving under load",
        "",
        f"`{command}` on {result['machine'].get('cpu', 'this machine')} ({result['machine']['cpus']} CPUs), "
        f"{result['created']}; load average before the run {result['machine'].get('load_average')}. "
        "Client threads and the server share the machine.",
        "",
        f"{result['clients']} concurrent clients ({CLIENT_TEXT[result['client']]}) called the `/search` API of "
        + (
            f"{result['replicas']} replicas of `qa serve --allow-uploads` (each client one of them, in turn)"
            if result.get("replicas", 1) > 1
            else "`qa serve --allow-uploads`"
        )
        + f" on 127.0.0.1 serving {result.get('served', 'the bundled article')} "
        f"({result.get('runtime', 'torch')} runtime, {result.get('concurrency') or 'default'} searches at once), "
        f"k={result['k']}, each search asking the next of {result['questions']:,} questions about the served "
        f"documents; {result.get('repeated_questions', 0):,} searches asked a question again (once all had been "
        "asked), the others a question the server had never seen, so it embedded it under the load.",
        "",
        "| searches | errors | seconds | searches/s | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {result['searches']:,} | {len(result['errors'])} | {result['seconds']} | {result['throughput_per_s']} | "
        f"{latency.get('p50')} | {latency.get('p95')} | {latency.get('p99')} | {latency.get('max')} |",
    ]
    if cpu := result.get("cpu_ms_per_search"):
        lines += [
            "",
            f"CPU time per search: the server{' replicas together' if result.get('replicas', 1) > 1 else ''} {cpu['server']} ms, the client threads {cpu['clients']} ms (all "
            f"threads, user + system); so two cores doing nothing else would serve about "
            f"{result['searches_per_s_on_2_free_cores']} searches/s. Load average after the run "
            f"{result.get('load_average_after')}.",
        ]
    rebuild = result.get("rebuild")
    if rebuild:
        during = rebuild["latency_during_rebuild_ms"]
        lines += [
            "",
            f"After a quarter of the searches a document of {rebuild['added_paragraphs']} paragraphs was added to the "
            f"corpus and `/rebuild` called; it took {rebuild['seconds']} s while the searches went on. "
            f"{rebuild['answers_from_old_index']:,} answers came from the old index and "
            f"{rebuild['answers_from_new_index']:,} from the new one, each equal to that index's answer to the same "
            f"question; {_faults(rebuild)}. The {rebuild['searches_during_rebuild']:,} searches that overlapped "
            f"the rebuild took p50 {during.get('p50')} ms, p95 {during.get('p95')} ms.",
        ]
    if result["errors"]:
        lines += ["", "## Errors", "", *(f"- {error}" for error in result["errors"][:50])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--searches", type=int, default=1000, help="searches in all, at least (default 1000)")
    parser.add_argument("--no-rebuild", action="store_true", help="only search; no rebuild during the load")
    parser.add_argument("--paragraphs", type=int, default=120, help="paragraphs of the document the rebuild adds")
    parser.add_argument("--corpus", type=Path, help="a corpus to serve, asked the bundled article's questions")
    parser.add_argument(
        "--squad-articles",
        type=int,
        default=SQUAD_ARTICLES,
        help=f"serve the first N SQuAD dev articles, asked their questions (default {SQUAD_ARTICLES}; 0: the bundled article)",
    )
    parser.add_argument("--runtime", help="the runtime to build the served index on (default: qa's)")
    parser.add_argument(
        "--concurrency", type=int, help="searches the server runs at once ($QA_SEARCH_CONCURRENCY; default: qa's)"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="qa serve processes on the one index, clients spread over them"
    )
    parser.add_argument("--index", type=Path, help="its index, copied (default: built from the corpus)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds the load may take")
    parser.add_argument(
        "--client", choices=sorted(SEARCHERS), default="http", help="how clients call /search (default http)"
    )
    parser.add_argument("--output", type=Path, help="results stem (default bench/results/load)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.searches < 1 or args.replicas < 1:
        parser.error("--clients, --searches and --replicas must be at least 1")
    if args.replicas > 1 and not args.no_rebuild:
        # A replica takes up a rebuilt index within a second of the save, so the check that every search
        # sent after the rebuild returned gets the new index's answer would not hold: search only.
        parser.error("--replicas needs --no-rebuild")
    machine = _machine()
    result = run(
        clients=args.clients,
        searches=args.searches,
        rebuild=not args.no_rebuild,
        paragraphs=args.paragraphs,
        corpus=args.corpus,
        index=args.index,
        squad_articles=args.squad_articles,
        runtime=args.runtime,
        concurrency=args.concurrency,
        replicas=args.replicas,
        timeout=args.timeout,
        kind=args.client,
        log=lambda message: print(f"bench.load: {message}", file=sys.stderr, flush=True),
    )
    result["machine"] = machine
    result["created"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m bench.load" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    result["command"] = command
    stem = args.output or RESULTS / "load"
    stem.parent.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n"),
        (stem.with_suffix(".md"), markdown(result, command)),
    ):
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    latency = result["latency_ms"]
    print(
        f"{result['searches']:,} searches by {result['clients']} clients in {result['seconds']} s: "
        f"{result['throughput_per_s']}/s, p50 {latency.get('p50')} ms, p95 {latency.get('p95')} ms, "
        f"{len(result['errors'])} errors -> {stem.with_suffix('.json')}, {stem.with_suffix('.md')}"
    )
    for error in result["errors"][:20]:
        print(f"  error: {error}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
