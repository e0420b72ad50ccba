"""Frozen dataclasses that flow between the stages of the pipeline."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

JsonDict = dict[str, Any]

ABSTAIN_TEXT = "I don't know based on the provided sources."
"""The exact answer the generator is told to give when its sources lack the answer."""


_PAGE = re.compile(r"page (\d+)", re.IGNORECASE)

@dataclass(frozen=True)
class Document:
    """A loaded document before chunking.

    Attributes:
        external_id: key inside its collection (BEIR ``_id`` or the source path).
        source: where it came from (path or URI).
        title: title, indexed together with the text.
        text: full plain text; chunk offsets point into it.
        metadata: free metadata (JSON-serialisable).
        sections: (char_start, heading path) pairs, sorted by start, for Markdown.
    """

    external_id: str
    source: str
    title: str
    text: str
    metadata: JsonDict = field(default_factory=dict)
    sections: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk produced by the chunker, before it gets a database id.

    Attributes:
        ordinal: position of the chunk in its document, from 0.
        text: the chunk's text, equal to ``document.text[char_start:char_end]``.
        char_start: start offset into the document text.
        char_end: end offset (exclusive).
        token_count: tokens of ``text`` under the embedding model's tokenizer.
        section: heading path of the section where the chunk starts, or "".
        sections: every section that starts inside the chunk or covers its start, as
            ``(offset into text, heading path)`` in order, the first at offset 0 (empty when
            the document has no sections).
    """

    ordinal: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    section: str = ""
    sections: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A stored chunk with the facts of its document that results need.

    ``section`` is the heading path where the chunk starts; ``sections`` lists the sections
    inside it as ``(offset into text, heading path)`` (see :class:`ChunkDraft`), so that a
    sentence of the chunk can be placed under its own heading (:meth:`section_at`).
    """

    chunk_id: int
    document_id: int
    collection: str
    external_id: str
    source: str
    title: str
    section: str
    ordinal: int
    char_start: int
    char_end: int
    text: str
    metadata: JsonDict = field(default_factory=dict)
    sections: tuple[tuple[int, str], ...] = ()

    def section_at(self, offset: int) -> str:
        """Heading path of the section holding ``text[offset]``: the last one starting at or before it.

        Example:
            >>> c = Chunk(1, 1, "c", "a.md", "a.md", "", "Guide", 0, 0, 30, "x" * 30, sections=((0, "Guide"), (12, "Guide > Pets")))
            >>> c.section_at(3), c.section_at(12)
            ('Guide', 'Guide > Pets')
        """
        found = self.section
        for start, path in self.sections:
            if start > offset:
                break
            found = path
        return found


def page_of(section: str) -> int | None:
    """The page number a heading path names (``"page 2"``, as PDF sections are), else None.

    Example:
        >>> page_of("page 2"), page_of("Guide > Pets")
        (2, None)
    """
    for part in reversed(section.split(" > ")):
        m = _PAGE.fullmatch(part.strip())
        if m:
            return int(m.group(1))
    return None


Stage = Literal["bm25", "dense", "fused", "rerank"]


@dataclass(frozen=True)
class Hit:
    """A retriever's raw hit: a chunk id and its score from one stage."""

    chunk_id: int
    score: float


@dataclass(frozen=True)
class StageScores:
    """A chunk's score at each stage it went through; ``None`` where a stage did not score it.

    Attributes:
        bm25: BM25 score from tantivy.
        dense: inner product of the normalised query and chunk vectors.
        fused: reciprocal rank fusion score.
        rerank: the cross-encoder's score (a blended rerank order is the list's ``score``).
    """

    bm25: float | None = None
    dense: float | None = None
    fused: float | None = None
    rerank: float | None = None

    def with_(self, **scores: float | None) -> StageScores:
        """A copy with some stages' scores set."""
        return replace(self, **scores)

    def as_dict(self) -> dict[str, float]:
        """The stages that scored, by name (for JSON reports and responses)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk with its score at every stage it went through.

    Attributes:
        chunk: the chunk.
        score: the score that orders the list this object is in.
        scores: per-stage scores.
    """

    chunk: Chunk
    score: float
    scores: StageScores = field(default_factory=StageScores)


