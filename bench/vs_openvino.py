"""``python -m bench.vs_openvino --ov-python PYTHON``: OpenVINO beside ONNX Runtime, on qa's own exports.

(Not named ``openvino.py``: run as a script for a child, it would shadow the package it imports.)
Issue #18 asked to try OpenVINO int8 where its package installs. OpenVINO is not a qa dependency: it
runs in another environment, given as ``--ov-python`` (a virtualenv with openvino, nncf, tokenizers
and numpy; no torch needed). Every engine runs the model as qa's ONNX runtimes do (each text alone,
unpadded, on one thread; mean pooling; unit length), each in a process of its own, taking turns round
after round:

- ``onnxruntime fp32`` and ``onnxruntime int8``: qa's ``onnx`` and ``onnx-int8`` exports in ONNX Runtime;
- ``openvino fp32``: the ``onnx`` export read by OpenVINO;
- ``openvino int8 weights (nncf)``: that model with int8 weights (``nncf.compress_weights``, per channel);
- ``openvino on the onnx-int8 export``: qa's int8 graph (dynamic quantization) read by OpenVINO.

Measured: one question's embedding p50 (SQuAD dev questions, after a warm-up), passages embedded per
second (SQuAD paragraphs one after another), and each engine's vectors against the ``onnx`` export's,
which are torch's to 2e-7. Results: ``bench/results/openvino.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
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
SQUAD = REPO.parent / "shared" / "data" / "squad-v1.1-dev" / "dev-v1.1.json"
WARMUP, QUESTIONS, PARAGRAPHS, COSINE_TEXTS = 20, 200, 120, 40
ENGINES: dict[str, tuple[str, str]] = {
    "onnxruntime fp32": ("onnxruntime", "onnx"),
    "onnxruntime int8": ("onnxruntime", "onnx-int8"),
    "openvino fp32": ("openvino", "onnx"),
    "openvino int8 weights (nncf)": ("openvino-nncf", "onnx"),
    "openvino on the onnx-int8 export": ("openvino", "onnx-int8"),
}
"""Each engine: what runs the model, and which of qa's exports it reads."""


def _texts(squad: Path) -> tuple[list[str], list[str]]:
    """Questions and paragraphs of the first 12 SQuAD dev articles, in file order (the same for every engine)."""
    articles = json.loads(squad.read_text(encoding="utf-8"))["data"][:12]
    paragraphs = [p["context"] for a in articles for p in a["paragraphs"]]
    questions = [q["question"] for a in articles for p in a["paragraphs"] for q in p["qas"]]
    return questions[: WARMUP + QUESTIONS], paragraphs[:PARAGRAPHS]


