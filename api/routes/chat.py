"""``/v1/chat/completions``: OpenAI-compatible; ``model`` names the collection."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import ChatServiceDep, ScopeDep
from api.routes.query import ERRORS
from api.schemas import ChatCompletionRequest, ChatCompletionResponse

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "JSON, or chunks when stream is true"}},
)
async def chat_completions(
    body: ChatCompletionRequest, service: ChatServiceDep, scope: ScopeDep
) -> ChatCompletionResponse | StreamingResponse:
    """Answer the last user message from the collection named by ``model``.

    With ``"stream": true``: ``ChatCompletionChunk`` objects as ``data:`` lines, the last carrying
    ``usage`` and ``rag``, then ``data: [DONE]``.
    """
    scope.note.query = next((m.content for m in reversed(body.messages) if m.role == "user" and isinstance(m.content, str)), None)
    if body.stream:
        return await service.stream(body, scope)
    return await service.complete(body, scope)
