"""The issue's targets checked against the results, and the results as a Markdown page."""

from __future__ import annotations

from typing import Any

GIB_MIB = 1024.0


def _best(rows: list[dict[str, Any]], ok: Any, key: str) -> dict[str, Any] | None:
    chosen = [r for r in rows if ok(r)]
    return min(chosen, key=lambda r: r[key]) if chosen else None


def targets(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue that the results can decide: what was wanted, what was measured, met or not."""
    found: list[dict[str, Any]] = []

    def add(name: str, wanted: str, measured: str, met: bool) -> None:
        found.append({"target": name, "wanted": wanted, "measured": measured, "met": bool(met)})

    if latency := sections.get("latency"):
        modes = latency["modes"]
        for mode, limit in (("dense", 1.2), ("hybrid", 1.5)):
            value = modes[mode]["p50_vs_floor"]
            add(
                f"{mode} query p50 vs floor",
                f"≤ {limit}×",
                f"{value:.2f}× ({modes[mode]['p50_ms']:.1f} ms vs {modes['floor']['p50_ms']:.1f} ms)",
                value <= limit,
            )
    if build := sections.get("build"):
        value = build["build_vs_bare_passages"]
        add(
            "build rate vs bare model.encode(passages)",
            "≥ 0.85×",
            f"{value:.2f}× ({build['build_passages_per_s']:.1f} vs {build['bare_passages_per_s']:.1f} passages/s)",
            value >= 0.85,
        )
        if "sentence_mean_vs_bare_passages" in build:
            value = build["sentence_mean_vs_bare_passages"]
            add(
                "… with `--passage-vectors sentence-mean` (one model pass)",
                "≥ 0.85×",
                f"{value:.2f}× ({build['sentence_mean']['passages_per_s']:.1f} passages/s)",
                value >= 0.85,
            )
    if cold := sections.get("cold-start"):
        add(
            "cold `qa ask` vs bare script",
            "≤ 1.1×",
            f"{cold['ratio']:.2f}× ({cold['qa_ask']['median_s']:.2f} s vs {cold['floor']['median_s']:.2f} s)",
            cold["ratio"] <= 1.1,
        )
        for name, light in cold["light_commands"].items():
            add(
                f"`{name}` does not import torch",
                "no torch",
                "torch imported" if light["imports_torch"] else f"no torch ({light['seconds']:.2f} s)",
                not light["imports_torch"],
            )
    if types := sections.get("index-types"):
        largest = max(types["sizes"], key=lambda s: s["count"])
        label = f"{largest['count']:,} vectors"
        hnsw_rows = [r for c in largest["configs"] if c["type"] == "hnsw" for r in c["results"]]
        good = _best(hnsw_rows, lambda r: r["recall_at_10"] >= 0.95, "p50_ms")
        add(
            f"HNSW at {label}: recall@10 ≥ 0.95 at p50 ≤ 2 ms",
            "≥ 0.95, ≤ 2 ms",
            f"ef_search={good['ef_search']}: recall {good['recall_at_10']:.3f}, p50 {good['p50_ms']:.2f} ms"
            if good
            else "no setting reached 0.95",
            bool(good and good["p50_ms"] <= 2.0),
        )
        ivf_rows = [
            {**r, "pq_m": c["params"]["pq_m"], "opq": c["params"].get("opq", False)}
            for c in largest["configs"]
            if c["type"] == "ivfpq"
            for r in c["results"]
        ]
        good = _best(ivf_rows, lambda r: r["nearest_in_10"] >= 0.9 and r["bytes_per_vector"] <= 100, "p50_ms")
        add(
            f"IVF-PQ at {label}: nearest in top 10 ≥ 90%, ≤ 100 bytes/vector",
            "≥ 0.90, ≤ 100 B",
            f"pq_m={good['pq_m']}{', OPQ' if good['opq'] else ''}, nprobe={good['nprobe']}: {good['nearest_in_10']:.3f}, {good['bytes_per_vector']:.0f} B, p50 {good['p50_ms']:.2f} ms"
            if good
            else "no setting reached it",
            good is not None,
        )
    if scaling := sections.get("scaling"):
        measured = [b for b in scaling["builds"] if b["encoder"] == "model"]
        top = max(measured, key=lambda b: b["passages"], default=None)
        estimated = max(scaling.get("estimates") or [], key=lambda e: e["passages"], default=None)
        if estimated and (top is None or estimated["passages"] > top["passages"]):
            add(
                f"peak RSS of a {estimated['passages']:,}-passage build",
                "< 2 GiB",
                f"{estimated['estimated_peak_rss_mib'] / GIB_MIB:.2f} GiB (estimate: {estimated['basis']})",
                estimated["estimated_peak_rss_mib"] < 2 * GIB_MIB,
            )
        elif top:
            peak = build_peak_mib(top)
            add(
                f"peak RSS of a {top['passages']:,}-passage build",
                "< 2 GiB",
                f"{peak / GIB_MIB:.2f} GiB ({peak:,.0f} MiB, measured)",
                peak < 2 * GIB_MIB,
            )
    if runtimes := sections.get("runtimes"):
        _runtime_targets(runtimes, add)
    if incremental := sections.get("incremental"):
        for update in incremental["updates"]:
            add(
                f"update one document: {update['index']}",
                "≤ 2×",
                f"{update['ratio']:.2f}× ({update['update_s']:.2f} s vs {update['bare_s']:.2f} s)",
                update["ratio"] <= 2.0,
            )
    return found


def _runtime_targets(section: dict[str, Any], add: Any) -> None:
    """The issue's targets for the default runtime (``qa.embedding.DEFAULT_RUNTIME``), measured in one run."""
    from bench.runtimes import MAX_HIT1_LOSS, MAX_NDCG_LOSS
    from qa.embedding import DEFAULT_RUNTIME

    row = section["variants"][DEFAULT_RUNTIME]
    add(
        f"build rate on the default runtime ({DEFAULT_RUNTIME}) vs bare PyTorch encode of the same texts",
        "≥ 1.5×",
        f"{row['build_vs_bare_torch']:.2f}× ({row['build_passages_per_s']:.1f} vs "
        f"{section['bare_torch_passages_per_s']:.1f} passages/s)",
        row["build_vs_bare_torch"] >= 1.5,
    )
    add(
        f"warm hybrid query p50 on {DEFAULT_RUNTIME} vs the PyTorch floor",
        "≤ 0.4×",
        f"{row['hybrid_vs_floor']:.2f}× ({row['hybrid_p50_ms']:.1f} ms vs {section['floor_p50_ms']:.1f} ms)",
        row["hybrid_vs_floor"] <= 0.4,
    )
    cold = section["cold_start"]
    ratio = cold[DEFAULT_RUNTIME]["median_s"] / cold["torch"]["median_s"]
    add(
        f"cold `qa ask` on {DEFAULT_RUNTIME} vs on torch (today's)",
        "≤ 0.6×",
        f"{ratio:.2f}× ({cold[DEFAULT_RUNTIME]['median_s']:.2f} s vs {cold['torch']['median_s']:.2f} s)",
        ratio <= 0.6,
    )
    quality, base = section["quality"].get(DEFAULT_RUNTIME, {}), section["quality"].get("torch", {})
    for key, bound in (
        ("per-article hybrid hit@1", MAX_HIT1_LOSS),
        ("pooled hybrid hit@1", MAX_HIT1_LOSS),
        ("scifact test hybrid nDCG@10", MAX_NDCG_LOSS),
    ):
        if key in quality and key in base:
            add(
                f"{key} on {DEFAULT_RUNTIME} vs torch",
                f"loss ≤ {bound}",
                f"{quality[key]:.3f} vs {base[key]:.3f}",
                base[key] - quality[key] <= bound + 1e-9,
            )


def build_peak_mib(build: dict[str, Any]) -> float:
    """A build's peak RSS from start-up to the index saved; runs before it was recorded apart give the
    whole process's, which also counts the benchmark's statistics after the save."""
    return float(build.get("build_peak_rss_mib", build["process"]["peak_rss_mib"]))


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def markdown(results: dict[str, Any]) -> str:
    """The results as the page committed beside the JSON."""
    meta = results["meta"]
    sections = results["sections"]
    machine = meta["machine"]
    out = [
        "# qa benchmark results",
        "",
        f"Measured with `python -m bench`, the latest run on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']} GiB), Python {machine['python']}, "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + ". Sections kept from earlier runs may come from another machine of the same size: each names its "
        "CPU where it was recorded.",
        "The machine was shared with other work; each section records the load average around it.",
        "",
        "## Targets",
        "",
    ]
    out += _table(
        ["target", "wanted", "measured", "met"],
        [[t["target"], t["wanted"], t["measured"], "yes" if t["met"] else "**no**"] for t in results["targets"]],
    )
    for name, section in sections.items():
        out += [
            f"## {name}",
            "",
            f"Run {section['_run']['finished']}"
            + (f" on {section['_run']['cpu']}" if "cpu" in section["_run"] else "")
            + f" (commit {section['_run']['commit']}, "
            f"{'quick' if section['_run']['quick'] else 'full'} run, threads {section['_run'].get('threads', 'default')}, "
            f"{section['_run']['seconds']:.0f} s, "
            f"load average {section['_run']['load_before']} → {section['_run']['load_after']}).",
            "",
        ]
        out += RENDER[name](section)
    return "\n".join(out).rstrip() + "\n"


def _latency(section: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            f"{m['p50_ms']:.1f}",
            f"{m['p95_ms']:.1f}",
            f"{m['p50_vs_floor']:.2f}×",
            f"{m['paired_median_ratio']:.2f}×",
            f"{m['answer_in_top5']:.0%}",
        ]
        for name, m in section["modes"].items()
    ]
    return [
        f"{section['questions']} SQuAD questions, one at a time, k={section['k']}, on {section['passages']:,} passages; "
        "per question every variant ran back to back in rotating order. Floor: `model.encode([question])` + "
        f"exact FAISS search of the same vectors. torch {section.get('torch_threads')} threads, FAISS "
        f"{section.get('faiss_threads')}. Peak RSS {_mib(section['process']['peak_rss_mib'])}.",
        "",
        *_table(["mode", "p50 ms", "p95 ms", "p50 / floor p50", "median per-question ratio", "answer in top 5"], rows),
        *_profile(section.get("profile_ms", {})),
    ]


