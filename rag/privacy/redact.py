"""Finding personal data in text and replacing it with typed placeholders.

Each kind has one detector. A value is only taken when it passes the kind's own check, so
that look-alikes stay: Luhn for card numbers (ISO/IEC 7812), mod 97 for IBANs (ISO 13616, via
``python-stdnum``, which also checks the country's length), Google's libphonenumber
(``phonenumbers``, leniency ``VALID``) for phone numbers, and :mod:`ipaddress` for IPv4 and
IPv6 addresses (loopback and unspecified ones such as ``127.0.0.1`` and
``0.0.0.0`` are kept: they name no one). See ``docs/decisions.md``, "PII redaction".
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from rag.errors import InputError
from rag.types import Document, JsonDict

KINDS = ("email", "phone", "credit_card", "iban", "ip")
"""Every kind of personal data that can be redacted, as named in ``--redact``."""

PLACEHOLDERS = {kind: f"[{kind.upper()}]" for kind in KINDS}
"""The typed placeholder that replaces a value: ``[EMAIL]``, ``[PHONE]``, ``[CREDIT_CARD]``, ``[IBAN]``, ``[IP]``."""

# Claimed in this order: a card number or an IBAN is never also read as a phone number.
_PRIORITY = ("email", "iban", "credit_card", "ip", "phone")

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
# 13 to 19 digits, in groups separated by single spaces or hyphens.
_CARD = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w]|[.-]\d)")
# Country, check digits, then the BBAN in groups of letters and digits (compact or in blocks of four).
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])")
_MARKERS = re.compile(r"\[(?:\d{1,3}(?:\s*[,;]\s*\d{1,3})*|[A-Z_]{2,12})\]")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")


@dataclass(frozen=True)
class Match:
    """One value found in a text.

    Attributes:
        start: offset of its first character.
        end: offset after its last character.
        kind: one of :data:`KINDS`.
        key: the value in a canonical form (digits only, lower case, E.164, compressed IP), to
            tell whether two texts hold the same value however each writes it.
    """

    start: int
    end: int
    kind: str
    key: str


@dataclass(frozen=True)
class RedactionResult:
    """A text with its values replaced.

    Attributes:
        text: the text with each value replaced by its placeholder.
        matches: what was replaced, by offsets into the original text, in order.
    """

    text: str
    matches: tuple[Match, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Values replaced per kind (only kinds with any)."""
        out: dict[str, int] = {}
        for m in self.matches:
            out[m.kind] = out.get(m.kind, 0) + 1
        return out

    def offset(self, pos: int) -> int:
        """Where offset ``pos`` of the original text is in the redacted one (a position inside a value maps to its placeholder's start)."""
        shift = 0
        for m in self.matches:
            if pos < m.start:
                break
            if pos < m.end:
                return m.start + shift
            shift += len(PLACEHOLDERS[m.kind]) - (m.end - m.start)
        return pos + shift


