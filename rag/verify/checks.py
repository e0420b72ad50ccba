"""The checks no support model overrides: a claim that says what its evidence says, turned around.

A claim can reuse nearly every word of its source and still contradict it: "Bicycles can
not be parked for free" against "Employees may park bicycles for free", "Purchases below
500 EUR need approval" against "above 500 EUR", "Chelsea beat Arsenal" against "Arsenal
beat Chelsea". Word overlap and embeddings score such claims as supported, and so does a
small cross-encoder that has learned overlap. :func:`contradiction` finds them by rule.
It compares the claim with its *anchor*, the sentence of the source holding most of the
claim's content words. When the anchor holds most of them, the claim is taken for a
rewording of it, and the claim contradicts it when it:

- **negates** what the anchor states or states what the anchor negates (``not``, ``never``,
  ``no``, ``without``, ``n't`` ... with a word of the other side among the next three);
- uses a word whose **opposite** the anchor uses instead (above/below, before/after,
  increased/reduced ...: :data:`OPPOSITES`), or says *up* where the anchor says *down*
  (:data:`UP`, :data:`DOWN`);
- **swaps a name**: names one (a capitalised word) that the anchor lacks, where the anchor
  names another that the claim lacks ("the Billing team owns Atlas" where the Platform team
  does, though the source mentions Billing elsewhere);
- **reverses a relation**: two of the shared words on either side of a third come in the
  other order ("the board reports to the committee"), unless a ``by`` marks a passive or the
  middle word is symmetric (associated, married, compared ...).

Both scorers cap a flagged claim's score at :data:`CONTRADICTION_CAP`, as a number absent
from the source is capped.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from functools import lru_cache
from itertools import islice

from rag.verify.lexical import claim_names, content_words, sentence_spans, stem

CONTRADICTION_CAP = 0.2
"""Highest score of a claim that contradicts its anchor sentence (the number cap's value)."""

MIN_OVERLAP = 0.6
"""Share of the claim's content words its anchor must hold for the claim to be read as a rewording of it:
enough for a swapped name, whose pattern is narrow."""

MIN_POLARITY_OVERLAP = 0.8
"""The share a negation, an opposite word or a reversed relation needs: a summary sentence that fuses several sentences of its
source ("rather than public figures" against "and not public figures; the latter have a harder time")
must not be read as denying one of them."""

NEGATION_SCOPE = 3
"""Tokens after a negation word in which a word of the other side must appear for the negation to count."""

MAX_SENTENCES = 256

_OPPOSITE_PAIRS = (
    ("above", "below"), ("before", "after"), ("more", "less"), ("more", "fewer"), ("higher", "lower"),
    ("increase", "decrease"), ("increased", "decreased"), ("increases", "decreases"), ("increasing", "decreasing"),
    ("increase", "reduce"), ("increased", "reduced"), ("increases", "reduces"), ("increasing", "reducing"),
    ("raised", "lowered"), ("raises", "lowers"), ("raise", "lower"), ("reduced", "raised"), ("reduces", "raises"),
    ("larger", "smaller"), ("largest", "smallest"), ("bigger", "smaller"), ("biggest", "smallest"),
    ("earlier", "later"), ("first", "last"), ("maximum", "minimum"), ("older", "younger"), ("oldest", "youngest"),
    ("best", "worst"), ("better", "worse"), ("most", "least"), ("highest", "lowest"), ("won", "lost"),
    ("win", "lose"), ("wins", "loses"), ("beat", "lost"), ("positive", "negative"), ("positively", "negatively"),
    ("north", "south"), ("northern", "southern"), ("east", "west"), ("eastern", "western"), ("inside", "outside"),
    ("rise", "fall"), ("rises", "falls"), ("rose", "fell"), ("risen", "fallen"), ("rising", "falling"),
    ("high", "low"), ("early", "late"), ("longer", "shorter"), ("longest", "shortest"), ("allowed", "forbidden"),
    ("allowed", "prohibited"), ("approved", "rejected"), ("with", "without"), ("always", "never"),
    ("include", "exclude"), ("included", "excluded"), ("includes", "excludes"), ("accepted", "refused"),
    ("accepted", "rejected"), ("enabled", "disabled"), ("same", "different"), ("improved", "worsened"),
    ("strong", "weak"), ("stronger", "weaker"), ("promotes", "inhibits"), ("promote", "inhibit"),
    ("activates", "suppresses"), ("activate", "suppress"), ("activated", "suppressed"), ("induces", "prevents"),
    ("gained", "lost"), ("success", "failure"), ("successful", "unsuccessful"), ("legal", "illegal"),
    ("possible", "impossible"), ("likely", "unlikely"), ("true", "false"), ("upper", "lower"), ("entered", "left"),
    ("bought", "sold"), ("buy", "sell"), ("arrived", "departed"), ("opened", "closed"), ("open", "closed"),
    ("started", "ended"), ("began", "ended"), ("many", "few"), ("required", "optional"), ("mandatory", "optional"),
    ("cheaper", "dearer"), ("cheaper", "costlier"), ("faster", "slower"), ("fastest", "slowest"), ("full", "empty"),
    ("guilty", "innocent"), ("alive", "dead"), ("internal", "external"), ("minority", "majority"),
    ("gain", "loss"), ("profit", "loss"), ("surplus", "deficit"), ("ascending", "descending"), ("younger", "elder"),
    ("benefit", "harm"), ("safe", "unsafe"), ("safe", "dangerous"), ("agreed", "refused"), ("agreed", "declined"),
    ("confirmed", "denied"), ("support", "oppose"), ("supported", "opposed"), ("supports", "opposes"),
)
OPPOSITES: dict[str, frozenset[str]] = {}
"""Each word and its opposites, both ways: a claim that says one where its anchor says the other contradicts it."""
for _a, _b in _OPPOSITE_PAIRS:
    OPPOSITES[_a] = OPPOSITES.get(_a, frozenset()) | {_b}
    OPPOSITES[_b] = OPPOSITES.get(_b, frozenset()) | {_a}
del _a, _b
UP = frozenset(
    """increase increased increases increasing enhance enhanced enhances promote promoted promotes induce induced
    induces inducing elevate elevated elevates raise raised raises stimulate stimulated stimulates augment
    augmented augments boost boosted boosts accelerate accelerated accelerates upregulate upregulated upregulates
    upregulation""".split()
)
"""Words that say a quantity or an effect goes up (a claim's direction; see :func:`opposite_word`)."""
DOWN = frozenset(
    """decrease decreased decreases decreasing reduce reduced reduces reducing lower lowered lowers inhibit
    inhibited inhibits inhibiting suppress suppressed suppresses suppressing attenuate attenuated attenuates
    diminish diminished diminishes impair impaired impairs downregulate downregulated downregulates
    downregulation dampen dampened dampens""".split()
)
"""Words that say a quantity or an effect goes down."""
_UP = frozenset(stem(w) for w in UP)
_DOWN = frozenset(stem(w) for w in DOWN)
_OPPOSITE_STEMS: dict[str, frozenset[str]] = {}
for _word, _others in OPPOSITES.items():
    _OPPOSITE_STEMS[stem(_word)] = _OPPOSITE_STEMS.get(stem(_word), frozenset()) | {stem(o) for o in _others}
del _word, _others
_POLAR = frozenset(stem(w) for w in OPPOSITES) | _UP | _DOWN

_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nor|neither|cannot|without|nobody|nothing|nowhere)\b|n['’]t\b", re.IGNORECASE
)
_NOT_NEGATION = re.compile(
    r"\b(?:not\s+only|not\s+just|not\s+least|no\s+doubt|no\s+longer\s+than|no\s+later\s+than|no\s+more\s+than|"
    r"no\s+less\s+than|not\s+more\s+than|not\s+less\s+than|not\s+until|or\s+not|if\s+not|not\s+to\s+mention)\b|\bno\.\s*\d",
    re.IGNORECASE,
)
"""Phrases that hold a negation word without denying what follows ("not only", "no later than", "whether or not")."""

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_SYMMETRIC = frozenset(
    stem(w)
    for w in """associated association correlated correlation linked link related relation relationship interacts
    interaction similar different differs equal equals compared comparison married met meet between versus vs and
    or with together both neighbour neighbor adjacent bordering borders tied drew draw""".split()
)
"""Middle words of a relation that reads the same both ways ("A is associated with B")."""


