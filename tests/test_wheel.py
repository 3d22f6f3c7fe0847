"""qa as a user gets it: the wheel, installed in a fresh virtual environment, serves the bundled article.

It builds the wheel, makes a new environment outside the checkout, installs the wheel with its
dependencies there (the CPU build of torch first, as the Makefile does), and from another folder asks
the bundled article a question with ``qa ask`` and over HTTP from ``qa serve``. That takes minutes and
downloads packages, so it runs when ``QA_TEST_WHEEL=1`` (CI sets it) and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.conftest_ui import NPT, QUESTION, free_port


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command to its end; its output, or a failure showing what it printed."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=1800, cwd=cwd, env=env)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """``(bin folder, environment)`` of a new virtual environment with the wheel installed."""
    if os.environ.get("QA_TEST_WHEEL") != "1":
        pytest.skip("builds the wheel and installs it into a new environment (minutes): set QA_TEST_WHEEL=1")
    base = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", base / "dist", ROOT)
    (wheel,) = (base / "dist").glob("qa-*.whl")
    _run(sys.executable, "-m", "venv", base / "venv")
    pip = base / "venv" / "bin" / "pip"
    _run(pip, "install", "--quiet", "torch==2.13.0")  # the CPU build first, as README says
    _run(pip, "install", "--quiet", wheel)
    home = base / "home"
    env = {
        "PATH": f"{base / 'venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    (home / "elsewhere").mkdir(parents=True)
    yield base / "venv" / "bin", env


def test_the_installed_package_holds_qa_and_nothing_generic(installed: tuple[Path, dict[str, str]]) -> None:
    bin_folder, env = installed
    code = (
        "import importlib.util as u; print(json.dumps([bool(u.find_spec(n)) for n in ('qa', 'qa.ui', 'ui', 'bench')]))"
    )
    printed = _run(bin_folder / "python", "-c", f"import json; {code}", env=env, cwd=Path(env["HOME"]))
    assert json.loads(printed) == [True, True, False, False]


def test_qa_ask_answers_from_another_folder_with_the_index_in_the_users_data(
    installed: tuple[Path, dict[str, str]],
) -> None:
    bin_folder, env = installed
    elsewhere = Path(env["HOME"]) / "elsewhere"
    printed = _run(bin_folder / "qa", "ask", QUESTION, "-k", "1", "--json", env=env, cwd=elsewhere)
    (hit,) = [json.loads(line) for line in printed.splitlines()]
    assert NPT in hit["text"] and hit["doc_id"] == "putin-bush-pakistan-nuclear.md"
    index = Path(env["XDG_DATA_HOME"]) / "qa" / "index"
    assert (index / "manifest.json").is_file()
    assert list(elsewhere.iterdir()) == []  # nothing written where it was run
    site = next((bin_folder.parent / "lib").glob("python3*/site-packages"))
    assert not (site / "qa" / "index").exists() and not list(site.glob("qa/corpus/.*lock"))


def test_qa_serve_answers_over_http(installed: tuple[Path, dict[str, str]]) -> None:
    from gradio_client import Client

    bin_folder, env = installed
    port = free_port()
    server = subprocess.Popen(
        [str(bin_folder / "qa"), "serve", "--port", str(port)],
        cwd=Path(env["HOME"]) / "elsewhere",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 300
        while True:
            try:
                client = Client(url, verbose=False)
                break
            except Exception:  # not listening yet
                if server.poll() is not None or time.monotonic() > deadline:
                    problem = server.stderr.read() if server.stderr else ""
                    raise AssertionError(f"qa serve did not start: {problem}") from None
                time.sleep(1)
        hits = client.predict(QUESTION, 1, api_name="/search")
        assert NPT in hits[0]["text"]
    finally:
        server.terminate()
        server.wait(timeout=60)
