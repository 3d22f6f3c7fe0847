"""The qa command as a user runs it: a new process, exit codes, stdout for results, stderr for the rest."""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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


# ------------------------------------------------------------------------------ file-system errors

ACCESS = "Permission denied; check that you may read it and write in its folder, or choose another path"
_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 24, 1, 2


def _drop_root_override() -> None:
    """In the child, before it runs Python: drop the capabilities that let root ignore permission bits.

    Dropped from the bounding set, they are not in the new program's capabilities, so a qa run as root is bound
    by file permissions as anyone else's is (a test cannot make a folder read-only to root otherwise).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_qa_bound_by_permissions(*args: str) -> subprocess.CompletedProcess[str]:
    """``run_qa``, with file permissions binding qa even when the tests run as root."""
    if os.geteuid() != 0:
        return run_qa(*args)
    try:
        return subprocess.run(
            [sys.executable, "-m", "qa", *args],
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=_drop_root_override,
        )
    except subprocess.SubprocessError as error:
        pytest.skip(f"cannot make permissions bind root here (dropping a capability needs CAP_SETPCAP): {error}")


def _read_only_output_folder(tmp_path: Path) -> tuple[list[str], Path]:
    """-o into a folder qa may not write in: the lock file is the first thing it would create there."""
    (tmp_path / "shelf").mkdir(mode=0o555)
    return ["-o", str(tmp_path / "shelf" / "idx")], tmp_path / "shelf" / ".idx.lock"


def _lock_file_is_a_folder(tmp_path: Path) -> tuple[list[str], Path]:
    """The lock file's name is taken by a folder: it cannot be created (as root too)."""
    (tmp_path / ".idx.lock").mkdir()
    return ["-o", str(tmp_path / "idx")], tmp_path / ".idx.lock"


def _output_inside_a_file(tmp_path: Path) -> tuple[list[str], Path]:
    """-o names a folder inside a file: the folder cannot be made (as root too)."""
    (tmp_path / "notes.txt").write_text("a file, not a folder", encoding="utf-8")
    return ["-o", str(tmp_path / "notes.txt" / "idx")], tmp_path / "notes.txt"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_read_only_output_folder, ACCESS),
        (_lock_file_is_a_folder, "Is a directory; it is a folder where qa needs a file: move it away or choose another path"),
        (_output_inside_a_file, "File exists; it is a file where qa needs a folder: move it away or choose another path"),
    ],
    ids=["read-only output folder", "lock file cannot be created", "output inside a file"],
)  # fmt: skip
def test_build_that_cannot_write_says_where_and_what_to_do_in_one_line(
    make: Callable[[Path], tuple[list[str], Path]], reason: str, tmp_path: Path, article_index_path: Path
) -> None:
    corpus = article_index_path.parent / "corpus"
    output, culprit = make(tmp_path)
    result = run_qa_bound_by_permissions("build", str(corpus), *output, "-q")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"qa: error: {culprit}: {reason}"]
    assert result.stdout == ""
    # -v adds the traceback above the same line.
    verbose = run_qa_bound_by_permissions("-v", "build", str(corpus), *output, "-q")
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.splitlines()[-1] == f"qa: error: {culprit}: {reason}"


def test_an_index_file_qa_cannot_read_is_one_line(tmp_path: Path, article_index_path: Path) -> None:
    """A permission error while reading: the index's passages file is unreadable."""
    index = tmp_path / "idx"
    shutil.copytree(article_index_path, index)
    (index / "passages.jsonl").chmod(0)
    result = run_qa_bound_by_permissions("ask", QUESTION, "-i", str(index))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"qa: error: {index / 'passages.jsonl'}: {ACCESS}"]


def test_documents_qa_cannot_read_are_named_and_skipped(tmp_path: Path, article_index_path: Path) -> None:
    """A document and a folder without read permission: each skipped with a line naming it; the rest indexed."""
    corpus = tmp_path / "corpus"
    shutil.copytree(article_index_path.parent / "corpus", corpus)
    secret = corpus / "secret.md"
    secret.write_text("# Secret\n\nA document nobody may read.\n", encoding="utf-8")
    secret.chmod(0)
    closed = corpus / "closed"
    closed.mkdir()
    (closed / "inside.md").write_text("# Inside\n\nA document in a folder nobody may list.\n", encoding="utf-8")
    closed.chmod(0)
    try:
        built = run_qa_bound_by_permissions("build", str(corpus), "-o", str(tmp_path / "idx"), "-q")
        assert built.returncode == 0, built.stderr
        assert built.stdout.startswith("indexed 1 documents, 5 passages")
        assert sorted(built.stderr.splitlines()) == [
            f"qa: skipped {closed}: cannot list it (Permission denied); check that you may read it",
            f"qa: skipped {secret}: cannot read it (Permission denied); check that you may read it",
        ]
        # Nothing else to read: the build fails, in one line after the warnings.
        (corpus / "putin-bush-pakistan-nuclear.md").unlink()
        failed = run_qa_bound_by_permissions("build", str(corpus), "-o", str(tmp_path / "other"), "-q")
        assert failed.returncode == 1 and "Traceback" not in failed.stderr
        assert failed.stderr.splitlines()[-1] == (
            f"qa: error: {str(corpus)!r} has no readable documents: add UTF-8 .txt, .md or .html files, "
            "or .pdf or .docx files, with text to it"
        )
    finally:
        closed.chmod(0o755)  # so that pytest can remove it


def test_a_reader_that_stops_early_is_not_an_error(article_index_path: Path) -> None:
    """qa ask ... | head: the pipe closes while qa writes; no message, no traceback."""
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)  # smaller than the answer (about 5 kB), so qa is still writing
    child = subprocess.Popen(
        [sys.executable, "-m", "qa", "ask", QUESTION, "-i", str(article_index_path)],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write)
    first = os.read(read, 10)
    os.close(read)
    _, error = child.communicate(timeout=300)
    assert first.startswith(b"1. [")
    assert child.returncode == 1 and error == ""
