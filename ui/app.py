"""The web app: an Ask tab, an Index tab, and a ``/search`` API endpoint, served by ``qa serve``.

No ``from __future__ import annotations`` here: Gradio reads the ``/search`` function's type hints at
run time to describe the endpoint, and needs them as real types.
"""

import argparse
import contextlib
import ipaddress
import os
import sys
import weakref
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.exceptions import ServerFailedToStartError
from gradio.utils import get_upload_folder, is_in_or_equal
from starlette.middleware import Middleware

from qa.api import bundled_corpus, default_corpus, default_index, in_checkout, open_index
from qa.documents import SUFFIXES
from qa.errors import IncompatibleIndex, IndexBusy, IndexNotFound, QAError
from qa.index import Index
from qa.manifest import read_manifest
from qa.retrieval import MODES

from . import render
from .service import Service, UploadReport, UploadsDisabled
from .upload_route import UploadLimits, UploadRouteGuard
from .uploads import MAX_BINARY_UPLOAD_BYTES, MAX_UPLOAD_BYTES, UploadRejected, read_limited

EXAMPLES = [
    "Which treaty has Pakistan not joined?",
    "What did Putin fear could happen to Pakistan's nuclear materials?",
    "How did the world react to the talks?",
]
ARTICLE_ID = "putin-bush-pakistan-nuclear.md"
"""The bundled article, which the examples are about."""
WARM_UP_QUESTION = "Which treaty has Pakistan not joined?"
MAX_PASSAGES = 20
SEARCH_CONCURRENCY = 16
"""Searches the server runs at once (``$QA_SEARCH_CONCURRENCY`` changes it). Chosen with ``python -m bench.load
--concurrency N`` (32 clients, new questions, 12 SQuAD articles, onnx-int8; bench/results/load-concurrency-N.md):
of 1, 4, 16 and 32, 16 served the most searches a second at the least server CPU a search."""
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Noto Sans", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
UNUSED_UPLOAD_SECONDS = 3600
"""An uploaded file not added to the corpus within this time is deleted (checked every tenth of it)."""

