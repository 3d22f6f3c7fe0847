"""Splitting a document into passages: pure functions, no I/O, no model, the same output every time.

A passage is a run of whole sentences from one section, so it can be shown as it stands and its
``start``/``end`` offsets slice it back out of the document. Headings name the section of the passages
under them and are never passages themselves; a list stays with the sentence that introduces it;
a paragraph is kept whole when it fits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_WORDS = 150
DEFAULT_OVERLAP = 0
SPLITTER_VERSION = 2
"""Raise when a change here splits the same text differently: a rebuild then splits every document again.
2: a list's lead-in ("... the need for:") and its items are one sentence."""

_LINE = re.compile(r"[^\n]*\n?")
_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(\S.*?)[ \t#]*\n?$")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S")
_WORD = re.compile(r"\S+")

# A sentence ends at . ! ? (and closing quotes or brackets) followed by white space and not by a
# lower-case letter; abbreviations, initials and dotted acronyms ("U.S.", "W.") do not end one.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "vs",
        "etc",
        "al",
        "gen",
        "col",
        "lt",
        "sgt",
        "capt",
        "gov",
        "sen",
        "rep",
        "pres",
        "inc",
        "corp",
        "ltd",
        "co",
        "no",
        "nos",
        "vol",
        "fig",
        "figs",
        "eq",
        "eqs",
        "approx",
        "dept",
        "univ",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "e.g",
        "i.e",
        "cf",
        "viz",
        "ca",
        "est",
        "op",
        "ed",
        "eds",
        "p",
        "pp",
        "ch",
        "sec",
    ]
)
_ACRONYM = re.compile(r"(?:[A-Za-z]\.){2,}$")


@dataclass(frozen=True)
class Span:
    """A passage of a document: ``text[start:end]``, under the heading ``section``."""

    start: int
    end: int
    section: str


