"""The words of a claim or source: sentences, content words, names and numbers.

Shared by the support scorers (:mod:`rag.verify.support`, :mod:`rag.verify.model`) and
the checks no model overrides (:mod:`rag.verify.checks`). Consistency matters here, not
linguistics: the same light stemmer runs on both sides of every comparison.
"""

from __future__ import annotations

import re

from rag.verify.claims import split_claims


def sentence_spans(text: str, limit: int = 64) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (at most ``limit``), in order.

    Example:
        >>> sentence_spans("Parking is free. Bikes too!")
        [(0, 16), (17, 27)]
    """
    return [(c.start, c.end) for c in split_claims(text)[:limit]]


_STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from into onto over under about as
    is are was were be been being am do does did done has have had having it its it's this that these those
    there here which who whom whose what when where why how than too very can could may might must shall
    should will would not no nor so such also only just both each either neither all any some many much
    more most other another same own he she they them their his her him we us our you your i me my
    one ones up down out off again further once s t based according source sources provided
    between during after before while until since within without via per among""".split()
)
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?:\s*(%|percent\b|per cent\b))?", re.IGNORECASE)
_ACRONYM = re.compile(r"^[A-Z0-9]{2,}s?$")
_DOUBLED = re.compile(r"([b-df-hj-km-np-rtv-y])\1$")
"""A doubled final consonant left by a stripped suffix ("skipp", "plann"); ll, ss and zz stay ("fill", "pass")."""
_SUFFIXES = (
    "ingly", "edly", "ations", "ation", "ments", "ment", "ness", "ings", "ing", "ers", "er", "ed", "es", "ly", "s"
)


def stem(word: str) -> str:
    """Lowercase, strip one common English suffix, then a final e of a longer word (consistency matters, not linguistics).

    Example:
        >>> [stem(w) for w in ("require", "requires", "Required", "parked", "free", "skipped", "skips", "filled")]
        ['requir', 'requir', 'requir', 'park', 'free', 'skip', 'skip', 'fill']
    """
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ed", "ing", "ings", "edly", "ingly") and len(word) > 3 and _DOUBLED.search(word):
                word = word[:-1]  # "skipped" and "skips" both become "skip"
            break
    # "require", "requires" and "required" all become "requir"; short words ("free", "make") keep their e.
    return word[:-1] if len(word) > 4 and word.endswith("e") else word


_UNITS = {
    w: float(i)
    for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                          "fifteen sixteen seventeen eighteen nineteen".split())
}
_TENS = {w: float(10 * i) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_ONES = [w for w in _UNITS if 1 <= _UNITS[w] <= 9]
_ALONE = [w for w in _UNITS if _UNITS[w] >= 2]
_NUMBER_WORD = re.compile(
    rf"\b(?:({'|'.join(_TENS)})(?:[-\s]({'|'.join(_ONES)})\b)?|({'|'.join(_ALONE)}))\b", re.IGNORECASE
)
"""Number words from two to ninety-nine. "one" and "zero" stand alone too often for something else
("one of the", "zero tolerance") to be taken for numbers; "twenty-one" is 21."""


def numbers(text: str) -> set[float]:
    """Numeric values in a text: ``1,887`` is 1887, ``3.50`` is 3.5, ``53%`` and ``53 percent`` are 53,
    ``six`` is 6 and ``twenty-five`` 25 (number words from two to ninety-nine).

    Example:
        >>> sorted(numbers("Six of the 1,200 staff, 3.5% of twenty-five"))
        [3.5, 6.0, 25.0, 1200.0]
    """
    values = set()
    for m in _NUMBER.finditer(text):
        whole = m.group(1).replace(",", "")
        values.add(float(f"{whole}.{m.group(2)}" if m.group(2) else whole))
    for m in _NUMBER_WORD.finditer(text):
        if m.group(1):
            values.add(_TENS[m.group(1).lower()] + (_UNITS[m.group(2).lower()] if m.group(2) else 0.0))
        else:
            values.add(_UNITS[m.group(3).lower()])
    return values


def content_words(text: str) -> set[str]:
    return {stem(t) for t in _TOKEN.findall(text) if t.lower() not in _STOPWORDS and not t.isdigit()}


def entities(text: str) -> set[str]:
    """Capitalised words and acronyms that are not stopwords, stemmed."""
    return {
        stem(t)
        for t in _TOKEN.findall(text)
        if (t[0].isupper() or _ACRONYM.match(t)) and t.lower() not in _STOPWORDS and not t.isdigit()
    }


def claim_names(claim: str) -> set[str]:
    """The names of a claim checked against its source: capitalised words and acronyms, stemmed.

    The first word is left out unless it is an acronym: a sentence's first word is
    capitalised whatever it is ("Additionally", "Officials").
    """
    first, _, rest = claim.strip().partition(" ")
    names = entities(rest)
    if first and first.strip("\"'“‘(").isupper() and len(first.strip("\"'“‘(.,")) > 1:
        names |= entities(first)
    return names
