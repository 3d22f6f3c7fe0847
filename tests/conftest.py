"""Shared fixtures: the real packaged model and a real index of the bundled article, built once per run."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import qa
from qa.embedding import Encoder, load_encoder

if TYPE_CHECKING:
    from tests.milvus_server import MilvusServer

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SHARED_DATA = ROOT.parent / "shared" / "data"
"""Real public data (SQuAD, SciFact, PDF and Word samples), read where it lies, never copied into the repo."""
SQUAD = SHARED_DATA / "squad-v1.1-dev" / "dev-v1.1.json"
SCIFACT = SHARED_DATA / "beir-scifact"


def require(switch: str, available: bool, reason: str) -> None:
    """Skip the calling test (or module) when what it needs is missing, or fail when ``$QA_REQUIRE_<switch>=1``.

    CI sets the switches (``.ci/run``), so a missing install step or data folder fails there instead of
    passing as a skip; a clone elsewhere still passes, naming what it skipped and why.
    """
    if available:
        return
    variable = f"QA_REQUIRE_{switch.upper()}"
    if os.environ.get(variable) == "1":
        pytest.fail(f"{reason} ({variable}=1 requires these tests to run)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_data(*paths: Path) -> None:
    """Require files or folders of the shared data (``QA_REQUIRE_DATA``)."""
    missing = [str(path) for path in paths if not path.exists()]
    require("data", not missing, f"the shared evaluation data is not beside the repository: {', '.join(missing)}")


def require_milvus() -> None:
    """Require the Milvus backend's packages (``QA_REQUIRE_MILVUS``)."""
    missing = [name for name in ("pymilvus", "milvus_lite") if importlib.util.find_spec(name) is None]
    require("milvus", not missing, f"{' and '.join(missing)} not installed: pip install 'qa[milvus]'")


def require_milvus_server() -> None:
    """Require the ``milvus`` package, a Milvus server the tests can start (``QA_REQUIRE_MILVUS``)."""
    require_milvus()
    found = importlib.util.find_spec("milvus") is not None
    require("milvus", found, "the milvus package (a Milvus 2.3.5 server) is not installed: pip install milvus==2.3.5")


def require_ray() -> None:
    """Require Ray, for builds that embed on it (``QA_REQUIRE_RAY``)."""
    require("ray", importlib.util.find_spec("ray") is not None, "ray is not installed: pip install 'qa[ray]'")


def start_milvus_server(folder: Path, binary: Path, *, authorization: bool = False) -> Iterator[MilvusServer]:
    """A Milvus server on ``folder`` until the generator is closed; then stopped, and checked to be gone.

    A server that cannot start skips the tests that need it, or fails them when ``$QA_REQUIRE_MILVUS=1``.
    """
    from tests.milvus_server import MilvusServer, ServerFailed

    server = MilvusServer(folder, binary, authorization=authorization)
    try:
        server.start()
    except ServerFailed as error:
        require("milvus", False, str(error))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder / "data", ignore_errors=True)  # 200 MB, mostly preallocated logs; its own logs stay
        if server.listening():
            raise AssertionError(f"something still listens on the stopped Milvus server's port {server.port}")


@pytest.fixture(scope="session")
def milvus_binary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Milvus server's binary, unpacked once for the run's servers (250 MB, removed after the run)."""
    require_milvus_server()
    from tests.milvus_server import unpack_binaries

    folder = tmp_path_factory.mktemp("milvus-bin")
    yield unpack_binaries(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory, milvus_binary: Path) -> Iterator[MilvusServer]:
    """A Milvus server on a fresh data folder, started once for the run and shared: never stop it in a test."""
    yield from start_milvus_server(tmp_path_factory.mktemp("milvus-server"), milvus_binary)


@pytest.fixture(scope="session", autouse=True)
def extraction_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache for this run alone, of extracted PDF and Word text and of the ONNX exports: tests never read
    or fill the user's, and each runtime's export is made once per run (about 20 s), then reused."""
    folder = tmp_path_factory.mktemp("cache")
    os.environ["QA_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    encoder = load_encoder()
    encoder.encode(["load the model once for the whole run"])
    return encoder


@pytest.fixture(scope="session")
def article_index_path(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Path:
    """A saved index of a copy of the bundled corpus. Tests must not change it: copy it first."""
    base = tmp_path_factory.mktemp("article")
    corpus = base / "corpus"
    shutil.copytree(CORPUS, corpus)
    index = qa.Index.build(corpus, progress=False)
    index.save(base / "index")
    return base / "index"


@pytest.fixture(scope="session")
def article_index(article_index_path: Path) -> qa.Index:
    return qa.Index.load(article_index_path)


@pytest.fixture
def writable_article(tmp_path: Path, article_index_path: Path) -> tuple[Path, Path]:
    """A private copy of the article's corpus and index: ``(corpus, index)``."""
    shutil.copytree(article_index_path.parent / "corpus", tmp_path / "corpus")
    shutil.copytree(article_index_path, tmp_path / "index")
    return tmp_path / "corpus", tmp_path / "index"


class RecordingEncoder:
    """An encoder that is another one, recording every text it is asked to embed (an ``Encoder`` by delegation)."""

    def __init__(self, encoder: Encoder) -> None:
        self.inner = encoder
        self.name = encoder.name
        self.runtime = encoder.runtime
        self.texts: list[str] = []

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def encode(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.encode(texts, **options)

    def encode_query(self, question: str) -> np.ndarray:
        return self.inner.encode_query(question)

    def warm_queries(self, questions: Sequence[str], **options: Any) -> None:
        self.inner.warm_queries(questions, **options)
