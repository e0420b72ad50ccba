"""``/v1/search``, ``/v1/ask`` and ``/v1/feedback``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.convert import check_limits, citations_out, claims_out, result_out, to_filters
from api.deps import PipelineDep, ScopeDep, SettingsDep
from api.errors import ApiError
from api.schemas import (
    AskRequest,
    AskResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    SearchRequest,
    SearchResponse,
    Usage,
)
from rag.errors import RagError
from rag.types import Answer

router = APIRouter(prefix="/v1", tags=["query"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 503)
}


@router.post("/search", response_model=SearchResponse, responses=_ERRORS)
async def search(body: SearchRequest, pipeline: PipelineDep, settings: SettingsDep, scope: ScopeDep, request: Request) -> SearchResponse:
    """Hybrid retrieval (BM25 + dense, fused by RRF), reranked when a cross-encoder is loaded."""
    check_limits(settings, body.query, body.top_k)
    scope.check(body.collection)
    found = await run_in_threadpool(pipeline.search, body.collection, body.query, body.top_k, to_filters(body.filters))
    request.app.state.metrics.observe_stages(found.timings_ms)
    return SearchResponse(
        results=[result_out(r) for r in found.results],
        timings_ms={k: round(v, 3) for k, v in found.timings_ms.items()},
        pipeline=found.pipeline,
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
        timings_ms=a.timings_ms,
        usage=Usage(**a.usage),
    )


@router.post(
    "/ask",
    response_model=AskResponse,
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "JSON, or server-sent events when stream is true"}},
)
async def ask(body: AskRequest, pipeline: PipelineDep, settings: SettingsDep, scope: ScopeDep, request: Request) -> Any:
    """Answer with citations checked claim by claim.

    With ``"stream": true`` the response is server-sent events: ``citations`` (the numbered
    sources), ``token`` events, then ``verification``, then ``done``.
    """
    check_limits(settings, body.query, body.top_k)
    scope.check(body.collection)
    metrics = request.app.state.metrics
    limiter = request.app.state.ask_limiter
    filters = to_filters(body.filters)
    if not body.stream:
        await acquire(limiter, settings.generator.timeout_s)
        try:
            answer = await run_in_threadpool(pipeline.ask, body.collection, body.query, body.top_k, filters, body.strict)
        finally:
            limiter.release()
        metrics.observe_stages(answer.timings_ms)
        metrics.observe_usage(answer.usage)
        return answer_out(answer)

    events = pipeline.ask_events(body.collection, body.query, body.top_k, filters, body.strict)
    await acquire(limiter, settings.generator.timeout_s)
    try:
        first = await run_in_threadpool(next, events)  # errors before any byte is sent become HTTP errors
    except BaseException:
        limiter.release()
        raise

    def sse() -> Iterator[str]:
        try:
            for name, payload in _with_first(first, events):
                if name == "sources":
                    yield _sse("citations", {"sources": [_source(i + 1, c) for i, c in enumerate(payload)]})
                elif name == "token":
                    yield _sse("token", {"text": payload})
                elif name == "answer":
                    metrics.observe_stages(payload.timings_ms)
                    metrics.observe_usage(payload.usage)
                    out = answer_out(payload)
                    yield _sse("verification", {
                        "answer": out.answer,
                        "citations": [c.model_dump() for c in out.citations],
                        "claims": [c.model_dump() for c in out.claims],
                        "faithfulness": out.faithfulness,
                        "abstained": out.abstained,
                    })
                    yield _sse("done", {"timings_ms": out.timings_ms, "usage": out.usage.model_dump(), "pipeline": out.pipeline})
        except RagError as exc:
            yield _sse("error", {"error": {"message": str(exc), "type": "service_unavailable", "param": None, "code": None}})
        finally:
            limiter.release()

    return StreamingResponse(sse(), media_type="text/event-stream")


async def acquire(limiter: asyncio.Semaphore, timeout_s: float) -> None:
    """Wait for a generation slot, bounded; 429 when none frees up in time.

    Raises:
        ApiError: 429 after ``timeout_s``.
    """
    try:
        await asyncio.wait_for(limiter.acquire(), timeout=timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(429, "too many questions in flight; retry shortly", "rate_limit_error", None, "busy") from None


def _with_first(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _source(n: int, chunk: Any) -> dict[str, Any]:
    return {
        "n": n,
        "chunk_id": chunk.chunk_id,
        "document_id": chunk.document_id,
        "source": chunk.source,
        "title": chunk.title,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
        "text": chunk.text,
    }


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/feedback", response_model=FeedbackResponse, responses=_ERRORS)
async def feedback(body: FeedbackRequest, pipeline: PipelineDep, settings: SettingsDep, scope: ScopeDep) -> FeedbackResponse:
    """Store a relevance judgment of a chunk for a query (training data for the reranker)."""
    check_limits(settings, body.query, 1)
    scope.check(body.collection)
    info = pipeline.store.collection(body.collection)
    if not pipeline.store.hydrate(info.id, [body.chunk_id]):
        raise ApiError(404, f"chunk {body.chunk_id} is not in collection {body.collection!r}", "not_found_error", "chunk_id", "not_found")
    fid = pipeline.store.add_feedback(info.id, body.query, body.chunk_id, body.relevant, scope.key_hash)
    return FeedbackResponse(id=fid)
