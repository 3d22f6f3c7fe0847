"""Passages: structure of the article, and properties that hold for any text."""

from __future__ import annotations

import itertools
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


def test_passage_sentences_cut_list_items_apart_but_keep_them_with_their_lead_in() -> None:
    text = (
        "Experts emphasize the need for:\n- One thing\n- Another thing\n\nA new paragraph. Its second sentence.\n"
        "- A bullet with no lead-in.\n- Another. In two sentences.\n\nThey list:\n\n1. First\n2. Second\n\nThe end."
    )
    assert [text[s:e] for s, e in passage_sentences(text)] == [
        "Experts emphasize the need for:\n- One thing\n- Another thing",
        "A new paragraph.",
        "Its second sentence.",
        "- A bullet with no lead-in.",
        "- Another.",
        "In two sentences.",
        "They list:\n\n1. First\n2. Second",
        "The end.",
    ]


def _numbers(passage: str) -> list[int]:
    return [int(n) for n in re.findall(r"Sentence number (\d+)", passage)]


def test_overlap_repeats_exactly_n_sentences_in_order() -> None:
    text = " ".join(f"Sentence number {i} has six words." for i in range(40))
    assert [_numbers(p) for p in split_text(text, max_words=30)] == [list(range(s, s + 5)) for s in range(0, 40, 5)]
    # Each passage starts with the last `overlap` sentences of the one before, then as many new ones as fit.
    for overlap in (1, 2, 3):
        new = 5 - overlap
        expected = [list(range(s, min(s + 5, 40))) for s in range(0, 40 - overlap, new)]
        assert [_numbers(p) for p in split_text(text, max_words=30, overlap=overlap)] == expected, overlap


def test_overlap_never_reaches_into_another_paragraph() -> None:
    paragraphs = [" ".join(f"Sentence number {i} has six words." for i in range(p, p + 8)) for p in (0, 8)]
    passages = split_text("\n\n".join(paragraphs), max_words=30, overlap=2)
    assert [_numbers(p) for p in passages] == [
        [0, 1, 2, 3, 4],
        [3, 4, 5, 6, 7],
        [8, 9, 10, 11, 12],
        [11, 12, 13, 14, 15],
    ]


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
    reach = 0  # where the text passages have covered so far ends
    for span in spans:
        passage = text[span.start : span.end]
        # Offsets slice back exactly, with no white space at the edges and never an empty passage.
        assert passage and passage == passage.strip()
        # No passage over the limits.
        assert len(passage.split()) <= max_words
        assert encoder.count_tokens(passage) <= 256
        # A passage may begin inside what came before (the sentences it repeats) only with overlap.
        assert span.start >= reach or overlap > 0
        covered.extend(text[max(span.start, reach) : span.end].split())
        reach = max(reach, span.end)
    # Every word not in a heading lies in a passage, in order, and apart from repeats in exactly one.
    assert covered == _words_outside_headings(text)


_VOCABULARY = ["river", "stone", "light", "garden", "winter", "signal", "market", "window", "harbor", "seven"]
_SENTENCE_WORDS = 8
_sentence = st.builds(
    lambda words, end: " ".join([words[0].capitalize(), *words[1:]]) + end,
    st.lists(st.sampled_from(_VOCABULARY), min_size=2, max_size=_SENTENCE_WORDS),
    st.sampled_from(".!?"),
)


@settings(max_examples=150, deadline=None)
@given(
    paragraphs=st.lists(st.lists(_sentence, min_size=1, max_size=12), min_size=1, max_size=5),
    overlap=st.integers(1, 3),
    spare=st.integers(0, 20),
)
def test_overlap_repeats_exactly_n_sentences_inside_a_paragraph(
    paragraphs: list[list[str]], overlap: int, spare: int
) -> None:
    # Room for the repeated sentences and one more, so that the repeat is never cut short.
    max_words = (overlap + 1) * _SENTENCE_WORDS + spare
    text = ""
    sentences: list[tuple[int, int]] = []
    starts_paragraph: list[bool] = []
    for paragraph in paragraphs:
        text += "\n\n" if text else ""
        for i, sentence in enumerate(paragraph):
            text += " " if i else ""
            sentences.append((len(text), len(text) + len(sentence)))
            starts_paragraph.append(i == 0)
            text += sentence
    assert sentence_spans(text) == sentences  # the sentences are the ones written
    runs: list[tuple[int, int]] = []  # each passage as (first sentence, last sentence)
    for span in split_document(text, max_words=max_words, overlap=overlap):
        first = next(i for i, (start, _) in enumerate(sentences) if start == span.start)
        last = next(i for i, (_, end) in enumerate(sentences) if end == span.end)
        runs.append((first, last))
    assert runs[0][0] == 0 and runs[-1][1] == len(sentences) - 1
    for (_, last), (first, next_last) in itertools.pairwise(runs):
        assert next_last > last
        # A passage that goes on with a paragraph repeats exactly `overlap` sentences; one that starts a paragraph none.
        repeated = 0 if starts_paragraph[last + 1] else overlap
        assert first == last + 1 - repeated, (runs, starts_paragraph)
