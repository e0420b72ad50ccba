"""What the API writes to its log: routes, fields and error codes, never content.

Query text, document text and answers stay out of the log by default. A failed request's
line names its method, route template, status, error code and the field at fault; an
unexpected exception's line adds the frames it passed through, but not its message, which
may quote what was sent. ``RAG_LOG_QUERIES=true`` adds one line per question, for
debugging, and the server says so when it starts.
"""

from __future__ import annotations

import logging
import traceback

from fastapi import Request

from rag.config import Settings

log = logging.getLogger("api")


def route_of(request: Request) -> str:
    """The matched route's template (``/v1/documents/{document_id}``), else the path."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else request.url.path


def request_failed(request: Request, status: int, code: str | None, field: str | None = None) -> None:
    """One line for a refused or failed request: route, status, error code and field."""
    level = logging.WARNING if status >= 500 else logging.INFO
    log.log(level, "%s %s -> %d %s%s", request.method, route_of(request), status, code or "error",
            f" (field {field})" if field else "")


def unexpected(request: Request, exc: BaseException) -> None:
    """An unhandled exception: its type and where it was raised, without its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames[-8:]))
    log.error("%s %s -> 500 %s at %s", request.method, route_of(request), type(exc).__name__, where or "?")


def query(settings: Settings, route: str, collection: str, text: str) -> None:
    """The question's text, only when ``RAG_LOG_QUERIES`` is on."""
    if settings.log_queries:
        log.info("query on %s (%s): %r", route, collection, text)