def _profile(profile: dict[str, dict[str, float]]) -> list[str]:
    if not profile:
        return []
    steps = sorted({step for mode in profile.values() for step in mode if step != "total"})
    return [
        "Where a search's time goes (mean ms per question, a separate pass with the steps timed):",
        "",
        *_table(
            ["mode", "total", *steps],
            [
                [mode, f"{v['total']:.2f}", *(f"{v[s]:.2f}" if s in v else "–" for s in steps)]
                for mode, v in profile.items()
            ],
        ),
    ]


def _build(section: dict[str, Any]) -> list[str]:
    built, bare, bare_again = section["build"], section["bare"], section["bare_again"]
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in built["stages_s"].items())
    rows = [
        [
            "`Index.build`",
            f"{built['build_s']:.1f}",
            f"{built['passages_per_s']:.1f}",
            f"{section['build_passages_per_s']:.1f}",
            _mib(built["process"]["peak_rss_mib"]),
        ],
        [
            "bare `model.encode(passages)` (1st, 2nd)",
            f"{bare['passages_s']:.1f}, {bare_again['passages_s']:.1f}",
            f"{bare['passages_per_s']:.1f}, {bare_again['passages_per_s']:.1f}",
            f"{section['bare_passages_per_s']:.1f}",
            _mib(max(bare["process"]["peak_rss_mib"], bare_again["process"]["peak_rss_mib"])),
        ],
        [
            "bare `model.encode(passages + sentences)`",
            f"{bare['all_s']:.1f}",
            f"{bare['all_passages_per_s']:.1f}",
            "",
            "(same process as the 1st)",
        ],
    ]
    return [
        f"SQuAD v1.1 dev: {built['documents']} articles → {built['passages']:,} passages (mean {built['passage_tokens_mean']} tokens) "
        f"and {built['sentences']:,} sentences (mean {built['sentence_tokens_mean']} tokens); batch size {built.get('batch_size', 64)}. "
        f"The build embeds {built['distinct_texts']:,} distinct texts; its stages: {stages}; save {built['save_s']:.1f} s. "
        "Bare encoding ran twice (around the build, or after it when qa had changed since the last "
        "build); the ratio uses the mean of the two.",
        "",
        *_table(["what", "seconds", "passages/s", "passages/s used", "peak RSS"], rows),
        f"Build rate / bare passage rate: **{section['build_vs_bare_passages']:.2f}×**; "
        f"build / bare passages + sentences rate: {section['build_vs_bare_all_texts']:.2f}×.",
        "",
        *_sentence_mean(section),
    ]


