"""Short answers (answer style ``short``): ground the model's reply in a span of its sources.

A 0.5B model asked for "the shortest exact phrase" still often answers with a sentence that
restates the question ("Luke Kuechly registered 118 tackles"), or copies the phrase with a
different dash or case ("20-18" for "20–18"). Extractive question answering scores spans, and
a span found in a source can be cited and checked exactly, so the reply is reduced to the
words that answer the question and, where they occur in a source, replaced by the source's own
characters and cited to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.verify.claims import parse_citations, strip_citations

_TOKEN = re.compile(r"\S+")
_EDGE_PUNCT = "\"'“”‘’.,;:!?()[]"
_FUNCTION_WORDS = frozenset(
    "a an the is are was were be been being of in on at to for by with from as and or that which who whom whose "
    "it its this these those there their they he she his her has have had do does did".split()
)
# Characters that models and sources write in several ways: every dash as "-", curly quotes straight.
_FOLD = str.maketrans({"‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "−": "-",
                       "’": "'", "‘": "'", "“": '"', "”": '"'})
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Span:
    """A short answer.

    Attributes:
        text: the answer; a source's exact characters when it was found in one.
        source: the 1-based number of the source it was found in (or that the reply cited), else None.
        located: whether ``text`` was found in that source.
    """

    text: str
    source: int | None
    located: bool


def _stem(word: str) -> str:
    word = word.lower().strip(_EDGE_PUNCT)
    return word[:5] if len(word) > 5 else word


def new_information(question: str, answer: str) -> str:
    """Reduce an answer sentence to the words that do not restate the question.

    Answers restate the question ("The Panthers defense surrendered 308 points") while the
    answer is the new part ("308"). This keeps the first sentence, marks every content word
    whose 5-letter prefix occurs in the question as restating, and returns the longest run of
    words that contains no restating word (function words inside the run are kept, at its edges
    dropped). When every word restates the question, the first sentence is returned unchanged.

    Args:
        question: the question.
        answer: the answer text, citation markers already removed.

    Returns:
        The reduced answer (may equal the input).
    """
    sentence = re.split(r"(?<=[.!?])\s+", answer.strip(), maxsplit=1)[0]
    words = _TOKEN.findall(sentence)
    asked = {_stem(w) for w in _TOKEN.findall(question)} - _FUNCTION_WORDS
    best: tuple[int, int] = (0, 0)
    start = None
    for i, word in enumerate([*words, ""]):
        restates = i == len(words) or _stem(word) in asked or not word.strip(_EDGE_PUNCT)
        if restates:
            if start is not None:
                lo, hi = start, i
                while lo < hi and _stem(words[lo]) in _FUNCTION_WORDS:
                    lo += 1
                while hi > lo and _stem(words[hi - 1]) in _FUNCTION_WORDS:
                    hi -= 1
                if hi - lo > best[1] - best[0]:
                    best = (lo, hi)
            start = None
        elif start is None:
            start = i
    if best[1] == best[0]:
        return sentence
    return " ".join(words[best[0] : best[1]]).strip(_EDGE_PUNCT)


def _folded(text: str) -> tuple[str, list[int]]:
    """``text`` case- and dash-folded with runs of space as one space, and each folded char's offset in ``text``."""
    out: list[str] = []
    offsets: list[int] = []
    for m in re.finditer(r"\s+|\S", text):
        ch = m.group()
        if ch[0].isspace():
            if out and out[-1] != " ":
                out.append(" ")
                offsets.append(m.start())
            continue
        for c in ch.translate(_FOLD).casefold():
            out.append(c)
            offsets.append(m.start())
    return "".join(out), offsets


def locate(phrase: str, sources: Sequence[str], prefer: Sequence[int] = ()) -> tuple[int, int, int] | None:
    """Find a phrase in the sources, ignoring case, dash and quote variants and spacing.

    The match must start and end at word boundaries. Sources in ``prefer`` (1-based, e.g. the
    ones the reply cited) are searched first, then the rest in order.

    Returns:
        ``(source number, start, end)`` with character offsets into that source, or None.
    """
    needle = _SPACE.sub(" ", phrase.translate(_FOLD).casefold()).strip()
    if not needle:
        return None
    order = [n for n in dict.fromkeys(prefer) if 1 <= n <= len(sources)]
    order += [n for n in range(1, len(sources) + 1) if n not in order]
    pattern = re.compile(rf"(?<!\w){re.escape(needle)}(?!\w)")
    for n in order:
        text = sources[n - 1]
        folded, offsets = _folded(text)
        m = pattern.search(folded)
        if m:
            start = offsets[m.start()]
            end = offsets[m.end() - 1] + 1
            return n, start, end
    return None


def short_answer(question: str, reply: str, sources: Sequence[str]) -> Span:
    """The span that answers ``question``, from a model's ``reply`` over numbered ``sources``.

    Tries, in order, the reply reduced to its new information and the whole reply (citation
    markers and edge punctuation removed); the first one found in a source (cited ones first) is
    returned with that source's exact characters. When neither is found, the reduced reply is
    returned with the first valid source the reply cited, unlocated.

    Args:
        question: the question asked.
        reply: the model's reply, possibly with ``[n]`` markers.
        sources: the packed sources' texts; ``sources[i]`` is source ``i + 1``.

    Returns:
        The answer span.
    """
    cited = [n for n in parse_citations(reply) if 1 <= n <= len(sources)]
    plain = strip_citations(reply).strip().strip(_EDGE_PUNCT).strip()
    reduced = new_information(question, plain).strip(_EDGE_PUNCT).strip() if plain else ""
    for candidate in dict.fromkeys(c for c in (reduced, plain) if c):
        found = locate(candidate, sources, cited)
        if found is not None:
            n, start, end = found
            return Span(sources[n - 1][start:end], n, True)
    return Span(reduced or plain, cited[0] if cited else None, False)
