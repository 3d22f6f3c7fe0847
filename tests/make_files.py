"""Real PDF and Word files for tests, written by real writers: reportlab (PDF) and python-docx (Word).

Each document is a title, then sections (a heading, then paragraphs). The PDF has the sections in its
outline (bookmarks), a running header with the title and a page number in the footer on every page, in
one or two columns; the Word file has the title as its title property and Title paragraph, the sections
as Heading 1 paragraphs, and a header and a footer. The same document as Markdown is the baseline.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

Section = tuple[str, Sequence[str]]
"""A section's heading and its paragraphs."""


def markdown(title: str, sections: Sequence[Section]) -> str:
    parts = [f"# {title}"]
    for heading, paragraphs in sections:
        parts += [f"## {heading}", *paragraphs]
    return "\n\n".join(parts) + "\n"


def pdf_bytes(
    title: str, sections: Sequence[Section], *, columns: int = 1, header: str | None = None, page_size: str = "A4"
) -> bytes:
    """A PDF of the document (reportlab), with an outline entry for each section."""
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4, A5
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

    styles = getSampleStyleSheet()
    font, bold = _unicode_fonts()
    for style in styles.byName.values():
        style.fontName = bold if style.name.startswith(("Heading", "Title")) else font
    running = title if header is None else header

    class Document(BaseDocTemplate):  # type: ignore[misc]
        def afterFlowable(self, flowable: object) -> None:
            # A section heading: a bookmark where it is, and an outline entry pointing to it.
            if isinstance(flowable, Paragraph) and flowable.style.name == "Heading2":
                key = f"section-{id(flowable)}"
                self.canv.bookmarkPage(key)
                self.canv.addOutlineEntry(flowable.getPlainText(), key, level=0)

    def decorate(canvas: object, document: object) -> None:
        canvas.saveState()  # type: ignore[attr-defined]
        canvas.setFont(font, 8)  # type: ignore[attr-defined]
        width, height = document.pagesize  # type: ignore[attr-defined]
        if running:
            canvas.drawString(2 * cm, height - 1.2 * cm, running)  # type: ignore[attr-defined]
        canvas.drawCentredString(width / 2, 1 * cm, f"Page {document.page}")  # type: ignore[attr-defined]
        canvas.restoreState()  # type: ignore[attr-defined]

    size = A5 if page_size == "A5" else A4
    out = io.BytesIO()
    document = Document(out, pagesize=size, title=title, leftMargin=2 * cm, rightMargin=2 * cm)
    gap = 0.6 * cm
    width = (document.width - gap * (columns - 1)) / columns
    frames = [
        Frame(document.leftMargin + i * (width + gap), document.bottomMargin, width, document.height, id=f"c{i}")
        for i in range(columns)
    ]
    document.addPageTemplates([PageTemplate(id="page", frames=frames, onPage=decorate)])
    story = [Paragraph(escape(title), styles["Title"])]
    for heading, paragraphs in sections:
        story.append(Paragraph(escape(heading), styles["Heading2"]))
        story += [Paragraph(escape(text), styles["BodyText"]) for text in paragraphs]
    document.build(story)
    return out.getvalue()


FONTS = Path("/usr/share/fonts/truetype/dejavu")


def _unicode_fonts() -> tuple[str, str]:
    """DejaVu Sans, which draws every character of the SQuAD articles (PDF's built-in Helvetica draws
    Latin-1 only, so "ˈluːθər" would come back as other characters)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "DejaVuSans" not in pdfmetrics.getRegisteredFontNames():
        regular, bold = FONTS / "DejaVuSans.ttf", FONTS / "DejaVuSans-Bold.ttf"
        if not regular.exists() or not bold.exists():
            raise RuntimeError(f"{regular} is missing: install Debian's fonts-dejavu-core (.ci/fonts does)")
        pdfmetrics.registerFont(TTFont("DejaVuSans", str(regular)))
        pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(bold)))
    return "DejaVuSans", "DejaVuSans-Bold"


def docx_bytes(title: str, sections: Sequence[Section], *, header: str = "", footer: str = "") -> bytes:
    """A Word file of the document (python-docx)."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=0)  # the Title style
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for text in paragraphs:
            document.add_paragraph(text)
    if header:
        document.sections[0].header.paragraphs[0].text = header
    if footer:
        document.sections[0].footer.paragraphs[0].text = footer
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def many_pages_pdf(pages: int) -> bytes:
    """A small PDF that declares ``pages`` empty pages (a page-count bomb): each page a few bytes."""
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    kids = b" ".join(b"%d 0 R" % (3 + i) for i in range(pages))
    objects[2] = b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages
    for i in range(pages):
        objects[3 + i] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offsets[number] for number in sorted(objects))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def docx_bomb(paragraphs: int = 3_000_000) -> bytes:
    """A .docx of half a megabyte whose body unpacks to about 200 MB of XML (a zip bomb)."""
    import zipfile

    seed = docx_bytes("Seed", [("Part", ["seed text"])])
    source = zipfile.ZipFile(io.BytesIO(seed))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                at = data.index(b"<w:body>") + len(b"<w:body>")
                data = data[:at] + b"<w:p><w:r><w:t>again and again</w:t></w:r></w:p>" * paragraphs + data[at:]
            bomb.writestr(item, data)
    return out.getvalue()
