"""One place that turns errors into OpenAI's envelope ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import ConfigError, GeneratorUnavailableError, InputError, NotFoundError, RagError
from rag.index.collection import CollectionBusyError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error with OpenAI's envelope fields."""

    def __init__(self, status: int, message: str, type_: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def envelope(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    """A JSON error response in OpenAI's shape."""
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": type_, "param": param, "code": code}},
    )


def rag_error_response(exc: RagError) -> JSONResponse:
    """Map a domain error to its HTTP status."""
    if isinstance(exc, InputError):
        return envelope(422, str(exc), "invalid_request_error", exc.param, "invalid_value")
    if isinstance(exc, NotFoundError):
        return envelope(404, str(exc), "not_found_error", exc.param, "not_found")
    if isinstance(exc, GeneratorUnavailableError):
        return envelope(503, f"generator unavailable: {exc}", "service_unavailable", None, "generator_unavailable")
    if isinstance(exc, CollectionBusyError):
        return envelope(409, str(exc), "conflict_error", "collection", "busy")
    if isinstance(exc, ConfigError):
        return envelope(500, f"server misconfigured: {exc}", "server_error", exc.setting, "config")
    log.exception("unhandled RagError")
    return envelope(500, "internal error", "server_error")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return envelope(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(RagError)
    async def _rag(_: Request, exc: RagError) -> JSONResponse:
        return rag_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        raw = [str(p) for p in first.get("loc", ())]
        loc = raw[1:] if raw and raw[0] in ("body", "query", "path", "header") else raw
        param = ".".join(loc) or (raw[0] if raw else None)
        msg = first.get("msg", "invalid request")
        return envelope(422, f"{param}: {msg}" if param else msg, "invalid_request_error", param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return envelope(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return envelope(500, "internal error; see the server log", "server_error")
