"""Support scoring: how well does a source back a claim?

:class:`SupportScorer` is the seam: anything that maps a claim and a batch of
source texts to scores in [0, 1] fits (an NLI cross-encoder or an LLM judge can
replace :class:`HybridSupportScorer` later).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np

from rag.verify.checks import CONTRADICTION_CAP, contradiction
from rag.verify.lexical import content_words, entities, numbers, sentence_spans

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


@runtime_checkable
class BatchSupportScorer(SupportScorer, Protocol):
    """A :class:`SupportScorer` that scores all claims of an answer at once, and can use stored vectors."""

    def support_many(
        self,
        claims: Sequence[str],
        sources: Sequence[str],
        among: Sequence[Sequence[int]],
        context: str = "",
        vectors: Sequence[np.ndarray | None] | None = None,
        steps: Sequence[int] | None = None,
    ) -> list[list[Support]]:
        """Per claim, one :class:`Support` per index of ``among`` (see :meth:`HybridSupportScorer.support_many`)."""
        ...


def _share(needles: set[str], haystack: set[str]) -> float:
    return len(needles & haystack) / len(needles) if needles else 1.0


def _chained_share(
    words: set[str], here: set[str], asked: set[str], others: Sequence[set[str]], steps: Sequence[int], i: int
) -> float:
    """``lex`` of a short answer in a multi-step plan: the question's words may sit in one source of another step.

    A two-hop question ("the year the band Frankie LaRocka drummed for was formed") is asked
    about one passage (LaRocka's, found by the question) and answered from another (the band's,
    found by the hop): the question's own words count as found when a single source of another
    step has them. The caller chains only an answer whose own words, numbers and names are all in
    this source.
    """
    missing = (words - here) & asked
    bridged = max((len(missing & w) for j, w in enumerate(others) if steps[j] != steps[i]), default=0)
    return (len(words & here) + bridged) / len(words)


@dataclass(frozen=True)
class _Prepared:
    """The lexical side of one source, computed once per source text (see :func:`_prepare`).

    ``windows`` are the source's sentences and pairs of adjacent sentences (distinct texts,
    the whole source left out), ``terms`` their content words.
    """

    spans: tuple[tuple[int, int], ...]
    windows: tuple[str, ...]
    terms: tuple[frozenset[str], ...]
    words: frozenset[str]
    numbers: frozenset[float]


@lru_cache(maxsize=1024)
def _prepare(source: str) -> _Prepared:
    sentences = sentence_spans(source, HybridSupportScorer.MAX_SENTENCES)
    found: dict[str, tuple[int, int]] = {}
    for a, b in [*sentences, *((a[0], b[1]) for a, b in zip(sentences, sentences[1:]))]:
        if source[a:b] != source:
            found.setdefault(source[a:b], (a, b))
    return _Prepared(
        tuple(found.values()),
        tuple(found),
        tuple(frozenset(content_words(w)) for w in found),
        frozenset(content_words(source)),
        frozenset(numbers(source)),
    )


class HybridSupportScorer:
    """Support from embeddings, word overlap, entities and numbers, with no model beyond the embedder.

    For a claim ``c`` and source ``s``::

        sem   = clip((max cos(c, u) - SEM_FLOOR) / (SEM_CEIL - SEM_FLOOR), 0, 1)
                over u in {s, the claim's preselected windows of s}
        lex   = share of c's content words (lowercased, lightly stemmed, no
                stopwords or digits) found in s; sem when c has none. For a
                short answer of a plan of several steps (``context`` and
                ``steps``), the question's words also count when one source
                of another step has them (see :func:`_chained_share`)
        ent   = share of c's capitalised words and acronyms found in s (1 when c has none)
        score = (W_SEM * sem + W_LEX * lex) * (1 - ENT_PENALTY * (1 - ent))
        score = min(score, NUMBER_CAP)   if any number in c (integer, decimal,
                                         percentage, year, number word) is not in s
        score = min(score, CONTRADICTION_CAP)  if c contradicts its anchor sentence
                                         of s (rag.verify.checks.contradiction:
                                         a negation, an opposite word, a swapped
                                         name or a reversed relation)

    with ``W_SEM = 0.4, W_LEX = 0.6, ENT_PENALTY = 0.5, SEM_FLOOR = 0.3,
    SEM_CEIL = 0.8, NUMBER_CAP = 0.2``. The windows of a source are its
    sentences and pairs of adjacent sentences; of all windows of the sources a
    claim is scored against, only the ``windows`` best by word overlap with the
    claim (ties to the shorter) are embedded, so a claim costs a bounded number
    of embeddings however long its sources are. The cosine is rescaled for
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

    :meth:`support_many` scores all claims of an answer with one call of ``embed``:
    the claims, and whichever windows and sources it has not seen. A source's own
    vector may be handed in (the one stored with its chunk, which embeds the
    document title and the chunk text) and is then used instead of embedding the
    source again. Embeddings of windows and sources are kept in a small
    per-instance LRU cache; the lexical side of a source in a process-wide one.

    Args:
        embed: maps texts to L2-normalised vectors, one row per text.
        cache_size: source-side texts whose embeddings are kept.
        windows: windows embedded per claim, over all its sources together (0: the
            whole source only, and a span chosen by word overlap alone).
        contradictions: apply the contradiction cap (off only to measure the scorer as it
            was before it, ``rag eval verifier --compare baseline``).

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
    WINDOWS = 3

    def __init__(
        self,
        embed: Embed,
        cache_size: int = 2048,
        windows: int = WINDOWS,
        *,
        contradictions: bool = True,
    ) -> None:
        if windows < 0:
            raise ValueError(f"windows: must be at least 0, got {windows}")
        self._contradictions = contradictions
        self._embed = embed
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._windows = windows
        self._lock = threading.Lock()

    def _embedded(self, claims: list[str], texts: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The claims' vectors and the texts' (cached ones reused), from one call of ``embed``."""
        with self._lock:  # what is cached now is copied out: another thread may evict it meanwhile
            found = {t: self._cache[t] for t in texts if t in self._cache}
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        batch = [*claims, *missing]
        vectors = np.asarray(self._embed(batch), dtype=np.float32) if batch else np.zeros((0, 0), np.float32)
        fresh = dict(zip(missing, vectors[len(claims) :], strict=True))
        with self._lock:
            for t, v in fresh.items():
                found[t] = v
                self._cache[t] = v
            for t in texts:
                if t in self._cache:
                    self._cache.move_to_end(t)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vectors[: len(claims)], found

    def _rescale(self, cosine: float) -> float:
        return min(1.0, max(0.0, (cosine - self.SEM_FLOOR) / (self.SEM_CEIL - self.SEM_FLOOR)))

    def _preselect(
        self, words: set[str], prepared: dict[int, _Prepared], among: Sequence[int]
    ) -> list[tuple[int, int]]:
        """The claim's ``windows`` best windows as ``(source index, window index)``, by word overlap."""
        if not self._windows:
            return []
        ranked = [
            (_share(words, terms) if words else 0.0, -(b - a), -i, -w)
            for i in among
            if i in prepared
            for w, ((a, b), terms) in enumerate(zip(prepared[i].spans, prepared[i].terms, strict=True))
        ]
        ranked.sort(reverse=True)
        return [(-i, -w) for _, _, i, w in ranked[: self._windows]]

    def semantic(self, claim: str, sources: Sequence[str]) -> list[float]:
        """Rescaled best cosine between the claim and each source's units (``sem`` above)."""
        return [self._rescale(s) for s in self._cosines([claim], sources, [range(len(sources))], None)[0][0]]

    def _cosines(
        self,
        claims: list[str],
        sources: Sequence[str],
        among: Sequence[Sequence[int]],
        vectors: Sequence[np.ndarray | None] | None,
    ) -> tuple[list[list[float]], list[dict[int, dict[int, float]]], dict[int, _Prepared]]:
        """Per claim: the best cosine per source of ``among``, and the cosine of each preselected window."""
        wanted = sorted({i for idx in among for i in idx if sources[i].strip()})
        prepared = {i: _prepare(sources[i]) for i in wanted}
        words = [content_words(c) for c in claims]
        picks = [self._preselect(w, prepared, idx) for w, idx in zip(words, among, strict=True)]
        stored = {i: vectors[i] for i in wanted if vectors is not None and vectors[i] is not None}
        texts = [sources[i] for i in wanted if i not in stored]
        texts += [prepared[i].windows[w] for pick in picks for i, w in pick]
        claim_vecs, found = self._embedded(claims, texts)
        for i, v in stored.items():
            if v.shape != claim_vecs.shape[1:]:
                raise ValueError(
                    f"vectors: source {i + 1} has shape {v.shape}, the embedder gives {claim_vecs.shape[1:]}"
                )
        best: list[list[float]] = []
        windows: list[dict[int, dict[int, float]]] = []
        for vec, idx, pick in zip(claim_vecs, among, picks, strict=True):
            per_window: dict[int, dict[int, float]] = {}
            for i, w in pick:
                per_window.setdefault(i, {})[w] = float(found[prepared[i].windows[w]] @ vec)
            whole = {i: float((stored[i] if i in stored else found[sources[i]]) @ vec) for i in idx if i in prepared}
            best.append([max([whole[i], *per_window.get(i, {}).values()]) if i in whole else 0.0 for i in idx])
            windows.append(per_window)
        return best, windows, prepared

    def score(self, claim: str, sources: Sequence[str], context: str = "") -> list[float]:
        """The scores of :meth:`support`, alone."""
        return [s.score for s in self.support(claim, sources, context)]

    def support(self, claim: str, sources: Sequence[str], context: str = "") -> list[Support]:
        """Score one claim against a batch of sources: :meth:`support_many` for one claim."""
        return self.support_many([claim], sources, [range(len(sources))], context)[0]

    def support_many(
        self,
        claims: Sequence[str],
        sources: Sequence[str],
        among: Sequence[Sequence[int]],
        context: str = "",
        vectors: Sequence[np.ndarray | None] | None = None,
        steps: Sequence[int] | None = None,
    ) -> list[list[Support]]:
        """Score each claim against some of the sources (see the class docstring for the formula).

        With a ``context`` (a short answer's question), ``sem`` and ``lex`` are computed on
        context + claim, while ``ent`` and the number cap look at the claim alone: a question
        may name things the source words differently ("Super Bowl 50" vs "the game"), but the
        answer's own names and numbers must be in the source.

        The span of each result is, among the claim's preselected windows of that source, the
        one with the highest ``W_SEM * sem + W_LEX * lex`` computed on that window alone (ties
        to the shorter); for a source none was preselected from, the window with the highest
        ``lex``; the whole source when it has one sentence.

        Args:
            claims: sentences, citation markers removed.
            sources: source texts.
            among: per claim, the 0-based indices of the sources to score it against.
            context: the question of a short answer ("" for sentence answers).
            vectors: per source, its stored L2-normalised vector or None; a source with
                none is embedded (once, then cached).
            steps: per source, the plan step that found it (None: all one step).

        Returns:
            Per claim, one :class:`Support` per index of ``among``, in that order; score 0
            and an empty span for an empty source.

        Raises:
            ValueError: ``among``, ``vectors`` or ``steps`` does not fit ``claims`` or ``sources``.
        """
        if len(among) != len(claims):
            raise ValueError(f"among: {len(among)} lists for {len(claims)} claims")
        if vectors is not None and len(vectors) != len(sources):
            raise ValueError(f"vectors: {len(vectors)} for {len(sources)} sources")
        if steps is not None and len(steps) != len(sources):
            raise ValueError(f"steps: {len(steps)} for {len(sources)} sources")
        if any(not 0 <= i < len(sources) for idx in among for i in idx):
            raise ValueError(f"among: an index outside 0..{len(sources) - 1}")
        if not claims:
            return []
        full = [f"{context.strip()} {c}".strip() for c in claims]
        best, windows, prepared = self._cosines(full, sources, among, vectors)
        chained = bool(context.strip()) and steps is not None and len(set(steps)) > 1
        asked = content_words(context) if chained else set()
        others = [_prepare(t).words if t.strip() else set() for t in sources] if chained else []
        out = []
        for claim, text, idx, cosines, picked in zip(claims, full, among, best, windows, strict=True):
            words, ents, nums = content_words(text), entities(claim), numbers(claim)
            own = content_words(claim) if others else set()
            found = []
            for i, cosine in zip(idx, cosines, strict=True):
                if i not in prepared:
                    found.append(Support(0.0))
                    continue
                p = prepared[i]
                sem = self._rescale(cosine)
                lex = _share(words, p.words) if words else sem
                # the chain lends the question's words only to an answer that is itself in this source
                if others and words and (own or nums) and own <= p.words and nums <= p.numbers and ents <= p.words:
                    lex = _chained_share(words, p.words, asked - own, others, steps, i)
                value = (self.W_SEM * sem + self.W_LEX * lex) * (1 - self.ENT_PENALTY * (1 - _share(ents, p.words)))
                if not nums <= p.numbers:
                    value = min(value, self.NUMBER_CAP)
                if self._contradictions and contradiction(claim, sources[i]):
                    value = min(value, CONTRADICTION_CAP)
                start, end = self._best_span(words, p, picked.get(i, {}), len(sources[i]))
                found.append(Support(round(min(1.0, max(0.0, value)), 6), start, end))
            out.append(found)
        return out

    def _best_span(self, words: set[str], p: _Prepared, cosines: dict[int, float], length: int) -> tuple[int, int]:
        if not p.spans:
            return (0, length)
        best, best_key = p.spans[0], (-1.0, 0)
        for w in cosines or range(len(p.spans)):
            a, b = p.spans[w]
            lex = _share(words, p.terms[w]) if words else 0.0
            if cosines:
                sem = self._rescale(cosines[w])
                lex = self.W_SEM * sem + self.W_LEX * (lex if words else sem)
            key = (round(lex, 6), -(b - a))
            if key > best_key:
                best, best_key = (a, b), key
        return best


