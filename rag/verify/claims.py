"""Split a generated answer into sentences (claims), parse their citation markers, and tell framing from claims."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

MAX_RANGE = 50
"""A range marker ``[a-b]`` wider than this yields only its two ends (guards against ``[1-100000]``)."""


@dataclass(frozen=True)
class ClaimText:
    """One sentence of an answer before verification.

    Attributes:
        text: the sentence without citation markers, whitespace collapsed.
        citations: cited source numbers in order of first appearance, no repeats.
        start: offset of the sentence (markers included) in the answer.
        end: end offset (exclusive) in the answer.
    """

    text: str
    citations: tuple[int, ...]
    start: int
    end: int


_NUM_LIST = r"(?:sources?\s*)?\d+(?:\s*(?:,|;|-|–|and)\s*(?:sources?\s*)?\d+)*"
# [1], [1, 2], [1-3], [Source 2], 【1】
_MARKER = re.compile(rf"\[\s*({_NUM_LIST})\s*\]|【\s*({_NUM_LIST})\s*】", re.IGNORECASE)
_MARKER_RUN = re.compile(rf"(?:\s*(?:{_MARKER.pattern}))+", re.IGNORECASE)
_RANGE = re.compile(r"(\d+)\s*[-–]\s*(\d+)")
_TERMINAL = re.compile(r"[.!?。！？]+")
_CLOSERS = "\"'”’)»"
_LIST_PREFIX = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])\s+")
_LAST_TOKEN = re.compile(r"(\S+)$")
_HAS_WORD = re.compile(r"\w")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?。！？)\]])")
_SPACES = re.compile(r"\s+")
_INITIALS = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
# Words that a period follows without ending the sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st sr jr vs v e.g i.e eg ie al cf fig figs approx ca no nos vol pp p op gen col lt "
    "sgt rev hon dept est".split()
)


_INTERJECTION = r"(?:sure|certainly|of\s+course|absolutely|okay|ok|great|gladly|happy\s+to\s+help|no\s+problem)"
_FRAMING = re.compile(
    rf"^(?:{_INTERJECTION}[!.,]*"
    rf"|(?:{_INTERJECTION}[!.,]*\s+)?(?:here\s+is|here['’]s|here\s+are|below\s+is|the\s+following\s+is)\b[^:]*:)$",
    re.IGNORECASE,
)
MAX_FRAMING_WORDS = 16
"""Longest sentence :func:`is_framing` may take for framing: a longer one says something of its own."""


def is_framing(text: str) -> bool:
    """Whether a sentence only frames the answer and states nothing a source could support.

    Chat-tuned generators open with an interjection ("Sure!", "Certainly.") or announce what
    follows ("Here is a summary of the article in 79 words:", "Here's what the sources say:").
    Such a sentence is not a claim: scored as one it fails (it is in no source, and its word
    count is a number the source lacks) and marks a faithful answer unfaithful. "Yes." and "No."
    are answers, not framing, and an announcement counts only when it ends with its colon.

    Example:
        >>> [is_framing(t) for t in ("Sure!", "Here is a summary of the article in 79 words:", "Yes.")]
        [True, True, False]
        >>> is_framing("Here is the office of the CEO: building 3.")
        False
    """
    stripped = text.strip()
    return len(stripped.split()) <= MAX_FRAMING_WORDS and _FRAMING.match(stripped) is not None


def parse_citations(marker_text: str) -> tuple[int, ...]:
    """Source numbers named by the markers in a piece of text.

    Args:
        marker_text: text holding markers such as ``[1]``, ``[1, 2]``, ``[1-3]`` or ``【1】``.

    Returns:
        The numbers in order of first appearance, without repeats.
    """
    seen: dict[int, None] = {}
    for m in _MARKER.finditer(marker_text):
        inner = m.group(1) or m.group(2)
        for part in re.split(r"\s*(?:,|;|and)\s*", inner, flags=re.IGNORECASE):
            part = re.sub(r"(?i)sources?\s*", "", part)
            rng = _RANGE.fullmatch(part)
            if rng:
                a, b = int(rng.group(1)), int(rng.group(2))
                nums = range(a, b + 1) if 0 <= b - a <= MAX_RANGE else (a, b)
            else:
                nums = (int(d) for d in re.findall(r"\d+", part))
            for n in nums:
                seen.setdefault(n, None)
    return tuple(seen)


def rewrite_citations(text: str, keep: Callable[[int], int | None]) -> str:
    """The text with each cited number mapped by ``keep``: a number, or None to drop it.

    A marker whose numbers are all dropped is removed with the space before it; one whose numbers
    map to the same source keeps it once. Other text is unchanged.

    Args:
        text: text holding markers such as ``[1]``, ``[1, 9]`` or ``[2-3]``.
        keep: maps a cited number to the number to show, or None.
    """

    def one(m: re.Match[str]) -> str:
        nums = [k for n in parse_citations(m.group(0).strip()) if (k := keep(n)) is not None]
        nums = list(dict.fromkeys(nums))
        if not nums:
            return ""
        lead = m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip())]
        return lead + "".join(f"[{n}]" for n in nums)

    return re.sub(rf"\s*(?:{_MARKER.pattern})", one, text, flags=re.IGNORECASE)


def strip_citations(text: str) -> str:
    """The text without citation markers, whitespace collapsed and no space before punctuation."""
    text = _MARKER.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def _ends_sentence(line: str, seg_start: int, dot: int, punct: str, next_char: str) -> bool:
    """Whether terminal punctuation at ``dot`` ends a sentence (only ``.`` is ambiguous)."""
    if "." not in punct or len(punct) > 1:
        return True
    before = line[seg_start:dot]
    m = _LAST_TOKEN.search(before)
    if m is None:
        return False
    token = m.group(1).lstrip("([{\"'“‘")
    if token.lower() in _ABBREVIATIONS or _INITIALS.fullmatch(token):
        return False
    if len(token) == 1 and token.isupper():  # an initial, as in "J. Smith"
        return False
    if token.isdigit() and len(token) <= 2:  # list numbering: "1. Mix", "Steps: 2. Bake"
        head = before[: m.start()].rstrip()
        if not head or head.endswith((":", ";")):
            return False
    return not next_char.islower()


def _sentence_spans(line: str, start: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    seg_start = start
    for m in _TERMINAL.finditer(line, start):
        j = m.end()
        while j < len(line) and line[j] in _CLOSERS:
            j += 1
        run = _MARKER_RUN.match(line, j)
        if run:  # markers right after the sentence end belong to it: "fast. [2] Next"
            j = run.end()
        elif j < len(line) and not line[j].isspace():
            continue  # "3.5", "e.g.x", "example.com"
        rest = line[j:].lstrip()
        if not rest:
            break
        if not _ends_sentence(line, seg_start, m.start(), m.group(), rest[0]):
            continue
        spans.append((seg_start, j))
        seg_start = j
    if line[seg_start:].strip():
        spans.append((seg_start, len(line)))
    return spans


def split_claims(answer: str) -> list[ClaimText]:
    """Split an answer into claims, one per sentence, with their cited numbers.

    Every line break ends a sentence, and list bullets or numbers at the start
    of a line are dropped. A period does not end a sentence inside a number
    (``3.5``), after an abbreviation (``e.g.``, ``et al.``, ``Dr.``), an initial,
    a list number, or before a lowercase word. Markers that directly follow a
    sentence end belong to that sentence. A fragment made only of markers adds
    its numbers to the previous claim; empty fragments are dropped.

    Args:
        answer: the generated answer.

    Returns:
        The claims in answer order.
    """
    claims: list[ClaimText] = []
    offset = 0
    for line in answer.splitlines(keepends=True):
        prefix = _LIST_PREFIX.match(line)
        for s, e in _sentence_spans(line, prefix.end() if prefix else 0):
            raw = line[s:e]
            text = _LIST_PREFIX.sub("", strip_citations(raw))
            cites = parse_citations(raw)
            if _HAS_WORD.search(_MARKER.sub("", raw)) is None:
                if cites and claims:
                    prev = claims[-1]
                    merged = tuple(dict.fromkeys(prev.citations + cites))
                    claims[-1] = ClaimText(prev.text, merged, prev.start, offset + e)
                continue
            start = offset + s + (len(raw) - len(raw.lstrip()))
            claims.append(ClaimText(text, cites, start, offset + len(raw.rstrip()) + s))
        offset += len(line)
    return claims
