"""``/v1/chat/completions``: OpenAI-compatible; ``model`` names the collection.

The last user message is the question. Citations and verification travel in the extra
``rag`` field of the response, and of the final chunk when streaming.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.convert import check_limits, rag_extension, to_filters
from api.deps import PipelineDep, ScopeDep, SettingsDep
from api.errors import ApiError
from api.routes.query import _ERRORS, _with_first, acquire
from api.schemas import (
    ChatChoice,
    ChatChoiceMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatUsage,
)
from rag.errors import RagError

router = APIRouter(prefix="/v1", tags=["openai"])


def _question(body: ChatCompletionRequest) -> str:
    for message in reversed(body.messages):
        if message.role == "user":
            content = message.content
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
            if content and content.strip():
                return content
    raise ApiError(422, "messages: needs a user message with text", "invalid_request_error", "messages", "invalid_value")


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "JSON, or chunks when stream is true"}},
)
async def chat_completions(
    body: ChatCompletionRequest, pipeline: PipelineDep, settings: SettingsDep, scope: ScopeDep, request: Request
) -> Any:
    """Answer the last user message from the collection named by ``model``."""
    question = _question(body)
    check_limits(settings, question, body.top_k, "messages")
    scope.check(body.model)
    filters = to_filters(body.filters)
    metrics = request.app.state.metrics
    limiter = request.app.state.ask_limiter
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not body.stream:
        await acquire(limiter, settings.generator.timeout_s)
        try:
            answer = await run_in_threadpool(pipeline.ask, body.model, question, body.top_k, filters, body.strict)
        finally:
            limiter.release()
        metrics.observe_stages(answer.timings_ms)
        metrics.observe_usage(answer.usage)
        p, c = answer.usage.get("prompt_tokens", 0), answer.usage.get("completion_tokens", 0)
        return ChatCompletionResponse(
            id=cid,
            created=created,
            model=body.model,
            choices=[ChatChoice(message=ChatChoiceMessage(content=answer.answer))],
            usage=ChatUsage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c),
            rag=rag_extension(answer),
        )

    events = pipeline.ask_events(body.model, question, body.top_k, filters, body.strict)
    await acquire(limiter, settings.generator.timeout_s)
    try:
        first = await run_in_threadpool(next, events)
    except BaseException:
        limiter.release()
        raise

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        obj = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    def stream() -> Iterator[str]:
        try:
            yield chunk({"role": "assistant", "content": ""})
            streamed = False
            for name, payload in _with_first(first, events):
                if name == "token":
                    streamed = True
                    yield chunk({"content": payload})
                elif name == "answer":
                    metrics.observe_stages(payload.timings_ms)
                    metrics.observe_usage(payload.usage)
                    # An abstention (or strict mode) can replace what was streamed: send the final text
                    # in the extension so the client sees what was kept.
                    delta = {} if streamed and not payload.abstained else {"content": payload.answer}
                    p, c = payload.usage.get("prompt_tokens", 0), payload.usage.get("completion_tokens", 0)
                    yield chunk(
                        delta,
                        "stop",
                        usage={"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
                        rag={**rag_extension(payload).model_dump(), "answer": payload.answer},
                    )
        except RagError as exc:
            yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'service_unavailable', 'param': None, 'code': None}})}\n\n"
        finally:
            limiter.release()
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")