@dataclass(frozen=True)
class Timings:
    """Milliseconds per stage of one search or answer.

    ``fuse`` covers resolving filters, fusion and loading the fused chunks' rows; ``dense`` is the
    vector search alone (``embed`` is the query's embedding). ``plan`` is the planner's generator calls
    (rewriting a follow-up, choosing the next hop, splitting a question). ``total`` is wall time of the
    whole call.
    """

    plan: float = 0.0
    embed: float = 0.0
    bm25: float = 0.0
    dense: float = 0.0
    fuse: float = 0.0
    rerank: float = 0.0
    generate: float = 0.0
    verify: float = 0.0
    total: float = 0.0

    @property
    def retrieval(self) -> float:
        """Hybrid retrieval alone: embed + bm25 + dense + fuse."""
        return self.embed + self.bm25 + self.dense + self.fuse

    def plus(self, other: Timings) -> Timings:
        """Stage-wise sum (steps of a plan add up)."""
        return Timings(**{k: getattr(self, k) + getattr(other, k) for k in STAGE_NAMES})

    def with_(self, **stages: float) -> Timings:
        """A copy with some stages set."""
        return replace(self, **stages)

    def as_dict(self, digits: int = 3) -> dict[str, float]:
        """Every stage by name, rounded (for responses, reports and metrics)."""
        return {k: round(getattr(self, k), digits) for k in STAGE_NAMES}


STAGE_NAMES: tuple[str, ...] = ("plan", "embed", "bm25", "dense", "fuse", "rerank", "generate", "verify", "total")
"""The stages of :class:`Timings`, in pipeline order."""


