"""Shared fixtures: the real packaged model and a real index of the bundled article, built once per run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import qa
from qa.embedding import Encoder

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    encoder = Encoder()
    encoder.model  # noqa: B018 - load once for the whole run
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
