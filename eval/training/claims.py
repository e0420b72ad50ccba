"""Training pairs for the support model (``rag train-verifier``): synthetic, SciFact and feedback.

Synthetic pairs follow FactCC (Kryściński, McCann, Xiong, Socher, 2020): a sentence of a
document, or a light rewrite that keeps its meaning, is a *supported* claim; the same
sentence with a fact twisted is not. The rewrites that keep the meaning are
:func:`compress` (drop a parenthesis or a side clause), :func:`reorder` (move a fronted
phrase to the end, or keep one half of a compound sentence), :func:`paraphrase` (swap a
word for a synonym) and :func:`join` (two adjacent sentences in one). The twists are
:func:`swap_number`, :func:`swap_entity`, :func:`toggle_negation`,
:func:`flip_comparison` (above/below, before/after, more/less ...),
:func:`reverse_relation` (subject and object swapped), :func:`extend` (a supported
sentence with a clause from another document), a sentence of another document, and a
sentence of the same document scored against the rest of it (on topic, no evidence: left out
when the rest holds 70 % of its content words).

Each claim is paired with the window of the document the service would score it against
(:func:`rag.verify.model.select_windows`), so training sees passages shaped as serving does.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag.index.store import Judgment
from rag.types import Chunk
from rag.verify.checks import OPPOSITES as _OPPOSITES
from rag.verify.model import Window, select_windows
from rag.verify.lexical import content_words, sentence_spans


@dataclass(frozen=True)
class SupportPair:
    """One training or dev pair of the support model.

    Attributes:
        claim: the claim.
        passage: the window of the source it is judged against.
        label: 1.0 when the passage supports the claim, else 0.0.
        kind: how the pair was made (``faithful``, ``number``, ``scifact-contradicted`` ...).
        group: the document or claim it came from; splits keep a group together.
    """

    claim: str
    passage: str
    label: float
    kind: str
    group: str


POSITIVE_KINDS = ("faithful", "compressed", "reordered", "paraphrased", "joined")
NEGATIVE_KINDS = (
    "number", "entity", "negation", "comparison", "reversal", "extension", "other-document", "no-evidence"
)

# --- twists ---------------------------------------------------------------------------------------

_NUM = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w])")
_NUMBER_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty")
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_CALENDAR = re.compile(r"\b(" + "|".join((*_MONTHS, *_DAYS)) + r")\b")


def _case_like(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _other_number(value: str, decimals: str | None, rng: random.Random) -> str:
    whole = int(value.replace(",", ""))
    if decimals:
        new = f"{whole + rng.choice([-1, 1]) * rng.randint(1, 3)}{decimals}" if whole > 3 else f"{whole + rng.randint(1, 3)}{decimals}"
        return new
    if 1800 <= whole <= 2100 and "," not in value:  # a year
        return str(whole + rng.choice([-1, 1]) * rng.randint(1, 12))
    if whole < 10:
        return str(rng.choice([n for n in range(1, 13) if n != whole]))
    factor = rng.choice([rng.uniform(0.3, 0.85), rng.uniform(1.2, 3.0)])
    new = max(1, round(whole * factor))
    if new == whole:
        new = whole + 1
    return f"{new:,}" if "," in value else str(new)


def swap_number(sentence: str, rng: random.Random) -> str | None:
    """Change one number, number word, month or weekday of a sentence to another value.

    Returns:
        The twisted sentence; None when the sentence has nothing to change.

    Example:
        >>> swap_number("The bridge opened in 1932.", random.Random(1)) != "The bridge opened in 1932."
        True
    """
    found: list[tuple[int, int, str]] = []
    for m in _NUM.finditer(sentence):
        found.append((m.start(), m.end(), _other_number(m.group(1), m.group(2), rng)))
    for m in _NUMBER_WORD.finditer(sentence):
        word = m.group(1).lower()
        found.append((m.start(), m.end(), _case_like(rng.choice([w for w in _NUMBER_WORDS if w != word]), m.group(1))))
    for m in _CALENDAR.finditer(sentence):
        names = _MONTHS if m.group(1) in _MONTHS else _DAYS
        found.append((m.start(), m.end(), rng.choice([n for n in names if n != m.group(1)])))
    if not found:
        return None
    a, b, new = rng.choice(found)
    return sentence[:a] + new + sentence[b:]


_NAME = re.compile(
    r"(?<![\w'’-])(?:[A-Z][\w'’-]*\.?|[A-Z]{2,})(?:\s+(?:of|de|del|da|von|van|der|the|la|le|al|bin|y)?\s*(?:[A-Z][\w'’-]*\.?|[A-Z]{2,}))*"
)
_NOT_NAMES = frozenset(
    "The A An In On At For From With By As It Its This That These Those He She They We I His Her Their Our "
    "After Before During While When Where Since Although Though However But And Or If Then There Here Also "
    "Some Many Most All Each Both One Two Three Several Other Such No Not Only Yes".split()
)


def names(sentence: str, *, first: bool = False) -> list[tuple[int, int, str]]:
    """Capitalised runs of a sentence that read as names: ``(start, end, text)``, in order.

    A run at the sentence's start counts only when it has more than one word or is an acronym
    (a first word is capitalised whatever it is), or with ``first``; function words alone
    ("The", "However") never count.
    """
    out = []
    for m in _NAME.finditer(sentence):
        text = m.group(0).rstrip(".")
        words = text.split()
        while words and words[0] in _NOT_NAMES:
            words = words[1:]
        if not words:
            continue
        text = " ".join(words)
        start = m.start() + m.group(0).index(words[0])
        at_start = not sentence[:start].strip(" \"'“‘(")
        if at_start and len(words) == 1 and not text.isupper() and not first:
            continue
        out.append((start, start + len(text), text))
    return out


def swap_entity(sentence: str, pool: Sequence[str], rng: random.Random) -> str | None:
    """Replace one name of the sentence by another name from ``pool`` that the sentence lacks.

    Names of the same number of words are preferred, so that a person becomes another person
    more often than a country.

    Returns:
        The twisted sentence; None without a name or a usable replacement.
    """
    found = names(sentence)
    if not found or not pool:
        return None
    a, b, old = rng.choice(found)
    lowered = sentence.lower()
    choices = [p for p in pool if p != old and p.lower() not in lowered]
    same = [p for p in choices if len(p.split()) == len(old.split())]
    choices = same or choices
    if not choices:
        return None
    return sentence[:a] + rng.choice(choices) + sentence[b:]


_AUX = r"is|are|was|were|can|could|will|would|should|has|have|had|may|might|must|does|do|did"
_ADD_NOT = re.compile(rf"\b({_AUX})\b(?!\s+not\b|n['’]t)", re.IGNORECASE)
_REMOVE = (
    (re.compile(r"\b(cannot|can['’]t)\b", re.IGNORECASE), "can"),
    (re.compile(r"\bwon['’]t\b", re.IGNORECASE), "will"),
    (re.compile(rf"\b({_AUX})n['’]t\b", re.IGNORECASE), r"\1"),
    (re.compile(rf"\b({_AUX})\s+not\b", re.IGNORECASE), r"\1"),
    (re.compile(r"\bnever\b", re.IGNORECASE), "always"),
    (re.compile(r"\bno longer\b", re.IGNORECASE), "still"),
)


def toggle_negation(sentence: str, rng: random.Random) -> str | None:
    """Remove a negation when the sentence has one, else negate its first auxiliary verb.

    ``can`` becomes ``cannot``, ``was`` becomes ``was not``; ``not``, ``n't``, ``cannot``,
    ``never`` and ``no longer`` are taken out (or turned into ``always`` / ``still``).

    Returns:
        The twisted sentence; None when there is neither a negation nor an auxiliary.
    """
    for pattern, repl in _REMOVE:
        hits = list(pattern.finditer(sentence))
        if hits:
            m = rng.choice(hits)
            new = pattern.sub(repl, m.group(0), count=1)
            return sentence[: m.start()] + _case_like(new, m.group(0)) + sentence[m.end() :]
    m = _ADD_NOT.search(sentence)
    if m is None:
        return None
    word = m.group(1)
    new = f"{word}not" if word.lower() == "can" else f"{word} not"
    return sentence[: m.start()] + new + sentence[m.end() :]


_OPPOSITE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _OPPOSITES), key=len, reverse=True)) + r")\b", re.IGNORECASE)


def flip_comparison(sentence: str, rng: random.Random) -> str | None:
    """Turn one comparison or direction word into its opposite (above/below, before/after, won/lost ...).

    Returns:
        The twisted sentence; None when it has no such word.

    Example:
        >>> flip_comparison("Purchases above 500 EUR need approval.", random.Random(0))
        'Purchases below 500 EUR need approval.'
    """
    hits = list(_OPPOSITE.finditer(sentence))
    if not hits:
        return None
    m = rng.choice(hits)
    opposite = sorted(_OPPOSITES[m.group(1).lower()])[0]  # the first in order: the same twist for every seed
    return sentence[: m.start()] + _case_like(opposite, m.group(1)) + sentence[m.end() :]


def reverse_relation(sentence: str, rng: random.Random) -> str | None:
    """Swap two different names of the sentence (who did what to whom), or else two different numbers.

    Returns:
        The twisted sentence; None with fewer than two distinct names or numbers.

    Example:
        >>> reverse_relation("Arsenal beat Chelsea in the final.", random.Random(0))
        'Chelsea beat Arsenal in the final.'
    """
    spans = names(sentence, first=True)
    if len({t for *_, t in spans}) < 2:
        spans = [(m.start(), m.end(), m.group(0)) for m in _NUM.finditer(sentence)]
    distinct = {t for *_, t in spans}
    if len(distinct) < 2:
        return None
    first = rng.choice(spans)
    second = rng.choice([s for s in spans if s[2] != first[2]])
    (a1, b1, t1), (a2, b2, t2) = sorted([first, second])
    return sentence[:a1] + t2 + sentence[b1:a2] + t1 + sentence[b2:]


# --- rewrites that keep the meaning -------------------------------------------------------------

_PAREN = re.compile(r"\s*\([^()]{1,200}\)")
_SIDE_CLAUSE = re.compile(r",\s+(?:which|who|whose|where|while|although|though|including|as well as)\b[^,;]{3,150},")
_TRAILING = re.compile(r",\s+(?:which|who|while|including|as|and|but|although|according to|adding|making)\b[^,;]{3,200}?([.!?]?)$")
_LEADING = re.compile(r"^(?:However|Meanwhile|Additionally|In addition|Moreover|Also|In \d{4}|On \w+(?: \d{1,2})?|Last \w+|According to [^,]{2,60}),\s+")
_SYNONYMS = {
    "said": "stated", "says": "states", "purchased": "bought", "bought": "purchased", "began": "started",
    "started": "began", "approximately": "about", "nearly": "almost", "almost": "nearly", "children": "kids",
    "helped": "assisted", "help": "assist", "showed": "demonstrated", "shows": "demonstrates",
    "demonstrated": "showed", "used": "employed", "uses": "employs", "received": "got", "obtained": "got",
    "called": "named", "named": "called", "big": "large", "large": "big", "died": "passed away",
    "prior to": "before", "more than": "over", "roughly": "about", "currently": "now",
    "however": "but", "located in": "in", "is known as": "is called", "people": "individuals",
    "individuals": "people", "attempted": "tried", "tried": "attempted", "stated": "said", "reported": "said",
    "announced": "said", "major": "big", "primarily": "mainly", "mainly": "mostly", "commenced": "began",
    "residents": "locals", "officials": "authorities", "authorities": "officials", "rapidly": "quickly",
    "quickly": "fast", "assist": "help", "establish": "set up", "established": "set up", "founded": "set up",
}
_SYNONYM = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _SYNONYMS), key=len, reverse=True)) + r")\b", re.IGNORECASE)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+([,.;:!?])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()
    return text[:1].upper() + text[1:] if text else text


def compress(sentence: str, rng: random.Random) -> str | None:
    """Drop a parenthesis, a side clause, a trailing clause or a leading adverbial: less said, still supported.

    Returns:
        The shorter sentence (at least five words); None when nothing can be dropped.

    Example:
        >>> compress("The tower (built in 1889) is in Paris.", random.Random(0))
        'The tower is in Paris.'
    """
    options = []
    for pattern, repl in ((_PAREN, ""), (_SIDE_CLAUSE, ""), (_TRAILING, r"\1"), (_LEADING, "")):
        for m in pattern.finditer(sentence):
            new = _tidy(sentence[: m.start()] + m.expand(repl) + sentence[m.end() :])
            if new and new != sentence and len(new.split()) >= 5:
                options.append(new)
    return rng.choice(options) if options else None


_FRONTED = re.compile(r"^((?:In|On|By|During|After|Before|Since|At|From) [^,]{2,50}),\s+(.+?)([.!?]?)$")
_SPLIT = re.compile(r",?\s+(?:and|but|while|whereas)\s+(?=[a-z])")


def reorder(sentence: str, rng: random.Random) -> str | None:
    """Move a fronted phrase to the end ("In 1990, X did Y." -> "X did Y in 1990."), or keep one half of "X, and Y".

    Returns:
        The rewritten sentence (at least five words); None when neither applies.

    Example:
        >>> reorder("In 1990, the club moved to Leeds.", random.Random(0))
        'The club moved to Leeds in 1990.'
    """
    options = []
    m = _FRONTED.match(sentence.strip())
    if m:
        options.append(_tidy(f"{_lower_start(m.group(2))} {m.group(1)[:1].lower()}{m.group(1)[1:]}{m.group(3) or '.'}"))
    for part in _SPLIT.split(sentence.strip(), maxsplit=1):
        part = part.strip().rstrip(",;")
        if part and len(part.split()) >= 5 and part != sentence.strip():
            options.append(_tidy(part if part[-1] in ".!?" else part + "."))
    return rng.choice(options) if options else None


def paraphrase(sentence: str, rng: random.Random) -> str | None:
    """Swap one or two words for synonyms ("said" -> "stated", "purchased" -> "bought" ...).

    Returns:
        The reworded sentence; None when no word of the table occurs.
    """
    hits = list(_SYNONYM.finditer(sentence))
    if not hits:
        return None
    chosen = sorted(rng.sample(hits, min(len(hits), rng.choice([1, 2]))), key=lambda m: m.start(), reverse=True)
    out = sentence
    for m in chosen:
        out = out[: m.start()] + _case_like(_SYNONYMS[m.group(1).lower()], m.group(1)) + out[m.end() :]
    return out if out != sentence else None


_LOWER_STARTS = frozenset(
    "the a an this that these those it its he she they we his her their our in on at for from with by as "
    "after before during while when since also some many most all each both one two several other such".split()
)


def _lower_start(sentence: str) -> str:
    first = sentence.split(" ", 1)[0]
    return sentence[:1].lower() + sentence[1:] if first.lower() in _LOWER_STARTS else sentence


def join(first: str, second: str) -> str:
    """Two sentences as one: ``"<first without its full stop>, and <second>"``.

    Example:
        >>> join("The shop opens at nine.", "It closes at six.")
        'The shop opens at nine, and it closes at six.'
    """
    return f"{first.rstrip().rstrip('.!?;:')}, and {_lower_start(second.strip())}"


def extend(sentence: str, other: str) -> str:
    """A sentence with a clause from elsewhere: partly supported, so unsupported (:func:`join` of the two)."""
    return join(sentence, other)


# --- pairs from documents -------------------------------------------------------------------------


def _sentences(text: str) -> list[tuple[int, int]]:
    return [(a, b) for a, b in sentence_spans(text, 256) if 5 <= len(text[a:b].split()) <= 60]


def _covered(claim: str, passage: str) -> float:
    words = content_words(claim)
    return len(words & content_words(passage)) / len(words) if words else 1.0


def _window_around(text: str, spans: list[tuple[int, int]], i: int, j: int, rng: random.Random) -> Window:
    """An adjacent run of 1 to 3 sentences holding sentences ``i..j`` (all of ``spans``)."""
    extra = rng.choice([0, 0, 1, 2]) if j - i < 2 else 0
    lo = max(0, i - rng.randint(0, extra))
    hi = min(len(spans) - 1, max(j, lo + (j - i) + extra))
    a, b = spans[lo][0], spans[hi][1]
    return Window(text[a:b], a, b)


def _holds(window: Window, a: int, b: int) -> bool:
    return window.start <= a and window.end >= b


def entity_pool(documents: Iterable[tuple[str, str]], limit: int = 20000) -> list[str]:
    """Distinct names (:func:`names`) of the documents, in order of first appearance, at most ``limit``."""
    seen: dict[str, None] = {}
    for _, text in documents:
        for _, _, name in names(text):
            seen.setdefault(name, None)
            if len(seen) >= limit:
                return list(seen)
    return list(seen)


def synthetic_pairs(
    documents: Sequence[tuple[str, str]],
    *,
    seed: int = 42,
    sentences_per_document: int = 2,
    negatives_per_sentence: int = 2,
) -> list[SupportPair]:
    """FactCC-style pairs from documents: per chosen sentence, one supported claim and twisted ones.

    For each document, up to ``sentences_per_document`` sentences of 5 to 60 words are drawn.
    Each gives a supported claim (the sentence itself, :func:`compress`, :func:`reorder`,
    :func:`paraphrase` or :func:`join` with the next one) paired with a window of 1 to 3 adjacent sentences that holds
    it, and ``negatives_per_sentence`` claims from distinct twists (those that apply), each
    paired with the best window :func:`~rag.verify.model.select_windows` finds for it. A claim
    from another document or from elsewhere in the same document is left out when its window
    happens to hold 80 % of its content words (it may be supported after all).

    Args:
        documents: ``(group id, text)`` pairs; the id becomes :attr:`SupportPair.group`.
        seed: seeds every draw.
        sentences_per_document: sentences drawn per document.
        negatives_per_sentence: twisted claims per drawn sentence.

    Returns:
        The pairs, document by document.
    """
    rng = random.Random(seed)
    pool = entity_pool(documents)
    docs = [(gid, text, _sentences(text)) for gid, text in documents]
    usable = [d for d in docs if d[2]]
    out: list[SupportPair] = []
    for gid, text, spans in docs:
        if not spans:
            continue
        all_spans = sentence_spans(text, 256)
        local = [n for _, _, n in names(text)]
        for i in sorted(rng.sample(range(len(spans)), min(sentences_per_document, len(spans)))):
            a, b = spans[i]
            sentence = text[a:b].strip()
            k = all_spans.index((a, b)) if (a, b) in all_spans else 0
            out.append(_positive(gid, text, all_spans, k, sentence, rng))
            twists = _twists(sentence, gid, text, all_spans, k, local, pool, usable, rng)
            rng.shuffle(twists)
            out.extend(twists[:negatives_per_sentence])
    return out


def _positive(gid: str, text: str, spans: list[tuple[int, int]], k: int, sentence: str, rng: random.Random) -> SupportPair:
    """A supported claim from sentence ``k``: a rewrite drawn at random, trying the others when it does not apply."""
    rewrites = {"compressed": compress, "reordered": reorder, "paraphrased": paraphrase}
    first = rng.choices(POSITIVE_KINDS, weights=(2, 3, 2, 2, 2))[0]
    order = [first, *rng.sample([n for n in POSITIVE_KINDS[1:] if n != first], len(POSITIVE_KINDS) - 2)]
    kind, claim, last = "faithful", sentence, k
    if first != "faithful":
        for name in order:
            if name == "faithful":
                continue
            made, end = None, k
            if name == "joined":
                if k + 1 < len(spans):
                    nxt = text[spans[k + 1][0] : spans[k + 1][1]].strip()
                    if 3 <= len(nxt.split()) <= 40:
                        made, end = join(compress(sentence, rng) or sentence, nxt), k + 1
            else:
                made = rewrites[name](sentence, rng)
                if made is not None and name != "paraphrased" and rng.random() < 0.3:
                    made = paraphrase(made, rng) or made
            if made is not None and made != sentence:
                kind, claim, last = name, made, end
                break
    a, b = spans[k][0], spans[last][1]
    best = select_windows(claim, text, 1)
    window = best[0] if best and _holds(best[0], a, b) and rng.random() < 0.5 else _window_around(text, spans, k, last, rng)
    return SupportPair(claim, window.text, 1.0, kind, gid)


def _twists(
    sentence: str, gid: str, text: str, spans: list[tuple[int, int]], k: int, local: list[str], pool: list[str],
    docs: list[tuple[str, str, list[tuple[int, int]]]], rng: random.Random,
) -> list[SupportPair]:
    made: dict[str, str | None] = {
        "number": swap_number(sentence, rng),
        "entity": swap_entity(sentence, local if local and rng.random() < 0.5 else pool, rng),
        "negation": toggle_negation(sentence, rng),
        "comparison": flip_comparison(sentence, rng),
        "reversal": reverse_relation(sentence, rng),
    }
    other = _other_sentence(gid, text, docs, rng)
    if other is not None:
        made["extension"] = extend(compress(sentence, rng) or sentence, other) if rng.random() < 0.5 else None
        made["other-document"] = other
    out: list[SupportPair] = []
    for kind, claim in made.items():
        if claim is None or claim == sentence:
            continue
        windows = select_windows(claim, text, 2)
        if not windows:
            continue
        window = windows[0] if len(windows) == 1 or rng.random() < 0.6 else windows[1]
        if kind == "other-document" and _covered(claim, window.text) >= 0.8:
            continue
        out.append(SupportPair(claim, window.text, 0.0, kind, gid))
    rest = _without_sentence(text, spans, k)
    windows = select_windows(sentence, rest, 1) if rest else []
    if windows and _covered(sentence, windows[0].text) < 0.7:
        out.append(SupportPair(sentence, windows[0].text, 0.0, "no-evidence", gid))
    return out


def _other_sentence(gid: str, text: str, docs: list[tuple[str, str, list[tuple[int, int]]]], rng: random.Random) -> str | None:
    """Of 20 sentences drawn from other documents, the one sharing most content words with ``text`` (on topic, if any is)."""
    here = content_words(text)
    best, best_key = None, -1.0
    for _ in range(20):
        other_gid, other, spans = rng.choice(docs)
        if other_gid == gid or not spans:
            continue
        a, b = rng.choice(spans)
        candidate = other[a:b].strip()
        key = len(content_words(candidate) & here) + rng.random()
        if key > best_key:
            best, best_key = candidate, key
    return best


def _without_sentence(text: str, spans: list[tuple[int, int]], k: int) -> str:
    """The document without sentence ``k``: what is left to back that sentence (nothing should)."""
    return " ".join(text[a:b].strip() for j, (a, b) in enumerate(spans) if j != k)


# --- SciFact and feedback -------------------------------------------------------------------------


def scifact_pairs(rows: Sequence[Mapping[str, Any]], *, windows: int = 2) -> list[SupportPair]:
    """Pairs from SciFact records (``claim``, ``abstract``, ``abstract_sentences``, ``label``, ``rationale_sentences``).

    A claim is supported only by a ``supported`` record; ``contradicted`` and ``no_evidence`` are
    negatives. Each record gives its rationale sentences joined (when it has any) and the best
    ``windows`` windows :func:`~rag.verify.model.select_windows` finds in the abstract; for a
    supported record, a window is kept only when it holds a rationale sentence, since the rest
    of an abstract need not back the claim.

    Returns:
        The pairs, with ``kind`` ``scifact-<label>`` and ``group`` ``scifact-<claim_id>``.
    """
    out: list[SupportPair] = []
    for row in rows:
        label = str(row["label"])
        value = 1.0 if label == "supported" else 0.0
        group = f"scifact-{row.get('claim_id', row['claim'])}"
        kind = f"scifact-{label}"
        sentences = list(row.get("abstract_sentences") or [])
        rationale = [sentences[i] for i in row.get("rationale_sentences") or [] if 0 <= i < len(sentences)]
        passages = [" ".join(rationale)] if rationale else []
        for w in select_windows(str(row["claim"]), str(row["abstract"]), windows):
            if value == 0.0 or any(r.strip() and r.strip() in w.text for r in rationale):
                passages.append(w.text)
        for passage in dict.fromkeys(passages):
            out.append(SupportPair(str(row["claim"]), passage, value, kind, group))
    return out


def feedback_pairs(judgments: Sequence[Judgment], chunks: Mapping[int, Chunk]) -> list[SupportPair]:
    """Negatives from ``/v1/feedback``: a chunk judged not relevant to a statement does not back it.

    The feedback table holds relevance judgments of (query, chunk), not verdicts on answers, so only
    the ``relevant = false`` judgments are used, each as (query, best window of the chunk, 0). A
    judgment whose chunk is gone is skipped.

    Args:
        judgments: oldest first, as :meth:`rag.index.store.Store.feedback` returns them.
        chunks: chunk id -> chunk.

    Returns:
        One pair per usable judgment, ``kind`` ``feedback``.
    """
    out = []
    for j in judgments:
        chunk = chunks.get(j.chunk_id)
        if j.relevant or chunk is None:
            continue
        windows = select_windows(j.query, chunk.text, 1)
        if windows:
            out.append(SupportPair(j.query, windows[0].text, 0.0, "feedback", f"feedback-{j.chunk_id}"))
    return out


def group_part(group: str, seed: int = 13, dev_fraction: float = 0.15) -> str:
    """``dev`` or ``train`` for a synthetic group, by a hash of the group id (stable across runs and row orders)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return "dev" if int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction else "train"
