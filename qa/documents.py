"""Reading documents: a folder of ``.txt``, ``.md``, ``.html``, ``.pdf`` and ``.docx`` files becomes a list of ``Document``.

PDF and Word files are parsed by ``qa.readers`` in a sandboxed worker process, their text cached by
content hash; the text formats are read here.

HTML is turned into Markdown-like text (headings as ``#`` lines, list items as ``-`` lines, markup,
scripts and styles dropped) so that one splitter handles every format and offsets index the text
that is stored and shown. Every file's text is put in Unicode normal form C (so "é" typed as one
character or as "e" and an accent is the same word) and its control characters become spaces.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from qa.errors import EmptyCorpus
from qa.readers import BINARY_SUFFIXES

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")
SUFFIXES = TEXT_SUFFIXES + BINARY_SUFFIXES


@dataclass(frozen=True)
class Document:
    """One document of a collection.

    Args:
        id: A stable identifier; for a folder, the path relative to it (``"notes/a.md"``).
        text: The document's text; passage offsets index into it.
        title: Its first heading, or its file name.
        pages: Where each page starts in ``text`` (first page first, at 0), for formats with pages (PDF);
            empty for the others. A hit's page is found from it.
    """

    id: str
    text: str
    title: str = ""
    pages: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError(f"a Document needs a non-empty string id; got {self.id!r}")
        if not isinstance(self.text, str):
            raise ValueError(f"Document {self.id!r}: text must be a str, got {type(self.text).__name__}")
        pages = self.pages
        if pages and (
            any(not isinstance(p, int) for p in pages)
            or pages[0] != 0
            or any(b < a for a, b in itertools.pairwise(pages))
            or pages[-1] > len(self.text)
        ):
            raise ValueError(
                f"Document {self.id!r}: pages must be the offsets where pages start in text, from 0, "
                f"ascending, at most len(text); got {pages[:5]!r}..."
            )

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()


_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def title_of(text: str, fallback: str) -> str:
    """The first Markdown heading of ``text``, else ``fallback``."""
    match = _HEADING.search(text)
    return match.group(2).strip() if match else fallback


class _HTMLToText(HTMLParser):
    """Keeps the visible text of an HTML page and its block structure; drops scripts, styles and markup."""

    _SKIP: ClassVar[set[str]] = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
    _BLOCK: ClassVar[set[str]] = {"p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "br",
              "table", "tr", "blockquote", "pre", "ul", "ol", "dl", "dt", "dd", "figure", "figcaption",
              "form", "hr", "body", "html"}  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.prefix = ""
        self.skip_depth = 0
        self.title = ""
        self._in_title = False
        self._titled = False

    def _flush(self) -> None:
        line = re.sub(r"\s+", " ", "".join(self.current)).strip()
        if line:
            self.lines.append(self.prefix + line)
        self.current = []
        self.prefix = ""

    def close(self) -> None:
        super().close()
        self._flush()  # the text after the last block

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self._titled:  # the page's title, not an SVG's
            self._in_title = True
        if tag == "body":  # a page may leave </head> out: the body ends it
            self.skip_depth = 0
        if tag in self._SKIP:
            self.skip_depth += 1
            return
        if tag in self._BLOCK or tag == "li" or re.fullmatch(r"h[1-6]", tag):
            self._flush()
        if re.fullmatch(r"h[1-6]", tag):
            self.prefix = "#" * int(tag[1]) + " "
        elif tag == "li":
            self.prefix = "- "
        elif tag in ("td", "th"):
            self.current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self._titled = True
        if tag in self._SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag in self._BLOCK or tag == "li" or re.fullmatch(r"h[1-6]", tag):
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self.skip_depth:
            return
        self.current.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """Return ``(text, title)``: the page's visible text as Markdown-like lines, and its ``<title>``."""
    parser = _HTMLToText()
    parser.feed(html)
    parser.close()
    blocks: list[str] = []
    for line in parser.lines:
        # List items stay together; every other block is its own paragraph.
        if blocks and line.startswith("- ") and blocks[-1].startswith("- "):
            blocks[-1] += "\n" + line
        else:
            blocks.append(line)
    return "\n\n".join(blocks) + ("\n" if blocks else ""), unescape(re.sub(r"\s+", " ", parser.title)).strip()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters other than tab and newline: terminal escapes, bells, form feeds."""


def clean_text(text: str) -> str:
    """``text`` in Unicode normal form C, its line ends as ``\\n`` and its other control characters as spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(" ", unicodedata.normalize("NFC", text))