def _sentence_mean(section: dict[str, Any]) -> list[str]:
    fast = section.get("sentence_mean")
    if not fast:
        return []
    return [
        "With `--passage-vectors sentence-mean` (a passage's vector is the mean of its sentences' vectors, so "
        f"only sentences go through the model): {fast['build_s']:.1f} s, {fast['passages_per_s']:.1f} passages/s, "
        f"**{section['sentence_mean_vs_bare_passages']:.2f}×** the bare passage rate, peak RSS "
        f'{_mib(fast["process"]["peak_rss_mib"])}. What it costs in ranking: README, "Building faster".',
        "",
    ]


def _cold(section: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"`{section['command']} ask … -i INDEX`",
            f"{section['qa_ask']['median_s']:.2f}",
            f"{section['qa_ask']['min_s']:.2f}",
            _mib(section["qa_ask"]["peak_rss_mib"]),
        ],
        [
            "bare script (`bench/cold_floor.py`)",
            f"{section['floor']['median_s']:.2f}",
            f"{section['floor']['min_s']:.2f}",
            _mib(section["floor"]["peak_rss_mib"]),
        ],
    ]
    light = [
        [
            f"`{name}`",
            f"{v['seconds']:.2f}",
            _mib(v["peak_rss_mib"]),
            "yes" if v["imports_torch"] else "no",
            ", ".join(v["heavy_imports"]) or "none",
        ]
        for name, v in section["light_commands"].items()
    ]
    return [
        f"New process each time, files in the page cache, {section['qa_ask']['runs']} runs each alternating; "
        f"ratio of medians **{section['ratio']:.2f}×**.",
        "",
        *_table(["command", "median s", "min s", "peak RSS"], rows),
        *_table(["command", "seconds", "peak RSS", "imports torch", "heavy modules imported"], light),
    ]