_TAKES_UPLOADS: weakref.WeakKeyDictionary[gr.Blocks, bool] = weakref.WeakKeyDictionary()
"""Whether each app create_app built takes uploads: launch guards Gradio's upload route by it."""


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def create_app(
    index_path: str | os.PathLike[str] | None = None,
    corpus: str | os.PathLike[str] | None = None,
    *,
    allow_uploads: bool = False,
    index: Index | None = None,
    public: bool = False,
) -> gr.Blocks:
    """Build the app for the index at ``index_path`` of the documents in ``corpus``.

    Args:
        index_path: The index folder (default ``$QA_INDEX`` or ``index/``).
        corpus: The documents' folder (default ``$QA_CORPUS`` or ``corpus/``).
        allow_uploads: Enable uploading documents and rebuilding the index from the page.
        index: The index already loaded from ``index_path``; loaded (built when missing or stale) if not given.
        public: It will listen on an address other than loopback: the page shows folder names, not the
            machine's paths (``qa serve`` sets it from ``--host``).

    Launch the result with :func:`launch`.
    """
    index_path = Path(index_path) if index_path is not None else default_index()
    corpus = Path(corpus) if corpus is not None else default_corpus()
    if index is None:
        index = open_index(index_path, corpus)
    service = Service(index_path, corpus, index, allow_uploads=allow_uploads, public=public)

    def ask(question: str, k: float, mode: str) -> str:
        """Result cards for the page; a friendly message instead of an error for a bad question."""
        try:
            answer = service.ask(question, int(k), mode)
        except ValueError as error:
            return render.message(_first_upper(str(error)))
        return render.hits_html(answer.hits, answered=answer.answered)

    def search(question: str, k: int = 5, mode: str = "hybrid") -> list[dict[str, Any]]:
        """The k passages that best answer the question, best first, as JSON objects.

        Each has rank, score, confidence (the probability it holds the answer; hybrid mode only), id,
        doc_id, title, section, start, end, text, highlights (offsets into text of the sentence that
        answers best) and answered (false when no hit seems to answer). mode is hybrid, dense or lexical.
        """
        sent: object = k  # JSON clients may send 3.0 for 3
        if isinstance(sent, float) and sent.is_integer():
            k = int(sent)
        try:
            answer = service.ask(question, k, mode)
        except ValueError as error:
            raise gr.Error(_first_upper(str(error)), print_exception=False) from None
        return [{**hit.to_dict(), "answered": answer.answered} for hit in answer.hits]

    def show_index() -> str:
        return render.index_html(service.status())

    def rebuild(progress: gr.Progress = gr.Progress()) -> tuple[str, str]:  # noqa: B008
        """Rebuild from the corpus folder; on failure the previous index keeps serving."""
        try:
            new = service.rebuild(lambda fraction, desc: progress(fraction, desc=desc))
        except UploadsDisabled as error:
            raise gr.Error(_first_upper(str(error)), print_exception=False) from None
        except (QAError, ValueError, OSError) as error:
            text = f"Rebuild failed: {service.for_visitors(str(error))}. The previous index is still serving."
            return render.message(text, "error"), show_index()
        text = f"Rebuilt: {len(new.documents)} documents, {len(new):,} passages. Searches now use the new index."
        return render.message(text, "ok"), show_index()

    def upload(files: list[str] | None, progress: gr.Progress = gr.Progress()) -> tuple[str, str, None]:  # noqa: B008
        """Add the uploaded files to the corpus folder and rebuild."""
        if not service.allow_uploads:  # refused before reading anything
            raise gr.Error(_first_upper(str(UploadsDisabled())), print_exception=False)
        if not files:
            return render.message(f"Choose one or more {', '.join(SUFFIXES)} files first."), show_index(), None
        uploads: list[tuple[str, bytes]] = []
        unreadable: list[str] = []
        for path in files:
            name = Path(path).name
            try:
                uploads.append((name, read_limited(path)))
            except UploadRejected as error:
                unreadable.append(str(error))
            except OSError as error:
                unreadable.append(f"{name}: cannot read the upload ({error.strerror}); upload it again")
            finally:
                _discard_upload(path)  # read (or refused): the corpus gets its own copy, this one is done
        try:
            report = service.add_documents(uploads, lambda fraction, desc: progress(fraction, desc=desc))
        except UploadsDisabled as error:
            raise gr.Error(_first_upper(str(error)), print_exception=False) from None
        except IndexBusy as error:
            return render.message(_first_upper(str(error)), "error"), show_index(), None
        report.rejected[:0] = unreadable
        if report.rebuild_error is not None:
            report.rebuild_error = service.for_visitors(report.rebuild_error)
        return _upload_message(report), show_index(), None

    # Uploads not added are deleted after an hour, so that Gradio's upload route holds little for long.
    cache = (UNUSED_UPLOAD_SECONDS // 10, UNUSED_UPLOAD_SECONDS)
    with gr.Blocks(title="qa: ask the documents", analytics_enabled=False, delete_cache=cache) as demo:
        gr.Markdown("# Ask the documents\nAsk a question; get the passages that answer it, best first.")
        with gr.Tabs():
            with gr.Tab("Ask"):
                with gr.Row(equal_height=True):
                    question = gr.Textbox(
                        label="Question",
                        placeholder="Ask about the documents and press Enter",
                        lines=1,
                        max_lines=1,
                        scale=5,
                        autofocus=True,
                        elem_id="question",
                    )
                    ask_button = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                with gr.Row():
                    k = gr.Slider(1, MAX_PASSAGES, value=5, step=1, label="Number of passages", elem_id="k")
                    mode = gr.Radio(
                        list(MODES),
                        value="hybrid",
                        label="Mode",
                        info="hybrid: meaning and words; dense: meaning only; lexical: words only (BM25)",
                        elem_id="mode",
                    )
                examples = None
                if any(document.id == ARTICLE_ID for document in index.documents):  # they only fit the article
                    examples = gr.Examples(EXAMPLES, inputs=[question], label="Examples about the bundled article")
                results = gr.HTML(
                    render.message("The passages that answer your question appear here."),
                    elem_id="results",
                    js_on_load=None,  # the default adds a click handler we do not need
                )
            with gr.Tab("Index") as index_tab:
                info = gr.HTML(elem_id="index-info", js_on_load=None)
                if not allow_uploads:
                    gr.Markdown(
                        "Uploading and rebuilding are **off**. To enable them, restart with "
                        "`qa serve --allow-uploads` (on an address other than 127.0.0.1 this also needs `--auth`)."
                    )
                files = gr.File(
                    label=f"Add documents ({', '.join(SUFFIXES)}; text in UTF-8, at most {MAX_UPLOAD_BYTES // 2**20} MB "
                    f"each; PDF and Word at most {MAX_BINARY_UPLOAD_BYTES // 2**20} MB)",
                    file_count="multiple",
                    file_types=list(SUFFIXES),
                    type="filepath",
                    interactive=allow_uploads,
                    visible=allow_uploads,
                    elem_id="upload-files",
                )
                with gr.Row():
                    upload_button = gr.Button("Add and rebuild", interactive=allow_uploads, elem_id="upload")
                    rebuild_button = gr.Button("Rebuild the index", interactive=allow_uploads, elem_id="rebuild")
                status = gr.HTML(elem_id="index-status", js_on_load=None)

        # The page's own events stay off the API page: /search is the API, returning JSON, not HTML.
        gr.on(
            [question.submit, ask_button.click],
            ask,
            inputs=[question, k, mode],
            outputs=results,
            api_visibility="private",
            show_progress="minimal",
            concurrency_limit=search_concurrency(),
            concurrency_id="search",  # the page's searches and the API's share one limit
        )
        if examples is not None:  # clicking an example asks it
            examples.load_input_event.then(ask, [question, k, mode], results, api_visibility="private")
        gr.api(search, api_name="search", concurrency_limit=search_concurrency(), concurrency_id="search")
        demo.load(show_index, outputs=info, api_visibility="private")
        index_tab.select(show_index, outputs=info, api_visibility="private")
        # Callable by clients (not listed) so scripts can upload and rebuild; the handlers refuse unless allowed.
        rebuild_button.click(rebuild, outputs=[status, info], api_name="rebuild", api_visibility="undocumented")
        upload_button.click(
            upload, inputs=files, outputs=[status, info, files], api_name="upload", api_visibility="undocumented"
        )
    _TAKES_UPLOADS[demo] = allow_uploads
    return demo


def search_concurrency() -> int:
    """``$QA_SEARCH_CONCURRENCY``, else :data:`SEARCH_CONCURRENCY`.

    Searches running at once embed their questions together (``qa.embedding.QueryBatcher``): more of
    them at once means larger batches for the model, and more threads waiting on 2 cores.
    """
    value = os.environ.get("QA_SEARCH_CONCURRENCY", "").strip()
    if not value:
        return SEARCH_CONCURRENCY
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"$QA_SEARCH_CONCURRENCY must be a whole number of at least 1; got {value!r}")
    return int(value)


