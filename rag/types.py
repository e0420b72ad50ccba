"""Frozen dataclasses that flow between the stages of the pipeline."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

JsonDict = dict[str, Any]

ABSTAIN_TEXT = "I don't know based on the provided sources."
"""The exact answer the generator is told to give when its sources lack the answer."""


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
    """

    ordinal: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    section: str = ""


@dataclass(frozen=True)
class Chunk:
    """A stored chunk with the facts of its document that results need."""

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
    vector search alone (``embed`` is the query's embedding). ``total`` is wall time of the whole call.
    """

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


STAGE_NAMES: tuple[str, ...] = ("embed", "bm25", "dense", "fuse", "rerank", "generate", "verify", "total")
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
    """One retrieval of a plan.

    Attributes:
        query: the text searched.
        purpose: why the planner chose it (``question`` for the question itself).
    """

    query: str
    purpose: str = "question"


@dataclass(frozen=True)
class Plan:
    """The retrievals a planner chose for a question, in order."""

    steps: tuple[PlanStep, ...]
    mode: str = "direct"


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
class Citation:
    """A numbered source used in an answer.

    Attributes:
        n: the source number shown to the model, 1-based.
        chunk: the cited chunk.
        kind: ``generated`` when the model wrote it, ``attributed`` when the verifier added it.
    """

    n: int
    chunk: Chunk
    kind: Literal["generated", "attributed"] = "generated"


Verdict = Literal["supported", "unsupported", "uncited"]


@dataclass(frozen=True)
class Claim:
    """One sentence of an answer with its citations and verdict."""

    text: str
    citations: tuple[int, ...]
    verdict: Verdict
    score: float
    kinds: tuple[str, ...] = ()


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
class StreamDelta:
    """One piece of a streamed completion; the last one carries usage."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    done: bool = False


@dataclass(frozen=True)
class Answer:
    """What ``/v1/ask`` returns, as a domain object."""

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
