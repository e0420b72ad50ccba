"""Short answers: reduction to new information, locating spans in sources, citing them."""

from __future__ import annotations

import pytest

from rag.verify.spans import locate, new_information, short_answer

SOURCES = [
    "The Broncos beat the Pittsburgh Steelers in the divisional round, 23–16.",
    "The Panthers defense gave up just 308 points, ranking sixth in the league. "
    "Kawann Short led the team in sacks with 11.",
]


@pytest.mark.parametrize(
    ("question", "answer", "expected"),
    [
        ("How many points did the Panthers defense surrender?", "The Panthers defense surrendered 308 points.", "308"),
        ("Who led the Panthers in sacks?", "Kawann Short led the Panthers in sacks.", "Kawann Short"),
        ("What is it?", "", ""),
        ("Where is Paris?", "Paris.", "Paris."),  # nothing new: the sentence is kept
    ],
)
def test_new_information_drops_words_of_the_question(question: str, answer: str, expected: str) -> None:
    assert new_information(question, answer) == expected


def test_locate_ignores_case_dashes_and_spacing_and_returns_source_offsets() -> None:
    n, start, end = locate("23-16", SOURCES)
    assert (n, SOURCES[0][start:end]) == (1, "23–16")
    n, start, end = locate("kawann   SHORT", SOURCES)
    assert (n, SOURCES[1][start:end]) == (2, "Kawann Short")


def test_locate_needs_word_boundaries_and_prefers_cited_sources() -> None:
    assert locate("30", SOURCES) is None  # inside "308", not a word of its own
    assert locate("the", SOURCES)[0] == 1
    assert locate("the", SOURCES, prefer=[2])[0] == 2
    assert locate("", SOURCES) is None


def test_short_answer_cuts_a_sentence_to_the_cited_span() -> None:
    span = short_answer("Who led the Panthers in sacks?", "Kawann Short led the Panthers in sacks [2].", SOURCES)
    assert (span.text, span.source, span.located) == ("Kawann Short", 2, True)


def test_short_answer_cites_the_source_that_holds_an_uncited_span() -> None:
    span = short_answer("What was the score against the Steelers?", "23-16", SOURCES)
    assert (span.text, span.source, span.located) == ("23–16", 1, True)


def test_short_answer_keeps_an_unlocated_reply_with_its_valid_citation() -> None:
    span = short_answer("Who won?", "The Chicago Bears [2] [9]", SOURCES)
    assert (span.text, span.source, span.located) == ("Chicago Bears", 2, False)  # edge function words go
    span = short_answer("Who won?", "The Chicago Bears [9]", SOURCES)
    assert span.source is None
