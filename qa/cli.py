"""The ``qa`` command: build, ask, info, serve, eval. Results on stdout; progress and errors on stderr.

Heavy libraries are imported inside the commands that need them, so ``qa --help`` and ``qa info``
start at once.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from qa import __version__
from qa.errors import QAError

logger = logging.getLogger("qa")

RUNTIME_CHOICES = ["torch", "onnx", "onnx-int8"]  # qa.embedding.RUNTIMES, without importing numpy for --help
RUNTIME_HELP = (
    "how the model runs: torch; onnx, its ONNX export (same vectors, faster questions); onnx-int8, int8 "
    "weights (fastest, vectors at cosine 0.99 to torch's). Exported once into your cache, never downloaded "
    "(default: $QA_RUNTIME, else the existing index's, else onnx-int8)"
)


def _default_index() -> Path:
    from qa.api import default_index

    return default_index()


def cmd_build(args: argparse.Namespace) -> int:
    from qa.api import default_corpus, refresh
    from qa.documents import describe_unread, unread_types

    corpus = Path(args.corpus) if args.corpus else default_corpus()
    output = Path(args.output) if args.output else _default_index()
    started = time.perf_counter()
    executor = None
    if args.ray is not None:  # connects (or starts a local Ray) before any document is read
        from qa.distributed import RayExecutor

        executor = RayExecutor(args.ray or None)
    try:
        index = refresh(
            output,
            corpus,
            wait=args.wait,
            rebuild=True,
            model=args.model,
            runtime=args.runtime,
            max_words=args.max_words,
            overlap=args.overlap,
            index_type=args.index_type,
            batch_size=args.batch_size,
            progress=False if args.quiet else None,
            backend=args.backend,
            uri=args.uri,
            passage_vectors_from=args.passage_vectors,
            executor=executor,
        )
    finally:
        if executor is not None:
            executor.close()
    dense = index.manifest.dense
    where = f", Milvus collection {dense['collection']} at {dense['uri']}" if index.manifest.backend == "milvus" else ""
    if executor is not None:
        where += f"; {executor.texts_embedded:,} texts embedded on Ray"
    seconds = time.perf_counter() - started
    print(
        f"indexed {len(index.documents)} documents, {len(index)} passages in {seconds:.1f} s "
        f"-> {output} (model {index.manifest.model} on {index.manifest.runtime}, {index.manifest.dense_type} index{where})"
    )
    if unread := describe_unread(unread_types(corpus)):  # files of types qa does not read: what the index lacks
        print(unread)
    return 0


def _print_hit(hit: object, *, color: bool) -> None:
    from qa.passage import Hit

    assert isinstance(hit, Hit)
    where = " › ".join(part for part in (hit.title, hit.section) if part)
    # A confidence means something to a reader; a fusion score does not (dense and lexical modes have none).
    sure = f"{hit.confidence:.0%} sure" if hit.confidence is not None else f"score {hit.score:.3f}"
    print(f"{hit.rank}. [{sure}] {where}")
    page = f", page {hit.page}" if hit.page is not None else ""
    print(f"   {hit.doc_id}{page}, characters {hit.start}–{hit.end}")
    text, cursor, pieces = hit.text, 0, []
    on, off = ("\033[1;4m", "\033[0m") if color else ("**", "**")
    for start, end in hit.highlights:
        pieces += [text[cursor:start], on, text[start:end], off]
        cursor = end
    pieces.append(text[cursor:])
    body = "".join(pieces)
    print("   " + body.replace("\n", "\n   "))
    print()


def cmd_ask(args: argparse.Namespace) -> int:
    from qa.retrieval import check_k, check_question

    check_question(args.question)  # fail on a bad question before loading anything
    check_k(args.k)
    if args.index:
        from qa.index import Index

        index = Index.load(args.index)
    else:
        from qa.api import open_index

        index = open_index(corpus=args.corpus)
    answer = index.ask(args.question, args.k, mode=args.mode)
    if args.json:
        for hit in answer.hits:
            print(json.dumps({**hit.to_dict(), "answered": answer.answered}, ensure_ascii=False))
        return 0
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    if not answer.answered:
        print("No answer here: no passage seems to answer this. The closest passages:\n")
    for hit in answer.hits:
        _print_hit(hit, color=color)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from qa.build import corpus_change, settings_change
    from qa.documents import describe_unread, read_corpus, unread_types
    from qa.embedding import load_encoder
    from qa.errors import EmptyCorpus
    from qa.manifest import read_manifest

    path = Path(args.index) if args.index else _default_index()
    manifest = read_manifest(path)
    corpus = manifest.corpus_folder(path)
    unread: dict[str, int] = {}
    if corpus is None:
        state = "unknown (built from documents given in Python)"
    elif not corpus.is_dir():
        state = f"unknown (the corpus folder {corpus} is gone)"
    else:
        try:
            read = read_corpus(corpus)
            reason = settings_change(
                manifest, encoder=load_encoder(manifest.model, runtime=manifest.runtime)
            ) or corpus_change(manifest, read.folder, read.documents)
        except EmptyCorpus as error:
            reason = str(error)
        state = f"STALE: {reason}; rebuild with `qa build {corpus} -o {path}`" if reason else "fresh"
        unread = unread_types(corpus)
    if args.json:
        record = {**manifest.to_json(), "index": str(path), "stale": state != "fresh", "not_read": unread}
        print(json.dumps(record, ensure_ascii=False))
        return 0
    dense = manifest.dense
    print(f"index:      {path}")
    print(f"corpus:     {corpus}  ({manifest.corpus.documents} documents)")
    if unread:
        print(f"            {describe_unread(unread)} (qa reads .txt, .md, .html, .pdf and .docx)")
    print(f"state:      {state}")
    print(f"passages:   {manifest.count} ({manifest.sentences} sentences)")
    print(f"model:      {manifest.model} ({manifest.dim} dimensions), {manifest.runtime} runtime")
    print(f"chunking:   max_words={manifest.chunking.max_words}, overlap={manifest.chunking.overlap}")
    print(f"embedding:  passage vectors {manifest.passage_vectors}")
    print(f"vectors:    {manifest.dense_type} " + ", ".join(f"{k}={v}" for k, v in dense.items() if k != "type"))
    print(f"built:      {manifest.created} by qa {manifest.qa_version}")
    print(f"format:     {manifest.format_version}")
    return 0


def _slice(text: str) -> slice:
    """``"24:"`` → ``slice(24, None)``: which SQuAD articles to evaluate."""
    try:
        parts = [int(p) if p else None for p in text.split(":")]
    except ValueError:
        raise ValueError(f"--articles takes START:END (e.g. 0:24 or 24:); got {text!r}") from None
    if len(parts) == 1 and parts[0] is not None:
        return slice(parts[0], parts[0] + 1)
    if len(parts) != 2:
        raise ValueError(f"--articles takes START:END (e.g. 0:24 or 24:); got {text!r}")
    return slice(parts[0], parts[1])


def cmd_eval(args: argparse.Namespace) -> int:
    from qa import evaluation

    if not args.squad and not args.beir:
        raise ValueError("give --squad FILE (SQuAD v1.1 JSON) and/or --beir DIR (corpus.jsonl, queries.jsonl, qrels/)")
    modes = args.modes.split(",")
    options = {
        "max_words": args.max_words,
        "overlap": args.overlap,
        "passage_vectors_from": args.passage_vectors,
        "runtime": args.runtime,
    }
    report: dict[str, object] = {"modes": modes, "build": options}
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    if args.squad:
        squad = evaluation.evaluate_squad(
            args.squad,
            modes=modes,
            articles=_slice(args.articles),
            max_questions=args.max_questions,
            split_at=args.split_at,
            build_options=options,
            progress=False if args.quiet else None,
        )
        report["squad"] = {
            "file": str(args.squad),
            "articles": args.articles,
            "results": squad.results,
            "confidence": squad.confidence,
        }
        print(f"SQuAD {args.squad} (articles {args.articles})\n")
        print(evaluation.squad_table(squad.results) + "\n")
        print(evaluation.reqa_comparison(squad.results) + "\n")
        if squad.confidence:
            print(
                "Confidence of hybrid hits, and no answer here (each question also asked of another article's index):\n"
            )
            print(evaluation.confidence_table(squad.confidence) + "\n")
        if out:
            evaluation.plot_hits(squad.results, out / "squad-hits.png")
            if "" in squad.confidence:
                evaluation.plot_reliability(squad.confidence[""], out / "reliability.png")
    if args.beir:
        progress = False if args.quiet else None
        splits = [split.strip() for split in args.split.split(",") if split.strip()]
        for split in splits:  # each split's judgements must be there before the long build
            evaluation.load_beir_queries(args.beir, split)
        index = evaluation.build_beir_index(args.beir, build_options=options, progress=progress)
        by_split: dict[str, object] = {}
        report["beir"] = {"folder": str(args.beir), "splits": by_split}
        for split in splits:
            beir = evaluation.evaluate_beir(
                args.beir, split=split, modes=modes, max_queries=args.max_questions, index=index
            )
            by_split[split] = beir
            print(f"BEIR {args.beir} ({split} queries)\n")
            print(evaluation.beir_table(beir) + "\n")
    if out:
        (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out / 'eval.json'}" + (f" and {out / 'squad-hits.png'}" if args.squad else ""))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from qa.ui.app import serve

    return int(serve(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qa", description="Ask questions about a collection of documents and get the passages that answer them."
    )
    parser.add_argument("--version", action="version", version=f"qa {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="index a folder of .txt, .md, .html, .pdf and .docx documents")
    build.add_argument("corpus", nargs="?", help="the documents' folder (default: $QA_CORPUS or the bundled corpus/)")
    build.add_argument("-o", "--output", help="the index folder (default: $QA_INDEX or index/)")
    build.add_argument(
        "-m", "--model", help="sentence-transformers name or folder (default: $QA_MODEL or all-MiniLM-L6-v2)"
    )
    build.add_argument("--runtime", choices=RUNTIME_CHOICES, default=None, help=RUNTIME_HELP)
    build.add_argument("--max-words", type=int, default=None, help="most words in a passage")
    build.add_argument("--overlap", type=int, default=None, help="sentences a passage repeats from the one before")
    build.add_argument("--index-type", default="auto", choices=["auto", "flat", "hnsw", "ivfpq"])
    build.add_argument("--batch-size", type=int, default=None, help="texts embedded at once")
    build.add_argument(
        "--passage-vectors",
        choices=["own", "sentence-mean"],
        default=None,
        help="own: the model reads each passage; sentence-mean: the mean of its sentences' vectors, one model "
        "pass instead of two, about twice as fast to build, slightly worse ranking (default: the existing "
        "index's, else own)",
    )
    build.add_argument(
        "--backend",
        choices=["faiss", "milvus"],
        default=None,
        help="where passage vectors go: faiss (a file in the index folder) or milvus (default: the existing "
        "index's backend, else faiss)",
    )
    build.add_argument(
        "--uri",
        help="for --backend milvus: a Milvus Lite file (./milvus.db) or a server (http://host:19530; "
        "credentials in $QA_MILVUS_TOKEN) (default: the existing index's, else $QA_MILVUS_URI)",
    )
    build.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="embed on a Ray cluster (pip install 'qa[ray]'): ADDRESS is its head's host:port, ray://host:10001 or "
        "auto ($RAY_ADDRESS); without one, on a Ray started on this machine for the build",
    )
    build.add_argument(
        "--wait", action="store_true", help="wait for another build of the same index instead of failing"
    )
    build.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    build.set_defaults(handler=cmd_build)

    ask = commands.add_parser("ask", help="ask a question; prints the best passages")
    ask.add_argument("question")
    ask.add_argument(
        "-i", "--index", help="the index folder (default: $QA_INDEX or index/, built when missing or stale)"
    )
    ask.add_argument("--corpus", help="the corpus of the default index (default: $QA_CORPUS or corpus/)")
    ask.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    ask.add_argument("--mode", default="hybrid", choices=["hybrid", "dense", "lexical"])
    ask.add_argument(
        "--json", action="store_true", help="one JSON object per hit (with answered: false when no hit seems to answer)"
    )
    ask.set_defaults(handler=cmd_ask)

    info = commands.add_parser("info", help="describe an index and say whether it is stale")
    info.add_argument("-i", "--index", help="the index folder (default: $QA_INDEX or index/)")
    info.add_argument("--json", action="store_true", help="the manifest as JSON")
    info.set_defaults(handler=cmd_info)

    evaluate = commands.add_parser(
        "eval", help="measure retrieval on SQuAD v1.1 and/or BEIR data, every mode side by side"
    )
    evaluate.add_argument("--squad", help="a SQuAD v1.1 JSON file (e.g. dev-v1.1.json)")
    evaluate.add_argument("--beir", help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv")
    evaluate.add_argument(
        "--split", default="test", help="BEIR qrels split(s), comma-separated, e.g. train,test (default test)"
    )
    evaluate.add_argument("--articles", default=":", help="SQuAD articles START:END (default all)")
    evaluate.add_argument("--split-at", type=int, default=None, help="also report SQuAD articles before/from N apart")
    evaluate.add_argument("--max-questions", type=int, default=None, help="evaluate only the first N questions")
    evaluate.add_argument("--modes", default="hybrid,dense,lexical", help="comma-separated modes")
    evaluate.add_argument("--max-words", type=int, default=None, help="most words in a passage")
    evaluate.add_argument("--overlap", type=int, default=None, help="sentences a passage repeats")
    evaluate.add_argument("--passage-vectors", choices=["own", "sentence-mean"], default="own")
    evaluate.add_argument("--runtime", choices=RUNTIME_CHOICES, default=None, help=RUNTIME_HELP)
    evaluate.add_argument("-o", "--out", help="folder for eval.json and squad-hits.png")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=cmd_eval)

    serve = commands.add_parser("serve", help="start the web app")
    serve.add_argument("-i", "--index", help="the index folder (default: $QA_INDEX or index/)")
    serve.add_argument("--corpus", help="the documents' folder (default: $QA_CORPUS or corpus/)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--allow-uploads", action="store_true", help="let the web page upload documents and rebuild")
    serve.add_argument("--auth", help="user:password required to use the app (default: $QA_AUTH)")
    serve.set_defaults(handler=cmd_serve)
    return parser


def _apply_defaults(args: argparse.Namespace) -> None:
    from qa.embedding import DEFAULT_BATCH_SIZE
    from qa.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP

    if getattr(args, "max_words", 0) is None:
        args.max_words = DEFAULT_MAX_WORDS
    if getattr(args, "overlap", 0) is None:
        args.overlap = DEFAULT_OVERLAP
    if getattr(args, "batch_size", 0) is None:
        args.batch_size = DEFAULT_BATCH_SIZE


# What to do about the file-system errors a user can fix; any other gets the generic advice.
_ACCESS = "check that you may read it and write in its folder, or choose another path"
_OS_ERROR_ADVICE = {
    errno.EACCES: _ACCESS,
    errno.EPERM: _ACCESS,
    errno.EROFS: "it is on a read-only file system: choose another path",
    errno.ENOENT: "check that it exists",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder where qa needs a file: move it away or choose another path",
    errno.EEXIST: "it is a file where qa needs a folder: move it away or choose another path",
    errno.ENOSPC: "the disk is full: free some space and try again",
    errno.EDQUOT: "the disk quota is used up: free some space and try again",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
}


def os_error_message(error: OSError) -> str:
    """One line for a file-system error: the path it concerns, the system's reason, and what to do."""
    reason = error.strerror or str(error)
    advice = _OS_ERROR_ADVICE.get(error.errno or 0, "check the path and try again")
    paths = [
        os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else str(path)
        for path in (error.filename, error.filename2)
        if path is not None
    ]
    # A path is shown as it is unless it holds a line break or another control character.
    shown = [path if path.isprintable() else repr(path) for path in paths]
    where = f"{' -> '.join(shown)}: " if shown else ""
    return f"{where}{reason}; {advice}"


def _fail(message: str, *, verbose: bool) -> int:
    """Report the error being handled: its traceback with ``-v``, then one line; the exit status is 1."""
    if verbose:
        traceback.print_exc()
    print(f"qa: error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("qa: %(message)s"))
    # On the handler, not only the root: some libraries set their own loggers to DEBUG.
    handler.setLevel(logging.INFO if args.verbose else logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if args.verbose else logging.WARNING)
    _apply_defaults(args)
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # here, so that a reader gone away is caught below rather than at exit
        return code
    except BrokenPipeError:
        # Whoever read the results stopped early (qa ask ... | head): nothing to report. Python's advice: point
        # stdout at /dev/null, or flushing it at exit fails again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (QAError, ValueError) as error:
        return _fail(str(error), verbose=args.verbose)
    except OSError as error:
        return _fail(os_error_message(error), verbose=args.verbose)
    except KeyboardInterrupt:
        print("qa: interrupted", file=sys.stderr)
        return 130
    finally:
        root.removeHandler(handler)
