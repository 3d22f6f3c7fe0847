"""Builds that embed on Ray: the index is the one a local build makes, on a real local Ray and through a real
cluster address; Ray stays out of local builds, and its failures are one line naming what to do."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

import qa
from qa.embedding import Encoder, load_encoder
from qa.evaluation import load_squad
from tests.conftest import CORPUS, SQUAD, RecordingEncoder, require_ray

if TYPE_CHECKING:
    from qa.distributed import RayExecutor

SQUAD_ARTICLES = ("Amazon_rainforest", "Sky_(United_Kingdom)")
"""The two shortest SQuAD dev articles: 43 passages and 182 sentences with the bundled article."""

QUESTIONS = (
    "Which treaty has Pakistan not joined?",
    "What did Putin tell Bush about Pakistan?",
    "How much of the Amazon rainforest is in Brazil?",
    "Who owns Sky UK?",
)

LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
"""What keeps a Ray cluster a test starts on this machine's loopback, and its usage stats at home."""


def _documents() -> list[qa.Document]:
    """The bundled article, and two short SQuAD articles when the shared data is there."""
    documents = list(qa.read_corpus(CORPUS).documents)
    if SQUAD.exists():
        documents += [d for d in load_squad(SQUAD)[0] if d.id in SQUAD_ARTICLES]
    return documents


