"""The qa command as a user runs it: a new process, exit codes, stdout for results, stderr for the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

QUESTION = "Which treaty has Pakistan not joined?"


def run_qa(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qa", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_build_ask_info_round_trip(tmp_path: Path, article_index_path: Path) -> None:
    corpus = article_index_path.parent / "corpus"
    built = run_qa("build", str(corpus), "-o", str(tmp_path / "idx"), "-q")
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith("indexed 1 documents, 5 passages in ")

    asked = run_qa("ask", QUESTION, "-i", str(tmp_path / "idx"), "-k", "2")
    assert asked.returncode == 0, asked.stderr
    first = asked.stdout.split("\n\n")[0]
    assert first.startswith("1. [") and "The Global Impact" in first
    assert "**As Pakistan is not a signatory to the NPT" in first  # the highlight
    assert "2. [" in asked.stdout and "3. [" not in asked.stdout

    as_json = run_qa("ask", QUESTION, "-i", str(tmp_path / "idx"), "-k", "3", "--json")
    hits = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert "not a signatory to the NPT" in hits[0]["text"] and hits[0]["section"] == "The Global Impact"

    info = run_qa("info", "-i", str(tmp_path / "idx"))
    assert info.returncode == 0, info.stderr
    assert "state:      fresh" in info.stdout and "passages:   5" in info.stdout
    assert "embedding:  passage vectors own" in info.stdout


def test_build_with_sentence_mean_passage_vectors(tmp_path: Path, article_index_path: Path) -> None:
    corpus = article_index_path.parent / "corpus"
    built = run_qa("build", str(corpus), "-o", str(tmp_path / "idx"), "-q", "--passage-vectors", "sentence-mean")
    assert built.returncode == 0, built.stderr
    assert "passage vectors sentence-mean" in run_qa("info", "-i", str(tmp_path / "idx")).stdout
    asked = run_qa("ask", QUESTION, "-i", str(tmp_path / "idx"), "-k", "1")
    assert "**As Pakistan is not a signatory to the NPT" in asked.stdout


def test_info_reports_a_stale_index(tmp_path: Path, writable_article: tuple[Path, Path]) -> None:
    corpus, index = writable_article
    (corpus / "more.md").write_text("More text about treaties.", encoding="utf-8")
    info = run_qa("info", "-i", str(index))
    assert info.returncode == 0
    assert "state:      STALE: the documents in" in info.stdout and "qa build" in info.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ask", "   "), "qa: error: the question is empty"),
        (("ask", QUESTION, "-k", "0"), "qa: error: k must be a whole number of at least 1; got 0"),
        (("ask", QUESTION, "-i", "/nonexistent/idx"), "qa: error: no index at /nonexistent/idx: build one with"),
        (("info", "-i", "/nonexistent/idx"), "qa: error: no index at /nonexistent/idx"),
        (
            ("build", "/nonexistent/corpus", "-o", "/tmp/never"),
            "qa: error: corpus folder '/nonexistent/corpus' does not exist",
        ),
    ],
)
def test_errors_are_one_line_on_stderr_with_a_non_zero_exit(args: tuple[str, ...], message: str) -> None:
    result = run_qa(*args)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_corrupted_index_is_reported_without_traceback(tmp_path: Path, article_index_path: Path) -> None:
    import shutil

    shutil.copytree(article_index_path, tmp_path / "idx")
    (tmp_path / "idx" / "vectors.faiss").write_bytes(b"garbage")
    result = run_qa("ask", QUESTION, "-i", str(tmp_path / "idx"))
    assert result.returncode == 1
    assert "vectors.faiss is missing, truncated or changed" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [("--help",), ("info", "-i", "{index}")])
def test_help_and_info_do_not_import_torch(args: tuple[str, ...], article_index_path: Path) -> None:
    argv = [a.replace("{index}", str(article_index_path)) for a in args]
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['qa', *{argv!r}]\n"
        "try:\n    runpy.run_module('qa', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stderr.strip().endswith("NO-TORCH"), result.stderr