def negated(text: str, other: set[str], *, first_only: bool = False) -> bool:
    """Whether ``text`` denies something that ``other`` (content words, stemmed) speaks of.

    A negation word counts when a content word among the next :data:`NEGATION_SCOPE` tokens is
    one of ``other``; with ``first_only``, only the first content word after it: in "this
    hasn't stopped recent summits" what is denied is a stopping, not the summits. In "the
    museum, not far from the station, is open" the ``not`` is about a distance, not about the
    opening. Phrases such as "not only", "no later than" and "No. 1" are not negations.

    Example:
        >>> negated("Bicycles can not be parked here.", {"park", "bicycle"})
        True
        >>> negated("The museum, not far from the station, is open.", {"museum", "open"})
        False
    """
    cleaned = _NOT_NEGATION.sub(" ", text)
    for m in _NEGATION.finditer(cleaned):
        after = [content_words(t.group()) for t in islice(_TOKEN.finditer(cleaned, m.end()), NEGATION_SCOPE)]
        after = [w for w in after if w]
        if any(w & other for w in (after[:1] if first_only else after)):
            return True
    return False


def has_negation(text: str) -> bool:
    """Whether ``text`` holds any negation word (outside phrases such as "not only")."""
    return bool(_NEGATION.search(_NOT_NEGATION.sub(" ", text)))


