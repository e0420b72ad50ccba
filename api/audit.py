"""One audit row per ``/v1`` call: key id, route template, collection, status, time.

The middleware sits outside every other one, so refusals made before a route runs (401, 413,
429) are recorded too. It only queues the entry; :class:`rag.security.audit.AuditLog` writes
batches from its own thread. The query text is kept only when ``RAG_API__AUDIT_QUERIES`` is on.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.index.store import utcnow
from rag.security.audit import AuditEntry, AuditLog


class AuditMiddleware:
    """Record every ``/v1/*`` request in ``audit``.

    Args:
        app: the wrapped application.
        audit: the batched writer.
        queries: whether to keep the query text.
    """

    def __init__(self, app: ASGIApp, audit: AuditLog, queries: bool = False) -> None:
        self.app, self.audit, self.queries = app, audit, queries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # the dict request.state writes into, seen after the call
        created, started = utcnow(), time.perf_counter()
        status, elapsed = 500, 0.0

        async def watch(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status, elapsed = message["status"], (time.perf_counter() - started) * 1000
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            note = state.get("rag_call")
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            named = note.collections[0] if note is not None and note.collections else None
            path_name = (scope.get("path_params") or {}).get("name")
            self.audit.record(
                AuditEntry(
                    key_id=note.key_id if note is not None else None,
                    key_hash=note.key_hash if note is not None else "",
                    method=scope.get("method", ""),
                    route=route,
                    collection=named or (path_name if isinstance(path_name, str) else None),
                    status=status,
                    duration_ms=elapsed or (time.perf_counter() - started) * 1000,
                    query=note.query if note is not None and self.queries else None,
                    created_at=created,
                )
            )
