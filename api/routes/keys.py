"""``/v1/admin/keys``: create, list and revoke managed API keys (scope ``admin``), as ``rag keys`` does."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import AdminDep, KeyServiceDep
from api.routes.admin import ERRORS
from api.schemas import KeyCreate, KeyCreated, KeyOut, KeysResponse

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])


@router.get("", response_model=KeysResponse, responses=ERRORS)
async def keys(admin: AdminDep, service: KeyServiceDep) -> KeysResponse:
    """The keys within the caller's reach (collections among its own, scope no higher); never the keys themselves."""
    return await service.list(admin.scope)


@router.post("", response_model=KeyCreated, status_code=201, responses=ERRORS)
async def create_key(body: KeyCreate, admin: AdminDep, service: KeyServiceDep) -> KeyCreated:
    """Make a key no stronger than the caller's; ``key`` is in this response only."""
    return await service.create(body, admin.scope)


@router.delete("/{key_id}", response_model=KeyOut, responses=ERRORS)
async def revoke_key(key_id: Annotated[int, Path(ge=1, le=2**63 - 1)], admin: AdminDep, service: KeyServiceDep) -> KeyOut:
    """Revoke a key; running servers refuse it within a second."""
    return await service.revoke(key_id, admin.scope)
