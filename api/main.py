"""The FastAPI application."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api import docs, errors, openapi, web
from api.audit import AuditMiddleware
from api.errors import envelope
from api.metrics import Metrics
from api.routes import admin, chat, documents, keys, query, service
from api.serving import ChatService, QueryService, StatusService
from api.serving.admin import AdminBackend, AdminService, upload_limit
from api.serving.documents import DocumentService
from api.serving.keys import KeyService
from api.serving.slots import GenerationSlots
from rag.config import Settings
from rag.pipeline import RagPipeline
from rag.security.audit import AuditLog
from rag.security.keys import KeyRing
from rag.security.ratelimit import RateLimiter


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, counting streamed bytes too, and bodies
    that take longer than ``timeout_s`` to arrive with 408 (uvicorn itself never times out a slow body).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        self.larger = dict(larger or {})  # exact path -> its own limit (the admin upload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope.get("path", ""), self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await _reject(413, f"request body over {max_bytes} bytes", "too_large", scope, receive, send)
                    return
        seen = 0
        complete = False
        rejected = False
        deadline = asyncio.get_running_loop().time() + self.timeout_s

        async def reject(status: int, message: str, code: str) -> dict:
            # Answer here: FastAPI would turn an exception raised from receive() into a vague 400.
            # The app then sees a disconnect, and whatever it sends afterwards is dropped.
            nonlocal rejected, complete
            rejected = complete = True
            await _reject(status, message, code, scope, receive, send)
            return {"type": "http.disconnect"}

        async def limited() -> dict:
            nonlocal seen, complete
            if complete:  # after the body, receive() waits for a disconnect: never time that out
                return await receive() if not rejected else {"type": "http.disconnect"}
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.001))
            except asyncio.TimeoutError:
                return await reject(408, f"request body not received within {self.timeout_s:g} s", "timeout")
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    return await reject(413, f"request body over {max_bytes} bytes", "too_large")
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def guarded_send(message: dict) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except Exception:
            if not rejected:
                raise


async def _reject(status: int, message: str, code: str, scope: Scope, receive: Receive, send: Send) -> None:
    await envelope(status, message, "invalid_request_error", None, code)(scope, receive, send)


class _Count:
    """Counts each response by route and status (and 5xx as errors), as a plain ASGI middleware.

    Starlette's ``BaseHTTPMiddleware`` runs the app in a task of its own and streams the response
    through a queue: about 1 ms of CPU per request that a 14 ms search paid for a counter.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before it starts a response

        async def watched(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            m: Metrics = scope["app"].state.metrics
            m.requests.labels(path, str(status)).inc()
            if status >= 500:
                m.errors.labels(path).inc()


def create_app(settings: Settings, pipeline: RagPipeline, admin_backend: AdminBackend | None = None) -> FastAPI:
    """Build the app around a ready pipeline.

    Args:
        settings: service settings (limits, API keys).
        pipeline: the query pipeline, models loaded.
        admin_backend: ingestion and administration (``indexer.service.AdminOperations``, which
            ``rag serve`` passes); without it the admin endpoints answer 503.
    """
    app = FastAPI(
        title="rag-service",
        version="0.1.0",
        description="Hybrid retrieval, reranking and answers with checked citations.",
        docs_url=None,
        redoc_url=None,
    )
    metrics = Metrics()
    slots = GenerationSlots(settings.api.max_concurrent_asks, settings.generator.timeout_s)
    app.state.settings = settings
    app.state.pipeline = pipeline
    app.state.metrics = metrics
    app.state.query_service = QueryService(settings, pipeline, metrics, slots)
    app.state.chat_service = ChatService(settings, pipeline, metrics, slots)
    app.state.status_service = StatusService(pipeline, metrics)
    app.state.document_service = DocumentService(pipeline.store)
    app.state.admin_service = AdminService(settings, pipeline.store, admin_backend)
    app.state.started = time.time()
    app.state.keyring = KeyRing(pipeline.store, cache_s=settings.api.key_cache_s)
    app.state.rate_limiter = RateLimiter()
    app.state.key_service = KeyService(app.state.keyring)
    app.state.audit = AuditLog(pipeline.store, app.state.keyring) if settings.api.audit else None
    errors.install(app)
    openapi.install(app)
    docs.install(app)
    web.install(app)
    app.include_router(query.router)
    app.include_router(chat.router)
    app.include_router(service.router)
    app.include_router(documents.router)
    app.include_router(admin.router)
    app.include_router(keys.router)
    app.add_middleware(
        BodyLimit, max_bytes=settings.api.max_body_bytes, timeout_s=settings.api.body_timeout_s,
        larger={"/v1/admin/jobs": upload_limit(settings)},
    )
    app.add_middleware(_Count)  # outside BodyLimit, so its 408s and 413s are counted as sent
    if app.state.audit is not None:  # outermost: it records the refusals of the layers inside too
        app.add_middleware(AuditMiddleware, audit=app.state.audit, queries=settings.api.audit_queries)
        app.router.on_shutdown.append(app.state.audit.close)
    return app
