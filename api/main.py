"""The FastAPI application."""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors
from api.errors import envelope
from api.metrics import Metrics
from api.routes import chat, query, service
from rag.config import Settings
from rag.pipeline import RagPipeline


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, counting streamed bytes too."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reject(scope, receive, send)
                    return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = envelope(413, f"request body over {self.max_bytes} bytes", "invalid_request_error", None, "too_large")
        await resp(scope, receive, send)


class _TooLarge(Exception):
    pass


class _Count(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):  # noqa: ANN001, ANN201
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        m: Metrics = request.app.state.metrics
        m.requests.labels(path, str(response.status_code)).inc()
        if response.status_code >= 500:
            m.errors.labels(path).inc()
        return response


def create_app(settings: Settings, pipeline: RagPipeline) -> FastAPI:
    """Build the app around a ready pipeline.

    Args:
        settings: service settings (limits, API keys).
        pipeline: the query pipeline, models loaded.
    """
    app = FastAPI(
        title="rag-service",
        version="0.1.0",
        description="Hybrid retrieval, reranking and answers with checked citations.",
    )
    app.state.settings = settings
    app.state.pipeline = pipeline
    app.state.metrics = Metrics()
    app.state.ask_limiter = asyncio.Semaphore(settings.api.max_concurrent_asks)
    app.state.started = time.time()
    errors.install(app)
    app.include_router(query.router)
    app.include_router(chat.router)
    app.include_router(service.router)
    app.add_middleware(_Count)
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    return app