def negation_flipped(claim: str, anchor: str) -> bool:
    """One side negates what the other states: a scoped negation (:func:`negated`) on one side, none at all on the other.

    The anchor's negation counts only about the first content word after it: a source sentence
    is longer than the claim made of it, and more of its words are the claim's by chance.
    """
    claim_words, anchor_words = content_words(claim), content_words(anchor)
    return (negated(claim, anchor_words) and not has_negation(anchor)) or (
        negated(anchor, claim_words, first_only=True) and not has_negation(claim)
    )


def _stems(text: str) -> set[str]:
    return {stem(t) for t in _TOKEN.findall(text)}


def opposite_word(claim: str, anchor: str) -> str | None:
    """The stem of a word of the claim whose opposite the anchor uses instead, or None.

    Words are compared by their stems, so "decreases" meets "increased". Two cases:

    - a word of :data:`OPPOSITES` whose opposite the anchor has, while the anchor lacks the word
      itself and the claim the opposite;
    - a direction: the claim says only *up* (:data:`UP`: increase, enhance, promote, induce ...)
      where the anchor says only *down* (:data:`DOWN`: decrease, reduce, inhibit, suppress ...),
      or the other way round.

    Example:
        >>> opposite_word("DUSP4 decreases apoptosis.", "DUSP4 overexpression increased apoptosis.")
        'decreas'
    """
    mine, theirs = _stems(claim), _stems(anchor)
    for word in sorted(mine & _OPPOSITE_STEMS.keys()):
        if word not in theirs and (_OPPOSITE_STEMS[word] & theirs) - mine:
            return word
    for said, other in ((_UP, _DOWN), (_DOWN, _UP)):
        if mine & said and not mine & other and theirs & other and not theirs & said:
            return sorted(mine & said)[0]
    return None


