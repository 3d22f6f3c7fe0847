"""``python -m bench [SECTION ...] [--quick]``: measure qa on this machine, write JSON and Markdown results.

Sections: build, latency, cold-start, index-types, scaling, incremental, runtimes (default: all, in that order).
A run of some sections keeps the others' earlier results in the output files, so a long benchmark can
be run section by section. ``--quick`` runs small sizes and writes ``quick.json``/``quick.md`` in the
work folder instead, so a check of the benchmark never replaces the committed figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import RESULTS, default_workdir, git_revision, load_average, log, machine, versions
from bench.report import markdown, targets
from bench.sections import FULL, QUICK, SECTIONS, Context, Plan, dumps


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Measure qa on this machine; write bench/results/latest.json and .md."
    )
    parser.add_argument(
        "sections", nargs="*", metavar="SECTION", help="any of " + ", ".join(SECTIONS) + " (default all)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the benchmark in a few minutes")
    parser.add_argument(
        "--output", type=Path, help="the results' stem (default bench/results/latest; WORKDIR/quick with --quick)"
    )
    parser.add_argument("--workdir", type=Path, help="where indexes are built (default $TMPDIR/qa-bench)")
    parser.add_argument(
        "--threads",
        type=int,
        help="OpenMP threads for torch and FAISS in every measured process (default: their own, one per core)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one size of the plan, e.g. --set questions=500 --set ann_sizes=100000,1000000",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def adjusted(plan: Plan, settings: list[str]) -> Plan:
    """``plan`` with ``NAME=VALUE`` settings applied: whole numbers, or comma-separated lists of them."""
    changes: dict[str, Any] = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        if name not in {f.name for f in dataclasses.fields(plan)} or name == "quick":
            raise SystemExit(f"python -m bench: --set {setting}: no plan size is called {name!r}")
        parts = tuple(int(v.replace("_", "")) for v in value.split(",") if v)
        if not parts and not isinstance(getattr(plan, name), tuple):
            raise SystemExit(f"python -m bench: --set {setting}: give a number")
        changes[name] = parts if isinstance(getattr(plan, name), tuple) else parts[0]
    return dataclasses.replace(plan, **changes)


def _write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so an interrupted run never leaves half a results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = adjusted(QUICK if args.quick else FULL, args.set)
    common.THREADS = args.threads
    workdir = args.workdir or default_workdir()
    # A quick run checks the benchmark: its figures go to the work folder, never over the committed ones.
    stem = args.output or (workdir / "quick" if args.quick else RESULTS / "latest")
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    chosen = args.sections or list(SECTIONS)
    previous: dict[str, Any] = json.loads(json_path.read_text()) if json_path.exists() else {}
    context = Context(plan=plan, workdir=workdir, previous=previous.get("sections", {}))
    results: dict[str, Any] = {"meta": {}, "sections": dict(previous.get("sections", {}))}
    commit = git_revision()
    for name in chosen:
        log(f"section {name} ({'quick' if plan.quick else 'full'})")
        before = load_average()
        started = time.perf_counter()
        section = SECTIONS[name](context)
        section["_run"] = {
            "finished": time.strftime("%Y-%m-%d %H:%M"),
            "commit": commit,
            "quick": plan.quick,
            "threads": args.threads or "default",
            "seconds": round(time.perf_counter() - started, 1),
            "load_before": before,
            "load_after": load_average(),
            "cpu": machine()["cpu"],  # sections of several runs share one file
        }
        results["sections"][name] = section
        # Written after every section, so a long run that stops late keeps what it measured.
        results["sections"] = {k: results["sections"][k] for k in SECTIONS if k in results["sections"]}
        results["meta"] = {
            "machine": machine(),
            "versions": versions(),
            "command": "python -m bench " + " ".join(sys.argv[1:]),
        }
        results["targets"] = targets(results["sections"])
        _write(json_path, dumps(results) + "\n")
        _write(md_path, markdown(results))
        log(f"section {name} done in {section['_run']['seconds']:.0f} s; results in {json_path} and {md_path}")
    for target in results["targets"]:
        print(
            f"{'met   ' if target['met'] else 'MISSED'}  {target['target']}: {target['measured']} (wanted {target['wanted']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