def parse_kinds(value: str | Iterable[str], param: str = "redact") -> tuple[str, ...]:
    """Kinds named in a comma-separated list (or a list), in :data:`KINDS` order, without repeats.

    Raises:
        InputError: an unknown kind, naming ``param`` and the valid kinds.
    """
    names = value.split(",") if isinstance(value, str) else list(value)
    wanted = {n.strip().lower().replace("-", "_") for n in names if n.strip()}
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        raise InputError(param, f"unknown kind {', '.join(map(repr, unknown))}; valid kinds: {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in wanted)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (ISO/IEC 7812-1, annex B)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _emails(text: str) -> Iterator[Match]:
    for m in _EMAIL.finditer(text):
        yield Match(m.start(), m.end(), "email", m.group().lower())


def _cards(text: str) -> Iterator[Match]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        # A lone 13-19 digit run with no separator is as likely an id as a card: take it when Luhn-valid all the same.
        if 13 <= len(digits) <= 19 and digits[0] != "0" and luhn_valid(digits):
            yield Match(m.start(), m.end(), "credit_card", digits)


def _ibans(text: str) -> Iterator[Match]:
    from stdnum import iban

    pos = 0
    while (m := _IBAN.search(text, pos)) is not None:
        # The pattern may run into a following upper-case word or IBAN: take the longest valid run
        # of groups, and look again right after it.
        parts = m.group().split(" ")
        pos = m.start() + 1
        for n in range(len(parts), 0, -1):
            candidate = " ".join(parts[:n])
            compact = candidate.replace(" ", "")
            if len(compact) < 15:
                break
            if iban.is_valid(compact):
                yield Match(m.start(), m.start() + len(candidate), "iban", compact)
                pos = m.start() + len(candidate)
                break


def _ips(text: str) -> Iterator[Match]:
    for pattern in (_IPV4, _IPV6):
        for m in pattern.finditer(text):
            raw = m.group()
            if pattern is _IPV6 and raw.count(":") < 2:
                continue
            try:
                addr = ipaddress.ip_address(raw)
            except ValueError:
                continue
            if addr.is_loopback or addr.is_unspecified:
                continue  # 127.0.0.1, ::1, 0.0.0.0 name no one
            yield Match(m.start(), m.end(), "ip", addr.compressed)


def _phones(text: str, region: str) -> Iterator[Match]:
    import phonenumbers

    # libphonenumber reads brackets as a number's punctuation, so "+44 20 7946 0958 [1]" would be one
    # invalid candidate: blank out citation markers and placeholders first (same length, same offsets).
    text = _MARKERS.sub(lambda m: " " * len(m.group()), text)
    for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
        key = phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
        start, end = m.start, m.end
        while start < end and text[start] in "[ ":  # a bracket around the number is not part of it
            start += 1
        while end > start and text[end - 1] in "] ":
            end -= 1
        yield Match(start, end, "phone", key)


class Redactor:
    """Finds and replaces personal data of some kinds.

    Args:
        kinds: the kinds to find (see :data:`KINDS`); empty finds nothing.
        region: the ISO country whose conventions apply to phone numbers written without ``+``.

    Raises:
        InputError: an unknown kind.

    Example:
        >>> Redactor(["email", "credit_card"]).redact("mail a@b.org, card 4111 1111 1111 1111").text
        'mail [EMAIL], card [CREDIT_CARD]'
    """

    def __init__(self, kinds: Iterable[str], region: str = "US") -> None:
        self.kinds = parse_kinds(kinds)
        self.region = region

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def find(self, text: str) -> list[Match]:
        """The values in ``text``, in order, without overlaps (an earlier kind of the priority order wins).

        Returns:
            Matches sorted by start.
        """
        if not self.kinds or not text:
            return []
        taken: list[Match] = []
        starts: list[int] = []
        for kind in _PRIORITY:
            if kind not in self.kinds:
                continue
            for m in self._detect(kind, text):
                i = bisect.bisect_left(starts, m.start)
                if (i and taken[i - 1].end > m.start) or (i < len(taken) and taken[i].start < m.end):
                    continue
                taken.insert(i, m)
                starts.insert(i, m.start)
        return taken

    def _detect(self, kind: str, text: str) -> Iterator[Match]:
        if kind == "email":
            return _emails(text)
        if kind == "credit_card":
            return _cards(text)
        if kind == "iban":
            return _ibans(text)
        if kind == "ip":
            return _ips(text)
        return _phones(text, self.region)

    def redact(self, text: str) -> RedactionResult:
        """``text`` with every value found replaced by its kind's placeholder."""
        matches = self.find(text)
        return RedactionResult(replace_matches(text, matches), tuple(matches))


def replace_matches(text: str, matches: Sequence[Match]) -> str:
    """``text`` with each of ``matches`` (sorted, not overlapping) replaced by its placeholder."""
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(PLACEHOLDERS[m.kind])
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def redact_document(redactor: Redactor, doc: Document, keep: Iterable[str] = ()) -> tuple[Document, dict[str, int]]:
    """A document with its title, text, section headings and metadata strings redacted.

    Section offsets are moved to where their text now starts. The external id and source
    (a path or URI) are identifiers and stay as they are.

    Args:
        redactor: what to replace.
        doc: the loaded document.
        keep: top-level metadata keys left as they are (the file's path, format and time).

    Returns:
        The redacted document (``doc`` itself when nothing was found) and the values replaced per
        kind in its title, text and metadata.
    """
    counts: dict[str, int] = {}

    def run(text: str) -> RedactionResult:
        result = redactor.redact(text)
        for kind, n in result.counts.items():
            counts[kind] = counts.get(kind, 0) + n
        return result

    def value(v: object) -> object:
        if isinstance(v, str):
            return run(v).text
        if isinstance(v, list):
            return [value(x) for x in v]
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        return v

    if not redactor:
        return doc, counts
    body = run(doc.text)
    kept = set(keep)
    metadata: JsonDict = {k: (v if k in kept else value(v)) for k, v in doc.metadata.items()}
    # A heading repeats a line of the text, already counted there.
    sections = tuple((body.offset(start), redactor.redact(heading).text) for start, heading in doc.sections)
    title = run(doc.title).text
    if not counts and sections == doc.sections:
        return doc, counts
    return replace(doc, title=title, text=body.text, metadata=metadata, sections=sections), counts
