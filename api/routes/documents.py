"""``/v1/collections/{name}/documents/{id}``: a cited document's whole text."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import DocumentServiceDep, ScopeDep
from api.routes.query import ERRORS
from api.schemas import DocumentTextOut

router = APIRouter(prefix="/v1", tags=["query"])


@router.get("/collections/{name}/documents/{document_id}", response_model=DocumentTextOut, responses=ERRORS)
async def document(
    name: str, document_id: Annotated[int, Path(ge=1, le=2**63 - 1)], service: DocumentServiceDep, scope: ScopeDep
) -> DocumentTextOut:
    """The active document with this id (a citation's ``document_id``), whole, so its spans can be shown in place."""
    return await service.text(name, document_id, scope)