def _name_runs(text: str) -> list[tuple[str | None, frozenset[str]]]:
    """Runs of consecutive name tokens, each with the token before it (None at the start).

    Names are :func:`~rag.verify.lexical.claim_names` of more than one letter; a capitalised
    first word joins the run that follows it ("Tom Berger manages").
    """
    tokens = _TOKEN.findall(text)
    names = {n for n in claim_names(text) if len(n) > 1}
    is_name = [bool(content_words(t) & names) for t in tokens]
    if len(tokens) > 1 and is_name[1] and tokens[0][:1].isupper() and content_words(tokens[0]):
        is_name[0] = True
    runs, i = [], 0
    while i < len(tokens):
        if not is_name[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(tokens) and is_name[j + 1]:
            j += 1
        runs.append((tokens[i - 1].lower() if i else None, frozenset(content_words(" ".join(tokens[i : j + 1])))))
        i = j + 1
    return runs


def _variant(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two names are spellings of one ("Organisation" and "Organization", "Australian" and
    "Australia") or one is the other's initials ("WWI" and "World War I" leave "wwi" against "world war")."""
    if SequenceMatcher(None, " ".join(sorted(a)), " ".join(sorted(b))).ratio() >= 0.75:
        return True
    short, long_ = sorted((a, b), key=len)
    initials = {w[0] for w in long_}
    return len(short) == 1 and len(long_) > 1 and set(next(iter(short))) <= initials | {"i", "s"}


def swapped_name(claim: str, anchor: str) -> bool:
    """The claim puts a name the anchor lacks where the anchor has another name.

    A run of names in the claim (capitalised words and acronyms, the first word only when it is
    an acronym: :func:`~rag.verify.lexical.claim_names`) holds one the anchor lacks, every other
    content word of the claim (two at least) is the anchor's, and a run of names of the anchor
    holds names the claim lacks after the same token, not another spelling of the claim's
    ("Organisation") nor its initials ("WWI"): the claim is the anchor with one name put in
    another's place ("Tom Berger manages the Data
    team" against "Maria Keller manages the Data team"). A summary that adds a name while
    rewording ("Actress Sofia Vergara is embroiled in a legal battle") is no swap.

    Example:
        >>> swapped_name("Tom Berger manages the Data team.", "Maria Keller manages the Data team.")
        True
        >>> swapped_name("Maria Keller runs the Data team.", "Maria Keller manages the Data team.")
        False
    """
    anchor_words, claim_words = content_words(anchor), content_words(claim)
    theirs = [(before, run - claim_words) for before, run in _name_runs(anchor) if run - claim_words]
    for before, run in _name_runs(claim):
        missing = frozenset(run - anchor_words)
        rest = claim_words - run
        if missing and len(rest) >= 2 and rest <= anchor_words:
            if any(b == before and not _variant(missing, other) for b, other in theirs):
                return True
    return False


def _positions(text: str) -> dict[str, int]:
    """Each content word (stemmed) that occurs once in ``text``, with its token position."""
    seen: dict[str, int] = {}
    repeated: set[str] = set()
    for i, token in enumerate(_TOKEN.findall(text)):
        for word in content_words(token):
            if word in seen:
                repeated.add(word)
            seen.setdefault(word, i)
    return {w: i for w, i in seen.items() if w not in repeated}


_AUXILIARIES = frozenset("is are was were be been being get gets got".split())


def _passive_between(text: str, positions: dict[str, int], a: str, b: str) -> bool:
    """Whether a passive sits between words ``a`` and ``b``: a ``by``, or an auxiliary before a participle ("is required")."""
    tokens = [t.lower() for t in _TOKEN.findall(text)]
    lo, hi = sorted((positions[a], positions[b]))
    between = tokens[lo : hi + 1]
    return "by" in between or any(
        t in _AUXILIARIES and nxt.endswith(("ed", "en", "wn", "lt", "nt", "ught"))
        for t, nxt in zip(between, between[1:])
    )


def reversed_relation(claim: str, anchor: str) -> bool:
    """The claim's relation is the anchor's with its two ends swapped.

    Over the content words both sides hold once each, in their order on each side: a run
    ``a, m.., b`` of three or four consecutive shared words in the claim reads ``b, m.., a``
    in the anchor, the middle unchanged ("Northwind acquired the company" against "The company
    acquired Northwind"; "Venus is closer to the Sun than Mercury" against the other way
    round). Not when a middle word is symmetric (:data:`_SYMMETRIC`: "associated with") or a
    passive lies between the ends on either side (a ``by``, or an auxiliary before a
    participle: "the key is required for every request"). The run must be consecutive on
    both sides: a phrase moved to the front of a sentence reorders words without swapping
    the ends of a relation.

    Example:
        >>> reversed_relation("The board reports to the committee.", "The committee reports to the board.")
        True
        >>> reversed_relation("Atlas is owned by the Platform team.", "The Platform team owns Atlas.")
        False
    """
    mine, theirs = _positions(claim), _positions(anchor)
    shared_mine = sorted((w for w in mine if w in theirs), key=mine.__getitem__)
    shared_theirs = sorted(shared_mine, key=theirs.__getitem__)
    where = {w: i for i, w in enumerate(shared_theirs)}
    for size in (3, 4):
        for i in range(len(shared_mine) - size + 1):
            run = shared_mine[i : i + size]
            a, middle, b = run[0], run[1:-1], run[-1]
            j = where[b]
            if shared_theirs[j : j + size] != [b, *middle, a] or any(m in _SYMMETRIC for m in middle):
                continue
            if not (_passive_between(claim, mine, a, b) or _passive_between(anchor, theirs, a, b)):
                return True
    return False


@lru_cache(maxsize=1024)
def _sentences(source: str) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple(
        (source[a:b], frozenset(content_words(source[a:b]))) for a, b in sentence_spans(source, MAX_SENTENCES)
    )


def anchor(claim: str, source: str) -> tuple[str, float]:
    """The sentence of ``source`` holding most of the claim's content words (ties: the earlier), and that share.

    A word of :data:`OPPOSITES` the sentence lacks is left out of the share: it is what a
    contradiction changes. Returns ``("", 0.0)`` for a claim without content words or an
    empty source.
    """
    words = content_words(claim)
    if not words:
        return "", 0.0
    polar = words & _POLAR
    best, best_share = "", 0.0
    for text, terms in _sentences(source):
        counted = len(words) - len(polar - terms)
        share = len(words & terms) / counted if counted else 0.0
        if share > best_share:
            best, best_share = text, share
    return best, best_share


def contradiction(claim: str, source: str) -> str | None:
    """Why the claim contradicts its anchor sentence in ``source`` ("negation", "opposite", "name", "reversed"), or None.

    A negation, an opposite word or a reversal needs the anchor to hold :data:`MIN_POLARITY_OVERLAP` of the
    claim's content words. None too when the anchor holds less than :data:`MIN_OVERLAP` of them
    (the claim is then not a rewording of one sentence, and the other checks judge it) or the
    claim has fewer than two content words (a short answer's phrase).

    Example:
        >>> contradiction("Purchases below 500 EUR need approval.", "Purchases above 500 EUR need a director's approval.")
        'opposite'
        >>> contradiction("Purchases above 500 EUR need approval.", "Purchases above 500 EUR need a director's approval.") is None
        True
    """
    if len(content_words(claim)) < 2:
        return None
    sentence, share = anchor(claim, source)
    if share < MIN_OVERLAP:
        return None
    if share >= MIN_POLARITY_OVERLAP and negation_flipped(claim, sentence):
        return "negation"
    if share >= MIN_POLARITY_OVERLAP and opposite_word(claim, sentence):
        return "opposite"
    if swapped_name(claim, sentence):
        return "name"
    if share >= MIN_POLARITY_OVERLAP and reversed_relation(claim, sentence):
        return "reversed"
    return None
