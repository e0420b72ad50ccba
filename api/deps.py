"""Dependencies, as ``Annotated`` aliases; tests override them with ``app.dependency_overrides``."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from rag.config import Settings
from rag.pipeline import RagPipeline
from rag.security.keys import SCOPES, KeyRing, hash_key, parse_rate

if TYPE_CHECKING:
    from api.serving import ChatService, QueryService, StatusService
    from api.serving.admin import AdminService
    from api.serving.documents import DocumentService
    from api.serving.keys import KeyService


async def get_pipeline(request: Request) -> RagPipeline:
    """The pipeline built at start-up."""
    return request.app.state.pipeline


async def get_settings(request: Request) -> Settings:
    """The settings read at start-up."""
    return request.app.state.settings


PipelineDep = Annotated[RagPipeline, Depends(get_pipeline)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_query_service(request: Request) -> QueryService:
    """Search, ask and feedback."""
    return request.app.state.query_service


async def get_chat_service(request: Request) -> ChatService:
    """OpenAI-compatible chat completions."""
    return request.app.state.chat_service


async def get_status_service(request: Request) -> StatusService:
    """Collections and health."""
    return request.app.state.status_service


async def get_admin_service(request: Request) -> AdminService:
    """Collections, documents and upload jobs for the admin endpoints."""
    return request.app.state.admin_service


async def get_key_service(request: Request) -> KeyService:
    """Managed API keys for the admin endpoints."""
    return request.app.state.key_service


async def get_document_service(request: Request) -> DocumentService:
    """Whole documents for the page's source view."""
    return request.app.state.document_service


@dataclass
class CallNote:
    """What one request's audit row records about its caller, filled in as the request is handled.

    Attributes:
        key_id: the managed key's id; None for a bootstrap key or none.
        key_hash: SHA-256 of a bootstrap key (``RAG_API_KEYS``).
        collections: the collections the request named, in the order it was checked for them.
        query: the query text (kept only when ``RAG_API__AUDIT_QUERIES`` is on).
    """

    key_id: int | None = None
    key_hash: str = ""
    collections: list[str] = field(default_factory=list)
    query: str | None = None


def call_note(request: Request) -> CallNote:
    """The request's :class:`CallNote`, made on first use; the audit middleware reads it afterwards."""
    note = getattr(request.state, "rag_call", None)
    if note is None:
        note = CallNote()
        request.state.rag_call = note
    return note


@dataclass(frozen=True)
class Scope:
    """What the caller's key may do.

    Attributes:
        collections: the collections it may use; ``None`` means every one (no keys configured, or a
            managed key made with ``--collections '*'``).
        key_hash: SHA-256 of the key; empty without one.
        level: ``read``, ``write`` or ``admin``; each includes the ones before it. Bootstrap keys
            (``RAG_API_KEYS``) are ``read``; a server without keys grants ``read`` on everything
            and leaves admin to the loopback rule of :func:`get_admin`.
        key_id: the managed key's id; None for a bootstrap key or none.
        note: where the request's audit row is gathered.
    """

    collections: frozenset[str] | None
    key_hash: str = ""
    level: str = "read"
    key_id: int | None = None
    note: CallNote = field(default_factory=CallNote, compare=False, repr=False)

    def check(self, collection: str, action: str = "read") -> None:
        """Refuse a collection outside the key's scope.

        Raises:
            ApiError: 403 naming the collection.
        """
        self.note.collections.append(collection)
        if self.collections is not None and collection not in self.collections:
            raise ApiError(403, f"this API key may not {action} collection {collection!r}", "permission_error", "collection", "forbidden")

    def check_hidden(self, collection: str, message: str, param: str) -> None:
        """Answer 404 ``message`` for a thing (a job) of a collection outside the key: not even its existence shows.

        Raises:
            ApiError: 404 naming ``param``.
        """
        if self.collections is not None and collection not in self.collections:
            raise ApiError(404, message, "not_found_error", param, "not_found")

    def visible(self, names: list[str]) -> list[str]:
        """The names the key may see."""
        return names if self.collections is None else [n for n in names if n in self.collections]

    def allows(self, level: str) -> bool:
        """Whether the key's level includes ``level``."""
        return SCOPES.index(self.level) >= SCOPES.index(level)


_BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer KEY`")


def get_keyring(request: Request) -> KeyRing | None:
    """The managed keys of the server's database (None in an app built without them)."""
    return getattr(request.app.state, "keyring", None)


async def get_scope(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Scope:
    """Authenticate ``Authorization: Bearer KEY`` against the bootstrap keys (``RAG_API_KEYS``) and the managed ones.

    Keys are required once either kind exists. A managed key must be neither revoked nor
    expired, and within its rate limit. The bearer scheme is declared in the OpenAPI document, so
    the reference page's Authorize button works. The check runs on the event loop when the key
    ring's cache has the answer, and in a worker thread when it must ask the database.

    Raises:
        ApiError: 401 for a missing, unknown, revoked or expired key; 429 with ``Retry-After`` over the key's rate.
    """
    ring = get_keyring(request)
    token = credentials.credentials.strip() if credentials is not None else ""
    if ring is None or ring.cached(token):
        return _scope(request, settings, credentials)
    return await run_in_threadpool(_scope, request, settings, credentials)


def _scope(request: Request, settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> Scope:
    note = call_note(request)
    ring = get_keyring(request)
    keys = settings.api_keys
    if not keys and (ring is None or not ring.any_keys()):
        return Scope(None, note=note)
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY'", "authentication_error", None, "missing_api_key")
    for key, collections in keys.items():
        if hmac.compare_digest(key.encode(), token.encode()):
            note.key_hash = hash_key(token)
            return Scope(frozenset(collections), note.key_hash, note=note)
    info = ring.lookup(token) if ring is not None else None
    if info is None:
        raise ApiError(401, "invalid API key", "authentication_error", None, "invalid_api_key")
    note.key_id = info.id
    state = info.state()
    if state == "revoked":
        raise ApiError(401, f"API key {info.id} was revoked", "authentication_error", None, "revoked_api_key")
    if state == "expired":
        when = info.expires_at.isoformat(timespec="seconds") if info.expires_at else "?"
        raise ApiError(401, f"API key {info.id} expired at {when}", "authentication_error", None, "expired_api_key")
    if info.rate is not None:
        rate = parse_rate(info.rate)
        wait = request.app.state.rate_limiter.take(info.id, rate) if rate else 0
        if wait:
            raise ApiError(
                429, f"API key {info.id} is over its rate limit of {info.rate}; retry in {wait} s",
                "rate_limit_error", None, "rate_limited", headers={"Retry-After": str(wait)},
            )
    collections = None if info.all_collections else frozenset(info.collections)
    return Scope(collections, hash_key(token), info.scope, info.id, note)


ScopeDep = Annotated[Scope, Depends(get_scope)]

QueryServiceDep = Annotated["QueryService", Depends(get_query_service)]
ChatServiceDep = Annotated["ChatService", Depends(get_chat_service)]
StatusServiceDep = Annotated["StatusService", Depends(get_status_service)]


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
"""Names and addresses of this machine that admin requests must come from and be addressed to."""


@dataclass(frozen=True)
class Admin:
    """A caller allowed to administer, why, and on which collections (``scope``)."""

    granted_by: str
    scope: Scope = field(default_factory=lambda: Scope(None))


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _refuse(message: str) -> ApiError:
    return ApiError(403, message, "permission_error", None, "admin_forbidden")


def _grant(request: Request, settings: Settings, scope: Scope, level: str) -> Admin:
    """Allow admin actions to a key whose scope includes ``level``, or to the local user of a server without keys.

    With keys configured (``RAG_API_KEYS`` or any managed key), the key decides: ``write`` may
    upload, list and delete documents of its collections; ``admin`` may also create and drop
    collections. Bootstrap keys are ``read`` only. Without keys the server binds to 127.0.0.1,
    and admin requests must also come from there, be addressed to a loopback name (a page on
    another site that re-points its domain at 127.0.0.1 sends its own name in ``Host``) and,
    when the browser names an ``Origin``, come from this server's own page (a cross-site form
    may not post an upload). This is the one place the rule lives.

    Raises:
        ApiError: 403 naming the condition that failed.
    """
    if scope.key_hash:
        if not scope.allows(level):
            how = (
                "keys from RAG_API_KEYS are read-only; make one with `rag keys create --scope write` (or admin)"
                if scope.key_id is None
                else f"make one with `rag keys create --scope {level}`"
            )
            raise _refuse(f"this API key has scope {scope.level!r}; this action needs scope {level!r}: {how}")
        name = request.path_params.get("name")
        if isinstance(name, str):
            scope.check(name, "administer")
        return Admin(f"API key {scope.key_id} with scope {scope.level!r}", scope)
    client = request.client.host if request.client else ""
    if client not in LOOPBACK:
        raise _refuse(f"admin actions are allowed only from this machine (127.0.0.1), not from {client or 'an unknown address'}")
    host = request.headers.get("host", "")
    if _host_name(host) not in LOOPBACK:
        raise _refuse(f"admin requests must be addressed to 127.0.0.1 or localhost, not {host!r}")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != f"{request.url.scheme}://{host}".lower():
        raise _refuse(f"admin requests from another origin ({origin!r}) are refused")
    return Admin("this machine, with no API keys configured", Scope(None, level="admin", note=scope.note))


def get_writer(request: Request, settings: SettingsDep, scope: ScopeDep) -> Admin:
    """A caller that may upload, list and delete documents (scope ``write``): see :func:`_grant`."""
    return _grant(request, settings, scope, "write")


def get_admin(request: Request, settings: SettingsDep, scope: ScopeDep) -> Admin:
    """A caller that may create and drop collections (scope ``admin``): see :func:`_grant`."""
    return _grant(request, settings, scope, "admin")


WriterDep = Annotated[Admin, Depends(get_writer)]
AdminDep = Annotated[Admin, Depends(get_admin)]
AdminServiceDep = Annotated["AdminService", Depends(get_admin_service)]
DocumentServiceDep = Annotated["DocumentService", Depends(get_document_service)]
KeyServiceDep = Annotated["KeyService", Depends(get_key_service)]
