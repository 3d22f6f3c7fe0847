"""Which PDF library qa reads PDFs with: words recovered, reading order, speed and licence, measured.

    .venv/bin/python -m bench.formats [--data DIR] [--tex-packages DIR] [--out FILE]

Needs the candidates: ``pip install -e '.[bench-formats]'`` (pypdf, pdfminer.six, pdfplumber; pypdfium2 is
qa's own dependency). PyMuPDF is not a candidate: it is AGPL.

**Words recovered.** Three of the sample PDFs were made by pdfTeX from the LaTeX sources beside them;
their text is dummy text from the LaTeX packages ``blindtext`` and ``lipsum``, so the truth is the
source with those macros expanded from the packages' own files (found with ``kpsewhich``, or in
``--tex-packages DIR``; Debian ships them in ``texlive-latex-extra``: ``apt-get download
texlive-latex-extra && dpkg-deb -x texlive-latex-extra_*.deb DIR``). Each library's text goes through
the same minimal clean-up (ligatures to letters, a hyphen or soft hyphen at a line end joined), then
recall = the share of the truth's words (counted with repeats) found in the extraction, and precision
= the share of extracted words that are in the truth (page numbers, section numbers and the table of
contents count against it for every library alike).

**Reading order** on the two-column file: the longest common subsequence of the extracted and the true
word sequences, as a share of the truth (1.0: every word in the right order).

**Speed**: milliseconds per page over every readable sample PDF (best of 3 runs), in this process.

The ``qa`` rows are qa's reader (pypdfium2 plus its clean-up: paragraphs, hyphens, headers and footers,
outline headings) in this process, and through its sandboxed worker process (what ``qa build`` does),
with the per-file overhead of the worker measured on the small files. Word files: python-docx is the
only reader measured (the issue's choice; MIT): time per file and what was read.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import logging
import platform
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, metadata, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "results" / "formats.md"
TEX_FILES = {
    "004-pdflatex-4-pages/pdflatex-4-pages.pdf": "004-pdflatex-4-pages/pdflatex-4-pages.tex",
    "006-pdflatex-outline/pdflatex-outline.pdf": "006-pdflatex-outline/pdflatex-outline.tex",
    "026-latex-multicolumn/multicolumn.pdf": "026-latex-multicolumn/multicolumn.tex",
}
TWO_COLUMNS = "026-latex-multicolumn/multicolumn.pdf"
ENCRYPTED = "005-libreoffice-writer-password"
PACKAGES = {"pypdfium2": "pypdfium2", "pypdf": "pypdf", "pdfminer.six": "pdfminer.six", "pdfplumber": "pdfplumber"}


def _log(message: str) -> None:
    print(f"[bench.formats] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ candidates


def pages_pypdfium2(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        return [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    finally:
        pdf.close()


def pages_pypdf(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def pages_pdfminer(data: bytes) -> list[str]:
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextContainer

    return [
        "".join(element.get_text() for element in page if isinstance(element, LTTextContainer))
        for page in extract_pages(io.BytesIO(data))
    ]


def pages_pdfplumber(data: bytes) -> list[str]:
    import pdfplumber

    with pdfplumber.open(io.BytesIO(data)) as pdf:
        return [page.extract_text() or "" for page in pdf.pages]


def pages_qa(data: bytes) -> list[str]:
    from qa.readers.pdf import extract_pdf

    extracted = extract_pdf(data)
    bounds = [*extracted.pages, len(extracted.text)]
    return [extracted.text[bounds[i] : bounds[i + 1]] for i in range(len(extracted.pages))]


CANDIDATES: dict[str, Callable[[bytes], list[str]]] = {
    "pypdfium2": pages_pypdfium2,
    "pypdf": pages_pypdf,
    "pdfminer.six": pages_pdfminer,
    "pdfplumber": pages_pdfplumber,
    "qa (pypdfium2 + clean-up)": pages_qa,
}


# ----------------------------------------------------------------------------------------- truth


def _find_package_file(name: str, tex_packages: Path | None) -> Path:
    if tex_packages is not None:
        found = sorted(tex_packages.rglob(name))
        if found:
            return found[0]
    if shutil.which("kpsewhich"):
        result = subprocess.run(["kpsewhich", name], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            return Path(result.stdout.strip())
    raise SystemExit(
        f"bench.formats: cannot find the LaTeX package file {name}, which holds the true text of the pdfTeX "
        "samples. Install TeX Live's texlive-latex-extra, or unpack it and pass its folder: apt-get download "
        "texlive-latex-extra && dpkg-deb -x texlive-latex-extra_*.deb tex && python -m bench.formats --tex-packages tex"
    )


def _tex_to_text(tex: str) -> str:
    """Plain text of a piece of LaTeX: markup dropped, quotes and dashes as typeset."""
    tex = re.sub(r"(?<!\\)%.*", "", tex)
    tex = tex.replace("``", "“").replace("''", "”").replace("---", "—").replace("--", "–")
    tex = re.sub(r"\\(?:blindmarkup|textbf|textsuperscript|emph|textit)\{([^{}]*)\}", r"\1", tex)
    tex = re.sub(r"\\[A-Za-z@]+\*?(\[[^\]]*\])?", " ", tex)
    return re.sub(r"[{}&]|\\\\", " ", tex)


def blindtext_paragraph(sty: str) -> str:
    """The English paragraph of the ``blindtext`` package."""
    block = sty[sty.index(r"\blind@addtext{english}") :]
    start = block.index("Hello, here is some text")
    end = block.index(r"language\blindtext@endsentence%", start) + len("language")  # the paragraph's end
    return _tex_to_text(block[start:end].replace(r"\blindtext@endsentence", ".") + ".")


def lipsum_paragraphs(ltd: str) -> list[str]:
    """The paragraphs of the ``lipsum`` package, in order."""
    return [_tex_to_text(body) for body in re.findall(r"\\NewLipsumPar\{%[^\n]*\n(.*?)\}%", ltd, re.S)]


def true_text(tex: str, blind: str, lipsum: list[str]) -> str:
    """The words a pdfTeX sample shows: its body with ``\\blindtext`` and ``\\lipsum`` expanded."""
    body = tex[tex.index(r"\begin{document}") :]
    title = re.search(r"\\title\{([^}]*)\}", tex)
    author = re.search(r"\\author\{([^}]*)\}", tex)
    body = re.sub(r"\\(title|author|date)\{[^}]*\}", "", body)
    body = body.replace(r"\maketitle", " ".join(m.group(1) for m in (title, author) if m))
    body = re.sub(r"\\blindtext\[(\d+)\]", lambda m: " ".join([blind] * int(m.group(1))), body)
    body = body.replace(r"\blindtext", blind)  # \blindtext{7}: one paragraph, then the group prints 7
    body = re.sub(
        r"\\lipsum\[(\d+)-(\d+)\]",
        lambda m: "\n\n".join(lipsum[int(m.group(1)) - 1 : int(m.group(2))]),
        body,
    )
    body = body.replace(r"\begin{abstract}", "Abstract ")
    body = re.sub(r"\\caption\{([^}]*)\}", r"\1", body)
    body = re.sub(r"\\(begin|end)\{[^}]*\}(\{[^}]*\})?(\[[^\]]*\])?", " ", body)
    body = re.sub(r"\\section\{([^}]*)\}", r"\1", body)
    return _tex_to_text(body)


# --------------------------------------------------------------------------------------- metrics

_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})


def words(text: str) -> list[str]:
    """Lower-case words, after the clean-up every library gets: ligatures and line-end hyphens joined."""
    text = unicodedata.normalize("NFC", text.translate(_LIGATURES))
    text = re.sub(r"(\w)[\ufffe\u00ad\u2010-]\r?\n?(\w)", r"\1\2", text)  # hyphen at a line end, or soft
    text = text.replace("\ufffe", "").replace("\u00ad", "")
    return re.findall(r"\w+", text.lower())


def recall_precision(extracted: list[str], truth: list[str]) -> tuple[float, float]:
    common = sum((Counter(extracted) & Counter(truth)).values())
    return common / max(len(truth), 1), common / max(len(extracted), 1)


def in_order(extracted: list[str], truth: list[str]) -> float:
    """The longest common subsequence of the two word sequences, as a share of the truth."""
    matcher = difflib.SequenceMatcher(None, extracted, truth, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / max(len(truth), 1)


def licence(package: str) -> str:
    try:
        meta = metadata(package)
    except PackageNotFoundError:
        return "not installed"
    found = meta.get("License-Expression") or ""
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if not found:
        found = ", ".join(classifiers) or (meta.get("License") or "?").splitlines()[0][:60]
    return found


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.formats", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (pdf-samples, docx-samples)")
    parser.add_argument("--tex-packages", type=Path, help="a folder holding lipsum.ltd.tex and blindtext.sty")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--runs", type=int, default=3, help="timing runs per file (best kept)")
    args = parser.parse_args(argv)
    logging.getLogger("pdfminer").setLevel(logging.ERROR)  # its complaints about fonts, once per page
    pdf_folder, docx_folder = args.data / "pdf-samples", args.data / "docx-samples"
    blind = blindtext_paragraph(_find_package_file("blindtext.sty", args.tex_packages).read_text(encoding="latin-1"))
    lipsum = lipsum_paragraphs(_find_package_file("lipsum.ltd.tex", args.tex_packages).read_text(encoding="utf-8"))
    truths = {
        pdf: words(true_text((pdf_folder / tex).read_text(encoding="utf-8"), blind, lipsum))
        for pdf, tex in TEX_FILES.items()
    }
    samples = sorted(p for p in pdf_folder.rglob("*.pdf") if ENCRYPTED not in str(p))
    lines = [
        "# PDF and Word readers compared",
        "",
        f"`python -m bench.formats` on {platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; the sample files of `../shared/data/pdf-samples` and `docx-samples`.",
        "",
        "Words: recall / precision against the LaTeX source of each pdfTeX sample (dummy text expanded from "
        "the blindtext and lipsum packages). Order: longest common subsequence of the two-column file's words "
        "with the truth, as a share of the truth. Speed: ms per page over "
        f"{len(samples)} readable sample PDFs, best of {args.runs}.",
        "",
        "| library | version | licence | 4-pages words | outline words | two-column words | two-column order "
        "| ms/page | files not read |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    blobs = {path: path.read_bytes() for path in samples}
    for name, extract in CANDIDATES.items():
        package = "pypdfium2" if name.startswith("qa") else PACKAGES[name]
        try:
            ver = version(package)
        except PackageNotFoundError:
            _log(f"{package} is not installed: pip install -e '.[bench-formats]'")
            continue
        _log(name)
        cells = []
        for pdf in TEX_FILES:
            got = words("\n".join(extract(blobs[pdf_folder / pdf])))
            recall, precision = recall_precision(got, truths[pdf])
            cells.append(f"{recall:.3f} / {precision:.3f}")
        order = in_order(words("\n".join(extract(blobs[pdf_folder / TWO_COLUMNS]))), truths[TWO_COLUMNS])
        pages, seconds, failed = 0, 0.0, []
        for path, data in blobs.items():
            try:
                count = len(extract(data))
            except Exception as error:  # a library that cannot read a file loses it, not the comparison
                why = error.reason.split(" (")[0].split(":")[0] if hasattr(error, "reason") else type(error).__name__
                failed.append(f"{path.name} ({why})")
                continue
            pages += count
            seconds += best_of(args.runs, lambda data=data, extract=extract: extract(data))
        lines.append(
            f"| {name} | {ver} | {licence(package)} | {' | '.join(cells)} | {order:.3f} | "
            f"{1000 * seconds / max(pages, 1):.1f} | {', '.join(failed) or 'none'} |"
        )
    lines += ["", *worker_overhead(blobs, args.runs), "", *cache_rows(pdf_folder, docx_folder)]
    lines += ["", *docx_rows(docx_folder, args.runs)]
    report = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    return 0


def worker_overhead(blobs: dict[Path, bytes], runs: int) -> list[str]:
    """qa's reader in this process against through its sandboxed worker, per file."""
    from qa.readers import ReadError
    from qa.readers.pdf import extract_pdf
    from qa.readers.worker import Worker

    small: dict[Path, bytes] = {}
    for path, data in blobs.items():
        with contextlib.suppress(ReadError):
            if len(data) < 200_000 and extract_pdf(data):
                small[path] = data
    worker = Worker()
    worker.extract(".pdf", next(iter(small.values())))  # started once, as a build starts it once
    inside = best_of(runs, lambda: [extract_pdf(data) for data in small.values()])
    through = best_of(runs, lambda: [worker.extract(".pdf", data) for data in small.values()])
    started = time.perf_counter()
    fresh = Worker()
    fresh.extract(".pdf", next(iter(small.values())))
    start_up = time.perf_counter() - started
    worker.close()
    fresh.close()
    per_file = (through - inside) / len(small)
    return [
        f"Sandboxed worker: {len(small)} small PDFs take {1000 * inside:.0f} ms read in this process and "
        f"{1000 * through:.0f} ms through the long-lived worker process: {1000 * per_file:.1f} ms more per file. "
        f"Starting a worker (a new interpreter importing the readers) and its first file: {1000 * start_up:.0f} ms, "
        "paid once per build, and again only after a file kills or hangs it.",
    ]