def _index_types(section: dict[str, Any]) -> list[str]:
    out = []
    for size in section["sizes"]:
        profile = size["profile"]
        out += [
            f"### {size['count']:,} vectors",
            "",
            f"Measured {size.get('measured', '')}.",
            "",
            f"Seeded clustered 384-d unit vectors; {size['queries']:,} held-out queries for recall, "
            f"{size['latency_queries']} single-query searches for latency, k=10, {size['faiss_threads']} FAISS threads. "
            f"Mean cosine of a query to its 1st / 10th neighbour / a random vector: {profile['cos_1st']} / {profile['cos_10th']} / {profile['cos_random']}. "
            f"Peak RSS of the run {_mib(size['process']['peak_rss_mib'])}.",
            "",
        ]
        rows = []
        for config in size["configs"]:
            params = ", ".join(
                f"{k}={v}" for k, v in config["params"].items() if k not in ("type", "ef_search", "nprobe")
            )
            for r in config["results"]:
                search = ", ".join(f"{k}={r[k]}" for k in ("ef_search", "nprobe") if k in r)
                rows.append(
                    [
                        config["type"],
                        params,
                        search,
                        f"{config['build_s']:.1f}",
                        f"{r['recall_at_10']:.3f}",
                        f"{r['nearest_in_10']:.3f}",
                        f"{r['p50_ms']:.2f}",
                        f"{r['p95_ms']:.2f}",
                        f"{r['bytes_per_vector']:.0f}",
                    ]
                )
        if any(c["type"] == "ivfpqr" for c in size["configs"]):
            out += [
                "`ivfpqr` is not an index type of qa: IVF-PQ re-ranked by a second PQ code of the residual "
                "(FAISS `IndexIVFPQR`), shown for what it would find at the same size; FAISS builds it for L2 only.",
                "",
            ]
        out += _table(
            [
                "type",
                "build parameters",
                "search",
                "build s",
                "recall@10",
                "nearest in 10",
                "p50 ms",
                "p95 ms",
                "bytes/vector",
            ],
            rows,
        )
    if isinstance(real := section.get("real_profile"), list):
        out += [
            "How the synthetic vectors compare with real all-MiniLM-L6-v2 passage vectors (SQuAD dev passages, "
            "200 held out as queries): mean cosine of a query to its 1st / 10th nearest neighbour / a random vector.",
            "",
            *_table(
                ["vectors", "real SQuAD passages", "synthetic"],
                [
                    [
                        f"{r['count']:,}",
                        " / ".join(f"{r['real'][k]:.2f}" for k in ("cos_1st", "cos_10th", "cos_random")),
                        " / ".join(f"{r['synthetic'][k]:.2f}" for k in ("cos_1st", "cos_10th", "cos_random")),
                    ]
                    for r in real
                ],
            ),
        ]
    scan = section.get("flat_scan")
    if not scan:
        return out
    encode = scan["encode_question"]["p50_ms"]
    encode_one = scan.get("encode_question_one_thread", {}).get("p50_ms")
    out += [
        "### Exact search cost by size (choosing `AUTO_EXACT_LIMIT`)",
        "",
        f"Measured {scan.get('measured', '')}. Single-query flat search (k=100, as hybrid asks), with the default "
        f"threads ({scan.get('threads', {}).get('faiss', '?')}) and with one, alternately; encoding one question in the "
        f"same process: p50 {encode:.1f} ms (default threads)"
        + (f", {encode_one:.1f} ms (1 thread)." if encode_one else "."),
        "",
        *_table(
            ["vectors", "flat p50 ms", "flat p95 ms", "flat p50 ms, 1 thread", "flat p95 ms, 1 thread"],
            [
                [
                    f"{r['count']:,}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p95_ms']:.2f}",
                    f"{r['one_thread']['p50_ms']:.2f}" if "one_thread" in r else "–",
                    f"{r['one_thread']['p95_ms']:.2f}" if "one_thread" in r else "–",
                ]
                for r in scan["flat"]
            ],
        ),
    ]
    limit = section.get("auto_exact_limit")
    if limit:
        if limit["crossing"]:
            where = f"up to about {limit['crossing']:,} vectors"
        elif limit.get("all_below"):
            where = "at every size measured"
        else:
            where = "at none of the sizes measured"
        out += [
            f"The rule “{limit['rule']}” (≤ {limit['budget_ms']:.2f} ms) holds {where}. "
            f"`AUTO_EXACT_LIMIT` is {limit['current']:,}.",
            "",
        ]
    return out


