"""Request and response models of the REST API (not domain types)."""

from __future__ import annotations

from datetime import datetime
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


PlannerMode = Literal["auto", "direct", "iterative", "decompose"]


class HistoryTurn(_Strict):
    """An earlier exchange of a conversation: what the user asked and the answer it got."""

    question: str = Field(..., min_length=1, max_length=100_000)
    answer: str = Field("", max_length=100_000)


class AskRequest(SearchRequest):
    """Body of ``POST /v1/ask``.

    With ``history``, ``query`` is a follow-up: it is rewritten into a standalone question
    before retrieval, and the rewrite comes back in ``plan.rewrite``.
    """

    top_k: int = Field(5, ge=1, le=10_000)
    stream: bool = False
    strict: bool | None = None
    history: list[HistoryTurn] = Field(
        default_factory=list, max_length=50, description="earlier turns of the conversation, oldest first"
    )
    planner: PlannerMode | None = Field(None, description="planning mode for this question (default: RAG_PLANNER__MODE)")


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
    """Milliseconds per stage of an answer. ``plan`` is the planner's generator calls (rewrite, hops, split)."""

    plan: float = 0.0
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


class CitedSpanOut(BaseModel):
    """The sentence(s) of a cited chunk that back a claim."""

    start: int = Field(description="offset into the citation's text")
    end: int = Field(description="end offset (exclusive) into the citation's text")
    char_start: int = Field(description="offset into the document's text")
    char_end: int = Field(description="end offset (exclusive) into the document's text")
    text: str
    section: str = Field(description="heading path of the section holding the span")
    page: int | None = Field(None, description="page of the span, for documents with pages (PDF)")


class CitationOut(BaseModel):
    """A source cited by the answer: its chunk, and the spans of it that back the answer."""

    n: int
    chunk_id: int
    document_id: int
    source: str
    title: str
    section: str = Field(description="heading path of the first span, else where the chunk starts")
    page: int | None = Field(None, description="page of the first span, else of the chunk's start")
    char_start: int
    char_end: int
    text: str
    kind: Literal["generated", "attributed"]
    spans: list[CitedSpanOut] = Field(default_factory=list)
    step: int = Field(0, description="the plan step that found this source (plan.steps[step])")
    query: str = Field("", description="the query that step searched")


class ClaimEvidenceOut(BaseModel):
    """Where in one cited source the verifier found the best support for a claim."""

    n: int
    start: int = Field(description="offset into that citation's text")
    end: int


class ClaimOut(BaseModel):
    """One sentence of the answer with its verdict."""

    text: str
    citations: list[int]
    verdict: Literal["supported", "unsupported", "uncited"]
    score: float
    evidence: list[ClaimEvidenceOut] = Field(
        default_factory=list, description="per citation, the span of that source that backs the claim best"
    )


