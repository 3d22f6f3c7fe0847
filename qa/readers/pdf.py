"""A PDF's text layer as a document: pages, outline sections, paragraphs, without running headers and footers.

pypdfium2 (PDFium, BSD/Apache) reads the text: of the libraries measured (``python -m bench.formats``,
bench/results/formats.md) it recovered every word of the pdfTeX samples, read the two-column sample in
order, and was 18 to 60 times faster per page than pypdf, pdfminer.six and pdfplumber.

What PDFium gives is lines in reading order. On top of that, this module:

- joins a word hyphenated across a line end (PDFium marks a soft break with U+FFFE; a hard ``-`` before a
  lower-case letter on the next line is joined too) and turns ligatures (ﬁ, ﬂ, ...) into letters;
- drops running headers and footers, lines that repeat (numbers aside) at the top or bottom of most
  pages, and bare page numbers there;
- rebuilds paragraphs: a line well shorter than the page's usual line ends one, as does a heading;
- makes the outline's (bookmarks') entries headings, so passages under them get them as their section;
- joins a paragraph that runs on to the next page, so its sentences stay whole.

Pages are joined into one text and ``Extracted.pages`` says where each starts in it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from statistics import median

from qa.documents import clean_text
from qa.readers import Extracted, ReadError

MAX_PAGES = 10_000
"""More pages than any book: a file declaring more is refused before its pages are read (a page-count bomb)."""

MAX_OUTLINE_ENTRIES = 2_000

_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
_PAGE_NUMBER = re.compile(r"(?i)[-–—\s]*(?:page\s+)?(?:\d{1,5}|[ivxlc]{1,7})(?:\s*(?:of|/)\s*\d{1,5})?[-–—\s]*")
_SENTENCE_END = re.compile(r"[.!?:;…][\"'”’)\]]*$")
_NUMBERING = r"(?:(?:\d+|[A-Z])(?:\.\d+)*\.?\s+)?"
SHORT_LINE = 0.7
"""A line shorter than this share of the page's usual line length ends its paragraph."""


def extract_pdf(data: bytes) -> Extracted:
    """The text of a PDF, page by page, as paragraphs under the outline's headings.

    Raises:
        ReadError: The PDF is encrypted, damaged or not a PDF, has too many pages, or has no text layer.
    """
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        if "password" in str(error).lower():
            raise ReadError(
                "it is encrypted (password-protected): save a copy without a password to index it"
            ) from None
        raise ReadError(
            "it is not a readable PDF (damaged, truncated, or another kind of file named .pdf): "
            "open it in a PDF viewer and save or export it again"
        ) from None
    try:
        count = len(pdf)
        if count > MAX_PAGES:
            raise ReadError(f"it has {count:,} pages, more than qa reads ({MAX_PAGES:,}): split it into parts")
        pages = [_page_lines(pdf[i]) for i in range(count)]
        headings = _outline(pdf, count)
        title = clean_text(str(pdf.get_metadata_dict().get("Title") or "")).strip()
    finally:
        pdf.close()
    return assemble(pages, headings, title)


def _page_lines(page: object) -> list[str]:
    textpage = page.get_textpage()  # type: ignore[attr-defined]
    try:
        raw = textpage.get_text_range()
    finally:
        textpage.close()
        page.close()  # type: ignore[attr-defined]
    return split_lines(raw)


def split_lines(raw: str) -> list[str]:
    """The printed lines of a page's text as PDFium gives it: cleaned, ligatures as letters, blank lines gone.

    PDFium puts U+FFFE where a word was hyphenated at a line end, and sometimes joins the two lines
    itself: they are split again there, so that each printed line's length can tell where paragraphs end.
    """
    text = clean_text(raw.translate(_LIGATURES))
    lines = [part for line in text.split("\n") for part in re.split("(?<=\ufffe)(?=.)", " ".join(line.split()))]
    return [line for line in lines if line]


def _outline(pdf: object, pages: int) -> dict[int, list[tuple[int, str]]]:
    """The outline's entries by page: ``{page index: [(level, title), ...]}``, in outline order."""
    found: dict[int, list[tuple[int, str]]] = {}
    try:
        for number, bookmark in enumerate(pdf.get_toc(max_depth=6)):  # type: ignore[attr-defined]
            if number >= MAX_OUTLINE_ENTRIES:
                break
            destination = bookmark.get_dest()
            index = destination.get_index() if destination is not None else None
            title = " ".join(clean_text(bookmark.get_title() or "").split())
            if index is not None and 0 <= index < pages and title:
                found.setdefault(index, []).append((int(bookmark.level), title))
    except Exception:  # an outline PDFium cannot walk is no reason to lose the text
        return {}
    return found


def _norm(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.lower().split()))


