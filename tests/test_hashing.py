"""The hashing encoder: qa's whole pipeline (build, save, load, search, the CLI) in a process without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.embedding import HASHING_MODEL, HashingEncoder, load_encoder
from tests.conftest import CORPUS, ROOT


def test_vectors_are_unit_length_deterministic_and_close_for_shared_words() -> None:
    encoder = load_encoder(HASHING_MODEL)
    assert isinstance(encoder, HashingEncoder) and encoder.dim == 256 and encoder.name == HASHING_MODEL
    vectors = encoder.encode(
        ["Pakistan never joined the treaty.", "The treaty Pakistan never joined.", "Glaciers melt.", ""]
    )
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(
        vectors,
        encoder.encode(
            ["Pakistan never joined the treaty.", "The treaty Pakistan never joined.", "Glaciers melt.", ""]
        ),
    )
    assert vectors[0] @ vectors[1] > 0.5 > abs(vectors[0] @ vectors[2])
    assert load_encoder(f"{HASHING_MODEL}-64").dim == 64
    with pytest.raises(ValueError, match="the hashing encoder is qa:hashing or qa:hashing-DIM"):
        load_encoder(f"{HASHING_MODEL}-big")


def test_build_save_load_search_and_the_cli_never_import_torch(tmp_path: Path) -> None:
    script = f"""
import json, sys
import qa
from qa.cli import main
from qa.embedding import load_encoder

index = qa.Index.build({str(CORPUS)!r}, encoder=load_encoder("qa:hashing"), progress=False)
index.save({str(tmp_path / "api")!r})
loaded = qa.Index.load({str(tmp_path / "api")!r})
hit = loaded.search("Which treaty has Pakistan not joined?", 3)[0]
assert "not a signatory to the NPT" in hit.text, hit.text
assert main(["build", {str(CORPUS)!r}, "-o", {str(tmp_path / "cli")!r}, "--model", "qa:hashing", "-q"]) == 0
assert main(["ask", "Which treaty has Pakistan not joined?", "-i", {str(tmp_path / "cli")!r}, "--json", "-k", "2"]) == 0
assert main(["info", "-i", {str(tmp_path / "cli")!r}]) == 0
print("IMPORTED", json.dumps(sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "IMPORTED []", result.stdout
    hits = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(hits) == 2 and "not a signatory to the NPT" in hits[0]["text"]
    assert "model:      qa:hashing (256 dimensions)" in result.stdout and "state:      fresh" in result.stdout