def read_document(path: Path, doc_id: str) -> Document | None:
    """Read one file; return ``None`` (with a warning naming it and saying why) when it cannot be read:
    empty, binary or not UTF-8 text; a PDF or Word file that is encrypted, damaged, without text, or too
    slow or too large to parse."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe or a device would block or never end
            logger.warning("skipped %s: it is not a regular file", path)
            return None
        raw = path.read_bytes()
    except OSError as error:
        logger.warning("skipped %s: cannot read it (%s); check that you may read it", path, error.strerror or error)
        return None
    if path.suffix.lower() in BINARY_SUFFIXES:
        from qa.readers import ReadError, read_binary

        try:
            extracted = read_binary(raw, path.suffix.lower())
        except ReadError as error:
            logger.warning("skipped %s: %s", path, error.reason)
            return None
        title = clean_text(extracted.title or path.stem)
        return Document(id=doc_id, text=extracted.text, title=title, pages=extracted.pages)
    if b"\x00" in raw:
        logger.warning("skipped %s: it is binary (contains NUL bytes), not text", path)
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        logger.warning("skipped %s: it is not UTF-8 (%s); convert it to UTF-8 to index it", path, error.reason)
        return None
    text = clean_text(text)
    if path.suffix.lower() in (".html", ".htm"):
        text, html_title = html_to_text(text)
        text, html_title = clean_text(text), clean_text(html_title)
        title = title_of(text, html_title or path.stem)
        if html_title:
            title = html_title
    else:
        title = title_of(text, path.stem)
    if not text.strip():
        logger.warning("skipped %s: it has no text", path)
        return None
    return Document(id=doc_id, text=text, title=clean_text(title))  # a file name may hold control characters


def iter_document_paths(folder: Path) -> Iterator[tuple[Path, str]]:
    """Yield ``(path, id)`` of the readable files below ``folder``, sorted, never leaving it.

    Links are never followed out of the folder, and links to folders are not followed at all (a folder
    inside is read where it is), so there are no loops. A link to a file inside is read only when that
    file is not read as itself; each is skipped with a warning.
    """
    root = folder.resolve()
    found: list[tuple[Path, str, bool]] = []  # (path, its real path, whether it is a link)

    # os.walk passes over a folder it cannot list without a word unless told: say which, as for a file.
    def unlistable(error: OSError) -> None:
        logger.warning("skipped %s: cannot list it (%s); check that you may read it", error.filename, error.strerror)

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        kept = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            sub = os.path.join(dirpath, name)
            if os.path.islink(sub):
                target = os.path.realpath(sub)
                if _inside(target, root):
                    logger.warning("skipped %s: it links to %s, a folder read where it is", sub, target)
                else:
                    logger.warning("skipped %s: it links outside %s", sub, folder)
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(SUFFIXES):
                continue
            path = Path(dirpath) / name
            real = os.path.realpath(path)
            if not _inside(real, root):
                logger.warning("skipped %s: it links outside %s", path, folder)
                continue
            found.append((path, real, path.is_symlink()))
    read_as_itself = {real for _, real, link in found if not link}
    linked: dict[str, Path] = {}
    for path, real, link in found:
        if link and real in read_as_itself:
            logger.warning("skipped %s: it links to %s, which is read as itself", path, real)
            continue
        if link and real in linked:
            logger.warning("skipped %s: it links to the same file as %s", path, linked[real])
            continue
        linked[real] = path
        yield path, path.relative_to(root).as_posix()


def _inside(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root) + os.sep)


def unread_types(folder: str | os.PathLike[str]) -> dict[str, int]:
    """How many files of each type below ``folder`` qa does not read (``{".pptx": 3, ".odt": 1}``), most first.

    The folders and files the reader skips (hidden ones, links to folders) are not counted.
    """
    counts: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(Path(folder)):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            if name.startswith(".") or name.lower().endswith(SUFFIXES):
                continue
            suffix = Path(name).suffix.lower() or "(no suffix)"
            counts[suffix] = counts.get(suffix, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def describe_unread(counts: dict[str, int]) -> str:
    """``"not read: 3 .pptx, 1 .odt"``, or ``""`` when every file is of a type qa reads."""
    if not counts:
        return ""
    return "not read: " + ", ".join(f"{n} {suffix}" for suffix, n in counts.items())


@dataclass(frozen=True)
class Corpus:
    """The documents of a folder, read once: to check an index against and to build it from."""

    folder: Path
    """The folder, absolute."""
    documents: tuple[Document, ...]


def _corpus_folder(folder: str | os.PathLike[str]) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise EmptyCorpus(
            f"corpus folder {str(path)!r} does not exist or is not a folder; "
            "give a folder of .txt, .md, .html, .pdf or .docx files"
        )
    return path.resolve()


def iter_documents(folder: str | os.PathLike[str]) -> Iterator[Document]:
    """The readable documents below ``folder``, read one at a time as they are asked for, sorted by path.

    Raises:
        EmptyCorpus: The folder is missing (at once, before the first document is asked for).
    """
    root = _corpus_folder(folder)

    def read() -> Iterator[Document]:
        for path, doc_id in iter_document_paths(root):
            if (document := read_document(path, doc_id)) is not None:
                yield document

    return read()


def read_corpus(folder: str | os.PathLike[str]) -> Corpus:
    """Read every ``.txt``, ``.md``, ``.html``, ``.pdf`` and ``.docx`` file below ``folder``, recursively, sorted by path.

    Raises:
        EmptyCorpus: The folder is missing or has no readable document.
    """
    root = _corpus_folder(folder)
    documents = tuple(iter_documents(root))
    if not documents:
        raise no_documents(Path(folder))
    return Corpus(root, documents)


def no_documents(folder: Path) -> EmptyCorpus:
    return EmptyCorpus(
        f"{str(folder)!r} has no readable documents: add UTF-8 .txt, .md or .html files, or .pdf or .docx files, "
        "with text to it"
    )
