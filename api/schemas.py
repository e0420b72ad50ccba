"""Request and response models of the REST API (not domain types)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RangeFilter(_Strict):
    """A range or set condition on one metadata key."""

    gte: float | str | None = None
    gt: float | str | None = None
    lte: float | str | None = None
    lt: float | str | None = None
    in_: list[str | float | int | bool] | None = Field(None, alias="in", max_length=1000)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DateRange(_Strict):
    """Keep documents whose date (an ISO-8601 metadata value) lies in this range, bounds included."""

    field: str = Field("modified", min_length=1, max_length=100)
    from_: str | None = Field(None, alias="from", max_length=40)
    to: str | None = Field(None, max_length=40)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SearchFilters(_Strict):
    """Restrictions applied inside both retrievers, before truncation."""

    source_prefix: str | None = Field(None, max_length=2000)
    metadata: dict[str, str | float | int | bool | RangeFilter] = Field(default_factory=dict, max_length=20)
    date: DateRange | None = None


class SearchRequest(_Strict):
    """Body of ``POST /v1/search``."""

    query: str = Field(..., min_length=1, max_length=100_000)
    collection: str = Field("default", min_length=1, max_length=100)
    top_k: int = Field(10, ge=1, le=10_000)
    filters: SearchFilters | None = None


class AskRequest(SearchRequest):
    """Body of ``POST /v1/ask``."""

    top_k: int = Field(5, ge=1, le=10_000)
    stream: bool = False
    strict: bool | None = None


class StageScores(BaseModel):
    """Score of a result at each stage it went through."""

    bm25: float | None = None
    dense: float | None = None
    rrf: float | None = None
    rerank: float | None = None


class SearchResultOut(BaseModel):
    """One retrieved chunk."""

    chunk_id: int
    document_id: int
    external_id: str
    source: str
    title: str
    section: str
    char_start: int
    char_end: int
    text: str
    scores: StageScores
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchTimings(BaseModel):
    """Milliseconds per stage of a search. ``fuse`` includes resolving filters and loading chunk rows."""

    embed: float
    bm25: float
    dense: float
    fuse: float
    rerank: float | None = None
    total: float


class AnswerTimings(BaseModel):
    """Milliseconds per stage of an answer."""

    embed: float
    bm25: float
    dense: float
    fuse: float
    rerank: float
    generate: float
    verify: float
    total: float


class SearchResponse(BaseModel):
    """Response of ``POST /v1/search``."""

    results: list[SearchResultOut]
    timings_ms: SearchTimings
    pipeline: dict[str, Any]


class CitationOut(BaseModel):
    """A source cited by the answer."""

    n: int
    chunk_id: int
    document_id: int
    source: str
    title: str
    char_start: int
    char_end: int
    text: str
    kind: Literal["generated", "attributed"]


class ClaimOut(BaseModel):
    """One sentence of the answer with its verdict."""

    text: str
    citations: list[int]
    verdict: Literal["supported", "unsupported", "uncited"]
    score: float


class Usage(BaseModel):
    """Generator token counts."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class AskResponse(BaseModel):
    """Response of ``POST /v1/ask``."""

    answer: str
    citations: list[CitationOut]
    claims: list[ClaimOut]
    faithfulness: float
    abstained: bool
    pipeline: dict[str, Any]
    timings_ms: AnswerTimings
    usage: Usage
    invalid_citations: list[int] = Field(
        default_factory=list, description="source numbers the answer cited that were not among its sources (removed from the text)"
    )


# Server-sent events of a streamed ``/v1/ask`` -------------------------------------------------


class SourceOut(BaseModel):
    """A numbered source the generator sees, sent before the answer."""

    n: int
    chunk_id: int
    document_id: int
    source: str
    title: str
    char_start: int
    char_end: int
    text: str


class CitationsEvent(BaseModel):
    """``event: citations``: the numbered sources, first."""

    sources: list[SourceOut]


class TokenEvent(BaseModel):
    """``event: token``: a piece of the answer."""

    text: str


class VerificationEvent(BaseModel):
    """``event: verification``: the checked answer, after the last token."""

    answer: str
    citations: list[CitationOut]
    claims: list[ClaimOut]
    faithfulness: float
    abstained: bool
    invalid_citations: list[int] = Field(default_factory=list)


