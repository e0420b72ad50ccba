"""One place that turns errors into OpenAI's envelope ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import logs
from rag.errors import ConfigError, GeneratorUnavailableError, InputError, NotFoundError, RagError
from rag.index.collection import CollectionBusyError

class ApiError(Exception):
    """An HTTP error with OpenAI's envelope fields."""

    def __init__(
        self, status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers


def envelope(
    status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response in OpenAI's shape; ``headers`` such as ``Retry-After`` or ``WWW-Authenticate``."""
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": type_, "param": param, "code": code}},
        headers=headers,
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
    return envelope(500, "internal error", "server_error")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        logs.request_failed(request, exc.status, exc.code, exc.param)
        return envelope(exc.status, exc.message, exc.type, exc.param, exc.code, exc.headers)

    @app.exception_handler(RagError)
    async def _rag(request: Request, exc: RagError) -> JSONResponse:
        response = rag_error_response(exc)
        if response.status_code == 500 and not isinstance(exc, ConfigError):
            logs.unexpected(request, exc)
        else:
            field = getattr(exc, "param", None) or getattr(exc, "setting", None)
            logs.request_failed(request, response.status_code, type(exc).__name__, field)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        raw = [str(p) for p in first.get("loc", ())]
        loc = raw[1:] if raw and raw[0] in ("body", "query", "path", "header") else raw
        param = ".".join(loc) or (raw[0] if raw else None)
        msg = first.get("msg", "invalid request")
        logs.request_failed(request, 422, first.get("type", "invalid_value"), param)
        return envelope(422, f"{param}: {msg}" if param else msg, "invalid_request_error", param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code != 404:
            logs.request_failed(request, exc.status_code, "http_error")
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return envelope(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logs.unexpected(request, exc)
        return envelope(500, "internal error; see the server log", "server_error")
