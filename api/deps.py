"""Dependencies, as ``Annotated`` aliases; tests override them with ``app.dependency_overrides``."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from rag.config import Settings
from rag.pipeline import RagPipeline

if TYPE_CHECKING:
    from api.serving import ChatService, QueryService, StatusService
    from api.serving.admin import AdminService
    from api.serving.documents import DocumentService


def get_pipeline(request: Request) -> RagPipeline:
    """The pipeline built at start-up."""
    return request.app.state.pipeline


def get_settings(request: Request) -> Settings:
    """The settings read at start-up."""
    return request.app.state.settings


PipelineDep = Annotated[RagPipeline, Depends(get_pipeline)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_query_service(request: Request) -> QueryService:
    """Search, ask and feedback."""
    return request.app.state.query_service


def get_chat_service(request: Request) -> ChatService:
    """OpenAI-compatible chat completions."""
    return request.app.state.chat_service


def get_status_service(request: Request) -> StatusService:
    """Collections and health."""
    return request.app.state.status_service


def get_admin_service(request: Request) -> AdminService:
    """Collections, documents and upload jobs for the admin endpoints."""
    return request.app.state.admin_service


def get_document_service(request: Request) -> DocumentService:
    """Whole documents for the page's source view."""
    return request.app.state.document_service


@dataclass(frozen=True)
class Scope:
    """What the caller's key may read: ``None`` means every collection (no keys configured)."""

    collections: frozenset[str] | None
    key_hash: str = ""

    def check(self, collection: str) -> None:
        """Refuse a collection outside the key's scope.

        Raises:
            ApiError: 403 naming the collection.
        """
        if self.collections is not None and collection not in self.collections:
            raise ApiError(403, f"this API key may not read collection {collection!r}", "permission_error", "collection", "forbidden")

    def visible(self, names: list[str]) -> list[str]:
        """The names the key may see."""
        return names if self.collections is None else [n for n in names if n in self.collections]


_BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer KEY`")


def get_scope(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
) -> Scope:
    """Authenticate ``Authorization: Bearer KEY`` against the configured keys.

    The bearer scheme is declared in the OpenAPI document, so the reference page's Authorize button works.

    Raises:
        ApiError: 401 for a missing or unknown key when keys are configured.
    """
    keys = settings.api_keys
    if not keys:
        return Scope(None)
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY'", "authentication_error", None, "missing_api_key")
    for key, collections in keys.items():
        if hmac.compare_digest(key.encode(), token.encode()):
            return Scope(frozenset(collections), hashlib.sha256(token.encode()).hexdigest())
    raise ApiError(401, "invalid API key", "authentication_error", None, "invalid_api_key")


ScopeDep = Annotated[Scope, Depends(get_scope)]

QueryServiceDep = Annotated["QueryService", Depends(get_query_service)]
ChatServiceDep = Annotated["ChatService", Depends(get_chat_service)]
StatusServiceDep = Annotated["StatusService", Depends(get_status_service)]


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
"""Names and addresses of this machine that admin requests must come from and be addressed to."""


@dataclass(frozen=True)
class Admin:
    """A caller allowed to administer, and why."""

    granted_by: str


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def get_admin(request: Request, settings: SettingsDep) -> Admin:
    """Allow admin actions (collections, uploads, deletes) only to the local user of a server without keys.

    API keys carry no scopes yet, so no key may administer: with ``RAG_API_KEYS`` set the admin
    endpoints are refused. Without keys the server binds to 127.0.0.1, and admin requests must
    also come from there, be addressed to a loopback name (a page on another site that
    re-points its domain at 127.0.0.1 sends its own name in ``Host``) and, when the browser
    names an ``Origin``, come from this server's own page (a cross-site form may not post an
    upload). This is the one place the rule lives: a key scope replaces it here.

    Raises:
        ApiError: 403 naming the condition that failed.
    """

    def refuse(message: str) -> ApiError:
        return ApiError(403, message, "permission_error", None, "admin_forbidden")

    if settings.api_keys:
        raise refuse(
            "admin actions are off while API keys are configured (RAG_API_KEYS): keys have no admin scope yet; "
            "administer with the rag command, or serve without keys on 127.0.0.1"
        )
    client = request.client.host if request.client else ""
    if client not in LOOPBACK:
        raise refuse(f"admin actions are allowed only from this machine (127.0.0.1), not from {client or 'an unknown address'}")
    host = request.headers.get("host", "")
    if _host_name(host) not in LOOPBACK:
        raise refuse(f"admin requests must be addressed to 127.0.0.1 or localhost, not {host!r}")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != f"{request.url.scheme}://{host}".lower():
        raise refuse(f"admin requests from another origin ({origin!r}) are refused")
    return Admin("this machine, with no API keys configured")


AdminDep = Annotated[Admin, Depends(get_admin)]
AdminServiceDep = Annotated["AdminService", Depends(get_admin_service)]
DocumentServiceDep = Annotated["DocumentService", Depends(get_document_service)]