NEW_DOCUMENT = qa.Document(
    id="added.md",
    title="A page added later",
    text=(
        "# A page added later\n\nThe International Atomic Energy Agency inspects civilian nuclear sites. "
        "Its inspectors verify that declared material is not diverted to weapons.\n\n"
        "## Limits\n\nStates outside the NPT accept inspections only of the sites they choose to declare."
    ),
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_qa(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qa", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_same_index(built: qa.Index, expected: qa.Index) -> None:
    """Same passages, sentences, documents and manifest (but its time), vectors within float tolerance, same hits."""
    a, b = built.contents, expected.contents
    assert list(a.passages) == list(b.passages)
    assert [list(s) for s in a.sentences] == [list(s) for s in b.sentences]
    assert [dict(x) for x in a.acronyms] == [dict(x) for x in b.acronyms]
    assert list(a.documents) == list(b.documents)
    manifests = [{k: v for k, v in m.to_json().items() if k != "created"} for m in (a.manifest, b.manifest)]
    assert manifests[0] == manifests[1]
    rows = np.arange(len(b.passages))
    np.testing.assert_allclose(a.dense.vectors(rows), b.dense.vectors(rows), rtol=0, atol=1e-5)
    # Sentence vectors are stored as float16: float32 vectors 1e-7 apart (the workers run other thread counts)
    # may round to neighbouring float16 values, one float16 step (2**-10 of the value) apart.
    assert a.sentence_vectors.shape == b.sentence_vectors.shape
    np.testing.assert_allclose(
        a.sentence_vectors.astype(np.float32), b.sentence_vectors.astype(np.float32), rtol=2**-10, atol=1e-5
    )
    for question in QUESTIONS:
        for mode in ("hybrid", "dense", "lexical"):
            got, wanted = built.search(question, k=5, mode=mode), expected.search(question, k=5, mode=mode)
            assert [(h.passage.id, h.highlights) for h in got] == [(h.passage.id, h.highlights) for h in wanted]
            assert [h.score for h in got] == pytest.approx([h.score for h in wanted], abs=1e-4)


@pytest.fixture(scope="module")
def executor() -> Iterator[RayExecutor]:
    """A local Ray of 2 workers, started once for the module (Ray takes seconds to start)."""
    require_ray()
    from qa.distributed import RayExecutor

    with RayExecutor(workers=2) as started:
        yield started


@pytest.fixture(scope="module")
def local_build(encoder: Encoder) -> qa.Index:
    return qa.Index.build(_documents(), encoder=encoder, progress=False)


@pytest.fixture(scope="module")
def ray_build(executor: RayExecutor, encoder: Encoder) -> qa.Index:
    return qa.Index.build(_documents(), encoder=encoder, progress=False, executor=executor)


def test_a_ray_build_is_the_local_build(ray_build: qa.Index, local_build: qa.Index, executor: RayExecutor) -> None:
    assert ray_build.build_report is not None and local_build.build_report is not None
    assert ray_build.build_report.embedded_texts == local_build.build_report.embedded_texts
    assert executor.texts_embedded >= ray_build.build_report.embedded_texts > 0
    assert_same_index(ray_build, local_build)
    if SQUAD.exists():
        assert {d.id for d in ray_build.documents} >= set(SQUAD_ARTICLES)


def test_workers_embed_on_the_runtime_of_the_build(executor: RayExecutor) -> None:
    """A torch build on Ray has torch's vectors, not the default runtime's: the workers load the build's runtime."""
    torch_encoder = load_encoder(runtime="torch")
    on_ray = qa.Index.build(CORPUS, encoder=torch_encoder, progress=False, executor=executor)
    here = qa.Index.build(CORPUS, encoder=torch_encoder, progress=False)
    assert on_ray.manifest.runtime == "torch"
    assert_same_index(on_ray, here)


def test_an_incremental_ray_build_embeds_only_the_new_document(
    ray_build: qa.Index, local_build: qa.Index, executor: RayExecutor, encoder: Encoder
) -> None:
    documents = [*_documents(), NEW_DOCUMENT]
    before = executor.texts_embedded
    updated = qa.Index.build(documents, encoder=encoder, previous=ray_build, executor=executor, progress=False)
    recording = RecordingEncoder(encoder)
    updated_here = qa.Index.build(documents, encoder=recording, previous=local_build, progress=False)

    report = updated.build_report
    assert report is not None and report.split_documents == (NEW_DOCUMENT.id,)
    assert report.kept_passages == len(ray_build)
    # What went to the workers is what a local update embeds: the new document's passages and sentences.
    assert executor.texts_embedded - before == report.embedded_texts == len(recording.texts) > 0
    new_passages = [p for p in updated.passages if p.doc_id == NEW_DOCUMENT.id]
    assert all(any(t.endswith(p.text) or t in p.text for p in new_passages) for t in recording.texts)
    assert_same_index(updated, updated_here)
    assert updated.search("Who inspects civilian nuclear sites?", k=1)[0].doc_id == NEW_DOCUMENT.id


def test_a_build_with_nothing_new_starts_no_worker(ray_build: qa.Index, encoder: Encoder) -> None:
    """A rebuild of unchanged documents asks the executor for nothing: an executor whose workers could not start
    (its cluster's CPUs all taken) still gives the same index."""
    from qa.distributed import RayExecutor

    with RayExecutor(workers=2) as unused:  # the module's Ray, already running in this process
        again = qa.Index.build(_documents(), encoder=encoder, previous=ray_build, executor=unused, progress=False)
        assert unused.texts_embedded == 0
    assert again.build_report is not None and again.build_report.embedded_texts == 0
    assert_same_index(again, ray_build)


class _ClaimsTheModel(RecordingEncoder):
    """The hashing encoder under the packaged model's name: this machine embeds otherwise than the workers, which
    load the model by that name, as when a machine of a cluster has another model installed under it."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__(load_encoder(f"qa:hashing-{encoder.dim}"))
        self.name = encoder.name


def test_workers_that_embed_differently_are_refused(executor: RayExecutor, encoder: Encoder) -> None:
    with pytest.raises(qa.QAError, match=r"the Ray worker on 127\.0\.0\.1 embeds text differently from this machine"):
        qa.Index.build(_documents()[:1], encoder=_ClaimsTheModel(encoder), executor=executor, progress=False)


def test_a_local_build_never_imports_ray(tmp_path: Path) -> None:
    code = (
        "import sys, qa\n"
        "from qa.cli import main\n"
        "qa.Index.build(sys.argv[1], progress=False).save(sys.argv[2])\n"
        "main(['build', sys.argv[1], '-o', sys.argv[2], '-q'])\n"
        "print('RAY' if 'ray' in sys.modules or 'qa.distributed' in sys.modules else 'NO-RAY')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(CORPUS), str(tmp_path / "index")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("NO-RAY"), result.stdout


def test_without_ray_installed_the_build_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if it were not installed: importing it raises ImportError\n"
        "from qa.cli import main\n"
        "sys.exit(main(['build', sys.argv[1], '-o', sys.argv[2], '--ray']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(CORPUS), str(tmp_path / "index")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr == "qa: error: Ray is not installed: pip install 'qa[ray]'\n"
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize(
    ("options", "message"), [({"workers": 0}, "workers"), ({"cpus_per_worker": 1.5}, "cpus_per_worker")]
)
def test_bad_worker_counts_are_refused_before_ray_starts(options: dict[str, float], message: str) -> None:
    from qa.distributed import RayExecutor

    with pytest.raises(ValueError, match=f"^{message} must be a positive whole number; got {options[message]}$"):
        RayExecutor(**options)  # type: ignore[arg-type]


def test_an_address_nobody_answers_is_one_line(tmp_path: Path) -> None:
    require_ray()
    address = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    result = _run_qa("build", str(CORPUS), "-o", str(tmp_path / "index"), "--ray", address, env=LOOPBACK_RAY)
    assert result.returncode == 1
    assert result.stderr.startswith(f"qa: error: cannot reach the Ray cluster at {address} (Connection refused): ")
    assert "ray start --head" in result.stderr and len(result.stderr.splitlines()) == 1
    assert time.monotonic() - started < 60  # Ray alone would retry such an address for minutes
    assert not (tmp_path / "index").exists()


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[str]:
    """A Ray cluster's head started as a user starts one (``ray start --head``) on loopback; its address."""
    require_ray()
    port = _free_port()
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--include-dashboard=false",
        f"--dashboard-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
    ]
    log = (tmp_path / "ray-head.log").open("w")
    head = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **LOOPBACK_RAY}, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while "will now block" not in (tmp_path / "ray-head.log").read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not start:\n{(tmp_path / 'ray-head.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        # The head and every process it started share its session: stop them all, then make sure.
        os.killpg(head.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10  # Ray's processes take their time over a SIGTERM; none is kept
        while _group_alive(head.pid) and time.monotonic() < deadline:
            head.poll()  # reaps the head itself once it exits
            time.sleep(0.2)
        if _group_alive(head.pid):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        log.close()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_qa_build_on_a_cluster_at_an_address(ray_head: str, tmp_path: Path, article_index: qa.Index) -> None:
    # Ray's own clusters require a token; `ray start` wrote it where Ray's clients look (~/.ray/auth_token).
    result = _run_qa(
        "build",
        str(CORPUS),
        "-o",
        str(tmp_path / "index"),
        "--ray",
        ray_head,
        "-q",
        env={**LOOPBACK_RAY, "RAY_AUTH_MODE": "token"},
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.startswith("indexed 1 documents, 5 passages in ") and "33 texts embedded on Ray" in result.stdout
    )
    built = qa.Index.load(tmp_path / "index")
    assert list(built.passages) == list(article_index.passages)
    rows = np.arange(len(built))
    np.testing.assert_allclose(
        built.contents.dense.vectors(rows), article_index.contents.dense.vectors(rows), atol=1e-5
    )
    assert built.search(QUESTIONS[0], k=1)[0].passage == article_index.search(QUESTIONS[0], k=1)[0].passage
