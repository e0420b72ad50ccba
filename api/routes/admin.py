"""``/v1/admin``: collections, documents, stats and uploads that start ingestion jobs.

Every route depends on ``AdminDep`` (see :func:`api.deps.get_admin` for who may administer).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, UploadFile

from api.deps import AdminDep, AdminServiceDep
from api.schemas import (
    AdminCollectionCreate,
    AdminCollectionOut,
    AdminCollectionsResponse,
    AdminDeleteResponse,
    AdminDocumentsResponse,
    AdminDropResponse,
    AdminStatusResponse,
    ErrorResponse,
    JobOut,
    JobsResponse,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (403, 404, 409, 413, 422, 503)}
"""The error responses every admin route documents (403: not an admin; 409: the collection is busy)."""


@router.get("", response_model=AdminStatusResponse, responses=ERRORS)
async def status(admin: AdminDep, service: AdminServiceDep) -> AdminStatusResponse:
    """Whether the caller may administer, and what an upload may hold."""
    return await service.status(admin.granted_by)


@router.get("/collections", response_model=AdminCollectionsResponse, responses=ERRORS)
async def collections(_: AdminDep, service: AdminServiceDep) -> AdminCollectionsResponse:
    """Every collection with its counts (documents by state, chunks, vectors, bytes on disk)."""
    return await service.collections()


@router.post("/collections", response_model=AdminCollectionOut, status_code=201, responses=ERRORS)
async def create_collection(body: AdminCollectionCreate, _: AdminDep, service: AdminServiceDep) -> AdminCollectionOut:
    """Create an empty collection (409 when it exists)."""
    return await service.create(body.name)


@router.get("/collections/{name}", response_model=AdminCollectionOut, responses=ERRORS)
async def collection_stats(name: str, _: AdminDep, service: AdminServiceDep) -> AdminCollectionOut:
    """One collection's counts, as ``rag stats`` gives them."""
    return await service.stats(name)


@router.delete("/collections/{name}", response_model=AdminDropResponse, responses=ERRORS)
async def drop_collection(name: str, _: AdminDep, service: AdminServiceDep) -> AdminDropResponse:
    """Drop a collection with its documents, indexes and uploaded files."""
    return await service.drop(name)


@router.get("/collections/{name}/documents", response_model=AdminDocumentsResponse, responses=ERRORS)
async def documents(
    name: str, _: AdminDep, service: AdminServiceDep,
    all_states: Annotated[bool, Query(alias="all", description="every stored version, not only active ones")] = False,
) -> AdminDocumentsResponse:
    """The collection's documents with their state and chunk counts."""
    return await service.documents(name, all_states)


@router.delete("/collections/{name}/documents/{document_id}", response_model=AdminDeleteResponse, responses=ERRORS)
async def delete_document(
    name: str, document_id: Annotated[int, Path(ge=1, le=2**63 - 1)], _: AdminDep, service: AdminServiceDep
) -> AdminDeleteResponse:
    """Delete one active document (``rag delete --id``); ``rag compact`` later reclaims its space."""
    return await service.delete(name, document_id)


@router.post("/jobs", response_model=JobOut, status_code=202, responses=ERRORS)
async def upload(
    collection: Annotated[str, Form(min_length=1, max_length=100)],
    files: Annotated[list[UploadFile], File(description="the files to ingest")],
    _: AdminDep,
    service: AdminServiceDep,
) -> JobOut:
    """Upload files into a collection and start ingesting them (``rag ingest`` over them) in the background.

    Poll ``GET /v1/admin/jobs/{id}`` for progress; files that cannot be ingested are listed with
    their reasons. 409 ``busy`` while another job writes to the collection.
    """
    return await service.upload(collection, [(f.filename, f.file) for f in files])


@router.get("/jobs", response_model=JobsResponse, responses=ERRORS)
async def jobs(_: AdminDep, service: AdminServiceDep) -> JobsResponse:
    """This server's recent ingestion jobs, newest first."""
    return await service.all_jobs()


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
async def job(job_id: str, _: AdminDep, service: AdminServiceDep) -> JobOut:
    """One ingestion job's progress, counts and failed files."""
    return await service.job(job_id)