@dataclass(frozen=True)
class _Unit:
    """A sentence, a list item, or an introducing sentence glued to its list: what passages pack."""

    start: int
    end: int
    words: int
    paragraph: int


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` into sentences; return their ``(start, end)`` offsets, white space trimmed."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    begin = start
    for match in _SENTENCE_END.finditer(text, start, end):
        stop = match.end()
        if not _is_sentence_end(text, match.start(), stop, end):
            continue
        spans.append((begin, stop))
        begin = stop
    spans.append((begin, end))
    return [trimmed for s, e in spans if (trimmed := _trim(text, s, e))]


def _is_sentence_end(text: str, dot: int, stop: int, limit: int) -> bool:
    following = text[stop:limit].lstrip()
    if following and following[0].islower():
        return False
    if text[dot] != ".":
        return True
    word_start = dot
    while word_start > 0 and not text[word_start - 1].isspace() and text[word_start - 1] not in "(\"'“‘":
        word_start -= 1
    word = text[word_start : dot + 1]
    if len(word) == 2 and word[0].isupper():  # an initial: "George W. Bush"
        return False
    if _ACRONYM.search(word) and len(word) <= 6:  # "U.S.", "e.g."
        return False
    return word[:-1].lower() not in _ABBREVIATIONS


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _blocks(text: str) -> list[tuple[str, int, int, str]]:
    """Cut ``text`` into ``(kind, start, end, heading)`` blocks: kind is heading, paragraph or list."""
    blocks: list[tuple[str, int, int, str]] = []
    kind, begin, stop = "", 0, 0
    seen_heading = False
    for match in _LINE.finditer(text):
        line, line_start = match.group(), match.start()
        if not line:
            break
        line_kind = "blank"
        if heading := _HEADING.fullmatch(line):
            if kind:
                blocks.append((kind, begin, stop, ""))
            # The document's first heading, if of level 1, is its title, not a section.
            is_title = len(heading.group(1)) == 1 and not seen_heading
            seen_heading = True
            blocks.append(("heading", line_start, match.end(), "" if is_title else heading.group(2).strip()))
            kind = ""
            continue
        if _LIST_ITEM.match(line):
            line_kind = "list"
        elif line.strip():
            # A line right under a list item continues it (Markdown's lazy continuation).
            line_kind = "list" if kind == "list" and stop == line_start else "paragraph"
        if line_kind == "blank":
            if kind == "paragraph":
                blocks.append((kind, begin, stop, ""))
                kind = ""
            continue
        if kind and line_kind != kind:
            blocks.append((kind, begin, stop, ""))
            kind = ""
        if not kind:
            kind, begin = line_kind, line_start
        stop = line_start + len(line.rstrip("\n"))
    if kind:
        blocks.append((kind, begin, stop, ""))
    return blocks


def _words(text: str, start: int, end: int) -> int:
    return len(text[start:end].split())


def _word_windows(text: str, start: int, end: int, max_words: int, paragraph: int) -> list[_Unit]:
    """Cut a sentence longer than ``max_words`` at word boundaries."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    return [
        _Unit(words[i][0], words[min(i + max_words, len(words)) - 1][1], min(max_words, len(words) - i), paragraph)
        for i in range(0, len(words), max_words)
    ]


def _units(text: str, max_words: int) -> list[tuple[str, list[_Unit]]]:
    """Return ``(section, units)`` for each stretch of text under one heading."""
    sections: list[tuple[str, list[_Unit]]] = [("", [])]
    paragraph = 0
    for kind, start, end, heading in _blocks(text):
        if kind == "heading":
            sections.append((heading, []))
            continue
        units = sections[-1][1]
        paragraph += 1
        if kind == "paragraph":
            pieces = [_Unit(s, e, _words(text, s, e), paragraph) for s, e in sentence_spans(text, start, end)]
        else:
            items = [m for m in re.finditer(r"[^\n]*", text[start:end]) if _LIST_ITEM.match(m.group())]
            bounds = [start + m.start() for m in items] + [end]
            pieces = [
                _Unit(s, e, _words(text, s, e), paragraph)
                for i in range(len(bounds) - 1)
                if (span := _trim(text, bounds[i], bounds[i + 1]))
                for s, e in [span]
            ]
            intro = units[-1] if units else None
            whole = sum(p.words for p in pieces) + (intro.words if intro else 0)
            # "Experts emphasize the need for:" and its bullets are one thought: keep them together.
            if intro and text[intro.end - 1] == ":" and whole <= max_words:
                units[-1] = _Unit(intro.start, pieces[-1].end, whole, intro.paragraph)
                continue
            if sum(p.words for p in pieces) <= max_words:
                pieces = [_Unit(pieces[0].start, pieces[-1].end, sum(p.words for p in pieces), paragraph)]
        for piece in pieces:
            if piece.words > max_words:
                units.extend(_word_windows(text, piece.start, piece.end, max_words, paragraph))
            else:
                units.append(piece)
    return [(section, units) for section, units in sections if units]


def _pack(units: list[_Unit], max_words: int, overlap: int) -> list[list[_Unit]]:
    """Greedily fill passages with whole units, starting a new one rather than splitting a paragraph."""
    passages: list[list[_Unit]] = []
    current: list[_Unit] = []
    words = 0
    for i, unit in enumerate(units):
        starts_paragraph = i == 0 or units[i - 1].paragraph != unit.paragraph
        if current and starts_paragraph:
            paragraph_words = sum(u.words for u in units[i:] if u.paragraph == unit.paragraph)
            if words + paragraph_words > max_words:
                passages.append(current)
                current, words = [], 0
        if current and words + unit.words > max_words:
            passages.append(current)
            carried = current[-overlap:] if 0 < overlap < len(current) else []
            while carried and sum(u.words for u in carried) + unit.words > max_words:
                carried = carried[1:]
            current, words = list(carried), sum(u.words for u in carried)
        current.append(unit)
        words += unit.words
    if current:
        passages.append(current)
    return passages


def _fit_tokens(
    text: str, units: list[_Unit], count_tokens: Callable[[str], int], max_tokens: int, max_words: int
) -> list[list[_Unit]]:
    """Halve a passage until the model reads all of it (nothing is cut off silently) and it is of a length to read."""
    start, end = units[0].start, units[-1].end
    # Not even counted when far too long: a run of letters the model reads as one unknown token can be megabytes.
    tokens = count_tokens(text[start:end]) if end - start <= max_passage_chars(max_words) else None
    if tokens is not None and tokens <= max_tokens:
        return [units]
    if len(units) == 1:
        unit = units[0]
        if unit.words <= 1:  # text without spaces (Chinese, Japanese, a long URL): cut between characters
            pieces = _char_windows(text, unit, tokens, max_tokens, max_passage_chars(max_words))
            return [p for piece in pieces for p in _fit_tokens(text, [piece], count_tokens, max_tokens, max_words)]
        halves = _word_windows(text, unit.start, unit.end, (unit.words + 1) // 2, unit.paragraph)
        return [p for half in halves for p in _fit_tokens(text, [half], count_tokens, max_tokens, max_words)]
    middle = len(units) // 2
    return _fit_tokens(text, units[:middle], count_tokens, max_tokens, max_words) + _fit_tokens(
        text, units[middle:], count_tokens, max_tokens, max_words
    )


def max_passage_chars(max_words: int) -> int:
    """The most characters a passage holds: several times the length of ``max_words`` ordinary words."""
    return max(4_000, 20 * max_words)


def _char_windows(text: str, unit: _Unit, tokens: int | None, max_tokens: int, max_chars: int) -> list[_Unit]:
    """Cut one word into pieces of about four fifths of ``max_tokens`` tokens and at most ``max_chars`` characters.

    ``tokens`` is the word's token count, or ``None`` when it was too long to count. A letter's accents stay on it.
    """
    length = unit.end - unit.start
    if length <= 1:
        raise ValueError(
            f"the character at offset {unit.start} alone is longer than the model's {max_tokens} tokens; "
            "remove it from the document or use a model with a longer input"
        )
    size = min((length + 1) // 2, max_chars)
    if tokens:
        size = min(size, length * max_tokens * 4 // (tokens * 5))
    size = max(1, size)
    for keep_accents in (True, False):  # a "letter" of nothing but accents is cut through at last
        pieces: list[_Unit] = []
        start = unit.start
        while start < unit.end:
            stop = min(start + size, unit.end)
            while keep_accents and stop < unit.end and unicodedata.combining(text[stop]):
                stop += 1
            pieces.append(_Unit(start, stop, 1, unit.paragraph))
            start = stop
        if len(pieces) > 1:
            break
    return pieces


def split_document(
    text: str,
    *,
    max_words: int = DEFAULT_MAX_WORDS,
    overlap: int = DEFAULT_OVERLAP,
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> list[Span]:
    """Split a document into passages of whole sentences, each under one heading.

    Args:
        text: The document, plain text or Markdown (``#`` headings, ``-``/``1.`` list items).
        max_words: The most words a passage holds; a single longer sentence is cut at word boundaries. With
            ``count_tokens``, a passage also holds at most ``max_passage_chars(max_words)`` characters, and
            text without spaces longer than that, or than the model reads, is cut between characters.
        overlap: How many sentences a passage repeats from the one before it in the same section.
        max_tokens: With ``count_tokens``, the most tokens a passage may have (the model's input length).
        count_tokens: Counts the model's tokens in a string; passages over ``max_tokens`` are split further.

    Returns:
        The passages in document order; ``text[span.start:span.end]`` is each passage's text.

    Example:
        >>> [text[s.start:s.end] for s in split_document(text := "# Intro\\n\\nOne. Two.")]
        ['One. Two.']
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(max_words, int) or max_words < 1:
        raise ValueError(f"max_words must be a positive whole number; got {max_words!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < max_words:
        raise ValueError(f"overlap must be in [0, max_words); got overlap={overlap!r}, max_words={max_words}")
    if (max_tokens is None) != (count_tokens is None):
        raise ValueError("give max_tokens and count_tokens together, or neither")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be positive; got {max_tokens}")
    spans: list[Span] = []
    for section, units in _units(text, max_words):
        for passage in _pack(units, max_words, overlap):
            pieces = [passage]
            if count_tokens is not None and max_tokens is not None:
                pieces = _fit_tokens(text, passage, count_tokens, max_tokens, max_words)
            spans.extend(Span(piece[0].start, piece[-1].end, section) for piece in pieces)
    return spans


def split_text(text: str, *, max_words: int = DEFAULT_MAX_WORDS, overlap: int = DEFAULT_OVERLAP) -> list[str]:
    """The texts of :func:`split_document`'s passages."""
    return [text[s.start : s.end] for s in split_document(text, max_words=max_words, overlap=overlap)]


_BLOCK_START = re.compile(r"\n[ \t]*\n|\n(?=[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S)")


def passage_sentences(text: str) -> list[tuple[int, int]]:
    """The sentences of a passage as ``(start, end)`` offsets: what a highlight can mark.

    Paragraphs and list items are cut apart first, so a bullet is a sentence of its own, except under a
    lead-in that ends with a colon: "Experts emphasize the need for:" and its items are one thought,
    and one sentence, so the highlight that marks it carries the list.
    """
    spans: list[tuple[int, int]] = []
    leading = False  # whether the last span is a lead-in (with the items gathered so far)
    bounds = [0, *(m.end() for m in _BLOCK_START.finditer(text))]
    stops = [m.start() for m in _BLOCK_START.finditer(text)] + [len(text)]
    for begin, stop in zip(bounds, stops, strict=True):
        block = sentence_spans(text, begin, stop)
        if not block:
            continue
        if leading and _LIST_ITEM.match(text, begin):
            spans[-1] = (spans[-1][0], block[-1][1])
            continue
        spans.extend(block)
        leading = text[block[-1][1] - 1] == ":"
    return spans


_DEFINITION = re.compile(r"((?:[A-Z][\w’'-]*[ \t]+(?:(?:of|for|and|the|on|in)[ \t]+)?){1,7})\(([A-Z][A-Za-z]{1,9})\)")


def acronym_definitions(text: str) -> dict[str, str]:
    """Acronyms a document defines, as in "the Nuclear Non-Proliferation Treaty (NPT)": ``{"NPT": "Nuclear ..."}``.

    A later passage that says only "NPT" can then be found by the words of its long form.
    """
    found: dict[str, str] = {}
    for match in _DEFINITION.finditer(text):
        words, acronym = match.group(1).split(), match.group(2)
        capitals = [part[0] for word in words for part in re.split(r"[-’']", word) if part and part[0].isupper()]
        # Keep the shortest tail of the capitalised words whose initials spell the acronym.
        letters = [c for c in acronym if c.isupper()]
        for size in range(len(letters), len(capitals) + 1):
            if capitals[-size:] and _spells(capitals[-size:], letters):
                long_form = _tail_words(words, size)
                found.setdefault(acronym, long_form)
                break
    return found


def _spells(initials: list[str], letters: list[str]) -> bool:
    """Whether ``letters`` is a subsequence of ``initials`` that starts with the first initial."""
    if not initials or initials[0] != letters[0]:
        return False
    position = 0
    for initial in initials:
        if position < len(letters) and initial == letters[position]:
            position += 1
    return position == len(letters)


def _tail_words(words: list[str], capitals: int) -> str:
    seen, kept = 0, []
    for word in reversed(words):
        kept.append(word)
        seen += sum(1 for part in re.split(r"[-’']", word) if part and part[0].isupper())
        if seen >= capitals:
            break
    return " ".join(reversed(kept))