def _running_lines(pages: list[list[str]]) -> list[set[int]]:
    """Per page, the positions of its lines that are running headers or footers, or bare page numbers."""
    drop: list[set[int]] = [set() for _ in pages]
    edge = 2  # lines looked at at each end of a page
    if len(pages) >= 2:
        for top in (True, False):
            seen: Counter[str] = Counter()
            for lines in pages:
                # At most 12 words: a header is short, and a body line that repeats (a form, a refrain) stays.
                seen.update(
                    {_norm(line) for line in (lines[:edge] if top else lines[-edge:]) if len(line.split()) <= 12}
                )
            # On most pages (and on more than one): a document title repeated as a header, "Page 3 of 9", ...
            repeated = {key for key, n in seen.items() if n >= max(2, math.ceil(0.6 * len(pages)))}
            for lines, dropped in zip(pages, drop, strict=True):
                positions = range(min(edge, len(lines))) if top else range(max(0, len(lines) - edge), len(lines))
                dropped.update(i for i in positions if _norm(lines[i]) in repeated)
    for lines, dropped in zip(pages, drop, strict=True):
        for i in {0, len(lines) - 1} if lines else set():
            if _PAGE_NUMBER.fullmatch(lines[i]):
                dropped.add(i)
    return drop


def _paragraphs(lines: list[str], headings: list[tuple[int, str]]) -> list[str]:
    """A page's lines as paragraphs; the lines that are its outline entries as Markdown headings."""
    marks: dict[int, str] = {}
    cursor = 0
    unplaced: list[str] = []
    for level, title in headings:
        pattern = re.compile(_NUMBERING + re.escape(" ".join(title.split())) + r"\.?", re.IGNORECASE)
        at = next((i for i in range(cursor, len(lines)) if i not in marks and pattern.fullmatch(lines[i])), None)
        # Level 0 is "##": a first "#" heading would be taken for the document's title, not a section.
        prefix = "#" * min(6, level + 2) + " "
        if at is None:
            unplaced.append(prefix + title)  # the outline names a section the text does not show: at the page top
        else:
            marks[at] = prefix
            cursor = at + 1
    long_lines = [len(line) for line in lines if len(line.split()) >= 4]
    usual = median(long_lines) if long_lines else 0.0
    paragraphs: list[str] = list(unplaced)
    current = ""
    for i, line in enumerate(lines):
        if i in marks:
            if current:
                paragraphs.append(current)
            paragraphs.append(marks[i] + line.replace("\ufffe", ""))
            current = ""
            continue
        current = join_lines(current, line) if current else line
        # With no line of 4 words or more (a table of contents, a form), each line stands alone.
        if not current.endswith(("-", "\ufffe")) and (len(line) < SHORT_LINE * usual or not usual):
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return paragraphs


def join_lines(before: str, after: str) -> str:
    """Two lines of one paragraph: a word hyphenated across them is joined, else a space between them."""
    if before.endswith("\ufffe"):
        return before[:-1] + after
    if re.search(r"[^\W\d_]-$", before) and after[:1].islower():
        return before[:-1] + after
    return f"{before} {after}"


def assemble(pages: list[list[str]], headings: dict[int, list[tuple[int, str]]], title: str = "") -> Extracted:
    """The document from each page's lines: running lines dropped, paragraphs rebuilt, pages joined.

    Raises:
        ReadError: The pages hold (next to) no text: scanned pages or images without a text layer.
    """
    dropped = _running_lines(pages)
    kept = [[line for i, line in enumerate(lines) if i not in drop] for lines, drop in zip(pages, dropped, strict=True)]
    with_words = sum(1 for lines in kept if sum(len(line.split()) for line in lines) >= 3)
    if not pages or with_words * 2 < len(pages):
        raise ReadError(
            f"it has no text layer on {len(pages) - with_words} of its {len(pages)} pages (scanned pages or images): "
            "run OCR on it first (e.g. ocrmypdf) and index the result"
        )
    text = ""
    starts: list[int] = []
    for number, lines in enumerate(kept):
        paragraphs = _paragraphs(lines, headings.get(number, []))
        if text and paragraphs and _continues(text, paragraphs[0]):
            # The page's first paragraph carries on the last one: one paragraph, the page starts inside it.
            hyphenated = text.endswith("\ufffe") or (
                bool(re.search(r"[^\W\d_]-$", text)) and paragraphs[0][:1].islower()
            )
            text = text[:-1] if hyphenated else text + " "
        else:
            text = _close(text) + ("\n\n" if text and paragraphs else "")
        if not text and paragraphs and title and " ".join(paragraphs[0].split()) == " ".join(title.split()):
            paragraphs[0] = f"# {paragraphs[0]}"  # the title as the first line: a title, not a passage
        starts.append(len(text))
        text += "\n\n".join(paragraphs)
    return Extracted(text=_close(text) + "\n", title=title, pages=tuple(starts))


def _close(text: str) -> str:
    """A text whose last line break turned out not to split a word keeps its hyphen."""
    return text[:-1] + "-" if text.endswith("\ufffe") else text


def _continues(text: str, first: str) -> bool:
    """Whether a page's first paragraph carries on the last sentence of the page before."""
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    if last.startswith("#") or first.startswith("#"):
        return False
    return not _SENTENCE_END.search(last) and first[:1].islower()