def _discard_upload(path: str) -> None:
    """Delete a file Gradio's upload route stored, once read; never a file outside Gradio's upload folder."""
    if is_in_or_equal(path, get_upload_folder()):
        with contextlib.suppress(OSError):
            os.remove(path)


def _upload_message(report: UploadReport) -> str:
    lines = [f"Added {path.name}" for path in report.added]
    lines += [f"{name} is already in the corpus" for name in report.unchanged]
    lines += [f"Refused: {reason}" for reason in report.rejected]
    if report.rebuild_error:
        lines.append(f"Rebuild failed: {report.rebuild_error}. The previous index is still serving.")
        return render.messages(lines, "error")
    if report.added:
        lines.append("Rebuilt the index: searches now use the new documents.")
        return render.messages(lines, "ok")
    return render.messages(lines or ["Nothing to add."], "error" if report.rejected else "info")


def launch(
    demo: gr.Blocks,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    block: bool = False,
    upload_limits: UploadLimits | None = None,
) -> str:
    """Start serving ``demo`` and return its URL; with ``block`` wait until interrupted (Ctrl+C).

    Gradio's own upload route is refused unless ``demo`` was built by ``create_app(allow_uploads=True)``;
    then it holds at most ``upload_limits`` (default ``UploadLimits()``) of files not yet added.
    """
    allowed = _TAKES_UPLOADS.get(demo, False)
    guard = Middleware(UploadRouteGuard, blocks=demo, allowed=allowed, limits=upload_limits)
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        prevent_thread_lock=not block,
        share=False,
        inbrowser=False,
        quiet=not block,
        show_error=False,  # no tracebacks in the browser; our handlers return readable messages
        max_file_size=MAX_BINARY_UPLOAD_BYTES,  # the largest of any type; read_limited applies each type's
        app_kwargs={"middleware": [guard]},
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        run_history=False,
        enable_monitoring=False,
        footer_links=["api"],
        # System fonts: the same glyphs at every weight, and nothing for the browser to fetch.
        theme=gr.themes.Default(font=SANS, font_mono=MONO),
        css=render.CSS,
    )
    return str(url)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def parse_auth(text: str) -> tuple[str, str]:
    """``"user:password"`` as ``(user, password)``; raises ``ValueError`` saying the expected form."""
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise ValueError("--auth (or QA_AUTH) must be user:password, with both parts non-empty")
    return user, password