class Usage(BaseModel):
    """Generator token counts."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class StepTimings(BaseModel):
    """Milliseconds of one plan step: its search, and ``plan``, the planning call made after it."""

    plan: float
    embed: float
    bm25: float
    dense: float
    fuse: float
    rerank: float


class StepFoundOut(BaseModel):
    """A chunk one plan step found."""

    chunk_id: int
    document_id: int
    external_id: str
    title: str
    score: float
    n: int | None = Field(None, description="its source number when it was handed to the generator, else null")


class PlanStepOut(BaseModel):
    """One retrieval of the plan."""

    query: str
    purpose: Literal["question", "hop", "expansion", "sub-question"] | str
    found: list[StepFoundOut]
    decision: str = Field("", description="what the planning call after this step decided (enough, next: <query>, ...)")
    timings_ms: StepTimings
    usage: Usage


class RewriteOut(BaseModel):
    """A follow-up rewritten to stand alone before retrieval."""

    original: str
    question: str = Field(description="the standalone question that was searched and answered")
    fallback: str = Field("", description="why the follow-up was kept as asked (the rewrite failed); empty otherwise")
    usage: Usage
    ms: float


class PlanOut(BaseModel):
    """How the question was planned: the mode, every step with what it found, and what planning cost."""

    mode: Literal["direct", "iterative", "decompose"] | str
    requested: str = Field(description="the mode asked for; auto resolves to one of the others")
    question: str = Field(description="the question searched and answered (the rewrite of a follow-up)")
    stop: str = Field("", description="why planning stopped")
    fallback: str = Field("", description="why a planning call failed and the plan fell back; empty otherwise")
    steps: list[PlanStepOut]
    rewrite: RewriteOut | None = None
    usage: Usage = Field(description="tokens of every planning call, the rewrite included")


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
    plan: PlanOut | None = None


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
    step: int = Field(0, description="the plan step that found it")
    query: str = Field("", description="the query that step searched")


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
    plan: PlanOut | None = None


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
    planner: PlannerMode | None = None

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
    plan: PlanOut | None = Field(None, description="the plan, with the rewrite of a follow-up (plan.rewrite)")


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


# The web page's source view and the admin view (api/web) ----------------------------------------


class DocumentSectionOut(BaseModel):
    """Where a section of a document starts."""

    char_start: int
    section: str


class DocumentTextOut(BaseModel):
    """Response of ``GET /v1/collections/{name}/documents/{document_id}``: a document's whole text.

    The text is put back together from the stored chunks, so ``char_start``/``char_end`` of its
    citations and spans index into it.
    """

    document_id: int
    external_id: str
    source: str
    title: str
    text: str
    sections: list[DocumentSectionOut] = Field(default_factory=list)


class AdminLimits(BaseModel):
    """What an upload may hold."""

    max_file_bytes: int = Field(description="larger files are skipped and named (RAG_INGEST__MAX_FILE_BYTES)")
    max_upload_bytes: int = Field(description="a larger upload request is refused with 413")
    max_files: int = Field(description="files per upload")
    formats: list[str] = Field(description="file suffixes that ingestion reads")


class AdminStatusResponse(BaseModel):
    """Response of ``GET /v1/admin``: the caller may administer, and within which limits."""

    granted_by: str = Field(description="why this caller may administer")
    limits: AdminLimits


class AdminCollectionCreate(_Strict):
    """Body of ``POST /v1/admin/collections``."""

    name: str = Field(..., min_length=1, max_length=100)
    redact: list[str] = Field(
        default_factory=list,
        description="personal data replaced by placeholders at ingestion: email, phone, credit_card, iban, ip",
    )


class AdminCollectionOut(BaseModel):
    """A collection with its counts, as ``rag stats`` reports them."""

    name: str
    documents: int
    pending: int = 0
    deleted: int = 0
    chunks: int
    vectors: int = 0
    tombstones: int = 0
    lexical_docs: int = 0
    index_type: str | None = None
    bytes: int = 0
    embedding_model: str | None = None
    busy: bool = Field(False, description="an ingestion job of this server is writing to it")
    redact: list[str] = Field(default_factory=list, description="kinds of personal data redacted at ingestion")


class AdminCollectionsResponse(BaseModel):
    """Response of ``GET /v1/admin/collections``."""

    collections: list[AdminCollectionOut]


class AdminDropResponse(BaseModel):
    """Response of ``DELETE /v1/admin/collections/{name}``."""

    dropped: str


class AdminDocumentOut(BaseModel):
    """One stored version of a document."""

    id: int
    external_id: str
    source: str
    title: str
    state: Literal["active", "pending", "deleted"]
    chunks: int
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class AdminDocumentsResponse(BaseModel):
    """Response of ``GET /v1/admin/collections/{name}/documents``."""

    collection: str
    documents: list[AdminDocumentOut]


class AdminDeleteResponse(BaseModel):
    """Response of ``DELETE /v1/admin/collections/{name}/documents/{id}``."""

    deleted: int


class JobProgressOut(BaseModel):
    """Where a running ingestion job is."""

    files_done: int = 0
    files_total: int | None = None
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    eta_s: float | None = None


class JobFileOut(BaseModel):
    """A file of an upload that was skipped or failed, and why."""

    file: str = Field(description="the file's name as uploaded")
    reason: str


class JobOut(BaseModel):
    """An ingestion job started by an upload (``rag ingest`` over the uploaded files)."""

    id: str
    collection: str
    status: Literal["queued", "running", "done", "failed"]
    files: list[str] = Field(description="the uploaded files' names")
    progress: JobProgressOut
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_failed: int = 0
    chunks_added: int = 0
    failures: list[JobFileOut] = Field(default_factory=list, description="files that could not be ingested")
    error: ErrorBody | None = Field(None, description="why the job failed as a whole (code 'busy': another writer held the collection)")
    created_at: datetime
    finished_at: datetime | None = None


class JobsResponse(BaseModel):
    """Response of ``GET /v1/admin/jobs``: this server's recent jobs, newest first."""

    jobs: list[JobOut]


class KeyCreate(_Strict):
    """Body of ``POST /v1/admin/keys``: what ``rag keys create`` takes."""

    collections: list[str] = Field(..., min_length=1, max_length=1000, description="collections the key may use; ['*'] for all")
    scope: Literal["read", "write", "admin"] = "read"
    expires: str | None = Field(None, max_length=20, description="lifetime such as 30d, 12h, 15m; null for none")
    rate: str | None = Field(None, max_length=32, description="rate limit such as 20/s or 600/m; null for none")
    name: str = Field("", max_length=200)


class KeyOut(BaseModel):
    """A managed API key, without the key itself (only its hash is stored)."""

    id: int
    name: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    scope: Literal["read", "write", "admin"]
    collections: list[str]
    rate: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    state: Literal["active", "expired", "revoked"]


class KeyCreated(KeyOut):
    """Response of ``POST /v1/admin/keys``: ``key`` is shown this once and never again."""

    key: str


class KeysResponse(BaseModel):
    """Response of ``GET /v1/admin/keys``."""

    keys: list[KeyOut]
