"""Passages: structure of the article, and properties that hold for any text."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.embedding import Encoder
from qa.splitting import passage_sentences, sentence_spans, split_document, split_text
from tests.conftest import CORPUS

ARTICLE = (CORPUS / "putin-bush-pakistan-nuclear.md").read_text(encoding="utf-8")
HEADINGS = ["Background", "The Global Impact", "Reactions from the World Stage", "What Comes Next?"]


def test_article_sections_come_from_headings_and_headings_are_never_passages() -> None:
    spans = split_document(ARTICLE)
    sections = [s.section for s in spans]
    assert [h for h in HEADINGS if h in sections] == HEADINGS
    for span in spans:
        text = ARTICLE[span.start : span.end]
        assert not text.lstrip().startswith("#")
        assert text.strip() not in HEADINGS
    npt = next(s for s in spans if "not a signatory to the NPT" in ARTICLE[s.start : s.end])
    assert npt.section == "The Global Impact"


def test_list_stays_with_the_sentence_that_introduces_it() -> None:
    texts = split_text(ARTICLE)
    holder = [t for t in texts if "Experts emphasize the need for:" in t]
    assert len(holder) == 1
    for item in (
        "Sustained multilateral engagement",
        "Enhanced intelligence sharing",
        "Strengthening of international",
    ):
        assert item in holder[0]


def test_passages_end_at_sentence_boundaries() -> None:
    ends = {end for _, end in passage_sentences(ARTICLE)}
    starts = {start for start, _ in passage_sentences(ARTICLE)}
    for span in split_document(ARTICLE):
        assert span.start in starts and span.end in ends, ARTICLE[span.start : span.end]


def test_sentences_handle_abbreviations_and_initials() -> None:
    text = "Then U.S. President George W. Bush met Mr. Putin. It was e.g. private. Dr. Smith agreed! Did he? Yes."
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Then U.S. President George W. Bush met Mr. Putin.",
        "It was e.g. private.",
        "Dr. Smith agreed!",
        "Did he?",
        "Yes.",
    ]


def test_passage_sentences_cut_list_items_apart() -> None:
    text = "Experts emphasize the need for:\n- One thing\n- Another thing\n\nA new paragraph. Its second sentence."
    assert [text[s:e] for s, e in passage_sentences(text)] == [
        "Experts emphasize the need for:",
        "- One thing",
        "- Another thing",
        "A new paragraph.",
        "Its second sentence.",
    ]


def test_overlap_repeats_sentences_within_a_section() -> None:
    text = " ".join(f"Sentence number {i} has five words." for i in range(40))
    plain = split_text(text, max_words=30)
    overlapped = split_text(text, max_words=30, overlap=2)
    assert len(overlapped) > len(plain)
    first_tail = sentence_spans(overlapped[0])[-1]
    assert overlapped[1].startswith(overlapped[0][first_tail[0] : first_tail[1]]) or overlapped[1].startswith(
        overlapped[0].split(". ")[-2]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_words": 0}, "max_words must be a positive whole number"),
        ({"overlap": -1}, "overlap must be in [0, max_words)"),
        ({"max_words": 5, "overlap": 5}, "overlap must be in [0, max_words)"),
        ({"max_tokens": 10}, "give max_tokens and count_tokens together"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        split_document("Some text.", **kwargs)  # type: ignore[arg-type]


def test_a_sentence_over_the_token_limit_is_split_not_truncated(encoder: Encoder) -> None:
    # Rare long words take many word-piece tokens: 100 words can exceed 254 tokens.
    text = " ".join(["Pneumonoultramicroscopicsilicovolcanoconiosis-xq7"] * 100) + "."
    spans = split_document(text, max_words=100, max_tokens=254, count_tokens=lambda t: encoder.count_tokens(t) - 2)
    assert len(spans) > 1
    assert all(encoder.count_tokens(text[s.start : s.end]) <= 256 for s in spans)
    assert " ".join(text[s.start : s.end] for s in spans).split() == text.split()


_line = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80),
    st.from_regex(r"#{1,3} [A-Z][a-z]{2,8}", fullmatch=True),
    st.from_regex(r"- [a-z]{1,10}( [a-z]{1,10}){0,4}", fullmatch=True),
    st.from_regex(r"[A-Z][a-z]{1,8}( [a-z]{1,10}){2,12}[.?!:]", fullmatch=True),
    st.just(""),
)
documents = st.lists(_line, max_size=30).map("\n".join)


def _words_outside_headings(text: str) -> list[str]:
    return [w for line in text.split("\n") if not re.match(r" {0,3}#{1,6}[ \t]+\S", line) for w in line.split()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=documents, max_words=st.integers(3, 60), overlap=st.integers(0, 3))
def test_split_properties(text: str, max_words: int, overlap: int, encoder: Encoder) -> None:
    overlap = min(overlap, max_words - 1)
    kwargs = {"max_words": max_words, "overlap": overlap, "max_tokens": 254}
    spans = split_document(text, **kwargs, count_tokens=lambda t: encoder.count_tokens(t) - 2)
    # Deterministic.
    assert spans == split_document(text, **kwargs, count_tokens=lambda t: encoder.count_tokens(t) - 2)
    covered: list[str] = []
    for span in spans:
        passage = text[span.start : span.end]
        # Offsets slice back exactly, with no white space at the edges and never an empty passage.
        assert passage and passage == passage.strip()
        # No passage over the limits.
        assert len(passage.split()) <= max_words
        assert encoder.count_tokens(passage) <= 256
        covered.extend(passage.split())
    # Every sentence (every word not in a heading) lies in some passage, in order.
    words = _words_outside_headings(text)
    if overlap == 0:
        assert covered == words
    else:
        assert set(words) <= set(covered)
