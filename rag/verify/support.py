"""Support scoring: how well does a source back a claim?

:class:`SupportScorer` is the seam: anything that maps a claim and a batch of
source texts to scores in [0, 1] fits (an NLI cross-encoder or an LLM judge can
replace :class:`HybridSupportScorer` later).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag.verify.claims import split_claims

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Support:
    """How well one source backs a claim, and where.

    Attributes:
        score: in [0, 1]; higher means better support.
        start: offset in the source text of the passage that backs the claim best
            (a sentence or a few adjacent ones).
        end: its end offset (exclusive); ``start == end == 0`` for an empty source.
    """

    score: float
    start: int = 0
    end: int = 0


class SupportScorer(Protocol):
    """Scores how well each source supports a claim, and finds the passage that does."""

    def support(self, claim: str, sources: Sequence[str], context: str = "") -> list[Support]:
        """Score one claim against a batch of sources.

        Args:
            claim: one sentence, citation markers removed.
            sources: source texts.
            context: the question a short answer (a phrase) replies to; it gives the phrase
                its meaning, so it counts towards topic and word overlap, while the facts
                checked (numbers, names) are the claim's own.

        Returns:
            One :class:`Support` per source, in order.
        """
        ...


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
_SUFFIXES = (
    "ingly", "edly", "ations", "ation", "ments", "ment", "ness", "ings", "ing", "ers", "er", "ed", "es", "ly", "s"
)


def _stem(word: str) -> str:
    """Lowercase and strip one common English suffix (consistency matters, not linguistics)."""
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _numbers(text: str) -> set[float]:
    """Numeric values in a text: ``1,887`` is 1887, ``3.50`` is 3.5, ``53%`` and ``53 percent`` are 53."""
    values = set()
    for m in _NUMBER.finditer(text):
        whole = m.group(1).replace(",", "")
        values.add(float(f"{whole}.{m.group(2)}" if m.group(2) else whole))
    return values


def _content_words(text: str) -> set[str]:
    return {_stem(t) for t in _TOKEN.findall(text) if t.lower() not in _STOPWORDS and not t.isdigit()}


def _entities(text: str) -> set[str]:
    """Capitalised words and acronyms that are not stopwords, stemmed."""
    return {
        _stem(t)
        for t in _TOKEN.findall(text)
        if (t[0].isupper() or _ACRONYM.match(t)) and t.lower() not in _STOPWORDS and not t.isdigit()
    }


def _share(needles: set[str], haystack: set[str]) -> float:
    return len(needles & haystack) / len(needles) if needles else 1.0


class HybridSupportScorer:
    """Support from embeddings, word overlap, entities and numbers, with no model beyond the embedder.

    For a claim ``c`` and source ``s``::

        sem   = clip((max cos(c, u) - SEM_FLOOR) / (SEM_CEIL - SEM_FLOOR), 0, 1)
                over u in {s, each sentence of s, each pair of adjacent sentences}
        lex   = share of c's content words (lowercased, lightly stemmed, no
                stopwords or digits) found in s; sem when c has none
        ent   = share of c's capitalised words and acronyms found in s (1 when c has none)
        score = (W_SEM * sem + W_LEX * lex) * (1 - ENT_PENALTY * (1 - ent))
        score = min(score, NUMBER_CAP)   if any number in c (integer, decimal,
                                         percentage, year) is not in s

    with ``W_SEM = 0.4, W_LEX = 0.6, ENT_PENALTY = 0.5, SEM_FLOOR = 0.3,
    SEM_CEIL = 0.8, NUMBER_CAP = 0.2``. The cosine is rescaled for
    all-MiniLM-L6-v2, where a claim on the source's topic already reaches about
    0.5 and a close paraphrase 0.8. Word overlap outweighs meaning because the
    embedding cannot tell a supported claim from a planted one on the same
    topic, while words absent from the source can; the prompt asks for
    extractive answers, so supported claims mostly reuse the source's words.
    Names missing from the source (a person, a city) scale the score down
    rather than adding a bonus when present. Number disagreement caps the
    score: "founded in 1990" against "founded in 1887" must fail however
    similar the sentences are. On hand-made pairs, supported claims scored
    0.7 to 1.0 and planted ones 0.15 to 0.45 (0.64 for an unsupported
    superlative that reuses the source's words), hence a threshold near 0.5.

    Source embeddings are kept in a small per-instance LRU cache, since the
    verifier scores the same sources for every claim of an answer.

    Args:
        embed: maps texts to L2-normalised vectors, one row per text.
        cache_size: source-side texts whose embeddings are kept.

    Example:
        >>> import numpy as np
        >>> alike = lambda texts: np.ones((len(texts), 2), np.float32) / np.sqrt(2)  # a stand-in embedder
        >>> scorer = HybridSupportScorer(alike)
        >>> scorer.score("The bridge opened in 1932.", ["The bridge opened to traffic in 1932.", "The bridge opened in 1950."])
        [1.0, 0.2]

        The second source is capped at ``NUMBER_CAP``: it lacks the claim's year.
    """

    W_SEM = 0.4
    W_LEX = 0.6
    ENT_PENALTY = 0.5
    SEM_FLOOR = 0.3
    SEM_CEIL = 0.8
    NUMBER_CAP = 0.2
    MAX_SENTENCES = 64

    def __init__(self, embed: Embed, cache_size: int = 2048) -> None:
        self._embed = embed
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _vectors(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh = np.asarray(self._embed(missing), dtype=np.float32) if missing else None
        with self._lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            if fresh is not None:
                for t, v in zip(missing, fresh, strict=True):
                    found[t] = v
                    self._cache[t] = v
            for t in texts:
                if t in self._cache:
                    self._cache.move_to_end(t)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts])

    @staticmethod
    def _units(source: str) -> tuple[list[str], list[tuple[int, int]]]:
        """The source, its sentences and its pairs of adjacent sentences, with their spans."""
        spans = sentence_spans(source, HybridSupportScorer.MAX_SENTENCES)
        spans = [*spans, *((a[0], b[1]) for a, b in zip(spans, spans[1:]))]
        units: dict[str, tuple[int, int]] = {source: (0, len(source))}
        for a, b in spans:
            units.setdefault(source[a:b], (a, b))
        return list(units), list(units.values())

    def _unit_sims(self, claim: str, sources: Sequence[str]) -> list[tuple[list[tuple[int, int]], list[str], np.ndarray]]:
        units = [self._units(s) for s in sources]
        flat = [u for texts, _ in units for u in texts]
        claim_vec = np.asarray(self._embed([claim]), dtype=np.float32)[0]
        sims = self._vectors(flat) @ claim_vec
        out, i = [], 0
        for texts, spans in units:
            out.append((spans, texts, sims[i : i + len(texts)]))
            i += len(texts)
        return out

    def _rescale(self, cosine: float) -> float:
        return min(1.0, max(0.0, (cosine - self.SEM_FLOOR) / (self.SEM_CEIL - self.SEM_FLOOR)))

    def semantic(self, claim: str, sources: Sequence[str]) -> list[float]:
        """Rescaled best cosine between the claim and each source's units (``sem`` above)."""
        return [self._rescale(float(sims.max())) for _, _, sims in self._unit_sims(claim, sources)]

    def score(self, claim: str, sources: Sequence[str], context: str = "") -> list[float]:
        """The scores of :meth:`support`, alone."""
        return [s.score for s in self.support(claim, sources, context)]

    def support(self, claim: str, sources: Sequence[str], context: str = "") -> list[Support]:
        """Score one claim against a batch of sources (see the class docstring for the formula).

        With a ``context`` (a short answer's question), ``sem`` and ``lex`` are computed on
        context + claim, while ``ent`` and the number cap look at the claim alone: a question
        may name things the source words differently ("Super Bowl 50" vs "the game"), but the
        answer's own names and numbers must be in the source.

        The span of each result is the sentence, or pair of adjacent sentences, of the source
        with the highest ``W_SEM * sem + W_LEX * lex`` computed on that unit alone (the whole
        source when it has one sentence); ties go to the shorter unit.

        Args:
            claim: one sentence, citation markers removed.
            sources: source texts.
            context: the question of a short answer ("" for sentence answers).

        Returns:
            One :class:`Support` per source; score 0 and an empty span for an empty source.
        """
        if not sources:
            return []
        present = [i for i, s in enumerate(sources) if s.strip()]
        full = f"{context.strip()} {claim}".strip()
        units = dict(zip(present, self._unit_sims(full, [sources[i] for i in present]), strict=True)) if present else {}
        words, ents, nums = _content_words(full), _entities(claim), _numbers(claim)
        out = []
        for i, source in enumerate(sources):
            if i not in units:
                out.append(Support(0.0))
                continue
            spans, texts, sims = units[i]
            sem = self._rescale(float(sims.max()))
            source_words = _content_words(source)
            lex = _share(words, source_words) if words else sem
            value = (self.W_SEM * sem + self.W_LEX * lex) * (1 - self.ENT_PENALTY * (1 - _share(ents, source_words)))
            if not nums <= _numbers(source):
                value = min(value, self.NUMBER_CAP)
            start, end = self._best_span(words, spans, texts, sims)
            out.append(Support(round(min(1.0, max(0.0, value)), 6), start, end))
        return out

    def _best_span(
        self, words: set[str], spans: list[tuple[int, int]], texts: list[str], sims: np.ndarray
    ) -> tuple[int, int]:
        if len(spans) == 1:
            return spans[0]
        best, best_key = spans[1], (-1.0, 0)
        for (a, b), text, sim in zip(spans[1:], texts[1:], sims[1:], strict=True):
            sem = self._rescale(float(sim))
            lex = _share(words, _content_words(text)) if words else sem
            key = (round(self.W_SEM * sem + self.W_LEX * lex, 6), -(b - a))
            if key > best_key:
                best, best_key = (a, b), key
        return best


# Public names of the checks above, for the learned scorer (rag/verify/model.py).
numbers = _numbers
content_words = _content_words
entities = _entities
