"""``/v1/search``, ``/v1/ask`` and ``/v1/feedback``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import QueryServiceDep, ScopeDep
from api.schemas import (
    AskRequest,
    AskResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    SearchRequest,
    SearchResponse,
)

router = APIRouter(prefix="/v1", tags=["query"])

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 503)}
"""The error responses every query route documents."""


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search(body: SearchRequest, service: QueryServiceDep, scope: ScopeDep) -> SearchResponse:
    """Hybrid retrieval (BM25 + dense, fused by RRF), reranked when a cross-encoder is loaded."""
    scope.note.query = body.query
    return await service.search(body, scope)


@router.post(
    "/ask",
    response_model=AskResponse,
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "JSON, or server-sent events when stream is true"}},
)
async def ask(body: AskRequest, service: QueryServiceDep, scope: ScopeDep) -> AskResponse | StreamingResponse:
    """Answer with citations checked claim by claim.

    With ``"stream": true`` the response is server-sent events: ``citations`` (the numbered
    sources), ``token`` events, then ``verification``, then ``done``; their schemas are
    ``CitationsEvent``, ``TokenEvent``, ``VerificationEvent``, ``DoneEvent`` and ``ErrorEvent``.
    """
    scope.note.query = body.query
    if body.stream:
        return await service.ask_stream(body, scope)
    return await service.ask(body, scope)


@router.post("/feedback", response_model=FeedbackResponse, responses=ERRORS)
async def feedback(body: FeedbackRequest, service: QueryServiceDep, scope: ScopeDep) -> FeedbackResponse:
    """Store a relevance judgment of a chunk for a query (training data for the reranker)."""
    scope.note.query = body.query
    return await service.feedback(body, scope)
