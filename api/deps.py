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
