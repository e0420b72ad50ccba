"""Domain objects to response schemas and request schemas to domain objects."""

from __future__ import annotations

from api.errors import ApiError
from api.schemas import (
    AnswerTimings,
    AskResponse,
    CitationOut,
    ClaimOut,
    RagExtension,
    SearchFilters,
    SearchResultOut,
    SearchTimings,
    SourceOut,
    StageScores,
    Usage,
)
from rag.config import Settings
from rag.types import Answer, Chunk, Filters, ScoredChunk, Timings


def to_filters(f: SearchFilters | None) -> Filters | None:
    """Request filters to the domain's :class:`Filters`."""
    if f is None:
        return None
    meta: dict = {}
    for key, spec in f.metadata.items():
        if hasattr(spec, "model_dump"):
            d = {k: v for k, v in spec.model_dump(by_alias=True).items() if v is not None}
            if not d:
                raise ApiError(422, f"filters.metadata.{key}: give a value, 'in' or a range", "invalid_request_error", f"filters.metadata.{key}")
            meta[key] = d
        else:
            meta[key] = spec
    date = f.date
    return Filters(
        source_prefix=f.source_prefix,
        metadata=meta,
        date_field=date.field if date else "modified",
        date_from=date.from_ if date else None,
        date_to=date.to if date else None,
    )


def check_limits(settings: Settings, query: str, top_k: int, field: str = "query") -> None:
    """Enforce the configured question length and ``top_k`` limits.

    Raises:
        ApiError: 422 naming the field.
    """
    if len(query) > settings.api.max_question_chars:
        raise ApiError(422, f"{field}: longer than {settings.api.max_question_chars} characters", "invalid_request_error", field, "too_long")
    if not query.strip():
        raise ApiError(422, f"{field}: must not be blank", "invalid_request_error", field, "invalid_value")
    if top_k > settings.api.max_top_k:
        raise ApiError(422, f"top_k: at most {settings.api.max_top_k}", "invalid_request_error", "top_k", "too_large")


def result_out(s: ScoredChunk) -> SearchResultOut:
    """A ranked chunk as a search result."""
    c = s.chunk
    return SearchResultOut(
        chunk_id=c.chunk_id,
        document_id=c.document_id,
        external_id=c.external_id,
        source=c.source,
        title=c.title,
        section=c.section,
        char_start=c.char_start,
        char_end=c.char_end,
        text=c.text,
        scores=StageScores(bm25=s.scores.bm25, dense=s.scores.dense, rrf=s.scores.fused, rerank=s.scores.rerank),
        metadata=c.metadata,
    )


def citations_out(a: Answer) -> list[CitationOut]:
    """An answer's citations."""
    return [
        CitationOut(
            n=c.n,
            chunk_id=c.chunk.chunk_id,
            document_id=c.chunk.document_id,
            source=c.chunk.source,
            title=c.chunk.title,
            char_start=c.chunk.char_start,
            char_end=c.chunk.char_end,
            text=c.chunk.text,
            kind=c.kind,
        )
        for c in a.citations
    ]


def claims_out(a: Answer) -> list[ClaimOut]:
    """An answer's claims."""
    return [ClaimOut(text=c.text, citations=list(c.citations), verdict=c.verdict, score=round(c.score, 4)) for c in a.claims]


def rag_extension(a: Answer) -> RagExtension:
    """The ``rag`` extension block of chat responses."""
    return RagExtension(
        citations=citations_out(a),
        claims=claims_out(a),
        faithfulness=a.faithfulness,
        abstained=a.abstained,
        timings_ms=AnswerTimings(**a.timings.as_dict()),
        pipeline=a.pipeline,
        invalid_citations=list(a.invalid_citations),
    )


def answer_out(a: Answer) -> AskResponse:
    """The JSON body of a non-streamed ``/v1/ask``."""
    return AskResponse(
        answer=a.answer,
        citations=citations_out(a),
        claims=claims_out(a),
        faithfulness=a.faithfulness,
        abstained=a.abstained,
        pipeline=a.pipeline,
        timings_ms=AnswerTimings(**a.timings.as_dict()),
        usage=Usage(prompt_tokens=a.usage.prompt_tokens, completion_tokens=a.usage.completion_tokens),
        invalid_citations=list(a.invalid_citations),
    )


def search_timings(t: Timings, *, reranked: bool) -> SearchTimings:
    """A search's stages (``rerank`` only when the reranker ran)."""
    d = t.as_dict()
    return SearchTimings(
        embed=d["embed"], bm25=d["bm25"], dense=d["dense"], fuse=d["fuse"],
        rerank=d["rerank"] if reranked else None, total=d["total"],
    )


def source_out(n: int, c: Chunk) -> SourceOut:
    """A numbered source of a streamed answer."""
    return SourceOut(
        n=n, chunk_id=c.chunk_id, document_id=c.document_id, source=c.source, title=c.title,
        char_start=c.char_start, char_end=c.char_end, text=c.text,
    )
