"""``/v1/search``, ``/v1/ask`` (JSON or server-sent events) and ``/v1/feedback``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import logs
from api.convert import answer_out, check_limits, result_out, search_timings, source_out, to_filters, to_history
from api.deps import Scope
from api.errors import ApiError
from api.metrics import Metrics
from api.schemas import (
    AskRequest,
    AskResponse,
    CitationsEvent,
    DoneEvent,
    ErrorBody,
    ErrorEvent,
    FeedbackRequest,
    FeedbackResponse,
    SearchRequest,
    SearchResponse,
    TokenEvent,
    VerificationEvent,
)
from api.serving.slots import GenerationSlots
from rag.answering import AnswerEvent, AskEvent, SourcesEvent
from rag.answering import TokenEvent as AnswerToken
from rag.config import Settings, cpu_count
from rag.errors import RagError
from rag.pipeline import RagPipeline


class QueryService:
    """Searching, answering and feedback for the REST API.

    Args:
        settings: limits and generator timeout.
        pipeline: the query pipeline.
        metrics: where stage timings and token counts go.
        slots: the generation-slot limiter shared with chat completions.
    """

    def __init__(self, settings: Settings, pipeline: RagPipeline, metrics: Metrics, slots: GenerationSlots) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.slots = slots
        self._searches = anyio.CapacityLimiter(settings.api.search_threads or 2 * cpu_count())

    async def search(self, body: SearchRequest, scope: Scope) -> SearchResponse:
        """Hybrid retrieval, reranked when a cross-encoder is loaded."""
        check_limits(self.settings, body.query, body.top_k)
        scope.check(body.collection)
        logs.query(self.settings, "search", body.collection, body.query)
        found = await anyio.to_thread.run_sync(
            self.pipeline.search, body.collection, body.query, body.top_k, to_filters(body.filters),
            limiter=self._searches,
        )
        self.metrics.observe_stages(found.timings)
        return SearchResponse(
            results=[result_out(r) for r in found.results],
            timings_ms=search_timings(found.timings, reranked=found.pipeline.get("rerank", False)),
            pipeline=found.pipeline,
        )

    def _check_ask(self, body: AskRequest, scope: Scope) -> None:
        check_limits(self.settings, body.query, body.top_k)
        for i, turn in enumerate(body.history):
            check_limits(self.settings, turn.question, body.top_k, f"history[{i}].question")
        scope.check(body.collection)
        logs.query(self.settings, "ask", body.collection, body.query)

    async def ask(self, body: AskRequest, scope: Scope) -> AskResponse:
        """The whole checked answer, as JSON; a follow-up (``history``) is rewritten first."""
        self._check_ask(body, scope)
        filters = to_filters(body.filters)
        answer = await self.slots.run(
            lambda: self.pipeline.ask(
                body.collection, body.query, body.top_k, filters, body.strict,
                history=to_history(body.history), planner=body.planner,
            )
        )
        self.metrics.observe_answer(answer)
        return answer_out(answer)

    async def ask_stream(self, body: AskRequest, scope: Scope) -> StreamingResponse:
        """The answer as server-sent events: ``citations``, ``token``…, ``verification``, ``done`` (or ``error``)."""
        self._check_ask(body, scope)
        events = self.pipeline.ask_events(
            body.collection, body.query, body.top_k, to_filters(body.filters), body.strict,
            history=to_history(body.history), planner=body.planner,
        )
        return StreamingResponse(self._sse(await self.slots.stream(events)), media_type="text/event-stream")

    def _sse(self, events: Iterator[AskEvent]) -> Iterator[str]:
        try:
            for event in events:
                if isinstance(event, SourcesEvent):
                    yield _sse("citations", CitationsEvent(sources=[
                        source_out(i + 1, e.chunk, e.step, e.query) for i, e in enumerate(event.evidence)
                    ]))
                elif isinstance(event, AnswerToken):
                    yield _sse("token", TokenEvent(text=event.text))
                elif isinstance(event, AnswerEvent):
                    self.metrics.observe_answer(event.answer)
                    out = answer_out(event.answer)
                    yield _sse("verification", VerificationEvent(
                        answer=out.answer, citations=out.citations, claims=out.claims,
                        faithfulness=out.faithfulness, abstained=out.abstained, invalid_citations=out.invalid_citations,
                    ))
                    yield _sse("done", DoneEvent(
                        timings_ms=out.timings_ms, usage=out.usage, pipeline=out.pipeline, plan=out.plan,
                    ))
        except RagError as exc:
            yield _sse("error", ErrorEvent(error=ErrorBody(message=str(exc), type="service_unavailable")))

    async def feedback(self, body: FeedbackRequest, scope: Scope) -> FeedbackResponse:
        """Store a relevance judgment of a chunk for a query (training data for the reranker).

        Raises:
            ApiError: 404 when the chunk is not in the collection.
        """
        check_limits(self.settings, body.query, 1)
        scope.check(body.collection)
        store = self.pipeline.store

        def add() -> int:
            info = store.collection(body.collection)
            if not store.hydrate(info.id, [body.chunk_id]):
                raise ApiError(404, f"chunk {body.chunk_id} is not in collection {body.collection!r}", "not_found_error", "chunk_id", "not_found")
            return store.add_feedback(info.id, body.query, body.chunk_id, body.relevant, scope.key_hash)

        return FeedbackResponse(id=await run_in_threadpool(add))


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data.model_dump(mode='json'), ensure_ascii=False)}\n\n"