def child(engine: str, folder: Path, squad: Path, output: Path) -> None:
    """Run one engine on the export in ``folder``: timings to ``output``.json, vectors to ``output``.npy."""
    import numpy as np
    from tokenizers import Tokenizer

    settings = json.loads((folder / "export.json").read_text())["encoder"]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(settings["max_tokens"]))
    if engine == "onnxruntime":
        import onnxruntime

        onnxruntime.disable_telemetry_events()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        names = [node.name for node in session.get_inputs()]

        def run(feeds: dict[str, Any]) -> Any:
            return session.run(None, {name: feeds[name] for name in names})[0][0]
    else:
        import openvino

        core = openvino.Core()
        model = core.read_model(str(folder / "model.onnx"))
        if engine == "openvino-nncf":
            import nncf

            model = nncf.compress_weights(model)  # int8 weights, asymmetric, per output channel
        compiled = core.compile_model(
            model, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        )
        request = compiled.create_infer_request()
        names = [port.get_any_name() for port in compiled.inputs]

        def run(feeds: dict[str, Any]) -> Any:
            return request.infer({name: feeds[name] for name in names})[compiled.outputs[0]][0]

    def embed(text: str) -> Any:
        encoding = tokenizer.encode(text.lower() if settings["lower_case"] else text)
        ids = np.asarray([encoding.ids], dtype=np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.asarray([encoding.type_ids], dtype=np.int64),
        }
        vector = np.asarray(run(feeds).mean(axis=0), dtype=np.float32)
        return vector / np.linalg.norm(vector)

    questions, paragraphs = _texts(squad)
    times = []
    for number, question in enumerate(questions):
        started = time.perf_counter()
        embed(question)
        if number >= WARMUP:
            times.append(time.perf_counter() - started)
    started = time.perf_counter()
    paragraph_vectors = [embed(paragraph) for paragraph in paragraphs]
    paragraphs_s = time.perf_counter() - started
    vectors = np.stack([*(embed(q) for q in questions[:COSINE_TEXTS]), *paragraph_vectors[:COSINE_TEXTS]])
    np.save(output.with_suffix(".npy"), vectors)
    output.with_suffix(".json").write_text(
        json.dumps(
            {"question_p50_ms": statistics.median(times) * 1000, "passages_per_s": len(paragraphs) / paragraphs_s}
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vs_openvino", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ov-python", required=True, help="a Python with openvino, nncf, tokenizers and numpy")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np

    from bench.common import load_average, log, run_header, write_results
    from qa.embedding import PACKAGED_MODEL, load_encoder, model_location
    from qa.onnx_export import export_folder

    folders = {}
    for runtime in ("onnx", "onnx-int8"):
        load_encoder(runtime=runtime).encode(["exported once, before any timing"])
        folders[runtime] = export_folder(Path(model_location(PACKAGED_MODEL)), runtime)
    before = load_average()
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in ENGINES}
    names = list(ENGINES)
    with tempfile.TemporaryDirectory(prefix="qa-openvino-") as work:
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                engine, runtime = ENGINES[name]
                python = sys.executable if engine == "onnxruntime" else args.ov_python
                output = Path(work) / f"{round_}-{names.index(name)}"
                log(f"openvino: round {round_ + 1}: {name}")
                subprocess.run(
                    [python, __file__, "--child", engine, str(folders[runtime]), str(SQUAD), str(output)],
                    check=True,
                    env={**os.environ, "OPENVINO_TELEMETRY_OPT_OUT": "1"},  # sends nothing
                )
                measured[name].append(json.loads(output.with_suffix(".json").read_text()))
        reference = np.load(Path(work) / f"0-{names.index('onnxruntime fp32')}.npy")
        cosines = {
            name: np.sum(np.load(Path(work) / f"0-{names.index(name)}.npy") * reference, axis=1) for name in names
        }
    after = load_average()
    rows = {
        name: {
            "question_p50_ms": round(statistics.median(m["question_p50_ms"] for m in measured[name]), 2),
            "passages_per_s": round(statistics.median(m["passages_per_s"] for m in measured[name]), 2),
            "cosine_to_torch_min": round(float(cosines[name].min()), 4),
            "cosine_to_torch_median": round(float(np.median(cosines[name])), 4),
            "rounds": measured[name],
        }
        for name in names
    }
    command = f"python -m bench.vs_openvino --ov-python OV_VENV/bin/python --rounds {args.rounds}"
    base = rows["onnxruntime int8"]
    lines = [
        "# OpenVINO beside ONNX Runtime",
        "",
        run_header(command, before, after),
        f"Each engine in its own process, one thread, each text alone; {args.rounds} rounds taking turns, medians. "
        f"{QUESTIONS} SQuAD dev questions after {WARMUP} warm-up; {PARAGRAPHS} SQuAD paragraphs; cosine to the "
        f"onnx export's vectors (torch's to 2e-7) over {COSINE_TEXTS} questions and {COSINE_TEXTS} paragraphs.",
        "",
        "| engine | question p50 ms | vs onnxruntime int8 | passages/s | vs onnxruntime int8 | cosine to torch, min | median |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['question_p50_ms']:.1f} | {row['question_p50_ms'] / base['question_p50_ms']:.2f}× | "
            f"{row['passages_per_s']:.1f} | {row['passages_per_s'] / base['passages_per_s']:.2f}× | "
            f"{row['cosine_to_torch_min']:.4f} | {row['cosine_to_torch_median']:.4f} |"
        )
    report = {"command": command, "load_before": before, "load_after": after, "engines": rows}
    write_results(REPO / "bench" / "results" / "openvino", report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
    else:
        raise SystemExit(main())