def serve_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The index folder and corpus to serve; an index given without a corpus keeps the corpus it was built from."""
    index_path = Path(args.index) if args.index else default_index()
    if args.corpus:
        return index_path, Path(args.corpus)
    if args.index:
        try:
            built_from = read_manifest(index_path).corpus_folder(index_path)
        except (IndexNotFound, IncompatibleIndex):
            built_from = None
        if built_from is not None and built_from.is_dir():
            return index_path, built_from
    return index_path, default_corpus()


def serve(args: argparse.Namespace) -> int:
    """``qa serve``: check the settings, load (or build) the index and the model, then serve until Ctrl+C."""
    host = args.host or "127.0.0.1"
    auth_text = args.auth or os.environ.get("QA_AUTH") or None
    try:
        auth = parse_auth(auth_text) if auth_text else None
    except ValueError as error:
        print(f"qa: error: {error}", file=sys.stderr)
        return 1
    if args.allow_uploads and not is_loopback(host) and auth is None:
        print(
            f"qa: error: refusing to start: --allow-uploads on {host} would let anyone who can reach it write "
            "files into the corpus. Give --auth user:password (or set QA_AUTH), or listen on 127.0.0.1",
            file=sys.stderr,
        )
        return 1
    if not is_loopback(host) and auth is None:
        print(
            f"qa: warning: anyone who can reach {host} can search the documents; give --auth user:password to "
            "require a login",
            file=sys.stderr,
        )
    index_path, corpus = serve_paths(args)
    if args.allow_uploads and not in_checkout() and corpus.resolve() == bundled_corpus().resolve():
        print(
            "qa: error: refusing to start: --allow-uploads would write uploads into the bundled article's folder, "
            "which belongs to the installed package. Give --corpus FOLDER, a folder of your documents",
            file=sys.stderr,
        )
        return 1
    print(f"qa: loading the index at {index_path} (building it from {corpus} if missing or stale)", file=sys.stderr)
    index = open_index(index_path, corpus, progress=True)
    index.search(WARM_UP_QUESTION, k=1)  # loads the model now, so the first question is answered at once
    demo = create_app(index_path, corpus, allow_uploads=args.allow_uploads, index=index, public=not is_loopback(host))
    try:
        launch(demo, host=host, port=args.port, auth=auth, block=True)
    except (OSError, ServerFailedToStartError):
        print(
            f"qa: error: cannot listen on {host}:{args.port}: the port is in use or the address is not this "
            "machine's; choose another with --port or --host",
            file=sys.stderr,
        )
        return 1
    return 0
