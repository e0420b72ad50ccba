"""Frozen dataclasses that flow between the stages of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
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


Stage = Literal["bm25", "dense", "rrf", "rerank"]


@dataclass(frozen=True)
class Hit:
    """A retriever's raw hit: a chunk id and its score from one stage."""

    chunk_id: int
    score: float


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk with its score at every stage it went through.

    Attributes:
        chunk: the chunk.
        score: the score that orders the list this object is in.
        scores: per-stage scores, e.g. ``{"bm25": 7.1, "dense": 0.62, "rrf": 0.03}``.
    """

    chunk: Chunk
    score: float
    scores: dict[str, float] = field(default_factory=dict)


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
class Answer:
    """What ``/v1/ask`` returns, as a domain object."""

    answer: str
    citations: tuple[Citation, ...]
    claims: tuple[Claim, ...]
    faithfulness: float
    abstained: bool
    pipeline: JsonDict
    timings_ms: dict[str, float]
    usage: dict[str, int]
    sources: tuple[ScoredChunk, ...] = ()


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
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgment:
    """An end user's relevance judgment of one chunk for one query (``POST /v1/feedback``)."""

    query: str
    chunk_id: int
    relevant: bool
