"""HTML for the app: result cards, messages and the index summary.

Every piece of document text, title, file name and error message goes through ``text_html`` first:
documents are untrusted, and the only markup in the output is the markup written here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from qa.contents import DocumentRecord
from qa.manifest import Manifest
from qa.passage import Hit

# Beyond html.escape: the characters template engines act on, so no front-end templating can read
# document text as code. The browser shows the entities as the characters themselves.
_TEMPLATE_CHARS = str.maketrans({"{": "&#123;", "}": "&#125;", "$": "&#36;", "`": "&#96;"})

CSS = """
.qa-results { display: flex; flex-direction: column; gap: 12px; }
.qa-card { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 12px 16px;
  background: var(--block-background-fill); }
.qa-card header { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; margin-bottom: 8px; }
.qa-rank { font-weight: 700; font-size: 1.1em; min-width: 2.2em; }
.qa-where { flex: 1; min-width: 12em; }
.qa-title { font-weight: 600; }
.qa-section { color: var(--body-text-color-subdued); }
.qa-score { display: flex; align-items: center; gap: 6px; font-variant-numeric: tabular-nums; }
.qa-bar { width: 90px; height: 8px; border-radius: 4px; background: var(--border-color-primary); overflow: hidden; }
.qa-bar > span { display: block; height: 100%; background: var(--color-accent); }
.qa-text { white-space: pre-wrap; line-height: 1.55; margin: 0; }
.qa-text mark { background: #fde68a; color: #1f2937; padding: 0 2px; border-radius: 3px; }
.qa-card footer { margin-top: 8px; font-size: 0.85em; color: var(--body-text-color-subdued); }
.qa-message { border-radius: 10px; padding: 12px 16px; border: 1px solid var(--border-color-primary); }
.qa-message.qa-error { border-color: #dc2626; }
.qa-message.qa-ok { border-color: #16a34a; }
.qa-message.qa-no-answer { border-color: #b45309; margin-bottom: 12px; }
.qa-info table { border-collapse: collapse; }
.qa-info th { text-align: left; padding: 2px 16px 2px 0; font-weight: 600; vertical-align: top; }
.qa-info td { padding: 2px 16px 2px 0; }
/* Gradio's default theme paints a checked radio white-on-white once it loses focus: keep the choice visible. */
#mode input[type="radio"]:checked { background-color: var(--color-accent); border-color: var(--color-accent); }
.qa-stale { color: #b45309; font-weight: 600; }
.qa-fresh { color: #15803d; font-weight: 600; }
"""


OFFSETS_TITLE = (
    "Offsets into the document's text as qa reads it (Unicode NFC, LF line ends, HTML reduced to its text), "
    "not into the file's bytes"
)


def text_html(text: object) -> str:
    """``text`` as inert HTML: shown literally, never parsed as markup or template."""
    return html.escape(str(text), quote=True).translate(_TEMPLATE_CHARS)


def passage_html(text: str, highlights: Sequence[tuple[int, int]]) -> str:
    """The passage, escaped, with each highlighted span wrapped in ``<mark>``."""
    pieces: list[str] = []
    cursor = 0
    for start, end in sorted((max(0, s), min(len(text), e)) for s, e in highlights):
        start = max(start, cursor)  # overlapping spans: mark each character once
        if start >= end:
            continue
        pieces += [text_html(text[cursor:start]), "<mark>", text_html(text[start:end]), "</mark>"]
        cursor = end
    pieces.append(text_html(text[cursor:]))
    return "".join(pieces)


CONFIDENCE_TITLE = "How likely this passage holds the answer (calibrated on SQuAD questions)"
SCORE_TITLE = "Score of this search (higher is better); the bar compares it with the best"


def hit_card(hit: Hit, share: float) -> str:
    """One result: rank, how sure (or the score, and its bar), title and section, the passage with its answer
    marked, and its location (file, page for a PDF, character offsets)."""
    section = f' <span class="qa-section">› {text_html(hit.section)}</span>' if hit.section else ""
    page = f' · <span class="qa-page">page {int(hit.page)}</span>' if hit.page is not None else ""
    if hit.confidence is not None:  # a probability a reader can read; a fusion score is not one
        title, width, shown = CONFIDENCE_TITLE, hit.confidence, f"{hit.confidence:.0%} sure"
    else:
        title, width, shown = SCORE_TITLE, share, f"{hit.score:.3f}"
    return (
        f'<article class="qa-card" data-rank="{hit.rank}">'
        "<header>"
        f'<span class="qa-rank">#{hit.rank}</span>'
        f'<span class="qa-where"><span class="qa-title">{text_html(hit.title or hit.doc_id)}</span>{section}</span>'
        f'<span class="qa-score" title="{text_html(title)}">'
        f'<span class="qa-bar"><span style="width: {width * 100:.0f}%"></span></span>{shown}</span>'
        "</header>"
        f'<p class="qa-text">{passage_html(hit.text, hit.highlights)}</p>'
        f'<footer>{text_html(hit.doc_id)}{page} · <span class="qa-offsets" title="{text_html(OFFSETS_TITLE)}">'
        f"characters {hit.start}–{hit.end} of its text as read</span></footer>"
        "</article>"
    )


def score_shares(scores: Sequence[float]) -> list[float]:
    """Bar lengths in [0, 1]: each score relative to the best, measured from 0 or from the lowest if it is negative.

    Scores have no fixed scale (hybrid sums standardised signals and can be negative; BM25 is unbounded),
    so the bars compare the hits of one search with each other, nothing more.
    """
    if not scores:
        return []
    best, low = max(scores), min(0.0, min(scores))
    if best - low < 1e-12:
        return [1.0] * len(scores)
    return [max(0.0, min(1.0, (score - low) / (best - low))) for score in scores]


NO_ANSWER = "No answer here: no passage seems to answer this question. The closest passages are below."


def hits_html(hits: Sequence[Hit], *, answered: bool = True) -> str:
    """Result cards, best first, under a "no answer here" note when none seems to answer; a message when
    there are none."""
    if not hits:
        return message("No passage found. Try other words, or the lexical or dense mode.")
    shares = score_shares([hit.score for hit in hits])
    note = "" if answered else f'<div class="qa-message qa-no-answer">{text_html(NO_ANSWER)}</div>'
    return note + '<div class="qa-results">' + "".join(map(hit_card, hits, shares)) + "</div>"


def message(text: str, kind: str = "info") -> str:
    """A short message box; ``kind`` is ``info``, ``ok`` or ``error``."""
    return f'<div class="qa-message qa-{kind}">{text_html(text)}</div>'


def messages(lines: Sequence[str], kind: str = "info") -> str:
    """Several lines in one message box."""
    body = "<br>".join(text_html(line) for line in lines)
    return f'<div class="qa-message qa-{kind}">{body}</div>'


@dataclass(frozen=True)
class IndexStatus:
    """What the Index tab shows."""

    index_path: str
    corpus: str
    manifest: Manifest
    documents: list[DocumentRecord]
    passages: int
    stale_reason: str | None
    uploads_allowed: bool
    rebuilding: bool
    last_error: str | None


def index_html(status: IndexStatus) -> str:
    """The index summary: counts, model, build time, fresh or stale, and its documents."""
    manifest = status.manifest
    if status.stale_reason:
        state = f'<span class="qa-stale">stale</span>: {text_html(status.stale_reason)}'
        state += " — press Rebuild." if status.uploads_allowed else " — restart qa serve to refresh it."
    else:
        state = '<span class="qa-fresh">fresh</span>: it matches the documents in the corpus folder'
    if status.rebuilding:
        state += "<br>A rebuild is running; searches use this index until it is done."
    rows = [
        ("Documents", str(len(status.documents))),
        ("Passages", f"{status.passages:,} ({manifest.sentences:,} sentences)"),
        ("Model", text_html(f"{manifest.model} ({manifest.runtime} runtime)")),
        ("Vectors", text_html(manifest.dense_type)),
        ("Built", text_html(manifest.created or "?")),
        ("State", state),
        ("Index folder", text_html(status.index_path)),
        ("Corpus folder", text_html(status.corpus)),
    ]
    table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    documents = "".join(
        f"<tr><td>{text_html(d.title)}</td><td>{text_html(d.id)}</td><td>{d.passages}</td></tr>"
        for d in status.documents
    )
    failed = ""
    if status.last_error:
        failed = message(f"The last rebuild failed: {status.last_error}. The index above is still serving.", "error")
    return (
        f'<div class="qa-info">{failed}<table>{table}</table>'
        "<h4>Documents</h4>"
        f"<table><tr><th>Title</th><th>File</th><th>Passages</th></tr>{documents}</table></div>"
    )