class DoneEvent(BaseModel):
    """``event: done``: timings, usage and the pipeline description, last."""

    timings_ms: AnswerTimings
    usage: Usage
    pipeline: dict[str, Any]


class ErrorEvent(BaseModel):
    """``event: error``: the stream failed after it started (OpenAI's error envelope)."""

    error: ErrorBody


ASK_EVENTS: dict[str, type[BaseModel]] = {
    "citations": CitationsEvent,
    "token": TokenEvent,
    "verification": VerificationEvent,
    "done": DoneEvent,
    "error": ErrorEvent,
}
"""SSE event name -> the model of its ``data``, in the order they are sent."""


class CollectionOut(BaseModel):
    """A collection visible to the caller."""

    name: str
    documents: int
    chunks: int


class CollectionsResponse(BaseModel):
    """Response of ``GET /v1/collections``."""

    collections: list[CollectionOut]


class ModelOut(BaseModel):
    """A collection as an OpenAI model object: pass its ``id`` as ``model`` to chat completions."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(0, description="not tracked: always 0")
    owned_by: str = "rag-service"


class ModelsResponse(BaseModel):
    """Response of ``GET /v1/models`` (OpenAI's list format): the collections the key may use."""

    object: Literal["list"] = "list"
    data: list[ModelOut]


class HealthResponse(BaseModel):
    """Response of ``GET /health``: each component's ``state`` (``on``, ``off`` or ``down``).

    ``degraded`` only when a component that should run is down; one that is off by configuration
    or for a missing optional model (the default reranker offline) is not a fault.
    """

    status: Literal["ok", "degraded"]
    components: dict[str, dict[str, Any]]


class FeedbackRequest(_Strict):
    """Body of ``POST /v1/feedback``: a relevance judgment."""

    query: str = Field(..., min_length=1, max_length=100_000)
    collection: str = Field(..., min_length=1, max_length=100)
    chunk_id: int = Field(..., ge=1)
    relevant: bool


class FeedbackResponse(BaseModel):
    """Response of ``POST /v1/feedback``."""

    id: int


class ErrorBody(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope."""

    error: ErrorBody


# OpenAI-compatible chat completions ---------------------------------------------------------


class ChatMessage(BaseModel):
    """A chat message (OpenAI field names)."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    model_config = ConfigDict(extra="allow")


class ChatCompletionRequest(BaseModel):
    """Body of ``POST /v1/chat/completions``. ``model`` names the collection."""

    model: str = Field(..., min_length=1, max_length=100)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=100)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    seed: int | None = None
    stream_options: dict[str, Any] | None = None
    # --- extensions of this service (not OpenAI's) ---
    top_k: int = Field(5, ge=1, le=10_000)
    filters: SearchFilters | None = None
    strict: bool | None = None

    model_config = ConfigDict(extra="allow")


class RagExtension(BaseModel):
    """Citations and verification, carried in the ``rag`` field of chat responses and final stream chunks."""

    citations: list[CitationOut]
    claims: list[ClaimOut]
    faithfulness: float
    abstained: bool
    timings_ms: AnswerTimings
    pipeline: dict[str, Any]
    invalid_citations: list[int] = Field(default_factory=list)


class StreamedRagExtension(RagExtension):
    """The ``rag`` field of the final stream chunk: also the answer kept, which may differ from what streamed."""

    answer: str


class ChatChoiceMessage(BaseModel):
    """The assistant's message."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """One completion choice."""

    index: int = 0
    message: ChatChoiceMessage
    finish_reason: Literal["stop", "length"] = "stop"


class ChatUsage(BaseModel):
    """OpenAI usage object."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionResponse(BaseModel):
    """OpenAI ``chat.completion`` object, plus ``rag``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    # --- extension of this service ---
    rag: RagExtension


class ChatDelta(BaseModel):
    """The new part of the assistant's message in a stream chunk."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    """One choice of a stream chunk."""

    index: int = 0
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """OpenAI ``chat.completion.chunk`` object; the last one carries ``usage`` and ``rag``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: ChatUsage | None = None
    # --- extension of this service ---
    rag: StreamedRagExtension | None = None


class ChatStreamError(BaseModel):
    """A chat stream that failed after it started: one ``data:`` line with OpenAI's error envelope."""

    error: ErrorBody
