"""`qa eval` on small slices of the real evaluation data (the full runs are benchmarks, figures in README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qa.evaluation import evaluate_beir, evaluate_squad, ndcg_at_10
from tests.conftest import SCIFACT, SQUAD, require_data


@pytest.fixture
def needs_data() -> None:
    require_data(SQUAD, SCIFACT)


def test_ndcg_at_10_matches_hand_computed_values() -> None:
    assert ndcg_at_10(["a", "b"], {"a": 1}) == pytest.approx(1.0)
    assert ndcg_at_10(["x", "a"], {"a": 1}) == pytest.approx(1 / 1.5849625, rel=1e-6)
    assert ndcg_at_10(["x"] * 10, {"a": 1}) == 0.0


@pytest.mark.usefixtures("needs_data")
def test_squad_slice_hybrid_is_at_least_as_good_as_each_single_mode() -> None:
    results = evaluate_squad(SQUAD, articles=slice(16, 17), max_questions=120).results  # Amazon_rainforest
    for setting in ("per-article", "pooled"):
        by_mode = results[setting]
        assert by_mode["hybrid"]["questions"] == 120
        assert by_mode["hybrid"]["hit@5"] >= 0.9
        assert by_mode["hybrid"]["hit@1"] >= max(by_mode["dense"]["hit@1"], by_mode["lexical"]["hit@1"]) - 0.02
        assert by_mode["hybrid"]["highlight"] >= 0.6


@pytest.mark.usefixtures("needs_data")
def test_beir_slice_scores_are_sane() -> None:
    results = evaluate_beir(SCIFACT, max_queries=30, max_documents=300)
    assert results["hybrid"]["queries"] == 30
    assert 0.5 <= results["hybrid"]["ndcg@10"] <= 1.0
    assert results["hybrid"]["recall@100"] >= results["hybrid"]["ndcg@10"] - 0.1


@pytest.mark.usefixtures("needs_data")
def test_eval_command_writes_table_json_and_plot(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "qa",
            "eval",
            "--squad",
            str(SQUAD),
            "--articles",
            "32",
            "--max-questions",
            "30",
            "-o",
            str(tmp_path),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "| per-article | hybrid |" in result.stdout and "| pooled | lexical |" in result.stdout
    report = json.loads((tmp_path / "eval.json").read_text())
    assert set(report["squad"]["results"]["pooled"]) == {"hybrid", "dense", "lexical"}
    assert (tmp_path / "squad-hits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.usefixtures("needs_data")
def test_one_index_serves_the_train_and_the_test_queries() -> None:
    from qa.evaluation import load_beir, load_beir_queries
    from qa.index import Index

    documents, train, train_qrels = load_beir(SCIFACT, "train")
    test, test_qrels = load_beir_queries(SCIFACT, "test")
    judged = {d for q in list(train)[:10] for d in train_qrels[q]} | {d for q in list(test)[:10] for d in test_qrels[q]}
    index = Index.build([d for d in documents if d.id in judged] + documents[:100], progress=False)
    for split in ("train", "test"):
        results = evaluate_beir(SCIFACT, split=split, max_queries=10, modes=("lexical",), index=index)
        assert results["lexical"]["queries"] == 10
        assert 0.3 <= results["lexical"]["ndcg@10"] <= 1.0, split


@pytest.mark.usefixtures("needs_data")
def test_a_missing_split_is_reported_before_any_build() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qa", "eval", "--beir", str(SCIFACT), "--split", "test,dev", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"{SCIFACT / 'qrels' / 'dev.tsv'} is missing" in result.stderr
