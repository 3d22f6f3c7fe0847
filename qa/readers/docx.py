"""A Word (.docx) file's body as a document: headings, paragraphs, lists and tables, in order.

python-docx (MIT) reads the file. Heading styles become Markdown headings (so passages under them get
them as their section), list paragraphs ``-`` items that follow their lead-in, and each table row one
line of its cells between ``|``. Headers, footers, footnotes and comments are not part of the body and
are left out. The title is the document's title property, else its Title-styled paragraph, else its
first heading.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator

from qa.documents import clean_text
from qa.readers import Extracted, ReadError

_HEADING_STYLE = re.compile(r"heading\s*(\d)", re.IGNORECASE)


def extract_docx(data: bytes) -> Extracted:
    """The text of a .docx file.

    Raises:
        ReadError: It is not a .docx file (damaged, password-protected, or an old .doc renamed), or has no text.
    """
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError) as error:
        raise ReadError(
            "it is not a readable Word .docx file (damaged, password-protected, or another format such as .doc "
            f"named .docx; {type(error).__name__}): open it in Word and save it as .docx without a password"
        ) from None
    blocks: list[str] = []
    first_heading = title_paragraph = ""
    for kind, text in _blocks(document):
        if kind == "title":
            title_paragraph = title_paragraph or text
            blocks.append(f"# {text}")
        elif kind.startswith("h"):
            first_heading = first_heading or text
            blocks.append("#" * min(6, int(kind[1:]) + 1) + " " + text)  # Heading 1 is "##": "#" is the title
        elif kind in ("item", "row") and blocks and blocks[-1].startswith("- " if kind == "item" else "|"):
            blocks[-1] += "\n" + text  # a list, or a table, is one block of lines
        else:
            blocks.append(text)
    text = "\n\n".join(blocks)
    if not text.strip():
        raise ReadError("it has no text in its body: add text to it, or save it again from Word")
    title = " ".join(clean_text(document.core_properties.title or "").split()) or title_paragraph or first_heading
    return Extracted(text=text + "\n", title=title)


def _blocks(document: object) -> Iterator[tuple[str, str]]:
    """``(kind, text)`` of the body's paragraphs and table rows, in order: kind is ``title``, ``h1`` to
    ``h9``, ``item`` (text with its ``- ``), ``row`` (``| cell | cell |``) or ``paragraph``."""
    yield from _children(document.element.body, document)  # type: ignore[attr-defined]


def _children(parent: object, document: object) -> Iterator[tuple[str, str]]:
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    for element in parent:  # type: ignore[attr-defined]
        if element.tag == qn("w:tbl"):
            yield from _rows(element)
        elif element.tag == qn("w:sdt"):  # a content control: its content is part of the body
            for content in element.iterchildren(qn("w:sdtContent")):
                yield from _children(content, document)
        elif element.tag == qn("w:p"):
            paragraph = Paragraph(element, document)
            text = _line(paragraph.text)
            if not text:
                continue
            style = (paragraph.style.name if paragraph.style is not None else "") or ""
            heading = _HEADING_STYLE.fullmatch(style.strip())
            if style.strip().lower() == "title":
                yield "title", text
            elif heading:
                yield f"h{heading.group(1)}", text
            elif _is_list_item(element, style):
                yield "item", f"- {text}"
            else:
                yield "paragraph", text


def _rows(table: object) -> Iterator[tuple[str, str]]:
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    for row in table.iterchildren(qn("w:tr")):  # type: ignore[attr-defined]
        # Each w:tc once: a cell merged across columns is one w:tc (python-docx's row.cells repeats it).
        cells = [
            _line(" ".join(Paragraph(p, None).text for p in cell.iterchildren(qn("w:p")))).replace("|", "/")
            for cell in row.iterchildren(qn("w:tc"))
        ]
        if any(cells):
            yield "row", "| " + " | ".join(cells) + " |"


def _is_list_item(element: object, style: str) -> bool:
    properties = element.pPr  # type: ignore[attr-defined]
    numbered = properties is not None and properties.numPr is not None
    return numbered or style.lower().startswith("list")


def _line(text: str) -> str:
    """Text on one line: tabs, line breaks and runs of spaces as one space, control characters dropped."""
    return " ".join(clean_text(text).split())