def _scaling(section: dict[str, Any]) -> list[str]:
    rows = [
        [
            b["encoder"],
            f"{b['passages']:,}",
            f"{b['sentences']:,}",
            f"{b['build_s']:.1f}",
            ", ".join(f"{k} {v:.1f}" for k, v in b["stages_s"].items()),
            f"{b['save_s']:.1f}",
            _mib(build_peak_mib(b)),
            _mib(b["process"]["peak_rss_mib"]),
            ", ".join(f"{k} {v:,.0f}" for k, v in b.get("peak_rss_by_stage_mib", {}).items()),
        ]
        for b in section["builds"]
    ]
    out = [
        "SciFact abstracts, copied with a per-copy marker word in every sentence so no text repeats; each build "
        "in its own process. `peak RSS`: from start-up to the index saved; `process peak RSS` also counts the "
        "benchmark's statistics after the save (rows measured before the two were told apart give the process's "
        "in both). `stub`: the model is loaded (its tokenizer splits the "
        "passages) but its forward pass is replaced by random unit vectors: everything else a build does runs "
        "at full size.",
        "",
        *_table(
            [
                "encoder",
                "passages",
                "sentences",
                "build s",
                "stages s",
                "save s",
                "peak RSS",
                "process peak RSS",
                "RSS peak in each stage, MiB",
            ],
            rows,
        ),
        "Stages: `split` (reading, splitting, counting tokens), `embed` (the model), `vectors (all)` (the rest of "
        "turning texts into the passage and sentence arrays: hashing, reuse, stacking), `faiss`, `bm25`, `save`; "
        "`other` is start-up (documents read, model loaded) and the work between those stages.",
        "",
    ]
    if section.get("estimates"):
        out += [
            "**Estimates** for the real model at the stub-only sizes (not measured):",
            "",
            *_table(
                ["passages", "estimated build s", "estimated peak RSS", "basis"],
                [
                    [
                        f"{e['passages']:,}",
                        f"{e['estimated_build_s']:.0f}",
                        _mib(e["estimated_peak_rss_mib"]),
                        e["basis"],
                    ]
                    for e in section["estimates"]
                ],
            ),
        ]
    return out