@dataclass(frozen=True)
class Usage:
    """Generator tokens spent on one answer."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def plus(self, other: Usage) -> Usage:
        """Token counts added up."""
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class PlanStep:
    """One retrieval of a plan, with what it found and what the planner spent after it.

    Attributes:
        query: the text searched.
        purpose: why the planner chose it: ``question`` (the question itself), ``hop`` (a query
            for what the evidence so far lacks), ``expansion`` (the question with its best passage,
            when the check named nothing) or ``sub-question`` (one part of a split question).
        found: the chunks the search returned, best first.
        timings: the search's stages, plus ``plan``: the planning call made after this step
            (the iterative planner's check of the evidence so far; a decomposition's split is
            counted on the question's own step).
        usage: that planning call's tokens.
        decision: what that call decided, in a few words (``enough``, ``next: <query>``,
            ``split into 2``); empty when no call followed the step.
    """

    query: str
    purpose: str = "question"
    found: tuple[ScoredChunk, ...] = ()
    timings: Timings = field(default_factory=Timings)
    usage: Usage = field(default_factory=Usage)
    decision: str = ""


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation: the user's question and the answer it got."""

    question: str
    answer: str = ""


@dataclass(frozen=True)
class Rewrite:
    """A follow-up question rewritten into one that stands alone.

    Attributes:
        original: the follow-up as the user wrote it.
        question: the standalone question that was searched and answered.
        usage: tokens of the rewriting call.
        ms: its wall time.
        fallback: why the model's rewrite was not used (the call failed, its reply did not
            parse, or it copied a question) and what was searched instead (the follow-up spliced
            into the earlier question, or both joined); empty when the model's rewrite was used.
    """

    original: str
    question: str
    usage: Usage = field(default_factory=Usage)
    ms: float = 0.0
    fallback: str = ""


@dataclass(frozen=True)
class Plan:
    """The retrievals a planner ran for a question, in order.

    Attributes:
        steps: the retrievals, the question's own first.
        mode: the mode that ran: ``direct``, ``iterative`` or ``decompose`` (``direct`` after a
            fallback).
        requested: the mode asked for (``auto`` included); equal to ``mode`` unless auto chose
            or a failed planning call fell back.
        stop: why planning stopped (``enough``, ``max_hops``, ``no new query``, ``prompt token
            budget``, ``wall time budget``, ``single-hop``, ...).
        fallback: why a planning call failed (its reply did not parse, or the call itself
            failed); empty when none did.
        rewrite: how a follow-up was made standalone, or None for a first question.
    """

    steps: tuple[PlanStep, ...]
    mode: str = "direct"
    requested: str = ""
    stop: str = ""
    fallback: str = ""
    rewrite: Rewrite | None = None

    @property
    def question(self) -> str:
        """The question searched first and answered (the rewrite of a follow-up)."""
        return self.steps[0].query if self.steps else ""

    @property
    def usage(self) -> Usage:
        """Tokens of every planning call, the rewrite included."""
        total = self.rewrite.usage if self.rewrite else Usage()
        for step in self.steps:
            total = total.plus(step.usage)
        return total

    @property
    def timings(self) -> Timings:
        """Every step's stages added up, plus the rewrite's time under ``plan``."""
        total = Timings(plan=self.rewrite.ms if self.rewrite else 0.0)
        for step in self.steps:
            total = total.plus(step.timings)
        return total.with_(total=0.0)


@dataclass(frozen=True)
class Evidence:
    """A retrieved chunk and the plan step that found it.

    Attributes:
        found: the chunk with its scores.
        step: index of the step in its :class:`Plan`, from 0.
        query: the query that step searched.
    """

    found: ScoredChunk
    step: int = 0
    query: str = ""

    @property
    def chunk(self) -> Chunk:
        """The chunk itself."""
        return self.found.chunk


@dataclass(frozen=True)
class Query:
    """A search query: the text, and its embedding when the caller already has it.

    A reader over several shards embeds once and hands the vector to every shard; benchmarks pass
    precomputed vectors to measure search alone.
    """

    text: str
    vector: Any = None


class Stopwatch:
    """Collects milliseconds per stage while one search or answer runs.

    Example:
        >>> clock = Stopwatch()
        >>> with clock("bm25"):
        ...     pass
        >>> clock.freeze().bm25 >= 0.0
        True
    """

    def __init__(self) -> None:
        self._ms: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the block and add it to ``stage`` (one of :data:`STAGE_NAMES`)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, (time.perf_counter() - t0) * 1000.0)

    def add(self, stage: str, ms: float) -> None:
        """Add ``ms`` milliseconds to ``stage``.

        Raises:
            ValueError: for a name that is not a stage.
        """
        if stage not in STAGE_NAMES:
            raise ValueError(f"unknown stage {stage!r}; valid: {', '.join(STAGE_NAMES)}")
        self._ms[stage] = self._ms.get(stage, 0.0) + ms

    def freeze(self) -> Timings:
        """The stages timed so far."""
        return Timings(**self._ms)


@dataclass(frozen=True)
class Restriction:
    """Which chunk ids a search may return, resolved once per query and applied inside each index.

    Attributes:
        allow: only these ids (a filter was given), or None.
        deny: every id but these (chunks of pending or deleted documents), or None.
    """

    allow: Any = None
    deny: Any = None

    @property
    def nothing(self) -> bool:
        """True when no chunk can match (a filter that matched no chunk)."""
        return self.allow is not None and not len(self.allow)


@dataclass(frozen=True)
class LoadFailure:
    """A file, or one line of a JSONL file, that could not be loaded.

    Attributes:
        path: the file, or ``"<file>:<line number>"`` for one JSONL line.
        reason: why, on one line, e.g. ``"encrypted PDF"``.
    """

    path: str
    reason: str


@dataclass(frozen=True)
class CitedSpan:
    """The part of a cited chunk that backs a claim.

    Attributes:
        start: offset into the chunk's text.
        end: end offset (exclusive) into the chunk's text.
        section: heading path of the section holding the span's start.
        page: the page it is on, when the document has pages (PDF), else None.
    """

    start: int
    end: int
    section: str
    page: int | None = None


