"""Domain objects to response schemas and request schemas to domain objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.errors import ApiError
from api.schemas import (
    AnswerTimings,
    AskResponse,
    CitationOut,
    CitedSpanOut,
    ClaimEvidenceOut,
    ClaimOut,
    HistoryTurn,
    PlanOut,
    PlanStepOut,
    RagExtension,
    RewriteOut,
    SearchFilters,
    SearchResultOut,
    SearchTimings,
    SourceOut,
    StageScores,
    StepFoundOut,
    StepTimings,
    Usage,
)
from rag.config import Settings
from rag.types import Answer, Chunk, Filters, ScoredChunk, Timings, Turn, page_of
from rag.types import Usage as UsageCounts


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
    """An answer's citations, each with its supporting spans."""
    out = []
    for c in a.citations:
        chunk = c.chunk
        spans = [
            CitedSpanOut(
                start=s.start, end=s.end, char_start=chunk.char_start + s.start, char_end=chunk.char_start + s.end,
                text=chunk.text[s.start : s.end], section=s.section, page=s.page,
            )
            for s in c.spans
        ]
        section = spans[0].section if spans else chunk.section
        out.append(
            CitationOut(
                n=c.n,
                chunk_id=chunk.chunk_id,
                document_id=chunk.document_id,
                source=chunk.source,
                title=chunk.title,
                section=section,
                page=spans[0].page if spans else page_of(chunk.section),
                char_start=chunk.char_start,
                char_end=chunk.char_end,
                text=chunk.text,
                kind=c.kind,
                spans=spans,
                **_provenance(a, c.n),
            )
        )
    return out


def _provenance(a: Answer, n: int) -> dict[str, Any]:
    """The plan step and query that found source ``n`` of an answer."""
    if 1 <= n <= len(a.evidence):
        e = a.evidence[n - 1]
        return {"step": e.step, "query": e.query}
    return {}


def plan_out(a: Answer) -> PlanOut | None:
    """An answer's plan: each step's query, what it found (and which of it the generator saw), its cost."""
    plan = a.plan
    if plan is None:
        return None
    numbered = {e.chunk.chunk_id: n for n, e in enumerate(a.evidence, start=1)}
    steps = [
        PlanStepOut(
            query=step.query,
            purpose=step.purpose,
            found=[
                StepFoundOut(
                    chunk_id=f.chunk.chunk_id, document_id=f.chunk.document_id, external_id=f.chunk.external_id,
                    title=f.chunk.title, score=round(f.score, 6), n=numbered.get(f.chunk.chunk_id),
                )
                for f in step.found
            ],
            decision=step.decision,
            timings_ms=StepTimings(**{k: v for k, v in step.timings.as_dict().items() if k in StepTimings.model_fields}),
            usage=_usage(step.usage),
        )
        for step in plan.steps
    ]
    rw = plan.rewrite
    rewrite = (
        RewriteOut(original=rw.original, question=rw.question, fallback=rw.fallback, usage=_usage(rw.usage), ms=round(rw.ms, 3))
        if rw is not None
        else None
    )
    return PlanOut(
        mode=plan.mode, requested=plan.requested or plan.mode, question=plan.question, stop=plan.stop,
        fallback=plan.fallback, steps=steps, rewrite=rewrite, usage=_usage(plan.usage),
    )


def _usage(u: UsageCounts) -> Usage:
    return Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens)


def to_history(turns: Sequence[HistoryTurn]) -> tuple[Turn, ...]:
    """Request history to the domain's turns, oldest first."""
    return tuple(Turn(t.question, t.answer) for t in turns)


def claims_out(a: Answer) -> list[ClaimOut]:
    """An answer's claims, with where each cited source backs them."""
    return [
        ClaimOut(
            text=c.text,
            citations=list(c.citations),
            verdict=c.verdict,
            score=round(c.score, 4),
            evidence=[ClaimEvidenceOut(n=n, start=a, end=b) for n, (a, b) in zip(c.citations, c.spans) if b > a],
        )
        for c in a.claims
    ]


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
        plan=plan_out(a),
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
        plan=plan_out(a),
    )


def search_timings(t: Timings, *, reranked: bool) -> SearchTimings:
    """A search's stages (``rerank`` only when the reranker ran)."""
    d = t.as_dict()
    return SearchTimings(
        embed=d["embed"], bm25=d["bm25"], dense=d["dense"], fuse=d["fuse"],
        rerank=d["rerank"] if reranked else None, total=d["total"],
    )


def source_out(n: int, c: Chunk, step: int = 0, query: str = "") -> SourceOut:
    """A numbered source of a streamed answer, with the plan step and query that found it."""
    return SourceOut(
        n=n, chunk_id=c.chunk_id, document_id=c.document_id, source=c.source, title=c.title,
        char_start=c.char_start, char_end=c.char_end, text=c.text, step=step, query=query,
    )