def cache_rows(*folders: Path) -> list[str]:
    """Reading the sample folders as a build or a staleness check does, with an empty and a filled cache."""
    import os
    import tempfile

    from qa.documents import iter_document_paths, read_document

    logging.getLogger("qa").setLevel(logging.ERROR)  # the samples that are refused, on every pass

    def read_all() -> int:
        return sum(1 for folder in folders for path, name in iter_document_paths(folder) if read_document(path, name))

    before = os.environ.get("QA_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["QA_CACHE_DIR"] = cache
        try:
            started = time.perf_counter()
            documents = read_all()
            cold = time.perf_counter() - started
            warm = best_of(3, read_all)
        finally:
            if before is None:
                del os.environ["QA_CACHE_DIR"]
            else:
                os.environ["QA_CACHE_DIR"] = before
    return [
        f"Extraction cache: reading the {documents} documents of the two sample folders (PDF and Word files, their "
        "Markdown notes; the unreadable samples refused) as "
        f"`qa build` and a staleness check do took {1000 * cold:.0f} ms with an empty cache (parsed in the worker) "
        f"and {1000 * warm:.0f} ms with the cache filled (each file read and hashed, not parsed): "
        f"{cold / max(warm, 1e-9):.0f}× less.",
    ]


def docx_rows(folder: Path, runs: int) -> list[str]:
    from qa.readers.docx import extract_docx

    rows = [
        f"Word: python-docx {version('python-docx')} ({licence('python-docx')}), through qa's reader, best of {runs}:",
        "",
        "| file | ms | characters | headings | list items | table rows |",
        "|---|---|---|---|---|---|",
    ]
    from qa.readers import ReadError

    for path in sorted(folder.glob("*.docx")):
        data = path.read_bytes()
        seconds = best_of(runs, lambda data=data: _try_docx(data))
        try:
            text = extract_docx(data).text
        except ReadError as error:
            rows.append(f"| {path.name} | {1000 * seconds:.1f} | refused: {error.reason.split(':')[0]} | | | |")
            continue
        headings = len(re.findall(r"^#+ ", text, re.M))
        items = len(re.findall(r"^- ", text, re.M))
        table_rows = len(re.findall(r"^\|.*\|$", text, re.M))
        rows.append(f"| {path.name} | {1000 * seconds:.1f} | {len(text):,} | {headings} | {items} | {table_rows} |")
    return rows


def _try_docx(data: bytes) -> object:
    from qa.readers import ReadError
    from qa.readers.docx import extract_docx

    try:
        return extract_docx(data)
    except ReadError as error:
        return error


if __name__ == "__main__":
    sys.exit(main())