@dataclass(frozen=True)
class Citation:
    """A numbered source used in an answer.

    Attributes:
        n: the source number shown to the model, 1-based.
        chunk: the cited chunk.
        kind: ``generated`` when the model wrote it, ``attributed`` when the verifier added it.
        spans: the sentences of the chunk that back the answer's claims citing it, in chunk
            order without repeats (empty when the verifier gave none).
    """

    n: int
    chunk: Chunk
    kind: Literal["generated", "attributed"] = "generated"
    spans: tuple[CitedSpan, ...] = ()


Verdict = Literal["supported", "unsupported", "uncited"]


@dataclass(frozen=True)
class Claim:
    """One sentence of an answer with its citations and verdict.

    Attributes:
        text: the sentence, markers removed.
        citations: the valid source numbers it cites (or the one attributed to it).
        verdict: see :class:`rag.verify.verifier.Verifier`.
        score: the best support score among its citations.
        kinds: per citation, ``generated`` or ``attributed``.
        spans: per citation, the ``(start, end)`` offsets inside that source's chunk text of
            the sentence(s) that back the claim best; empty when unknown.
    """

    text: str
    citations: tuple[int, ...]
    verdict: Verdict
    score: float
    kinds: tuple[str, ...] = ()
    spans: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Verification:
    """The verifier's result for a whole answer."""

    claims: tuple[Claim, ...]
    faithfulness: float
    invalid_citations: tuple[int, ...] = ()
    answer: str = ""


@dataclass(frozen=True)
class Generation:
    """Text produced by the generator, with token usage."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    finish_reason: str = ""


@dataclass(frozen=True)
class JsonReply:
    """A reply constrained to a JSON schema, parsed and checked against it, with token usage."""

    data: JsonDict
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def usage(self) -> Usage:
        """The call's tokens."""
        return Usage(self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True)
class StreamDelta:
    """One piece of a streamed completion; the last one carries usage."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    done: bool = False


@dataclass(frozen=True)
class Answer:
    """What ``/v1/ask`` returns, as a domain object.

    ``usage`` counts every generator token the answer cost, its plan's calls included (the plan
    has them per step). ``sources`` are all chunks the plan's steps retrieved, and ``evidence``
    the ones handed to the generator: ``evidence[i]`` is source ``[i + 1]``, with the step and
    query that found it.
    """

    answer: str
    citations: tuple[Citation, ...]
    claims: tuple[Claim, ...]
    faithfulness: float
    abstained: bool
    pipeline: JsonDict
    timings: Timings
    usage: Usage
    sources: tuple[ScoredChunk, ...] = ()
    plan: Plan | None = None
    invalid_citations: tuple[int, ...] = ()
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class Filters:
    """Restrictions applied inside both retrievers, before truncation.

    Attributes:
        source_prefix: keep documents whose source starts with this.
        metadata: per key, a value (equality), ``{"in": [...]}``, or a range
            ``{"gte"|"gt"|"lte"|"lt": bound}``; numbers compare as numbers, strings as strings.
        date_field: metadata key holding an ISO-8601 date (default ``modified``).
        date_from: keep documents whose date is on or after this ISO date.
        date_to: keep documents whose date is on or before this ISO date.
    """

    source_prefix: str | None = None
    metadata: JsonDict = field(default_factory=dict)
    date_field: str = "modified"
    date_from: str | None = None
    date_to: str | None = None

    @property
    def empty(self) -> bool:
        """Whether nothing is restricted."""
        return not (self.source_prefix or self.metadata or self.date_from or self.date_to)


@dataclass(frozen=True)
class FusedHit:
    """A chunk id after fusion, with the score of every stage that found it."""

    chunk_id: int
    score: float
    scores: StageScores = field(default_factory=StageScores)


@dataclass(frozen=True)
class Judgment:
    """An end user's relevance judgment of one chunk for one query (``POST /v1/feedback``)."""

    query: str
    chunk_id: int
    relevant: bool