def _incremental(section: dict[str, Any]) -> list[str]:
    rows = [
        [
            u["index"],
            f"{u['passages']:,}",
            u["changed_document_texts"],
            f"{u['update_s']:.2f}",
            f"{u['bare_s']:.2f}",
            f"{u['ratio']:.2f}×",
            f"{u['load_previous_s']:.2f}",
            _mib(u["loaded_index_mib"]) if "loaded_index_mib" in u else "not measured",
            _mib(u["process"]["peak_rss_mib"]),
        ]
        for u in section["updates"]
    ]
    stages = [
        f"{u['index']}: " + ", ".join(f"{k} {v:.2f} s" for k, v in u.get("update_stages_s", {}).items())
        for u in section["updates"]
    ]
    return [
        "One document's every sentence rewritten, so the update and the baseline embed the same texts. Update: "
        "`Index.build(documents, previous=old)` + `save`; baseline: `model.encode` of that document's passages and "
        "sentences + `save`. Median of the repeats; loading the previous index is shown apart, with the memory "
        "it takes once loaded, before any search (a server's searches map in the sentence vectors of their hits).",
        "",
        *_table(
            [
                "index",
                "passages",
                "texts embedded",
                "update s",
                "baseline s",
                "ratio",
                "load previous s",
                "previous index in memory",
                "peak RSS",
            ],
            rows,
        ),
        "Where an update's time goes (last repeat): " + "; ".join(stages) + ".",
        "",
    ]


def _runtimes(section: dict[str, Any]) -> list[str]:
    from bench.runtimes import markdown as runtimes_markdown

    return runtimes_markdown(section)


RENDER = {
    "runtimes": _runtimes,
    "latency": _latency,
    "build": _build,
    "cold-start": _cold,
    "index-types": _index_types,
    "scaling": _scaling,
    "incremental": _incremental,
}
