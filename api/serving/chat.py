"""``/v1/chat/completions``: OpenAI-compatible; ``model`` names the collection.

The whole message list is the conversation: the last user message is the question, and the
user and assistant messages before it are its history. A follow-up is rewritten into a
standalone question before retrieval (the rewrite is in ``rag.plan.rewrite``); the first
question of a conversation is searched as asked. System messages are not instructions to the
answerer: its own system prompt holds. Citations, verification and the plan travel in the
extra ``rag`` field of the response, and of the final chunk when streaming.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from fastapi.responses import StreamingResponse

from api import logs
from api.convert import check_limits, rag_extension, to_filters
from api.deps import Scope
from api.errors import ApiError
from api.metrics import Metrics
from api.schemas import (
    ChatChoice,
    ChatChoiceMessage,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatMessage,
    ChatStreamError,
    ChatUsage,
    ErrorBody,
    StreamedRagExtension,
)
from api.serving.slots import GenerationSlots
from rag.answering import AnswerEvent, AskEvent, TokenEvent
from rag.config import Settings
from rag.errors import RagError
from rag.pipeline import RagPipeline
from rag.types import Answer, Turn


def _text(message: ChatMessage) -> str:
    content = message.content
    if isinstance(content, list):
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def conversation_of(body: ChatCompletionRequest) -> tuple[str, tuple[Turn, ...]]:
    """The question (the last user message with text) and the turns before it, oldest first.

    Each earlier user message is a turn, answered by the assistant messages that follow it
    (none: an empty answer). System, developer and tool messages are left out.

    Raises:
        ApiError: 422 naming ``messages`` when no user message has text.
    """
    turns: list[Turn] = []
    for message in body.messages:
        text = _text(message)
        if message.role == "user" and text.strip():
            turns.append(Turn(text))
        elif message.role == "assistant" and turns and text.strip():
            last = turns[-1]
            turns[-1] = Turn(last.question, f"{last.answer} {text}".strip())
    if not turns:
        raise ApiError(422, "messages: needs a user message with text", "invalid_request_error", "messages", "invalid_value")
    return turns[-1].question, tuple(turns[:-1])


class ChatService:
    """Chat completions over a collection, as one response or as OpenAI stream chunks.

    Args:
        settings: limits.
        pipeline: the query pipeline.
        metrics: where stage timings and token counts go.
        slots: the generation-slot limiter shared with ``/v1/ask``.
    """

    def __init__(self, settings: Settings, pipeline: RagPipeline, metrics: Metrics, slots: GenerationSlots) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.slots = slots

    def _request(self, body: ChatCompletionRequest, scope: Scope) -> tuple[str, tuple[Turn, ...]]:
        question, history = conversation_of(body)
        check_limits(self.settings, question, body.top_k, "messages")
        scope.check(body.model)
        logs.query(self.settings, "chat", body.model, question)
        return question, history

    async def complete(self, body: ChatCompletionRequest, scope: Scope) -> ChatCompletionResponse:
        """One ``chat.completion`` with the ``rag`` extension."""
        question, history = self._request(body, scope)
        filters = to_filters(body.filters)
        answer = await self.slots.run(
            lambda: self.pipeline.ask(
                body.model, question, body.top_k, filters, body.strict, history=history, planner=body.planner
            )
        )
        self.metrics.observe_answer(answer)
        return ChatCompletionResponse(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=body.model,
            choices=[ChatChoice(message=ChatChoiceMessage(content=answer.answer))],
            usage=_usage(answer),
            rag=rag_extension(answer),
        )

    async def stream(self, body: ChatCompletionRequest, scope: Scope) -> StreamingResponse:
        """``chat.completion.chunk`` objects as server-sent ``data:`` lines, ending with ``[DONE]``."""
        question, history = self._request(body, scope)
        events = self.pipeline.ask_events(
            body.model, question, body.top_k, to_filters(body.filters), body.strict, history=history,
            planner=body.planner,
        )
        first = await self.slots.stream(events)
        return StreamingResponse(self._chunks(body.model, first), media_type="text/event-stream")

    def _chunks(self, model: str, events: Iterator[AskEvent]) -> Iterator[str]:
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: ChatDelta, finish: str | None = None, **extra: object) -> str:
            obj = ChatCompletionChunk(
                id=cid, object="chat.completion.chunk", created=created, model=model,
                choices=[ChatChunkChoice(index=0, delta=delta, finish_reason=finish)], **extra,
            )
            return _data(obj.model_dump(mode="json", exclude_unset=True))

        try:
            yield chunk(ChatDelta(role="assistant", content=""))
            streamed = False
            for event in events:
                if isinstance(event, TokenEvent):
                    streamed = True
                    yield chunk(ChatDelta(content=event.text))
                elif isinstance(event, AnswerEvent):
                    answer = event.answer
                    self.metrics.observe_answer(answer)
                    # An abstention (or strict mode) can replace what was streamed: the final text
                    # also travels in the extension so the client sees what was kept.
                    delta = ChatDelta() if streamed and not answer.abstained else ChatDelta(content=answer.answer)
                    rag = StreamedRagExtension(**rag_extension(answer).model_dump(), answer=answer.answer)
                    yield chunk(delta, "stop", usage=_usage(answer), rag=rag)
        except RagError as exc:
            yield _data(ChatStreamError(error=ErrorBody(message=str(exc), type="service_unavailable")).model_dump(mode="json"))
        yield "data: [DONE]\n\n"


def _usage(answer: Answer) -> ChatUsage:
    u = answer.usage
    return ChatUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, total_tokens=u.total_tokens)


def _data(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
